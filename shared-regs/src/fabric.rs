//! The fabric frame: a 32-byte header followed by `payload_bytes` of payload.
//!
//! The fabric (the card arbiter, or `amf fabric` in software) stamps `sequence`: for
//! broadcasts, the position in the one total order every live port sees; for
//! point-to-point messages, the per sender-receiver FIFO counter. `checksum` is CRC-32C of
//! header (checksum field zero) and payload. The sender computes it with `sequence` zero;
//! the fabric checks it, stamps `sequence`, and computes it again before delivery, so a
//! receiver checks exactly the frame it was given.
//!
//! Sequences: broadcasts, `MemberUp` and `MemberDown` share one counter (from 1), the total
//! order. Point-to-point frames (`Unicast`, `SramWrite`, `SramWriteAck`) are numbered per
//! sending port, from 1 at its join, in the order the fabric took them whatever their
//! target: so what one sender sends one receiver arrives with strictly increasing
//! sequences, and the sender knows the stamp of each frame it sent (its n-th point-to-point
//! frame is n), which is how it matches a `SramWriteAck` to its write.
//!
//! Addressing by kind: broadcasts, `MemberDown`, `MemberUp` go to [`PORT_BROADCAST`];
//! `Unicast`, `SramWrite` and `SramWriteAck` go to one port. The link kinds (`Heartbeat`,
//! `Join`, `Welcome`, `Refused`, `Leave`) never leave the link between one port and the fabric:
//! their target is [`PORT_BROADCAST`] (the fabric itself) and their source the port of
//! that link. `sram_offset` is used by `SramWrite` only (8-byte aligned; the receiving card
//! checks it against its SRAM size, and applies the write whole or not at all) and is zero
//! otherwise. A `SramWriteAck`'s payload is the acknowledged write's `sequence`, 8 bytes
//! little-endian; `MemberDown`, `MemberUp`, `Heartbeat` and `Leave` carry no payload; `Join` carries
//! a [`JoinPayload`], `Welcome` a [`WelcomePayload`], `Refused` a [`RefusalReason`] byte
//! and up to [`REFUSAL_TEXT_BYTES_MAX`] bytes of UTF-8 explanation.

use crate::checksum::crc32c_with_zeroed_field;
use crate::limits::{FABRIC_PAYLOAD_BYTES_MAX, FABRIC_PORTS_MAX};
use core::mem::{offset_of, size_of};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// First two bytes of every frame.
pub const FABRIC_MAGIC: u16 = 0xAF1B;
/// Frame format version.
pub const FABRIC_VERSION: u8 = 1;
/// `target_port` of a broadcast.
pub const PORT_BROADCAST: u8 = 0xFF;
/// Bytes of the header.
pub const HEADER_BYTES: usize = size_of::<FabricHeader>();

crate::wire_enum! {
    /// Kind of a fabric message.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum MessageKind: u8, from_u8 {
        /// Delivered to every live port, in the fabric's total order.
        Broadcast = 1,
        /// Delivered to `target_port` only, FIFO per sender-receiver pair.
        Unicast = 2,
        /// Write `payload` into `target_port`'s SRAM at `sram_offset`.
        SramWrite = 3,
        /// The SRAM write with this `sequence` is in the target's SRAM.
        SramWriteAck = 4,
        /// `source_port` died; ordered after everything it sent.
        MemberDown = 5,
        /// `source_port` joined.
        MemberUp = 6,
        /// Liveness beat between a port and the fabric (both ways).
        Heartbeat = 7,
        /// A port's first frame: the port it claims (`source_port`) and its array.
        Join = 8,
        /// The fabric's answer to a `Join`: the port is live.
        Welcome = 9,
        /// The fabric refuses or drops this link; it closes right after.
        Refused = 10,
        /// A port's last frame: its host has stopped every member write, so the fabric
        /// announces it down without fencing it. 12, not 11: the card's fabric decodes
        /// the low two bits of a kind, and 11's are `SramWrite`'s (3).
        Leave = 12,
    }
}

impl MessageKind {
    /// Kinds that never leave the link between one port and the fabric.
    pub const fn is_link(self) -> bool {
        matches!(
            self,
            Self::Heartbeat | Self::Join | Self::Welcome | Self::Refused | Self::Leave
        )
    }

    /// Kinds a port may send once it joined (the rest only the fabric originates, or,
    /// for `Join`, only as the first frame).
    pub const fn sent_by_ports(self) -> bool {
        matches!(
            self,
            Self::Broadcast
                | Self::Unicast
                | Self::SramWrite
                | Self::SramWriteAck
                | Self::Heartbeat
                | Self::Leave
        )
    }

    /// Kinds numbered in the total order of broadcasts.
    pub const fn is_ordered_broadcast(self) -> bool {
        matches!(self, Self::Broadcast | Self::MemberUp | Self::MemberDown)
    }
}

/// Payload of a [`MessageKind::Join`].
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(C)]
pub struct JoinPayload {
    /// uuid of the array the port serves (its members' superblocks'); every port of one
    /// fabric serves the same array.
    pub array_uuid: [u8; 16],
}

/// Payload of a [`MessageKind::Welcome`]: what a joining port needs to start.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(C)]
pub struct WelcomePayload {
    /// Sequence of the `MemberUp` announcing this port: every broadcast after it in the
    /// total order reaches this port, none before it.
    pub member_up_sequence: U64,
    /// The fabric sends a `Heartbeat` this often and expects one from the port as often.
    pub heartbeat_interval_ms: U32,
    /// Beats a port may miss before the fabric declares it down.
    pub heartbeat_misses_max: U32,
    /// Live ports in the order they joined, this one last; unused entries are
    /// [`PORT_BROADCAST`].
    pub join_order: [u8; FABRIC_PORTS_MAX as usize],
}

impl WelcomePayload {
    /// The live ports, oldest first.
    pub fn live_ports(&self) -> impl Iterator<Item = u8> + '_ {
        self.join_order
            .iter()
            .copied()
            .take_while(|&port| port != PORT_BROADCAST)
    }
}

crate::wire_enum! {
    /// Why the fabric refused or dropped a link: the first byte of a `Refused` payload.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum RefusalReason: u8, from_u8 {
        /// Another live link already holds the port.
        PortInUse = 1,
        /// The port serves another array than the fabric's.
        WrongArray = 2,
        /// The first frame was not a `Join`, or a second `Join` came.
        NotJoined = 3,
        /// A frame failed its checks (`FrameError`).
        Malformed = 4,
        /// A kind ports may not send, or a `source_port` other than the link's.
        Forbidden = 5,
        /// The port did not take its frames fast enough.
        Overloaded = 6,
        /// The port missed too many heartbeats.
        HeartbeatTimeout = 7,
        /// The fabric is shutting down.
        ShuttingDown = 8,
        /// The fabric's fence agent could not fence this port's peer (a remote TCP peer
        /// with `--fence kill`), so it may not join: its death could not be made safe.
        Unfenceable = 9,
    }
}

/// Most bytes of explanation after a `Refused` frame's reason byte.
pub const REFUSAL_TEXT_BYTES_MAX: u32 = 256;

/// Header of every fabric frame: 32 bytes.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(C)]
pub struct FabricHeader {
    /// [`FABRIC_MAGIC`].
    pub magic: U16,
    /// [`FABRIC_VERSION`].
    pub version: u8,
    /// A [`MessageKind`].
    pub kind: u8,
    /// Sending port.
    pub source_port: u8,
    /// Receiving port, or [`PORT_BROADCAST`].
    pub target_port: u8,
    /// Zero.
    pub flags: U16,
    /// Order stamp given by the fabric (see the module docs).
    pub sequence: U64,
    /// Bytes of payload after the header.
    pub payload_bytes: U32,
    /// Target SRAM offset for [`MessageKind::SramWrite`]; zero otherwise.
    pub sram_offset: U32,
    /// CRC-32C of header (this field zero) and payload.
    pub checksum: U32,
    /// Zero.
    pub reserved: U32,
}

/// Why a byte string is not a fabric frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than a header, or than the header says.
    #[error("frame truncated: {have} bytes, need {need}")]
    Truncated { have: usize, need: usize },
    /// Wrong magic.
    #[error("bad frame magic {0:#06x}")]
    BadMagic(u16),
    /// Unknown version.
    #[error("unsupported frame version {0}")]
    BadVersion(u8),
    /// Unknown kind.
    #[error("unknown message kind {0}")]
    BadKind(u8),
    /// A port number beyond the fabric.
    #[error("port {0} out of range")]
    BadPort(u8),
    /// Payload longer than the fabric carries.
    #[error("payload of {0} bytes exceeds the maximum")]
    PayloadTooLarge(u32),
    /// A reserved field was set.
    #[error("reserved field set")]
    Reserved,
    /// The target does not fit the kind (a broadcast to one port, a unicast to all).
    #[error("{kind:?} frame addressed to port {target}")]
    BadTarget { kind: MessageKind, target: u8 },
    /// `sram_offset` set on a kind that has none, or misaligned.
    #[error("sram_offset {offset:#x} is not valid for a {kind:?} frame")]
    BadSramOffset { kind: MessageKind, offset: u32 },
    /// A payload length the kind does not allow.
    #[error("{kind:?} frame with a {bytes}-byte payload")]
    BadPayloadLength { kind: MessageKind, bytes: u32 },
    /// Checksum mismatch.
    #[error("frame checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
}

/// A checked frame borrowed from a byte string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The header.
    pub header: &'a FabricHeader,
    /// Its kind, decoded.
    pub kind: MessageKind,
    /// The payload.
    pub payload: &'a [u8],
}

fn port_valid(port: u8, broadcast_allowed: bool) -> bool {
    u32::from(port) < FABRIC_PORTS_MAX || (broadcast_allowed && port == PORT_BROADCAST)
}

impl FabricHeader {
    /// Builds a header for `payload`, checksum included.
    pub fn new(
        kind: MessageKind,
        source_port: u8,
        target_port: u8,
        sequence: u64,
        sram_offset: u32,
        payload: &[u8],
    ) -> Self {
        assert!(
            payload.len() <= FABRIC_PAYLOAD_BYTES_MAX as usize,
            "payload too large"
        );
        let mut header = Self {
            magic: U16::new(FABRIC_MAGIC),
            version: FABRIC_VERSION,
            kind: kind as u8,
            source_port,
            target_port,
            sequence: U64::new(sequence),
            payload_bytes: U32::new(payload.len() as u32),
            sram_offset: U32::new(sram_offset),
            ..Default::default()
        };
        header.checksum = U32::new(header.compute_checksum(payload));
        header
    }

    /// CRC-32C over this header (checksum as zero) and `payload`.
    pub fn compute_checksum(&self, payload: &[u8]) -> u32 {
        let head = crc32c_with_zeroed_field(self.as_bytes(), offset_of!(FabricHeader, checksum));
        crc32c::crc32c_append(head, payload)
    }

    /// Bytes of the whole frame.
    pub fn frame_bytes(&self) -> usize {
        HEADER_BYTES + self.payload_bytes.get() as usize
    }
}

/// Parses the frame at the start of `bytes`; returns it and the bytes after it.
pub fn parse_frame(bytes: &[u8]) -> Result<(Frame<'_>, &[u8]), FrameError> {
    let (header, rest) =
        FabricHeader::ref_from_prefix(bytes).map_err(|_| FrameError::Truncated {
            have: bytes.len(),
            need: HEADER_BYTES,
        })?;
    if header.magic.get() != FABRIC_MAGIC {
        return Err(FrameError::BadMagic(header.magic.get()));
    }
    if header.version != FABRIC_VERSION {
        return Err(FrameError::BadVersion(header.version));
    }
    let kind = MessageKind::from_u8(header.kind).ok_or(FrameError::BadKind(header.kind))?;
    if !port_valid(header.source_port, false) {
        return Err(FrameError::BadPort(header.source_port));
    }
    if !port_valid(header.target_port, true) {
        return Err(FrameError::BadPort(header.target_port));
    }
    check_addressing(kind, header)?;
    if header.flags.get() != 0 || header.reserved.get() != 0 {
        return Err(FrameError::Reserved);
    }
    let payload_bytes = header.payload_bytes.get();
    if payload_bytes > FABRIC_PAYLOAD_BYTES_MAX {
        return Err(FrameError::PayloadTooLarge(payload_bytes));
    }
    let payload_len = payload_bytes as usize;
    if rest.len() < payload_len {
        return Err(FrameError::Truncated {
            have: bytes.len(),
            need: HEADER_BYTES + payload_len,
        });
    }
    let (payload, after) = rest.split_at(payload_len);
    let computed = header.compute_checksum(payload);
    if computed != header.checksum.get() {
        return Err(FrameError::Checksum {
            stored: header.checksum.get(),
            computed,
        });
    }
    Ok((
        Frame {
            header,
            kind,
            payload,
        },
        after,
    ))
}

/// Alignment of a `SramWrite`'s `sram_offset`.
pub const SRAM_WRITE_ALIGN_BYTES: u32 = 8;

/// Target, SRAM offset and payload length as the kind requires (see the module docs).
fn check_addressing(kind: MessageKind, header: &FabricHeader) -> Result<(), FrameError> {
    use MessageKind::*;
    let to_all = kind.is_link() || matches!(kind, Broadcast | MemberDown | MemberUp);
    let target = header.target_port;
    if to_all != (target == PORT_BROADCAST) {
        return Err(FrameError::BadTarget { kind, target });
    }
    let offset = header.sram_offset.get();
    let offset_valid = match kind {
        SramWrite => offset.is_multiple_of(SRAM_WRITE_ALIGN_BYTES),
        _ => offset == 0,
    };
    if !offset_valid {
        return Err(FrameError::BadSramOffset { kind, offset });
    }
    let bytes = header.payload_bytes.get();
    let length_valid = match kind {
        SramWriteAck => bytes == 8,
        MemberDown | MemberUp | Heartbeat | Leave => bytes == 0,
        Join => bytes as usize == size_of::<JoinPayload>(),
        Welcome => bytes as usize == size_of::<WelcomePayload>(),
        Refused => (1..=1 + REFUSAL_TEXT_BYTES_MAX).contains(&bytes),
        Broadcast | Unicast | SramWrite => true,
    };
    if !length_valid {
        return Err(FrameError::BadPayloadLength { kind, bytes });
    }
    Ok(())
}

const _: () = {
    assert!(HEADER_BYTES == 32);
    assert!(offset_of!(FabricHeader, sequence) == 8);
    assert!(offset_of!(FabricHeader, payload_bytes) == 16);
    assert!(offset_of!(FabricHeader, sram_offset) == 20);
    assert!(offset_of!(FabricHeader, checksum) == 24);
    assert!(FABRIC_PORTS_MAX <= PORT_BROADCAST as u32);
    assert!(size_of::<JoinPayload>() == 16);
    assert!(size_of::<WelcomePayload>() == 16 + FABRIC_PORTS_MAX as usize);
    assert!(offset_of!(WelcomePayload, join_order) == 16);
    assert!(REFUSAL_TEXT_BYTES_MAX < FABRIC_PAYLOAD_BYTES_MAX);
};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(kind: MessageKind, payload: &[u8]) -> Vec<u8> {
        let header = FabricHeader::new(kind, 1, PORT_BROADCAST, 42, 0, payload);
        let mut bytes = header.as_bytes().to_vec();
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn round_trip() {
        let bytes = frame(MessageKind::Broadcast, b"hello");
        let (parsed, rest) = parse_frame(&bytes).unwrap();
        assert_eq!(parsed.kind, MessageKind::Broadcast);
        assert_eq!(parsed.payload, b"hello");
        assert_eq!(parsed.header.sequence.get(), 42);
        assert!(rest.is_empty());
    }

    #[test]
    fn every_corruption_is_typed() {
        let good = frame(MessageKind::Broadcast, b"payload");
        let mut bytes = good.clone();
        bytes[0] ^= 1;
        assert!(matches!(parse_frame(&bytes), Err(FrameError::BadMagic(_))));
        let mut bytes = good.clone();
        bytes[3] = 99;
        assert_eq!(parse_frame(&bytes).unwrap_err(), FrameError::BadKind(99));
        let mut bytes = good.clone();
        bytes[4] = 200;
        assert_eq!(parse_frame(&bytes).unwrap_err(), FrameError::BadPort(200));
        let mut bytes = good.clone();
        *bytes.last_mut().unwrap() ^= 1;
        assert!(matches!(
            parse_frame(&bytes),
            Err(FrameError::Checksum { .. })
        ));
        assert!(matches!(
            parse_frame(&good[..good.len() - 1]),
            Err(FrameError::Truncated { .. })
        ));
        assert!(matches!(
            parse_frame(&good[..10]),
            Err(FrameError::Truncated { .. })
        ));
    }

    #[test]
    fn addressing_follows_the_kind() {
        let unicast_to_all = frame(MessageKind::Unicast, b"x");
        assert_eq!(
            parse_frame(&unicast_to_all).unwrap_err(),
            FrameError::BadTarget {
                kind: MessageKind::Unicast,
                target: PORT_BROADCAST
            }
        );
        let mut bytes = FabricHeader::new(MessageKind::Broadcast, 1, 2, 0, 0, b"")
            .as_bytes()
            .to_vec();
        assert!(matches!(
            parse_frame(&bytes),
            Err(FrameError::BadTarget { .. })
        ));
        bytes = FabricHeader::new(MessageKind::SramWrite, 1, 2, 0, 12, b"abc")
            .as_bytes()
            .to_vec();
        bytes.extend_from_slice(b"abc");
        assert!(matches!(
            parse_frame(&bytes),
            Err(FrameError::BadSramOffset { .. })
        ));
        bytes = FabricHeader::new(MessageKind::SramWriteAck, 1, 2, 0, 0, b"abc")
            .as_bytes()
            .to_vec();
        bytes.extend_from_slice(b"abc");
        assert!(matches!(
            parse_frame(&bytes),
            Err(FrameError::BadPayloadLength { .. })
        ));
        let acked = 99u64.to_le_bytes();
        bytes = FabricHeader::new(MessageKind::SramWriteAck, 1, 2, 0, 0, &acked)
            .as_bytes()
            .to_vec();
        bytes.extend_from_slice(&acked);
        assert_eq!(parse_frame(&bytes).unwrap().0.payload, &acked);
    }

    fn link_frame(kind: MessageKind, payload: &[u8]) -> Vec<u8> {
        let mut bytes = FabricHeader::new(kind, 3, PORT_BROADCAST, 0, 0, payload)
            .as_bytes()
            .to_vec();
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn link_kinds_have_fixed_payloads() {
        let join = JoinPayload {
            array_uuid: [7; 16],
        };
        let bytes = link_frame(MessageKind::Join, join.as_bytes());
        let (parsed, _) = parse_frame(&bytes).unwrap();
        assert_eq!(JoinPayload::read_from_bytes(parsed.payload).unwrap(), join);
        assert!(matches!(
            parse_frame(&link_frame(MessageKind::Join, &[7; 15])),
            Err(FrameError::BadPayloadLength { .. })
        ));
        let mut welcome = WelcomePayload {
            join_order: [PORT_BROADCAST; FABRIC_PORTS_MAX as usize],
            ..Default::default()
        };
        welcome.join_order[..2].copy_from_slice(&[5, 3]);
        let bytes = link_frame(MessageKind::Welcome, welcome.as_bytes());
        let (parsed, _) = parse_frame(&bytes).unwrap();
        let decoded = WelcomePayload::read_from_bytes(parsed.payload).unwrap();
        assert_eq!(decoded.live_ports().collect::<Vec<_>>(), vec![5, 3]);
        assert!(parse_frame(&link_frame(MessageKind::Refused, &[1])).is_ok());
        assert!(matches!(
            parse_frame(&link_frame(MessageKind::Refused, &[])),
            Err(FrameError::BadPayloadLength { .. })
        ));
        let mut to_one = FabricHeader::new(MessageKind::Welcome, 3, 3, 0, 0, welcome.as_bytes())
            .as_bytes()
            .to_vec();
        to_one.extend_from_slice(welcome.as_bytes());
        assert!(matches!(
            parse_frame(&to_one),
            Err(FrameError::BadTarget { .. })
        ));
    }

    #[test]
    fn kind_classes_are_consistent() {
        for &kind in MessageKind::ALL {
            assert!(!(kind.is_link() && kind.is_ordered_broadcast()), "{kind:?}");
            if kind.sent_by_ports() {
                assert!(!kind.is_ordered_broadcast() || kind == MessageKind::Broadcast);
            }
        }
        assert_eq!(RefusalReason::from_u8(1), Some(RefusalReason::PortInUse));
        assert_eq!(RefusalReason::from_u8(0), None);
        assert!(MessageKind::Leave.is_link() && MessageKind::Leave.sent_by_ports());
        assert_ne!(
            MessageKind::Leave as u8 & 0b11,
            MessageKind::SramWrite as u8 & 0b11,
            "the card decodes the low two bits of a kind; a Leave must never look like an SRAM write"
        );
    }

    #[test]
    fn leave_goes_to_the_fabric_with_no_payload() {
        assert!(parse_frame(&link_frame(MessageKind::Leave, &[])).is_ok());
        assert!(matches!(
            parse_frame(&link_frame(MessageKind::Leave, &[0])),
            Err(FrameError::BadPayloadLength { .. })
        ));
        let mut to_one = FabricHeader::new(MessageKind::Leave, 3, 2, 0, 0, &[])
            .as_bytes()
            .to_vec();
        assert!(matches!(
            parse_frame(&to_one),
            Err(FrameError::BadTarget { .. })
        ));
        to_one = FabricHeader::new(MessageKind::Leave, 3, PORT_BROADCAST, 0, 8, &[])
            .as_bytes()
            .to_vec();
        assert!(matches!(
            parse_frame(&to_one),
            Err(FrameError::BadSramOffset { .. })
        ));
    }

    proptest! {
        #[test]
        fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_frame(&bytes);
        }

        #[test]
        fn any_single_bit_flip_is_caught(payload in proptest::collection::vec(any::<u8>(), 0..64), bit in 0usize..8 * 96) {
            let mut good = FabricHeader::new(MessageKind::SramWrite, 1, 2, 42, 64, &payload).as_bytes().to_vec();
            good.extend_from_slice(&payload);
            let bit = bit % (good.len() * 8);
            let mut bytes = good.clone();
            bytes[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(parse_frame(&bytes).is_err());
        }
    }
}
