#![no_main]
//! Any 64 bytes: a checked descriptor within the limits, or a completion status.

use libfuzzer_sys::fuzz_target;
use shared_regs::limits::{PARITY_SOURCES_MAX, PARITY_SOURCE_BYTES_MAX};
use shared_regs::ring::ParityDescriptor;
use zerocopy::FromBytes;

fuzz_target!(|bytes: &[u8]| {
    let Ok(descriptor) = ParityDescriptor::read_from_bytes(bytes) else { return };
    if let Ok(checked) = descriptor.check() {
        assert!(checked.source_count <= PARITY_SOURCES_MAX);
        assert!(checked.length_bytes <= PARITY_SOURCE_BYTES_MAX);
    }
});
