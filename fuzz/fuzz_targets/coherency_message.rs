#![no_main]
//! Any bytes: a coherency message (a fabric payload between AMFs' cores) or a typed
//! error, never a panic. A decoded message re-encodes to as many bytes as it came from
//! (every field is fixed-size or length-prefixed) and decodes back to itself.

use amf_coherency::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(message) = Message::decode(bytes) else {
        return;
    };
    let encoded = message.encode();
    assert_eq!(encoded.len(), bytes.len(), "{message:?}");
    assert_eq!(Message::decode(&encoded), Ok(message));
});
