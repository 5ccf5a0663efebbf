#![no_main]
//! The fabric's stream decoder, fed a stream of valid frames built from the input, with
//! at most one byte flipped, cut into pieces of any size: it never panics; without a flip
//! it hands back exactly the frames sent; with one, what it hands back before its error
//! is a prefix of them and, since every frame is checksummed, the flip never yields a
//! frame that was not sent. The raw input is also fed as is, for the header checks.
//!
//! Input: piece size, flip position (two bytes, little-endian; 0 = no flip), then frames
//! as a length byte and that many payload bytes.

use amf_fabric::{FrameDecoder, OwnedFrame};
use libfuzzer_sys::fuzz_target;
use shared_regs::fabric::{MessageKind, PORT_BROADCAST};

fn frames_of(mut bytes: &[u8]) -> Vec<OwnedFrame> {
    let mut frames = Vec::new();
    while let Some((&length, rest)) = bytes.split_first() {
        let length = usize::from(length).min(rest.len());
        let (payload, after) = rest.split_at(length);
        let source = length as u8 % 8;
        let frame = OwnedFrame::new(MessageKind::Broadcast, source, PORT_BROADCAST, 0, payload.to_vec());
        frames.push(frame.stamped(frames.len() as u64 + 1));
        bytes = after;
    }
    frames
}

/// Every frame the decoder hands out before it stops.
fn decode(stream: &[u8], piece: usize) -> (Vec<OwnedFrame>, bool) {
    let mut decoder = FrameDecoder::new();
    let mut out = Vec::new();
    for chunk in stream.chunks(piece) {
        decoder.push(chunk);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => out.push(frame),
                Ok(None) => break,
                Err(error) => {
                    assert_eq!(decoder.next_frame(), Err(error), "an error is final");
                    return (out, true);
                }
            }
        }
    }
    (out, false)
}

fuzz_target!(|input: &[u8]| {
    let [piece, flip_low, flip_high, rest @ ..] = input else { return };
    let piece = usize::from(*piece).max(1);
    let _ = decode(input, piece);
    let frames = frames_of(rest);
    let mut stream: Vec<u8> = frames.iter().flat_map(OwnedFrame::encode).collect();
    let flip = usize::from(u16::from_le_bytes([*flip_low, *flip_high]));
    if flip == 0 || stream.is_empty() {
        let (out, failed) = decode(&stream, piece);
        assert!(!failed);
        assert_eq!(out, frames);
        return;
    }
    let position = flip % stream.len();
    stream[position] ^= 0x5A;
    let (out, _) = decode(&stream, piece);
    assert!(out.len() <= frames.len());
    assert_eq!(out[..], frames[..out.len()], "a corrupted stream yields only frames sent");
});
