#![no_main]
//! Any bytes: a superblock or a typed error; a decoded one re-encodes to the same bytes.

use amflink::format::Superblock;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(superblock) = Superblock::decode(bytes) {
        assert_eq!(Superblock::decode(&superblock.encode()), Ok(superblock));
    }
});
