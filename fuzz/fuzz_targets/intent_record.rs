#![no_main]
//! Any bytes: an intent record or a typed error; a decoded one re-encodes identically.

use libfuzzer_sys::fuzz_target;
use shared_regs::intent::Intent;

fuzz_target!(|bytes: &[u8]| {
    if let Ok((intent, payload)) = Intent::decode(bytes) {
        let encoded = intent.encode(payload).expect("a decoded record re-encodes");
        assert_eq!(&bytes[..encoded.len()], &encoded[..]);
    }
});
