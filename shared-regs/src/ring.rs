//! Ring entry layouts: the parity descriptor, the completion entry, and the fabric buffer
//! descriptor.
//!
//! A ring is an array of fixed-size entries in host memory (DMA), with head/tail indices in
//! the ring's register block ([`crate::regs::ring_block`]). Indices count entries and wrap
//! modulo 2^32; the slot of index `i` is `i & (entries - 1)`; the ring is full when
//! `tail - head == entries`.

use crate::limits::{PARITY_BEAT_BYTES, PARITY_SOURCE_BYTES_MAX, PARITY_SOURCES_MAX};
use core::mem::{offset_of, size_of};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

crate::wire_enum! {
    /// Parity operation of a descriptor.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum ParityOpcode: u8, from_u8 {
        /// P = XOR of the sources (RAID-5).
        GenP = 1,
        /// P = XOR, Q = sum of g^i * source_i in GF(2^8), g = 2, polynomial 0x11d (RAID-6).
        GenPq = 2,
    }
}

impl ParityOpcode {
    /// Fewest data sources the operation takes.
    pub const fn sources_min(self) -> u32 {
        match self {
            Self::GenP => 2,
            Self::GenPq => 2,
        }
    }
}

/// Alignment the engine requires of a descriptor's source list (one address is a u64).
pub const SOURCE_LIST_ALIGN_BYTES: u64 = 8;
/// Alignment the engine requires of every source, P and Q buffer: one beat.
pub const PARITY_BUFFER_ALIGN_BYTES: u64 = PARITY_BEAT_BYTES as u64;

/// Descriptor flag: raise [`crate::regs::IRQ_PARITY_CQ`] when this descriptor completes.
pub const PARITY_FLAG_INTERRUPT: u8 = 1 << 0;
/// Every defined descriptor flag.
pub const PARITY_FLAGS_ALL: u8 = PARITY_FLAG_INTERRUPT;

/// One parity-engine submission: 64 bytes.
///
/// The sources are `source_count` buffers of `length_bytes` each; their DMA addresses are
/// the `source_count` little-endian u64s at `sources_addr`. P (and, for
/// [`ParityOpcode::GenPq`], Q) are written at `p_addr`/`q_addr`, `length_bytes` each.
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
pub struct ParityDescriptor {
    /// A [`ParityOpcode`].
    pub opcode: u8,
    /// `PARITY_FLAG_*`.
    pub flags: u8,
    /// Number of data sources.
    pub source_count: u8,
    /// Zero.
    pub reserved0: u8,
    /// Host cookie, echoed in the completion.
    pub tag: U32,
    /// Bytes per source; a multiple of [`PARITY_BEAT_BYTES`].
    pub length_bytes: U32,
    /// Zero.
    pub reserved1: U32,
    /// DMA address of the source address list (8-byte aligned).
    pub sources_addr: U64,
    /// DMA address where P is written.
    pub p_addr: U64,
    /// DMA address where Q is written (ignored for [`ParityOpcode::GenP`]).
    pub q_addr: U64,
    /// Zero.
    pub reserved2: [u8; 24],
}

crate::wire_enum! {
    /// Why the card refused a descriptor; carried in [`Completion::status`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
    pub enum CompletionStatus: u16, from_u16 {
        /// Done.
        #[error("ok")]
        Ok = 0,
        /// Unknown opcode.
        #[error("unknown opcode")]
        BadOpcode = 1,
        /// Source count out of range for the opcode.
        #[error("source count out of range")]
        BadSourceCount = 2,
        /// Length zero, above the maximum, or not a multiple of the beat.
        #[error("length zero, too large, or not a multiple of the beat")]
        BadLength = 3,
        /// A reserved field or an undefined flag was set.
        #[error("reserved field or undefined flag set")]
        BadReserved = 4,
        /// A DMA address was misaligned or outside the mapped memory.
        #[error("DMA address misaligned or not mapped")]
        DmaFault = 5,
        /// A received frame did not fit the posted buffer, or failed its checks.
        #[error("frame malformed or larger than the buffer")]
        BadFrame = 6,
    }
}

/// A descriptor that passed every check that needs no memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckedParity {
    /// Operation.
    pub opcode: ParityOpcode,
    /// Sources.
    pub source_count: u32,
    /// Bytes per source.
    pub length_bytes: u32,
    /// Raise an interrupt on completion.
    pub interrupt: bool,
}

impl ParityDescriptor {
    /// Checks the fields a card checks before touching memory; the error is the status the
    /// card posts.
    pub fn check(&self) -> Result<CheckedParity, CompletionStatus> {
        let opcode = ParityOpcode::from_u8(self.opcode).ok_or(CompletionStatus::BadOpcode)?;
        if self.flags & !PARITY_FLAGS_ALL != 0
            || self.reserved0 != 0
            || self.reserved1.get() != 0
            || self.reserved2 != [0; 24]
        {
            return Err(CompletionStatus::BadReserved);
        }
        let source_count = u32::from(self.source_count);
        if !(opcode.sources_min()..=PARITY_SOURCES_MAX).contains(&source_count) {
            return Err(CompletionStatus::BadSourceCount);
        }
        let length_bytes = self.length_bytes.get();
        if length_bytes == 0
            || length_bytes > PARITY_SOURCE_BYTES_MAX
            || !length_bytes.is_multiple_of(PARITY_BEAT_BYTES)
        {
            return Err(CompletionStatus::BadLength);
        }
        Ok(CheckedParity {
            opcode,
            source_count,
            length_bytes,
            interrupt: self.flags & PARITY_FLAG_INTERRUPT != 0,
        })
    }
}

/// One completion entry: 16 bytes, for every completion ring.
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
pub struct Completion {
    /// The submission's tag.
    pub tag: U32,
    /// A [`CompletionStatus`].
    pub status: U16,
    /// Zero.
    pub reserved0: U16,
    /// Index of the submission entry this completes (its ring index, before masking).
    pub submission_index: U32,
    /// Bytes written: frame length for fabric receive, zero otherwise.
    pub length_bytes: U32,
}

/// Fabric ring entry: a host buffer holding a frame to send (TX) or empty for a frame to
/// receive (RX). 16 bytes.
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
pub struct FabricBuffer {
    /// DMA address of the buffer.
    pub addr: U64,
    /// Bytes: the frame's length (TX) or the buffer's capacity (RX).
    pub length_bytes: U32,
    /// Host cookie, echoed in the completion.
    pub tag: U32,
}

const _: () = {
    assert!(size_of::<ParityDescriptor>() == 64);
    assert!(offset_of!(ParityDescriptor, tag) == 4);
    assert!(offset_of!(ParityDescriptor, length_bytes) == 8);
    assert!(offset_of!(ParityDescriptor, sources_addr) == 16);
    assert!(offset_of!(ParityDescriptor, p_addr) == 24);
    assert!(offset_of!(ParityDescriptor, q_addr) == 32);
    assert!(offset_of!(ParityDescriptor, reserved2) == 40);
    assert!(size_of::<Completion>() == 16);
    assert!(offset_of!(Completion, status) == 4);
    assert!(offset_of!(Completion, submission_index) == 8);
    assert!(offset_of!(Completion, length_bytes) == 12);
    assert!(size_of::<FabricBuffer>() == 16);
    assert!(offset_of!(FabricBuffer, length_bytes) == 8);
    assert!(PARITY_SOURCES_MAX <= u8::MAX as u32);
};

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> ParityDescriptor {
        ParityDescriptor {
            opcode: ParityOpcode::GenPq as u8,
            source_count: 4,
            length_bytes: U32::new(4096),
            ..Default::default()
        }
    }

    #[test]
    fn good_descriptor_checks() {
        let checked = good().check().unwrap();
        assert_eq!(checked.opcode, ParityOpcode::GenPq);
        assert_eq!(checked.source_count, 4);
        assert!(!checked.interrupt);
    }

    #[test]
    fn each_bad_field_has_its_status() {
        let mut d = good();
        d.opcode = 9;
        assert_eq!(d.check(), Err(CompletionStatus::BadOpcode));
        let mut d = good();
        d.source_count = 1;
        assert_eq!(d.check(), Err(CompletionStatus::BadSourceCount));
        d.source_count = 32;
        assert_eq!(d.check(), Err(CompletionStatus::BadSourceCount));
        let mut d = good();
        d.length_bytes = U32::new(100);
        assert_eq!(d.check(), Err(CompletionStatus::BadLength));
        d.length_bytes = U32::new(0);
        assert_eq!(d.check(), Err(CompletionStatus::BadLength));
        d.length_bytes = U32::new(PARITY_SOURCE_BYTES_MAX + 64);
        assert_eq!(d.check(), Err(CompletionStatus::BadLength));
        let mut d = good();
        d.reserved2[23] = 1;
        assert_eq!(d.check(), Err(CompletionStatus::BadReserved));
        let mut d = good();
        d.flags = 0x80;
        assert_eq!(d.check(), Err(CompletionStatus::BadReserved));
    }

    #[test]
    fn descriptor_parses_from_any_64_bytes() {
        let bytes = [0xAAu8; 64];
        let descriptor = ParityDescriptor::read_from_bytes(&bytes).unwrap();
        assert_eq!(descriptor.check(), Err(CompletionStatus::BadOpcode));
        assert!(ParityDescriptor::read_from_bytes(&bytes[..63]).is_err());
    }

    #[test]
    fn status_codes_round_trip() {
        for value in 0..=6u16 {
            assert_eq!(
                CompletionStatus::from_u16(value).map(|s| s as u16),
                Some(value)
            );
        }
        assert_eq!(CompletionStatus::from_u16(7), None);
    }
}
