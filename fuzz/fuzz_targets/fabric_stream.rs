#![no_main]
//! Any bytes, cut into pieces of any size, through the fabric's stream decoder: frames or
//! one typed error, never a panic. Each frame handed out re-encodes to exactly the bytes
//! it was cut from, the pieces are never reordered, and an error is final. The first
//! input byte picks the piece size, so splits inside headers and payloads are covered.

use amf_fabric::FrameDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&piece, bytes)) = input.split_first() else { return };
    let piece = usize::from(piece).max(1);
    let mut decoder = FrameDecoder::new();
    let mut consumed = 0usize;
    let mut failed = None;
    for chunk in bytes.chunks(piece) {
        decoder.push(chunk);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    let encoded = frame.encode();
                    assert_eq!(&bytes[consumed..consumed + encoded.len()], &encoded[..]);
                    consumed += encoded.len();
                }
                Ok(None) => break,
                Err(error) => {
                    assert!(failed.is_none_or(|first| first == error));
                    failed = Some(error);
                    break;
                }
            }
        }
    }
    if failed.is_none() {
        assert_eq!(consumed + decoder.buffered_bytes(), bytes.len());
    }
});
