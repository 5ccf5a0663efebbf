//! The Verilated card top through the co-simulation bridge: identity from shared-regs, the
//! SRAM window and remote writes, the first-error latch, and a stripe through the DMA
//! stream equal to the reference.
use shared_regs::limits::SRAM_WINDOW_BYTES;
use shared_regs::regs::{self, ErrorCode};
use testbench::card::CardModel;
use testbench::rtl::{bytes_from_words, words_from_bytes};

/// Cycles a handshake may wait in these tests; the engine answers within a few.
const CYCLES_MAX: usize = 16;

fn card() -> CardModel {
    CardModel::new().unwrap_or_else(|error| panic!("{error}"))
}

#[test]
fn identity_reads_the_values_shared_regs_defines() {
    let mut card = card();
    assert_eq!(card.read32(regs::ID).unwrap(), regs::ID_VALUE);
    assert_eq!(card.read32(regs::VERSION).unwrap(), regs::VERSION_VALUE);
    assert_eq!(
        card.read32(regs::CAPS).unwrap(),
        hdl::register_file::CARD_CAPS
    );
    let ports = u8::try_from(hdl::verilog::CARD_FABRIC_PORTS).unwrap();
    assert_eq!(
        card.read32(regs::LIMITS).unwrap(),
        hdl::register_file::limits_value(ports)
    );
    assert_eq!(
        card.read32(regs::SRAM_BYTES).unwrap(),
        8 << hdl::verilog::CARD_SRAM_WORDS_LOG2
    );
    card.set_fabric(2, true, 0b0111);
    assert_eq!(card.read32(regs::FABRIC_PORT_ID).unwrap(), 2);
    assert_eq!(card.read32(regs::FABRIC_MEMBERSHIP).unwrap(), 0b0111);
    assert_ne!(
        card.read32(regs::STATUS).unwrap() & regs::STATUS_FABRIC_LINK_UP,
        0
    );
}

#[test]
fn remote_writes_and_host_writes_share_the_sram_window() {
    let mut card = card();
    card.fabric_write(SRAM_WINDOW_BYTES + 64, 0xFEED_FACE_CAFE_BEEF);
    card.write32(regs::SRAM_WINDOW_SELECT, 1).unwrap();
    assert_eq!(
        card.read32(regs::SRAM_WINDOW_OFFSET + 64).unwrap(),
        0xCAFE_BEEF
    );
    assert_eq!(
        card.read32(regs::SRAM_WINDOW_OFFSET + 68).unwrap(),
        0xFEED_FACE
    );
    card.write32(regs::SRAM_WINDOW_OFFSET + 68, 0x1234_5678)
        .unwrap();
    assert_eq!(
        card.read32(regs::SRAM_WINDOW_OFFSET + 68).unwrap(),
        0x1234_5678
    );
    assert_eq!(
        card.read32(regs::SRAM_WINDOW_OFFSET + 64).unwrap(),
        0xCAFE_BEEF,
        "other half kept"
    );
    card.reset();
    card.write32(regs::SRAM_WINDOW_SELECT, 1).unwrap();
    assert_eq!(
        card.read32(regs::SRAM_WINDOW_OFFSET + 68).unwrap(),
        0x1234_5678,
        "SRAM outlives reset"
    );
}

#[test]
fn a_bad_access_latches_its_error_and_raises_the_interrupt() {
    let mut card = card();
    card.write32(regs::IRQ_MASK, regs::IRQ_ERROR).unwrap();
    card.write32(regs::CONTROL, regs::CONTROL_IRQ_ENABLE)
        .unwrap();
    assert!(!card.irq());
    card.write32(regs::VERSION, 7).unwrap();
    assert_eq!(
        card.read32(regs::ERROR_CODE).unwrap(),
        ErrorCode::ReadOnly as u32
    );
    assert_eq!(card.read32(regs::ERROR_INFO).unwrap(), regs::VERSION);
    assert!(card.irq());
    card.write32(regs::SRAM_WINDOW_SELECT, 99).unwrap();
    assert_eq!(
        card.read32(regs::ERROR_CODE).unwrap(),
        ErrorCode::ReadOnly as u32,
        "first error kept"
    );
}

#[test]
fn a_stripe_through_the_dma_stream_equals_the_reference() {
    let mut card = card();
    card.write32(regs::CONTROL, regs::CONTROL_ENABLE).unwrap();
    let beat_bytes = card.beat_bits() as usize / 8;
    let chunks: Vec<Vec<u8>> = (0..5_u8)
        .map(|chunk| {
            (0..beat_bytes * 2)
                .map(|byte| (byte as u8).wrapping_mul(31) ^ chunk.wrapping_mul(77))
                .collect()
        })
        .collect();
    let mut p = Vec::new();
    let mut q = Vec::new();
    for column in 0..2 {
        for (index, chunk) in chunks.iter().enumerate().rev() {
            let words = words_from_bytes(&chunk[column * beat_bytes..(column + 1) * beat_bytes]);
            let taken = (0..CYCLES_MAX)
                .any(|_| card.offer_beat(&words, index == chunks.len() - 1, index == 0, true));
            assert!(taken, "the engine refused a beat for {CYCLES_MAX} cycles");
        }
        let result = (0..CYCLES_MAX)
            .find_map(|_| card.take_result())
            .expect("a result per column");
        p.extend(bytes_from_words(&result.p));
        q.extend(bytes_from_words(&result.q));
    }
    let sources: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    let (mut expected_p, mut expected_q) = (vec![0; beat_bytes * 2], vec![0; beat_bytes * 2]);
    amf_parity::reference::gen_pq(&sources, &mut expected_p, &mut expected_q);
    assert_eq!(p, expected_p);
    assert_eq!(q, expected_q);
}
