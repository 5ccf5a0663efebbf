//! Every bad descriptor gets its completion status, never a panic and never a partial
//! write; per-descriptor faults do not latch the card's error register; the card keeps
//! working afterwards.

mod common;

use amf_card::{Card, CardBackend, CardConfig, Execution, SimCard};
use common::{EXECUTIONS, card, raw_job};
use shared_regs::limits::{PARITY_SOURCE_BYTES_MAX, PARITY_SOURCES_MAX};
use shared_regs::ring::{CompletionStatus, ParityDescriptor, ParityOpcode};
use zerocopy::little_endian::{U32, U64};

/// Submits `descriptor`, waits, returns its status; P's buffer `p` must still hold junk
/// unless the status is Ok.
fn run(card: &mut Card<SimCard>, descriptor: &ParityDescriptor) -> CompletionStatus {
    card.submit_parity(descriptor).unwrap();
    let completion = card.wait_completion(5_000).unwrap();
    assert_eq!(completion.tag, descriptor.tag.get());
    completion.status
}

fn junk_p(card: &mut Card<SimCard>, job: &common::RawJob) {
    let junk = vec![0xEEu8; job.expected_p.len()];
    card.backend_mut().dma_write(&job.p, 0, &junk).unwrap();
}

fn p_is_junk(card: &mut Card<SimCard>, job: &common::RawJob) -> bool {
    let mut p = vec![0u8; job.expected_p.len()];
    card.backend_mut().dma_read(&job.p, 0, &mut p).unwrap();
    p.iter().all(|&byte| byte == 0xEE)
}

type Mutation = (&'static str, fn(&mut ParityDescriptor), CompletionStatus);

fn field_mutations() -> Vec<Mutation> {
    vec![
        ("opcode 0", |d| d.opcode = 0, CompletionStatus::BadOpcode),
        ("opcode 9", |d| d.opcode = 9, CompletionStatus::BadOpcode),
        (
            "one source",
            |d| d.source_count = 1,
            CompletionStatus::BadSourceCount,
        ),
        (
            "too many sources",
            |d| d.source_count = PARITY_SOURCES_MAX as u8 + 1,
            CompletionStatus::BadSourceCount,
        ),
        (
            "length 0",
            |d| d.length_bytes = U32::new(0),
            CompletionStatus::BadLength,
        ),
        (
            "length 100",
            |d| d.length_bytes = U32::new(100),
            CompletionStatus::BadLength,
        ),
        (
            "length above max",
            |d| d.length_bytes = U32::new(PARITY_SOURCE_BYTES_MAX + 64),
            CompletionStatus::BadLength,
        ),
        (
            "reserved0",
            |d| d.reserved0 = 1,
            CompletionStatus::BadReserved,
        ),
        (
            "reserved1",
            |d| d.reserved1 = U32::new(1),
            CompletionStatus::BadReserved,
        ),
        (
            "reserved2",
            |d| d.reserved2[7] = 1,
            CompletionStatus::BadReserved,
        ),
        (
            "undefined flag",
            |d| d.flags = 0x80,
            CompletionStatus::BadReserved,
        ),
    ]
}

fn address_mutations() -> Vec<Mutation> {
    vec![
        (
            "source list at 0",
            |d| d.sources_addr = U64::new(0),
            CompletionStatus::DmaFault,
        ),
        (
            "source list misaligned",
            |d| d.sources_addr = U64::new(d.sources_addr.get() + 4),
            CompletionStatus::DmaFault,
        ),
        (
            "P unmapped",
            |d| d.p_addr = U64::new(0xDEAD_0000),
            CompletionStatus::DmaFault,
        ),
        (
            "P misaligned",
            |d| d.p_addr = U64::new(d.p_addr.get() + 8),
            CompletionStatus::DmaFault,
        ),
        (
            "P past its buffer",
            |d| d.length_bytes = U32::new(8192),
            CompletionStatus::DmaFault,
        ),
        (
            "Q unmapped",
            |d| {
                d.opcode = ParityOpcode::GenPq as u8;
                d.q_addr = U64::new(u64::MAX - 63);
            },
            CompletionStatus::DmaFault,
        ),
        (
            "fewer sources listed than counted",
            |d| d.source_count = 4,
            CompletionStatus::DmaFault,
        ),
    ]
}

#[test]
fn each_bad_descriptor_gets_its_status_and_writes_nothing() {
    for execution in EXECUTIONS {
        let (mut card, _dir) = card(execution, CardConfig::default());
        let mutations = field_mutations().into_iter().chain(address_mutations());
        for (tag, (name, mutate, expected)) in mutations.enumerate() {
            let job = raw_job(&mut card, tag as u32);
            junk_p(&mut card, &job);
            let mut descriptor = job.descriptor;
            mutate(&mut descriptor);
            assert_eq!(run(&mut card, &descriptor), expected, "{name}");
            assert!(p_is_junk(&mut card, &job), "{name}: P was written");
            // Per-descriptor faults are not register faults.
            card.check_error().unwrap();
            assert_eq!(
                run(&mut card, &job.descriptor),
                CompletionStatus::Ok,
                "after {name}"
            );
            assert!(!p_is_junk(&mut card, &job));
        }
    }
}

#[test]
fn unmapped_source_in_the_list_and_freed_buffers_fault() {
    let (mut card, _dir) = card(Execution::Stepped, CardConfig::default());
    let job = raw_job(&mut card, 1);
    junk_p(&mut card, &job);
    // Second source address points nowhere.
    card.backend_mut()
        .dma_write(&job.list, 8, &0x7000_0000u64.to_le_bytes())
        .unwrap();
    assert_eq!(run(&mut card, &job.descriptor), CompletionStatus::DmaFault);
    assert!(p_is_junk(&mut card, &job));
    // A freed source buffer is unmapped for the card.
    let job = raw_job(&mut card, 2);
    let descriptor = job.descriptor;
    card.backend_mut().dma_free(job.sources).unwrap();
    assert_eq!(run(&mut card, &descriptor), CompletionStatus::DmaFault);
    card.check_error().unwrap();
}
