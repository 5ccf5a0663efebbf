#![no_main]
//! Any bytes: a superblock or a typed error; a decoded one re-encodes to the same bytes.
//!
//! The checksum is recomputed over the input first: otherwise almost every input stops at
//! the checksum and the field checks behind it are never reached.

use amflink::format::{RawSuperblock, Superblock};
use libfuzzer_sys::fuzz_target;
use zerocopy::{FromBytes, IntoBytes};
use zerocopy::little_endian::U32;

fuzz_target!(|bytes: &[u8]| {
    let _ = Superblock::decode(bytes);
    let Ok((raw, _)) = RawSuperblock::read_from_prefix(bytes) else { return };
    let mut raw = raw;
    raw.checksum = U32::new(raw.computed_checksum());
    if let Ok(superblock) = Superblock::decode(raw.as_bytes()) {
        assert_eq!(superblock.encode(), raw.as_bytes());
    }
});
