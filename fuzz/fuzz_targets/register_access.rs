#![no_main]
//! Any offset and width: a location inside BAR0 of the right alignment, or nothing.

use libfuzzer_sys::fuzz_target;
use shared_regs::regs::{BAR0_BYTES, Location, SRAM_WINDOW_OFFSET, locate};

fuzz_target!(|input: (u32, u8)| {
    let (offset, width_bytes) = input;
    if let Some(location) = locate(offset, u32::from(width_bytes)) {
        assert_eq!(offset % u32::from(width_bytes), 0);
        assert!(offset < BAR0_BYTES);
        if let Location::SramWindow { offset: window } = location {
            assert_eq!(window, offset - SRAM_WINDOW_OFFSET);
        }
    }
});
