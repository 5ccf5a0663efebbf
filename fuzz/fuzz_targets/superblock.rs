#![no_main]
//! Any bytes: a superblock or a typed error; a decoded one re-encodes to the same bytes.
//!
//! The raw input is decoded as it is; then the same bytes, padded to 4 KiB, get a valid
//! magic, version, size and checksum, so the field checks behind the checksum are fuzzed
//! too (otherwise almost every input stops at the magic or the checksum).

use amflink::format::{FORMAT_VERSION, RawSuperblock, SUPERBLOCK_MAGIC, Superblock};
use libfuzzer_sys::fuzz_target;
use shared_regs::limits::SUPERBLOCK_BYTES;
use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, IntoBytes};

fuzz_target!(|bytes: &[u8]| {
    let _ = Superblock::decode(bytes);
    let mut padded = vec![0u8; SUPERBLOCK_BYTES as usize];
    let kept = bytes.len().min(padded.len());
    padded[..kept].copy_from_slice(&bytes[..kept]);
    let Ok(mut raw) = RawSuperblock::read_from_bytes(&padded) else { return };
    raw.magic = SUPERBLOCK_MAGIC;
    raw.format_version = U32::new(FORMAT_VERSION);
    raw.superblock_bytes = U32::new(SUPERBLOCK_BYTES);
    raw.checksum = U32::new(raw.computed_checksum());
    if let Ok(superblock) = Superblock::decode(raw.as_bytes()) {
        assert_eq!(superblock.encode(), raw.as_bytes());
    }
});
