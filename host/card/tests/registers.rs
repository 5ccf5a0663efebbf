//! The register map as the sim card implements it: identity, every kind of bad access
//! (as a typed error from the backend call AND latched in ERROR_CODE/ERROR_INFO), the
//! driver's decoding of the latch, ring configuration faults, reset, and interrupts.

mod common;

use amf_card::{
    Card, CardBackend, CardConfig, CardError, Execution, InterruptWait, SimCard, SimError,
};
use common::{EXECUTIONS, SRAM_BYTES, card, raw_job, sim};
use shared_regs::limits::{PARITY_SOURCES_MAX, RING_ENTRIES_MAX, SRAM_WINDOW_BYTES};
use shared_regs::regs::{self, ErrorCode, Limits, ring_block};

/// Asserts `result` is the sim's typed rejection with `code`, and that the card latched
/// the same code and `info` (the card had no earlier error latched).
fn assert_rejected<T: std::fmt::Debug>(
    sim: &mut SimCard,
    result: Result<T, SimError>,
    code: ErrorCode,
    info: u32,
) {
    match result {
        Err(SimError::Register {
            code: found,
            info: found_info,
            ..
        }) => assert_eq!((found, found_info), (code, info)),
        other => panic!("expected {code:?} rejection, got {other:?}"),
    }
    let status = sim.read32(regs::STATUS).unwrap();
    assert_ne!(status & regs::STATUS_ERROR, 0, "STATUS_ERROR for {code:?}");
    assert_eq!(sim.read32(regs::ERROR_CODE).unwrap(), code as u32);
    assert_eq!(sim.read32(regs::ERROR_INFO).unwrap(), info);
    assert_ne!(sim.read32(regs::IRQ_STATUS).unwrap() & regs::IRQ_ERROR, 0);
    // Clear for the next case.
    sim.write32(regs::ERROR_CODE, 0).unwrap();
    sim.write32(regs::IRQ_STATUS, regs::IRQ_ERROR).unwrap();
    assert_eq!(sim.read32(regs::STATUS).unwrap() & regs::STATUS_ERROR, 0);
}

#[test]
fn identity_caps_and_limits() {
    for execution in EXECUTIONS {
        let (mut card, _dir) = card(execution, CardConfig::default());
        let identity = *card.identity();
        assert_eq!(identity.version_major, regs::VERSION_MAJOR);
        assert_eq!(identity.version_minor, regs::VERSION_MINOR);
        assert_eq!(identity.sram_bytes, SRAM_BYTES);
        assert_ne!(identity.caps & regs::CAP_PARITY_P, 0);
        assert_ne!(identity.caps & regs::CAP_PARITY_PQ, 0);
        assert_ne!(identity.caps & regs::CAP_SRAM, 0);
        assert_eq!(
            identity.limits,
            Limits {
                parity_sources_max: PARITY_SOURCES_MAX as u8,
                fabric_ports: 8,
                ring_entries_log2_max: RING_ENTRIES_MAX.trailing_zeros() as u8,
            }
        );
        let sim = card.backend_mut();
        assert_eq!(sim.read32(regs::ID).unwrap(), regs::ID_VALUE);
        assert_eq!(sim.read64(regs::SRAM_BYTES).unwrap(), SRAM_BYTES);
        assert_eq!(sim.read32(regs::SRAM_BYTES + 4).unwrap(), 0);
        sim.write32(regs::SCRATCH, 0xC0FF_EE00).unwrap();
        assert_eq!(sim.read32(regs::SCRATCH).unwrap(), 0xC0FF_EE00);
        let status = sim.read32(regs::STATUS).unwrap();
        assert_eq!(
            status & (regs::STATUS_READY | regs::STATUS_ERROR),
            regs::STATUS_READY
        );
    }
}

#[test]
fn every_register_of_the_map_reads() {
    let (mut sim, _dir) = sim(Execution::Stepped);
    for register in regs::REGISTERS {
        sim.read32(register.offset).unwrap();
        if register.width == regs::Width::W64 {
            sim.read64(register.offset).unwrap();
        }
    }
    for ring in regs::RINGS {
        for field in [
            ring_block::BASE,
            ring_block::ENTRIES,
            ring_block::HEAD,
            ring_block::TAIL,
            ring_block::CONTROL,
        ] {
            sim.read32(ring + field).unwrap();
        }
        sim.read64(ring + ring_block::BASE).unwrap();
    }
    assert_eq!(sim.read32(regs::ERROR_CODE).unwrap(), 0);
}

#[test]
fn bad_offsets_widths_and_read_only_writes() {
    let (mut sim, _dir) = sim(Execution::Stepped);
    let result = sim.read32(0x0FC);
    assert_rejected(&mut sim, result, ErrorCode::BadOffset, 0x0FC);
    let result = sim.write32(0x080, 1);
    assert_rejected(&mut sim, result, ErrorCode::BadOffset, 0x080);
    let result = sim.read32(regs::BAR0_BYTES);
    assert_rejected(&mut sim, result, ErrorCode::BadOffset, regs::BAR0_BYTES);
    let result = sim.read32(u32::MAX - 1);
    assert_rejected(&mut sim, result, ErrorCode::BadOffset, u32::MAX - 1);
    let result = sim.read32(regs::PARITY_SQ + 0x18);
    assert_rejected(
        &mut sim,
        result,
        ErrorCode::BadOffset,
        regs::PARITY_SQ + 0x18,
    );
    let result = sim.write32(regs::ID, 1);
    assert_rejected(&mut sim, result, ErrorCode::ReadOnly, regs::ID);
    let result = sim.write64(regs::SRAM_BYTES, 1);
    assert_rejected(&mut sim, result, ErrorCode::ReadOnly, regs::SRAM_BYTES);
    let result = sim.write32(regs::STATUS, 0);
    assert_rejected(&mut sim, result, ErrorCode::ReadOnly, regs::STATUS);
    let result = sim.write32(regs::ERROR_INFO, 0);
    assert_rejected(&mut sim, result, ErrorCode::ReadOnly, regs::ERROR_INFO);
    let result = sim.write32(regs::PARITY_SQ + ring_block::HEAD, 1);
    assert_rejected(
        &mut sim,
        result,
        ErrorCode::ReadOnly,
        regs::PARITY_SQ + ring_block::HEAD,
    );
    let result = sim.write32(regs::PARITY_CQ + ring_block::TAIL, 1);
    assert_rejected(
        &mut sim,
        result,
        ErrorCode::ReadOnly,
        regs::PARITY_CQ + ring_block::TAIL,
    );
    let result = sim.read64(regs::CONTROL);
    assert_rejected(&mut sim, result, ErrorCode::BadAccess, regs::CONTROL);
    let result = sim.write64(regs::PARITY_SQ + ring_block::ENTRIES, 4);
    assert_rejected(
        &mut sim,
        result,
        ErrorCode::BadAccess,
        regs::PARITY_SQ + ring_block::ENTRIES,
    );
    let result = sim.read32(regs::SCRATCH + 2);
    assert_rejected(&mut sim, result, ErrorCode::BadAccess, regs::SCRATCH + 2);
    let result = sim.read64(regs::SRAM_BYTES + 4);
    assert_rejected(&mut sim, result, ErrorCode::BadAccess, regs::SRAM_BYTES + 4);
    let result = sim.read64(regs::BAR0_BYTES - 4);
    assert_rejected(&mut sim, result, ErrorCode::BadOffset, regs::BAR0_BYTES - 4);
}

#[test]
fn a_rejected_write_changes_nothing_and_only_the_first_error_is_latched() {
    let (mut sim, _dir) = sim(Execution::Stepped);
    sim.write32(regs::SCRATCH, 7).unwrap();
    assert!(sim.write64(regs::SCRATCH, u64::MAX).is_err());
    assert_eq!(sim.read32(regs::SCRATCH).unwrap(), 7, "dropped write");
    assert!(sim.write32(regs::ID, 0).is_err());
    assert_eq!(sim.read32(regs::ID).unwrap(), regs::ID_VALUE);
    assert_eq!(
        sim.read32(regs::ERROR_CODE).unwrap(),
        ErrorCode::BadAccess as u32
    );
    assert_eq!(sim.read32(regs::ERROR_INFO).unwrap(), regs::SCRATCH);
    // Any write to ERROR_CODE clears code and info.
    sim.write32(regs::ERROR_CODE, 0xFFFF).unwrap();
    assert_eq!(sim.read32(regs::ERROR_CODE).unwrap(), 0);
    assert_eq!(sim.read32(regs::ERROR_INFO).unwrap(), 0);
}

#[test]
fn the_driver_decodes_the_error_register() {
    let (mut card, _dir) = card(Execution::Stepped, CardConfig::default());
    card.check_error().unwrap();
    assert!(card.backend_mut().write32(regs::CAPS, 0).is_err());
    match card.check_error() {
        Err(CardError::Device { code, info }) => {
            assert_eq!((code, info), (ErrorCode::ReadOnly, regs::CAPS))
        }
        other => panic!("expected a device error, got {other:?}"),
    }
    // Polling reports it too, and keeps reporting it until cleared.
    assert!(matches!(
        card.poll_completion(),
        Err(CardError::Device { .. })
    ));
    card.clear_error().unwrap();
    card.check_error().unwrap();
    assert_eq!(
        card.backend_mut().read32(regs::IRQ_STATUS).unwrap() & regs::IRQ_ERROR,
        0
    );
}

#[test]
fn bad_ring_configurations_are_refused() {
    let (mut sim, _dir) = sim(Execution::Stepped);
    let buffer = sim.dma_alloc(4096 * 64).unwrap();
    let enable = regs::PARITY_SQ + ring_block::CONTROL;
    sim.write64(regs::PARITY_SQ + ring_block::BASE, buffer.device_address())
        .unwrap();
    for entries in [0, 1, 3, 6, RING_ENTRIES_MAX * 2] {
        sim.write32(regs::PARITY_SQ + ring_block::ENTRIES, entries)
            .unwrap();
        let result = sim.write32(enable, regs::RING_ENABLE);
        assert_rejected(&mut sim, result, ErrorCode::BadRingConfig, regs::PARITY_SQ);
        assert_eq!(sim.read32(enable).unwrap(), 0, "ring stays disabled");
    }
    sim.write32(regs::PARITY_SQ + ring_block::ENTRIES, 4)
        .unwrap();
    sim.write64(
        regs::PARITY_SQ + ring_block::BASE,
        buffer.device_address() + 16,
    )
    .unwrap();
    let result = sim.write32(enable, regs::RING_ENABLE);
    assert_rejected(&mut sim, result, ErrorCode::BadRingConfig, regs::PARITY_SQ);
    // The same base suits a 16-byte-entry ring; halves of the base compose.
    let cq = regs::PARITY_CQ;
    sim.write32(cq + ring_block::BASE, (buffer.device_address() + 16) as u32)
        .unwrap();
    sim.write32(
        cq + ring_block::BASE + 4,
        (buffer.device_address() >> 32) as u32,
    )
    .unwrap();
    assert_eq!(
        sim.read64(cq + ring_block::BASE).unwrap(),
        buffer.device_address() + 16
    );
    sim.write32(cq + ring_block::ENTRIES, 4).unwrap();
    sim.write32(cq + ring_block::CONTROL, regs::RING_ENABLE)
        .unwrap();
    assert_eq!(
        sim.read32(cq + ring_block::CONTROL).unwrap(),
        regs::RING_ENABLE
    );
    // The driver refuses a size before touching the card.
    let (sim, _dir2) = common::sim(Execution::Stepped);
    let config = CardConfig {
        parity_ring_entries: 3,
        ..CardConfig::default()
    };
    assert!(matches!(
        Card::open(sim, config),
        Err(CardError::BadRingEntries { entries: 3, .. })
    ));
}

#[test]
fn ring_overflow_and_use_while_disabled() {
    let config = CardConfig {
        parity_ring_entries: 4,
        ring_index_start: u32::MAX - 1,
        ..CardConfig::default()
    };
    let (mut card, _dir) = card(Execution::Stepped, config);
    let sim = card.backend_mut();
    let sq_tail = regs::PARITY_SQ + ring_block::TAIL;
    let result = sim.write32(sq_tail, 3);
    assert_rejected(sim, result, ErrorCode::RingOverflow, regs::PARITY_SQ);
    assert_eq!(sim.read32(sq_tail).unwrap(), u32::MAX - 1, "tail unchanged");
    // The consumer of the completion ring may not pass its producer.
    let result = sim.write32(regs::PARITY_CQ + ring_block::HEAD, 0);
    assert_rejected(sim, result, ErrorCode::RingOverflow, regs::PARITY_CQ);
    // With the card disabled, the doorbell is refused.
    let control = sim.read32(regs::CONTROL).unwrap();
    sim.write32(regs::CONTROL, control & !regs::CONTROL_ENABLE)
        .unwrap();
    let result = sim.write32(sq_tail, u32::MAX);
    assert_rejected(sim, result, ErrorCode::NotEnabled, regs::PARITY_SQ);
    sim.write32(regs::CONTROL, control).unwrap();
    // With the completion ring disabled, too.
    sim.write32(regs::PARITY_CQ + ring_block::CONTROL, 0)
        .unwrap();
    let result = sim.write32(sq_tail, u32::MAX);
    assert_rejected(sim, result, ErrorCode::NotEnabled, regs::PARITY_CQ);
    // Exactly `entries` ahead is full, not overflow.
    sim.write32(regs::PARITY_CQ + ring_block::CONTROL, regs::RING_ENABLE)
        .unwrap();
    sim.write32(sq_tail, 2).unwrap();
    assert_eq!(sim.read32(regs::ERROR_CODE).unwrap(), 0);
}

#[test]
fn the_sram_window_is_bounded() {
    let (mut sim, _dir) = sim(Execution::Stepped);
    let pages = (SRAM_BYTES / u64::from(SRAM_WINDOW_BYTES)) as u32;
    sim.write32(regs::SRAM_WINDOW_SELECT, pages - 1).unwrap();
    let last = regs::SRAM_WINDOW_OFFSET + SRAM_WINDOW_BYTES - 8;
    sim.write64(last, 0x1122_3344_5566_7788).unwrap();
    assert_eq!(sim.read32(last + 4).unwrap(), 0x1122_3344);
    let result = sim.write32(regs::SRAM_WINDOW_SELECT, pages);
    assert_rejected(
        &mut sim,
        result,
        ErrorCode::BadWindow,
        regs::SRAM_WINDOW_SELECT,
    );
    assert_eq!(sim.read32(regs::SRAM_WINDOW_SELECT).unwrap(), pages - 1);
    let result = sim.write32(regs::SRAM_WINDOW_SELECT, u32::MAX);
    assert_rejected(
        &mut sim,
        result,
        ErrorCode::BadWindow,
        regs::SRAM_WINDOW_SELECT,
    );
}

#[test]
fn reset_clears_registers_and_waits_for_a_step() {
    let (mut sim, _dir) = sim(Execution::Stepped);
    sim.advance().unwrap();
    sim.write32(regs::SCRATCH, 5).unwrap();
    sim.write32(regs::IRQ_MASK, regs::IRQ_ALL).unwrap();
    let _ = sim.write32(regs::ID, 0);
    sim.write32(regs::CONTROL, regs::CONTROL_RESET | regs::CONTROL_ENABLE)
        .unwrap();
    assert_eq!(sim.read32(regs::STATUS).unwrap(), 0, "not ready, no error");
    assert_eq!(
        sim.read32(regs::CONTROL).unwrap(),
        0,
        "reset bit self-clears"
    );
    assert_eq!(sim.read32(regs::SCRATCH).unwrap(), 0);
    assert_eq!(sim.read32(regs::IRQ_MASK).unwrap(), 0);
    sim.advance().unwrap();
    assert_eq!(sim.read32(regs::STATUS).unwrap(), regs::STATUS_READY);
}

#[test]
fn interrupt_status_is_write_one_to_clear_and_masked() {
    let (mut card, _dir) = card(Execution::Stepped, CardConfig::default());
    let job = raw_job(&mut card, 3);
    card.submit_parity(&job.descriptor).unwrap();
    let sim = card.backend_mut();
    assert_eq!(
        sim.wait_interrupt(0).unwrap(),
        InterruptWait::Raised,
        "ran the job"
    );
    assert_eq!(sim.read32(regs::IRQ_STATUS).unwrap(), regs::IRQ_PARITY_CQ);
    // Masked: the cause stays pending, the line stays low.
    sim.write32(regs::IRQ_MASK, regs::IRQ_ERROR).unwrap();
    assert_eq!(sim.wait_interrupt(0).unwrap(), InterruptWait::TimedOut);
    assert_eq!(sim.read32(regs::IRQ_STATUS).unwrap(), regs::IRQ_PARITY_CQ);
    sim.write32(regs::IRQ_MASK, regs::IRQ_ALL | 0xF000_0000)
        .unwrap();
    assert_eq!(
        sim.read32(regs::IRQ_MASK).unwrap(),
        regs::IRQ_ALL,
        "undefined bits dropped"
    );
    assert_eq!(sim.wait_interrupt(0).unwrap(), InterruptWait::Raised);
    // Interrupts disabled in CONTROL: line low.
    let control = sim.read32(regs::CONTROL).unwrap();
    sim.write32(regs::CONTROL, control & !regs::CONTROL_IRQ_ENABLE)
        .unwrap();
    assert_eq!(sim.wait_interrupt(0).unwrap(), InterruptWait::TimedOut);
    sim.write32(regs::CONTROL, control).unwrap();
    // Writing zeros clears nothing; writing the bit clears it.
    sim.write32(regs::IRQ_STATUS, 0).unwrap();
    assert_eq!(sim.read32(regs::IRQ_STATUS).unwrap(), regs::IRQ_PARITY_CQ);
    sim.write32(regs::IRQ_STATUS, regs::IRQ_PARITY_CQ).unwrap();
    assert_eq!(sim.read32(regs::IRQ_STATUS).unwrap(), 0);
    assert_eq!(sim.wait_interrupt(0).unwrap(), InterruptWait::TimedOut);
    // A latched error raises IRQ_ERROR.
    let _ = sim.read32(0x0FC);
    assert_eq!(sim.read32(regs::IRQ_STATUS).unwrap(), regs::IRQ_ERROR);
    assert_eq!(sim.wait_interrupt(0).unwrap(), InterruptWait::Raised);
    assert_eq!(card.wait_completion(1_000).unwrap().tag, 3);
}

#[test]
fn threaded_card_raises_the_interrupt_on_its_own() {
    let (mut card, _dir) = card(Execution::Threaded, CardConfig::default());
    let job = raw_job(&mut card, 4);
    card.submit_parity(&job.descriptor).unwrap();
    let sim = card.backend_mut();
    assert_eq!(sim.wait_interrupt(10_000).unwrap(), InterruptWait::Raised);
    assert_ne!(
        sim.read32(regs::IRQ_STATUS).unwrap() & regs::IRQ_PARITY_CQ,
        0
    );
    assert_eq!(card.poll_completion().unwrap().map(|c| c.tag), Some(4));
    // Nothing in flight, nothing pending: the wait times out after its timeout.
    let sim = card.backend_mut();
    sim.write32(regs::IRQ_STATUS, regs::IRQ_ALL).unwrap();
    let started = std::time::Instant::now();
    assert_eq!(sim.wait_interrupt(30).unwrap(), InterruptWait::TimedOut);
    assert!(started.elapsed() >= std::time::Duration::from_millis(30));
}

#[test]
fn a_stalled_card_times_out() {
    // Stepped, so the engine provably has not taken the job before it is stopped.
    let (mut card, _dir) = card(Execution::Stepped, CardConfig::default());
    let job = raw_job(&mut card, 5);
    card.submit_parity(&job.descriptor).unwrap();
    let sim = card.backend_mut();
    let control = sim.read32(regs::CONTROL).unwrap();
    sim.write32(regs::CONTROL, control & !regs::CONTROL_ENABLE)
        .unwrap();
    let error = card.wait_completion(50).unwrap_err();
    assert!(
        matches!(
            error,
            CardError::Timeout {
                timeout_ms: 50,
                in_flight: 1
            }
        ),
        "{error}"
    );
    // Re-enabled, the card finishes the job.
    card.backend_mut().write32(regs::CONTROL, control).unwrap();
    assert_eq!(card.wait_completion(50).unwrap().tag, 5);
}
