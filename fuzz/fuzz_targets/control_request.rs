#![no_main]
//! Any bytes as a control socket line: a typed request or a typed error, never a panic;
//! a request that parses serializes back to one that parses the same.

use amflink::control::parse_request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(request) = parse_request(bytes) {
        let again = serde_json::to_vec(&request).expect("requests serialize");
        assert_eq!(parse_request(&again).ok(), Some(request));
    }
});
