//! Random register access sequences (offsets, widths, values, with time passing in
//! between) never panic the sim card, and never leave it unable to be reset and used: the
//! driver opens it afterwards and its parity is still right.

mod common;

use amf_card::{Card, CardBackend, CardConfig, CardParity, Execution, SimCard, SimConfig};
use amf_parity::ParityEngine;
use common::{SRAM_BYTES, pattern};
use proptest::prelude::*;
use shared_regs::limits::SRAM_WINDOW_BYTES;
use shared_regs::regs::{self, ring_block};
use shared_regs::ring::{ParityDescriptor, ParityOpcode};
use zerocopy::IntoBytes;
use zerocopy::little_endian::{U32, U64};

/// Where the sim card's first DMA buffer lands (see `sim::dma`).
const FIRST_DMA_ADDRESS: u64 = 1 << 32;
const BUFFER_BYTES: u64 = 64 * 1024;

#[derive(Clone, Debug)]
enum Op {
    Read32(u32),
    Read64(u32),
    Write32(u32, u32),
    Write64(u32, u64),
    Advance,
    Wait,
    /// A plausible ring setup, so that doorbells in the sequence make the engine run.
    SetupRings {
        entries_log2: u32,
        sq_page: u64,
        cq_page: u64,
    },
}

fn offsets() -> impl Strategy<Value = u32> {
    let mut known: Vec<u32> = regs::REGISTERS
        .iter()
        .flat_map(|r| [r.offset, r.offset + 4])
        .collect();
    for ring in regs::RINGS {
        known.extend((0..ring_block::BYTES).step_by(4).map(|field| ring + field));
    }
    prop_oneof![
        4 => proptest::sample::select(known),
        2 => (0u32..0x300).prop_map(|o| o & !3),
        1 => (0u32..SRAM_WINDOW_BYTES).prop_map(|o| regs::SRAM_WINDOW_OFFSET + o),
        1 => any::<u32>(),
    ]
}

fn values() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 0u64..16,
        2 => (0u64..BUFFER_BYTES / 16).prop_map(|slot| FIRST_DMA_ADDRESS + slot * 16),
        1 => proptest::sample::select(vec![
            u64::from(regs::CONTROL_ALL),
            u64::from(regs::CONTROL_ENABLE | regs::CONTROL_IRQ_ENABLE),
            u64::from(regs::IRQ_ALL),
            u64::from(u32::MAX),
            u64::MAX,
            1 << 32,
        ]),
        1 => any::<u64>(),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => offsets().prop_map(Op::Read32),
        1 => offsets().prop_map(Op::Read64),
        6 => (offsets(), values()).prop_map(|(o, v)| Op::Write32(o, v as u32)),
        2 => (offsets(), values()).prop_map(|(o, v)| Op::Write64(o, v)),
        2 => Just(Op::Advance),
        1 => Just(Op::Wait),
        1 => (1u32..6, 0u64..4, 0u64..16).prop_map(|(entries_log2, sq_page, cq_page)| {
            Op::SetupRings { entries_log2, sq_page, cq_page }
        }),
    ]
}

/// A DMA buffer at [`FIRST_DMA_ADDRESS`] full of plausible descriptors, so that random
/// ring bases and doorbells make the engine really run.
fn plant_descriptors(sim: &mut SimCard) {
    let buffer = sim.dma_alloc(BUFFER_BYTES).unwrap();
    assert_eq!(buffer.device_address(), FIRST_DMA_ADDRESS);
    let base = buffer.device_address();
    let mut bytes = pattern(3, BUFFER_BYTES as usize);
    for slot in 0..256usize {
        let descriptor = ParityDescriptor {
            opcode: if slot % 2 == 0 {
                ParityOpcode::GenP
            } else {
                ParityOpcode::GenPq
            } as u8,
            source_count: 2,
            tag: U32::new(slot as u32),
            length_bytes: U32::new(64),
            sources_addr: U64::new(base + 32_768),
            p_addr: U64::new(base + 40_960),
            q_addr: U64::new(base + 49_152),
            ..Default::default()
        };
        bytes[slot * 64..][..64].copy_from_slice(descriptor.as_bytes());
    }
    bytes[32_768..][..8].copy_from_slice(&base.to_le_bytes());
    bytes[32_776..][..8].copy_from_slice(&(base + 64).to_le_bytes());
    sim.dma_write(&buffer, 0, &bytes).unwrap();
}

fn apply(sim: &mut SimCard, op: &Op) {
    // Errors are expected and fine; panics are not.
    let _ = match *op {
        Op::Read32(offset) => sim.read32(offset).map(drop),
        Op::Read64(offset) => sim.read64(offset).map(drop),
        Op::Write32(offset, value) => sim.write32(offset, value),
        Op::Write64(offset, value) => sim.write64(offset, value),
        Op::Advance => sim.advance(),
        Op::Wait => sim.wait_interrupt(0).map(drop),
        Op::SetupRings {
            entries_log2,
            sq_page,
            cq_page,
        } => setup_rings(sim, entries_log2, sq_page, cq_page),
    };
}

fn setup_rings(
    sim: &mut SimCard,
    entries_log2: u32,
    sq_page: u64,
    cq_page: u64,
) -> Result<(), amf_card::SimError> {
    let rings = [
        (regs::PARITY_SQ, FIRST_DMA_ADDRESS + sq_page * 4096),
        (regs::PARITY_CQ, FIRST_DMA_ADDRESS + cq_page * 4096),
    ];
    for (ring, base) in rings {
        sim.write64(ring + ring_block::BASE, base)?;
        sim.write32(ring + ring_block::ENTRIES, 1 << entries_log2)?;
        sim.write32(ring + ring_block::CONTROL, regs::RING_ENABLE)?;
    }
    sim.write32(regs::IRQ_MASK, regs::IRQ_ALL)?;
    sim.write32(
        regs::CONTROL,
        regs::CONTROL_ENABLE | regs::CONTROL_IRQ_ENABLE,
    )
}

fn survive(execution: Execution, ops: &[Op]) {
    let dir = tempfile::tempdir().unwrap();
    let config = SimConfig {
        execution,
        ..SimConfig::new(SRAM_BYTES)
    };
    let mut sim = SimCard::open(&dir.path().join("sram"), config).unwrap();
    plant_descriptors(&mut sim);
    for op in ops {
        apply(&mut sim, op);
    }
    // Whatever state the sequence left, a reset brings the card back.
    let card = Card::open(sim, CardConfig::default()).expect("card reopens after the sequence");
    let mut engine = CardParity::new(card).unwrap();
    let (a, b) = (pattern(10, 256), pattern(11, 256));
    let mut p = vec![0u8; 256];
    engine.compute(&[&a, &b], &mut p, None).unwrap();
    assert!(
        p.iter()
            .zip(a.iter().zip(&b))
            .all(|(p, (a, b))| *p == a ^ b)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_register_sequences_never_panic_stepped(ops in proptest::collection::vec(op(), 1..300)) {
        survive(Execution::Stepped, &ops);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn random_register_sequences_never_panic_threaded(ops in proptest::collection::vec(op(), 1..300)) {
        survive(Execution::Threaded, &ops);
    }
}
