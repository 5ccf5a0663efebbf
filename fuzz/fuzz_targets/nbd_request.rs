#![no_main]
//! Any bytes as a request header, checked against an export: a command inside the export
//! and the payload limit, or a refusal with an errno; a parsed header re-encodes identically.

use amflink::nbd::protocol::{
    Command, ExportLimits, REQUEST_BYTES, RequestHeader, validate_request,
};
use libfuzzer_sys::fuzz_target;

const LIMITS: ExportLimits = ExportLimits {
    size_bytes: 1 << 30,
    request_bytes_max: 1 << 20,
    read_only: false,
};

fuzz_target!(|bytes: &[u8]| {
    let Ok(header) = RequestHeader::parse(bytes) else {
        return;
    };
    assert_eq!(&header.encode()[..], &bytes[..REQUEST_BYTES]);
    let read_only = ExportLimits {
        read_only: true,
        ..LIMITS
    };
    for limits in [LIMITS, read_only] {
        match validate_request(&header, &limits) {
            Ok(Command::Read { offset, length }) | Ok(Command::Write { offset, length, .. }) => {
                assert!(length <= limits.request_bytes_max);
                assert!(offset + u64::from(length) <= limits.size_bytes);
            }
            Ok(Command::Trim { offset, length, .. })
            | Ok(Command::WriteZeroes { offset, length, .. }) => {
                assert!(!limits.read_only);
                assert!(offset + u64::from(length) <= limits.size_bytes);
            }
            Ok(Command::Flush) | Ok(Command::Disconnect) => {}
            Err(refusal) => assert_ne!(refusal.errno, 0),
        }
    }
});
