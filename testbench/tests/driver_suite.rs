//! One driver test suite, run on the sim card and on the Verilated card (`rtl`): identity
//! and capabilities, parity of many shapes, ring wrap-around, descriptor and register
//! errors, the SRAM window. Each check is generic over the backend and instantiated for
//! both by `on_both!`; the same check must pass on both. The last tests show the suite has
//! teeth: it fails a sim card with a wrong Q, and a Verilated card with a wrong Q.

use amf_card::backend::CardBackend;
use amf_card::sim::SimMutation;
use amf_card::{Card, CardConfig, CardError, CardParity, SimCard, SimConfig};
use amf_parity::ParityEngine;
use shared_regs::limits::{PARITY_BEAT_BYTES, RING_ENTRIES_MIN, SRAM_WINDOW_BYTES};
use shared_regs::regs::{self, ErrorCode};
use shared_regs::ring::{CompletionStatus, ParityDescriptor, ParityOpcode};
use testbench::backend::{RtlCard, RtlConfig, RtlVariant};
use zerocopy::little_endian::{U32, U64};

/// The Verilated card's SRAM; the sim card gets the same.
const SRAM_BYTES: u64 = 2 * SRAM_WINDOW_BYTES as u64;
/// Virtual-time backends never wait; this only bounds a wall-clock wait on sim.
const TIMEOUT_MS: u32 = 10_000;

fn sim_with(mutation: Option<SimMutation>) -> (SimCard, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = SimConfig {
        mutation,
        ..SimConfig::new(SRAM_BYTES).stepped()
    };
    let card = SimCard::open(&dir.path().join("sram"), config).expect("sim card opens");
    (card, dir)
}

fn rtl_with(variant: RtlVariant) -> RtlCard {
    RtlCard::new(RtlConfig {
        variant,
        ..RtlConfig::default()
    })
    .unwrap_or_else(|error| panic!("{error}: {error:?}"))
}

/// Instantiates `check(backend)` as one test per backend.
macro_rules! on_both {
    ($check:ident) => {
        mod $check {
            #[test]
            fn sim() {
                let (card, _dir) = super::sim_with(None);
                super::$check(card).unwrap();
            }
            #[test]
            fn rtl() {
                super::$check(super::rtl_with(testbench::backend::RtlVariant::Card)).unwrap();
            }
        }
    };
}

type Checked = Result<(), String>;

fn open<B: CardBackend + std::fmt::Debug>(backend: B, config: CardConfig) -> Card<B> {
    Card::open(backend, config).unwrap_or_else(|error| panic!("driver opens the card: {error:?}"))
}

/// Deterministic bytes, different per `seed`.
fn pattern(seed: u64, length: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

on_both!(identity_and_capabilities);
fn identity_and_capabilities<B: CardBackend + std::fmt::Debug>(backend: B) -> Checked {
    let mut card = open(backend, CardConfig::default());
    let identity = *card.identity();
    let needed = regs::CAP_PARITY_P | regs::CAP_PARITY_PQ | regs::CAP_SRAM | regs::CAP_INTERRUPTS;
    if identity.caps & needed != needed {
        return Err(format!("caps {:#x} lack {needed:#x}", identity.caps));
    }
    if u32::from(identity.version_major) != regs::VERSION_VALUE >> 16 {
        return Err(format!(
            "version {}.{}",
            identity.version_major, identity.version_minor
        ));
    }
    if identity.sram_bytes != SRAM_BYTES {
        return Err(format!("SRAM {} bytes", identity.sram_bytes));
    }
    if identity.fabric_port_id >= u32::from(identity.limits.fabric_ports) {
        return Err(format!(
            "port {} of {} ports",
            identity.fabric_port_id, identity.limits.fabric_ports
        ));
    }
    if u32::from(identity.limits.parity_sources_max) < shared_regs::limits::PARITY_SOURCES_MAX {
        return Err(format!(
            "{} sources at most",
            identity.limits.parity_sources_max
        ));
    }
    let backend = card.backend_mut();
    let id = backend.read32(regs::ID).map_err(|e| e.to_string())?;
    backend
        .write32(regs::SCRATCH, 0xDEAD_BEEF)
        .map_err(|e| e.to_string())?;
    let scratch = backend.read32(regs::SCRATCH).map_err(|e| e.to_string())?;
    let sram = backend
        .read64(regs::SRAM_BYTES)
        .map_err(|e| e.to_string())?;
    if (id, scratch, sram) != (regs::ID_VALUE, 0xDEAD_BEEF, SRAM_BYTES) {
        return Err(format!(
            "ID {id:#x}, SCRATCH {scratch:#x}, SRAM_BYTES {sram}"
        ));
    }
    card.check_error().map_err(|e| e.to_string())
}

/// RAID-5 and RAID-6 over 3..=32 members, chunk sizes rotating through `CHUNKS`: P and Q
/// equal the scalar reference. P and Q start as junk, so an engine writing nothing fails.
fn parity_shapes<B: CardBackend + std::fmt::Debug>(backend: B) -> Checked {
    const CHUNKS: [usize; 3] = [64, 512, 4096];
    let mut engine =
        CardParity::new(open(backend, CardConfig::default())).map_err(|e| e.to_string())?;
    for members in 3..=32_usize {
        let length = CHUNKS[members % CHUNKS.len()];
        for (parities, name) in [(1, "RAID-5"), (2, "RAID-6")] {
            let count = members - parities;
            if count < 2 {
                continue;
            }
            let data: Vec<Vec<u8>> = (0..count)
                .map(|i| pattern((members * 64 + i) as u64, length))
                .collect();
            let sources: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
            let (mut expected_p, mut expected_q) = (vec![0; length], vec![0; length]);
            amf_parity::reference::gen_pq(&sources, &mut expected_p, &mut expected_q);
            let (mut p, mut q) = (vec![0xA5; length], vec![0x5A; length]);
            let with_q = (parities == 2).then_some(q.as_mut_slice());
            engine
                .compute(&sources, &mut p, with_q)
                .map_err(|e| format!("{name} {members}: {e}"))?;
            if p != expected_p {
                return Err(format!(
                    "{name} over {members} members of {length} bytes: P differs"
                ));
            }
            if parities == 2 && q != expected_q {
                return Err(format!(
                    "{name} over {members} members of {length} bytes: Q differs"
                ));
            }
        }
    }
    Ok(())
}
on_both!(parity_shapes);

/// Staged buffers of one raw descriptor: `count` sources of `length` bytes, P and Q.
struct Job {
    descriptor: ParityDescriptor,
    expected_p: Vec<u8>,
    p: amf_card::DmaBuffer,
}

fn stage<B: CardBackend>(backend: &mut B, seed: u64, count: usize, length: usize) -> Job
where
    B::Error: std::fmt::Debug,
{
    let data: Vec<Vec<u8>> = (0..count)
        .map(|i| pattern(seed * 64 + i as u64, length))
        .collect();
    let sources = backend.dma_alloc((count * length) as u64).unwrap();
    let list = backend.dma_alloc((count * 8) as u64).unwrap();
    let p = backend.dma_alloc(length as u64).unwrap();
    let mut addresses = Vec::new();
    for (index, source) in data.iter().enumerate() {
        backend
            .dma_write(&sources, (index * length) as u64, source)
            .unwrap();
        addresses
            .extend_from_slice(&(sources.device_address() + (index * length) as u64).to_le_bytes());
    }
    backend.dma_write(&list, 0, &addresses).unwrap();
    let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
    let mut expected_p = vec![0; length];
    amf_parity::reference::gen_p(&refs, &mut expected_p);
    let descriptor = ParityDescriptor {
        opcode: ParityOpcode::GenP as u8,
        source_count: count as u8,
        tag: U32::new(seed as u32),
        length_bytes: U32::new(length as u32),
        sources_addr: U64::new(list.device_address()),
        p_addr: U64::new(p.device_address()),
        ..Default::default()
    };
    Job {
        descriptor,
        expected_p,
        p,
    }
}

/// A ring of the smallest size, its indices starting just below 2^32: many descriptors,
/// some queued together, complete in order with their tags, across slot and index wrap.
fn ring_wraps<B: CardBackend + std::fmt::Debug>(backend: B) -> Checked
where
    B::Error: std::fmt::Debug,
{
    let config = CardConfig {
        parity_ring_entries: RING_ENTRIES_MIN * 2,
        ring_index_start: u32::MAX - 5,
        ..CardConfig::default()
    };
    let mut card = open(backend, config);
    let mut jobs = Vec::new();
    for batch in 0..4_u64 {
        let queued: Vec<Job> = (0..4)
            .map(|i| stage(card.backend_mut(), batch * 4 + i + 1, 3, 128))
            .collect();
        for job in &queued {
            card.submit_parity(&job.descriptor)
                .map_err(|e| e.to_string())?;
        }
        for job in &queued {
            let completion = card
                .wait_completion(TIMEOUT_MS)
                .map_err(|e| e.to_string())?;
            if completion.tag != job.descriptor.tag.get()
                || completion.status != CompletionStatus::Ok
            {
                return Err(format!(
                    "completion {completion:?} for tag {}",
                    job.descriptor.tag.get()
                ));
            }
        }
        jobs.extend(queued);
    }
    for job in &jobs {
        let mut p = vec![0; job.expected_p.len()];
        card.backend_mut().dma_read(&job.p, 0, &mut p).unwrap();
        if p != job.expected_p {
            return Err(format!("P of tag {} differs", job.descriptor.tag.get()));
        }
    }
    card.check_error().map_err(|e| e.to_string())
}
on_both!(ring_wraps);

/// Each malformed descriptor gets its status, leaves P alone, and the card goes on.
fn bad_descriptors<B: CardBackend + std::fmt::Debug>(backend: B) -> Checked
where
    B::Error: std::fmt::Debug,
{
    let mut card = open(backend, CardConfig::default());
    type Mutate = fn(&mut ParityDescriptor);
    let cases: [(Mutate, CompletionStatus); 6] = [
        (|d| d.opcode = 0x7F, CompletionStatus::BadOpcode),
        (|d| d.source_count = 0, CompletionStatus::BadSourceCount),
        (
            |d| d.length_bytes = U32::new(PARITY_BEAT_BYTES + 1),
            CompletionStatus::BadLength,
        ),
        (|d| d.flags = 0x80, CompletionStatus::BadReserved),
        (
            |d| d.p_addr = U64::new(d.p_addr.get() + 64),
            CompletionStatus::DmaFault,
        ),
        (|d| d.sources_addr = U64::new(8), CompletionStatus::DmaFault),
    ];
    for (index, (mutate, expected)) in cases.into_iter().enumerate() {
        let mut job = stage(card.backend_mut(), index as u64 + 100, 3, 256);
        mutate(&mut job.descriptor);
        card.submit_parity(&job.descriptor)
            .map_err(|e| e.to_string())?;
        let completion = card
            .wait_completion(TIMEOUT_MS)
            .map_err(|e| e.to_string())?;
        if completion.status != expected {
            return Err(format!(
                "case {index}: {:?}, expected {expected:?}",
                completion.status
            ));
        }
        let mut p = vec![1; 256];
        card.backend_mut().dma_read(&job.p, 0, &mut p).unwrap();
        if p.iter().any(|&byte| byte != 0) {
            return Err(format!("case {index}: P was written"));
        }
    }
    let job = stage(card.backend_mut(), 7, 4, 256);
    card.submit_parity(&job.descriptor)
        .map_err(|e| e.to_string())?;
    let completion = card
        .wait_completion(TIMEOUT_MS)
        .map_err(|e| e.to_string())?;
    if completion.status != CompletionStatus::Ok {
        return Err(format!(
            "a good descriptor after bad ones: {:?}",
            completion.status
        ));
    }
    card.check_error().map_err(|e| e.to_string())
}
on_both!(bad_descriptors);

/// A rejected access is an `Err`, latches its code and offset (the first one only), sets
/// `STATUS_ERROR`, and clears on request.
fn error_registers<B: CardBackend + std::fmt::Debug>(backend: B) -> Checked {
    let mut card = open(backend, CardConfig::default());
    let cases = [
        (regs::VERSION, ErrorCode::ReadOnly, regs::VERSION),
        (
            regs::SRAM_WINDOW_SELECT,
            ErrorCode::BadWindow,
            regs::SRAM_WINDOW_SELECT,
        ),
        (0x4C, ErrorCode::BadOffset, 0x4C),
    ];
    for (offset, code, info) in cases {
        if card.backend_mut().write32(offset, 99).is_ok() {
            return Err(format!("write at {offset:#x} accepted"));
        }
        if card.backend_mut().write32(regs::SCRATCH, 1).is_err() {
            return Err("a good write after a fault refused".into());
        }
        match card.check_error() {
            Err(CardError::Device {
                code: found,
                info: found_info,
            }) if (found, found_info) == (code, info) => {}
            other => {
                return Err(format!(
                    "at {offset:#x}: {other:?}, expected {code:?} at {info:#x}"
                ));
            }
        }
        card.clear_error().map_err(|e| e.to_string())?;
        card.check_error()
            .map_err(|e| format!("after clearing: {e}"))?;
    }
    let _ = card.backend_mut().write32(regs::ID, 1);
    let _ = card.backend_mut().write32(0x4C, 1);
    match card.check_error() {
        Err(CardError::Device {
            code: ErrorCode::ReadOnly,
            info: regs::ID,
        }) => Ok(()),
        other => Err(format!("first error not kept: {other:?}")),
    }
}
on_both!(error_registers);

/// Bytes written through the paged window read back, across the page boundary with
/// unaligned edges, and the window shows them at the page `SRAM_WINDOW_SELECT` picks.
fn sram_window<B: CardBackend + std::fmt::Debug>(backend: B) -> Checked {
    let mut card = open(backend, CardConfig::default());
    let offset = u64::from(SRAM_WINDOW_BYTES) - 301;
    let bytes = pattern(5, 1000);
    card.sram_write(offset, &bytes).map_err(|e| e.to_string())?;
    let mut read = vec![0; bytes.len()];
    card.sram_read(offset, &mut read)
        .map_err(|e| e.to_string())?;
    if read != bytes {
        return Err("SRAM read back differs".into());
    }
    let backend = card.backend_mut();
    backend
        .write32(regs::SRAM_WINDOW_SELECT, 1)
        .map_err(|e| e.to_string())?;
    let mut word = [0; 8];
    backend
        .window_read(0, &mut word)
        .map_err(|e| e.to_string())?;
    if word[..] != bytes[301..309] {
        return Err(format!("page 1 shows {word:?}"));
    }
    let past = card.sram_write(SRAM_BYTES - 4, &[0; 8]);
    if !matches!(past, Err(CardError::SramOutOfRange { .. })) {
        return Err(format!("a write past the SRAM: {past:?}"));
    }
    card.check_error().map_err(|e| e.to_string())
}
on_both!(sram_window);

#[test]
fn the_suite_fails_a_sim_card_with_a_wrong_q() {
    let (card, _dir) = sim_with(Some(SimMutation::QPolynomial { low: 0x1b }));
    let verdict = parity_shapes(card).expect_err("a wrong Q passes the suite");
    assert!(
        verdict.contains("RAID-6") && verdict.contains("Q differs"),
        "{verdict}"
    );
}

#[test]
fn the_suite_fails_a_verilated_card_with_a_wrong_q() {
    let verdict =
        parity_shapes(rtl_with(RtlVariant::WrongQ)).expect_err("a wrong Q passes the suite");
    assert!(
        verdict.contains("RAID-6") && verdict.contains("Q differs"),
        "{verdict}"
    );
}

/// `CONTROL_RESET` returns the card's registers to their reset values (SRAM survives): a
/// latched error, pending causes, the mask, the window page, `SCRATCH` and `CONTROL`
/// itself. (The RTL once reset only its parity engine: found by this check.)
fn reset_clears_the_registers<B: CardBackend + std::fmt::Debug>(backend: B) -> Checked {
    let mut card = open(backend, CardConfig::default());
    let backend = card.backend_mut();
    let _ = backend.write32(regs::ID, 1);
    backend
        .write32(regs::SCRATCH, 7)
        .map_err(|e| e.to_string())?;
    backend
        .write32(regs::SRAM_WINDOW_SELECT, 1)
        .map_err(|e| e.to_string())?;
    backend
        .write32(regs::IRQ_MASK, regs::IRQ_ALL)
        .map_err(|e| e.to_string())?;
    backend
        .write32(regs::CONTROL, regs::CONTROL_RESET | regs::CONTROL_ENABLE)
        .map_err(|e| e.to_string())?;
    let mut status = 0;
    for _ in 0..100 {
        status = backend.read32(regs::STATUS).map_err(|e| e.to_string())?;
        if status & regs::STATUS_READY != 0 {
            break;
        }
        backend.advance().map_err(|e| e.to_string())?;
    }
    let read = |backend: &mut B, offset| backend.read32(offset).map_err(|e| e.to_string());
    let found = [
        ("STATUS_ERROR", status & regs::STATUS_ERROR),
        ("ERROR_CODE", read(backend, regs::ERROR_CODE)?),
        ("IRQ_STATUS", read(backend, regs::IRQ_STATUS)?),
        ("IRQ_MASK", read(backend, regs::IRQ_MASK)?),
        (
            "SRAM_WINDOW_SELECT",
            read(backend, regs::SRAM_WINDOW_SELECT)?,
        ),
        ("CONTROL", read(backend, regs::CONTROL)?),
        ("SCRATCH", read(backend, regs::SCRATCH)?),
    ];
    match found.iter().find(|(_, value)| *value != 0) {
        Some((register, value)) => Err(format!("{register} is {value:#x} after CONTROL_RESET")),
        None => Ok(()),
    }
}
on_both!(reset_clears_the_registers);
