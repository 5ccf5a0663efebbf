//! Frames as owned values, and the stream decoder that cuts a byte stream into them.
//!
//! A socket delivers bytes in arbitrary pieces; [`FrameDecoder`] gathers them and hands
//! out whole frames, each checked by `shared_regs::fabric::parse_frame`. It looks at a
//! header as soon as it has one, so a bad magic or an absurd length is refused at once
//! instead of after waiting for bytes that will never come. After one error the decoder
//! refuses everything (a stream cannot be resynchronised), and it never panics, whatever
//! the bytes: the fuzz target `fabric_stream` holds it to that.

use shared_regs::fabric::{FabricHeader, FrameError, HEADER_BYTES, MessageKind, parse_frame};
use shared_regs::limits::FABRIC_PAYLOAD_BYTES_MAX;
use zerocopy::IntoBytes;
use zerocopy::little_endian::{U32, U64};

/// Bytes of the largest frame.
pub const FRAME_BYTES_MAX: usize = HEADER_BYTES + FABRIC_PAYLOAD_BYTES_MAX as usize;

/// A checked frame that owns its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedFrame {
    header: FabricHeader,
    kind: MessageKind,
    payload: Vec<u8>,
}

impl OwnedFrame {
    /// A frame as a sender builds it: `sequence` zero, checksum computed.
    ///
    /// # Panics
    /// If the payload is longer than the fabric carries (a caller's bug; received frames
    /// are checked by the decoder instead).
    pub fn new(
        kind: MessageKind,
        source_port: u8,
        target_port: u8,
        sram_offset: u32,
        payload: Vec<u8>,
    ) -> Self {
        let header = FabricHeader::new(kind, source_port, target_port, 0, sram_offset, &payload);
        Self {
            header,
            kind,
            payload,
        }
    }

    /// Parses one whole frame, with nothing after it.
    pub fn parse(bytes: &[u8]) -> Result<Self, FrameError> {
        let (frame, rest) = parse_frame(bytes)?;
        if !rest.is_empty() {
            return Err(FrameError::Truncated {
                have: bytes.len(),
                need: frame.header.frame_bytes(),
            });
        }
        Ok(Self {
            header: *frame.header,
            kind: frame.kind,
            payload: frame.payload.to_vec(),
        })
    }

    /// The header.
    pub fn header(&self) -> &FabricHeader {
        &self.header
    }

    /// The kind.
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// Sending port.
    pub fn source_port(&self) -> u8 {
        self.header.source_port
    }

    /// Receiving port, or `PORT_BROADCAST`.
    pub fn target_port(&self) -> u8 {
        self.header.target_port
    }

    /// The fabric's order stamp.
    pub fn sequence(&self) -> u64 {
        self.header.sequence.get()
    }

    /// Target SRAM offset of an SRAM write.
    pub fn sram_offset(&self) -> u32 {
        self.header.sram_offset.get()
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Takes the payload out.
    pub fn into_payload(self) -> Vec<u8> {
        self.payload
    }

    /// The same frame stamped with `sequence`, its checksum computed again (what the
    /// fabric does before delivery).
    pub fn stamped(mut self, sequence: u64) -> Self {
        self.header.sequence = U64::new(sequence);
        self.header.checksum = U32::new(0);
        self.header.checksum = U32::new(self.header.compute_checksum(&self.payload));
        self
    }

    /// Header and payload, as sent on a link.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(HEADER_BYTES + self.payload.len());
        bytes.extend_from_slice(self.header.as_bytes());
        bytes.extend_from_slice(&self.payload);
        debug_assert_eq!(bytes.len(), self.header.frame_bytes());
        bytes
    }
}

/// Cuts a byte stream into checked frames; see the [module docs](self).
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buffer: Vec<u8>,
    /// Bytes of `buffer` already handed out as frames.
    consumed: usize,
    failed: Option<FrameError>,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.consumed > 0 {
            self.buffer.drain(..self.consumed);
            self.consumed = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// Bytes received and not yet handed out.
    pub fn buffered_bytes(&self) -> usize {
        self.buffer.len() - self.consumed
    }

    /// The next whole frame; `Ok(None)` when more bytes are needed. An error is final:
    /// every later call returns it again.
    pub fn next_frame(&mut self) -> Result<Option<OwnedFrame>, FrameError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        let pending = &self.buffer[self.consumed..];
        match parse_frame(pending) {
            Ok((frame, rest)) => {
                let owned = OwnedFrame {
                    header: *frame.header,
                    kind: frame.kind,
                    payload: frame.payload.to_vec(),
                };
                let taken = pending.len() - rest.len();
                assert_eq!(taken, owned.header.frame_bytes());
                self.consumed += taken;
                Ok(Some(owned))
            }
            // The header passed every check it can have without the payload (or is not
            // all here yet): wait for the rest.
            Err(FrameError::Truncated { .. }) => Ok(None),
            Err(error) => {
                self.failed = Some(error);
                Err(error)
            }
        }
    }

    /// Whether the stream ended cleanly: no partial frame is left.
    pub fn is_at_boundary(&self) -> bool {
        self.buffered_bytes() == 0 && self.failed.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use shared_regs::fabric::PORT_BROADCAST;

    fn sample(payload_bytes: usize) -> OwnedFrame {
        OwnedFrame::new(
            MessageKind::Broadcast,
            2,
            PORT_BROADCAST,
            0,
            (0..payload_bytes).map(|i| i as u8).collect(),
        )
        .stamped(9)
    }

    #[test]
    fn frames_survive_any_split() {
        let frames = [sample(0), sample(5), sample(300)];
        let stream: Vec<u8> = frames.iter().flat_map(OwnedFrame::encode).collect();
        for piece in [1, 7, 32, 33, stream.len()] {
            let mut decoder = FrameDecoder::new();
            let mut out = Vec::new();
            for chunk in stream.chunks(piece) {
                decoder.push(chunk);
                while let Some(frame) = decoder.next_frame().unwrap() {
                    out.push(frame);
                }
            }
            assert_eq!(out, frames, "pieces of {piece}");
            assert!(decoder.is_at_boundary());
        }
    }

    #[test]
    fn a_bad_header_is_refused_before_its_payload_arrives() {
        let mut bytes = sample(1000).encode();
        bytes[0] ^= 0xFF;
        let mut decoder = FrameDecoder::new();
        decoder.push(&bytes[..HEADER_BYTES]);
        assert!(matches!(decoder.next_frame(), Err(FrameError::BadMagic(_))));
        decoder.push(&sample(0).encode());
        assert!(
            matches!(decoder.next_frame(), Err(FrameError::BadMagic(_))),
            "an error is final"
        );
    }

    #[test]
    fn an_oversized_length_is_refused_from_the_header() {
        let mut header = *sample(0).header();
        header.payload_bytes = U32::new(FABRIC_PAYLOAD_BYTES_MAX + 1);
        let mut decoder = FrameDecoder::new();
        decoder.push(header.as_bytes());
        assert_eq!(
            decoder.next_frame(),
            Err(FrameError::PayloadTooLarge(FABRIC_PAYLOAD_BYTES_MAX + 1))
        );
    }

    #[test]
    fn stamping_keeps_the_frame_valid() {
        let frame = OwnedFrame::new(MessageKind::Unicast, 1, 4, 0, b"abc".to_vec());
        assert_eq!(frame.sequence(), 0);
        let stamped = frame.clone().stamped(77);
        assert_eq!(stamped.sequence(), 77);
        assert_ne!(stamped.header().checksum, frame.header().checksum);
        assert_eq!(OwnedFrame::parse(&stamped.encode()).unwrap(), stamped);
    }

    proptest! {
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400), piece in 1usize..64) {
            let mut decoder = FrameDecoder::new();
            for chunk in bytes.chunks(piece) {
                decoder.push(chunk);
                while let Ok(Some(frame)) = decoder.next_frame() {
                    prop_assert!(frame.encode().len() <= bytes.len());
                }
            }
        }
    }
}
