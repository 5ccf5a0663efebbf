#![no_main]
//! Any bytes: a sequence of frames or a typed error; never a panic, never a frame longer
//! than its input. The same bytes are then given a valid magic, version, payload length
//! and checksum, so the kind, port and addressing checks behind them are fuzzed too.

use libfuzzer_sys::fuzz_target;
use shared_regs::fabric::{FABRIC_MAGIC, FABRIC_VERSION, FabricHeader, HEADER_BYTES, parse_frame};
use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, IntoBytes};

fuzz_target!(|bytes: &[u8]| {
    let mut rest = bytes;
    while let Ok((frame, after)) = parse_frame(rest) {
        assert!(frame.header.frame_bytes() <= rest.len());
        assert!(after.len() < rest.len());
        rest = after;
    }
    let Ok((mut header, payload)) = FabricHeader::read_from_prefix(bytes) else { return };
    header.magic = U16::new(FABRIC_MAGIC);
    header.version = FABRIC_VERSION;
    header.payload_bytes = U32::new(payload.len() as u32);
    header.checksum = U32::new(header.compute_checksum(payload));
    let mut frame = header.as_bytes().to_vec();
    frame.extend_from_slice(payload);
    if let Ok((parsed, after)) = parse_frame(&frame) {
        assert!(after.is_empty());
        assert_eq!(parsed.payload, payload);
        assert_eq!(parsed.header.frame_bytes(), HEADER_BYTES + payload.len());
    }
});
