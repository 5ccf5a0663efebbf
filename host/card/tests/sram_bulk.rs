//! The bulk SRAM window path (`CardBackend::window_write`/`window_read`, one copy on the
//! sim) against the per-register sequence the trait's default implementations issue: the
//! same SRAM contents, the same reads, and the same typed error and latched error for a
//! range that leaves the window.

mod common;

use amf_card::{Card, CardBackend, CardConfig, DmaBuffer, Execution, InterruptWait};
use amf_card::{SimCard, SimConfig, SimError};
use common::{SRAM_BYTES, pattern};
use proptest::prelude::*;
use shared_regs::limits::SRAM_WINDOW_BYTES;
use shared_regs::regs;
use std::path::Path;

/// A sim card that keeps the trait's default window accesses: register by register.
struct PerRegister(SimCard);

impl CardBackend for PerRegister {
    type Error = SimError;

    fn name(&self) -> &'static str {
        "sim-per-register"
    }
    fn read32(&mut self, offset: u32) -> Result<u32, SimError> {
        self.0.read32(offset)
    }
    fn write32(&mut self, offset: u32, value: u32) -> Result<(), SimError> {
        self.0.write32(offset, value)
    }
    fn read64(&mut self, offset: u32) -> Result<u64, SimError> {
        self.0.read64(offset)
    }
    fn write64(&mut self, offset: u32, value: u64) -> Result<(), SimError> {
        self.0.write64(offset, value)
    }
    fn dma_alloc(&mut self, bytes: u64) -> Result<DmaBuffer, SimError> {
        self.0.dma_alloc(bytes)
    }
    fn dma_free(&mut self, buffer: DmaBuffer) -> Result<(), SimError> {
        self.0.dma_free(buffer)
    }
    fn dma_write(
        &mut self,
        buffer: &DmaBuffer,
        offset: u64,
        source: &[u8],
    ) -> Result<(), SimError> {
        self.0.dma_write(buffer, offset, source)
    }
    fn dma_read(
        &mut self,
        buffer: &DmaBuffer,
        offset: u64,
        target: &mut [u8],
    ) -> Result<(), SimError> {
        self.0.dma_read(buffer, offset, target)
    }
    fn advance(&mut self) -> Result<(), SimError> {
        self.0.advance()
    }
    fn wait_interrupt(&mut self, timeout_ms: u32) -> Result<InterruptWait, SimError> {
        self.0.wait_interrupt(timeout_ms)
    }
}

fn sim_at(path: &Path) -> SimCard {
    SimCard::open(path, SimConfig::new(SRAM_BYTES).stepped()).expect("sim card opens")
}

/// Offset and length of one access: mostly small and unaligned, some spanning pages.
fn range() -> impl Strategy<Value = (u64, usize)> {
    let length = prop_oneof![0usize..40, 0usize..3 * SRAM_WINDOW_BYTES as usize + 20];
    length.prop_flat_map(|length| (0..=SRAM_BYTES - length as u64, Just(length)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn bulk_and_per_register_paths_leave_the_same_sram(
        writes in prop::collection::vec((range(), any::<u64>()), 1..8),
        reads in prop::collection::vec(range(), 1..8),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (bulk_path, slow_path) = (dir.path().join("bulk"), dir.path().join("slow"));
        let mut bulk = Card::open(sim_at(&bulk_path), CardConfig::default()).unwrap();
        let mut slow =
            Card::open(PerRegister(sim_at(&slow_path)), CardConfig::default()).unwrap();
        // Bytes around every write are not zero, so a clobbered neighbour shows.
        let background = pattern(0xB6, SRAM_BYTES as usize);
        bulk.sram_write(0, &background).unwrap();
        slow.sram_write(0, &background).unwrap();
        for ((offset, length), seed) in writes {
            let bytes = pattern(seed, length);
            bulk.sram_write(offset, &bytes).unwrap();
            slow.sram_write(offset, &bytes).unwrap();
        }
        for (offset, length) in reads {
            let (mut from_bulk, mut from_slow) = (vec![0u8; length], vec![1u8; length]);
            bulk.sram_read(offset, &mut from_bulk).unwrap();
            slow.sram_read(offset, &mut from_slow).unwrap();
            prop_assert!(from_bulk == from_slow, "read {offset} + {length}");
        }
        bulk.check_error().unwrap();
        slow.check_error().unwrap();
        // The files themselves, read past both window paths (the mapping is shared).
        let (bulk_file, slow_file) =
            (std::fs::read(&bulk_path).unwrap(), std::fs::read(&slow_path).unwrap());
        prop_assert!(bulk_file == slow_file, "SRAM files differ");
    }
}

#[test]
fn a_range_leaving_the_window_is_the_same_typed_error_on_both_paths() {
    let dir = tempfile::tempdir().unwrap();
    let mut bulk = sim_at(&dir.path().join("bulk"));
    let mut slow = PerRegister(sim_at(&dir.path().join("slow")));
    let window = SRAM_WINDOW_BYTES;
    let cases = [
        (window - 1, 2usize),
        (window - 3, 9),
        (window - 8, 16),
        (window - 4, 12),
        (60_000, 10_000),
        (window, 8),
        (window, 1),
        (window + 5, 3),
        (u32::MAX, 1),
        (u32::MAX - 6, 8),
    ];
    for (within, length) in cases {
        for writing in [true, false] {
            let mut errors = Vec::new();
            for backend in [&mut bulk as &mut dyn Window, &mut slow] {
                backend.reg_write(regs::SRAM_WINDOW_SELECT, 1).unwrap();
                let error = if writing {
                    backend.bulk_write(within, &vec![0x5A; length])
                } else {
                    backend.bulk_read(within, &mut vec![0; length])
                }
                .expect_err("a range leaving the window is refused");
                assert!(matches!(error, SimError::Register { .. }), "{error}");
                let latched = (
                    backend.reg_read(regs::ERROR_CODE).unwrap(),
                    backend.reg_read(regs::ERROR_INFO).unwrap(),
                    backend.reg_read(regs::IRQ_STATUS).unwrap() & regs::IRQ_ERROR,
                );
                assert_ne!(latched.0, 0, "a fault is latched");
                backend.reg_write(regs::ERROR_CODE, 0).unwrap();
                backend
                    .reg_write(regs::IRQ_STATUS, regs::IRQ_ERROR)
                    .unwrap();
                errors.push((format!("{error:?}"), latched));
            }
            assert_eq!(
                errors[0], errors[1],
                "{within} + {length}, writing {writing}"
            );
        }
    }
    // A range ending exactly at the window's end is fine on both.
    for backend in [&mut bulk as &mut dyn Window, &mut slow] {
        backend.bulk_write(window - 5, &[7; 5]).unwrap();
        let mut read = [0u8; 5];
        backend.bulk_read(window - 5, &mut read).unwrap();
        assert_eq!(read, [7; 5]);
        assert_eq!(backend.reg_read(regs::ERROR_CODE).unwrap(), 0);
    }
}

/// The window calls of both backends behind one object type.
trait Window {
    fn reg_read(&mut self, offset: u32) -> Result<u32, SimError>;
    fn reg_write(&mut self, offset: u32, value: u32) -> Result<(), SimError>;
    fn bulk_write(&mut self, within: u32, source: &[u8]) -> Result<(), SimError>;
    fn bulk_read(&mut self, within: u32, target: &mut [u8]) -> Result<(), SimError>;
}

impl<B: CardBackend<Error = SimError>> Window for B {
    fn reg_read(&mut self, offset: u32) -> Result<u32, SimError> {
        CardBackend::read32(self, offset)
    }
    fn reg_write(&mut self, offset: u32, value: u32) -> Result<(), SimError> {
        CardBackend::write32(self, offset, value)
    }
    fn bulk_write(&mut self, within: u32, source: &[u8]) -> Result<(), SimError> {
        self.window_write(within, source)
    }
    fn bulk_read(&mut self, within: u32, target: &mut [u8]) -> Result<(), SimError> {
        self.window_read(within, target)
    }
}

#[test]
fn the_driver_pages_through_the_bulk_path_on_both_executions() {
    for execution in [Execution::Stepped, Execution::Threaded] {
        let dir = tempfile::tempdir().unwrap();
        let config = SimConfig {
            execution,
            ..SimConfig::new(SRAM_BYTES)
        };
        let sim = SimCard::open(&dir.path().join("sram"), config).unwrap();
        let mut card = Card::open(sim, CardConfig::default()).unwrap();
        let bytes = pattern(9, 2 * SRAM_WINDOW_BYTES as usize + 11);
        card.sram_write(SRAM_WINDOW_BYTES as u64 - 3, &bytes)
            .unwrap();
        let mut read = vec![0u8; bytes.len()];
        card.sram_read(SRAM_WINDOW_BYTES as u64 - 3, &mut read)
            .unwrap();
        assert!(read == bytes);
        card.check_error().unwrap();
    }
}
