#![no_main]
//! Any bytes: a sequence of frames or a typed error; never a panic, never a frame longer
//! than its input.

use libfuzzer_sys::fuzz_target;
use shared_regs::fabric::parse_frame;

fuzz_target!(|bytes: &[u8]| {
    let mut rest = bytes;
    while let Ok((frame, after)) = parse_frame(rest) {
        assert!(frame.header.frame_bytes() <= rest.len());
        assert!(after.len() < rest.len());
        rest = after;
    }
});
