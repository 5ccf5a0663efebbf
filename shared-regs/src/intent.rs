//! The intent record: the replication and state data of one in-flight stripe write,
//! written into every live peer's card SRAM before the write's member I/O begins (and, in
//! a single AMF, into its own card SRAM), advanced as the write progresses, and freed when
//! it completes.
//!
//! A record is a 64-byte header followed by `payload_bytes` of new data (the blocks
//! `first_block .. first_block + block_count` of the stripe's data, in order), so that a
//! survivor can finish the write from the record and the members alone. `checksum` is
//! CRC-32C of header (checksum field zero) and payload: a torn or corrupted record is
//! detected and never replayed.

use crate::checksum::crc32c_with_zeroed_field;
use crate::limits::{BLOCK_BYTES, FABRIC_PORTS_MAX, INTENT_PAYLOAD_BYTES_MAX};
use core::mem::{offset_of, size_of};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// First four bytes of a live record: ASCII "AMFI".
pub const INTENT_MAGIC: u32 = u32::from_le_bytes(*b"AMFI");
/// Record format version.
pub const INTENT_VERSION: u16 = 1;
/// Bytes of the header.
pub const INTENT_HEADER_BYTES: usize = size_of::<IntentHeader>();

crate::wire_enum! {
    /// How far the write has gone. A survivor's action does not depend on the phase (it
    /// always rewrites the whole stripe from the members plus the record's data, which is
    /// idempotent); the phase is kept for observability and to skip finished work.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub enum IntentPhase: u8, from_u8 {
        /// The slot holds no operation.
        Free = 0,
        /// The record is replicated; no member has been written yet.
        Prepared = 1,
        /// Member writes (data and parity) have been issued; some may have landed.
        Writing = 2,
        /// Data and parity are durable on the members; the record may be freed.
        Durable = 3,
    }
}

/// Header of an intent record: 64 bytes.
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
pub struct IntentHeader {
    /// [`INTENT_MAGIC`].
    pub magic: U32,
    /// [`INTENT_VERSION`].
    pub version: U16,
    /// An [`IntentPhase`].
    pub phase: u8,
    /// Zero.
    pub flags: u8,
    /// Fabric port (AMF id) that owns the operation.
    pub owner_port: u8,
    /// Zero.
    pub reserved0: [u8; 3],
    /// CRC-32C of header (this field zero) and payload.
    pub checksum: U32,
    /// Operation id, unique per owner.
    pub op_id: U64,
    /// Stripe number the write updates.
    pub stripe: U64,
    /// Array generation when the record was made; a record from another generation is
    /// stale.
    pub array_generation: U64,
    /// First 4 KiB block of the write, counted within the stripe's data.
    pub first_block: U32,
    /// Number of 4 KiB blocks written.
    pub block_count: U32,
    /// Bytes of new data after the header: `block_count * 4096`.
    pub payload_bytes: U32,
    /// Zero.
    pub reserved1: U32,
    /// Zero.
    pub reserved2: U64,
}

/// Why bytes are not a valid intent record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IntentError {
    /// Fewer bytes than the header, or than the header says.
    #[error("intent record truncated: {have} bytes, need {need}")]
    Truncated { have: usize, need: usize },
    /// Wrong magic: not a record (or a freed slot).
    #[error("bad intent magic {0:#010x}")]
    BadMagic(u32),
    /// Unknown version.
    #[error("unsupported intent version {0}")]
    BadVersion(u16),
    /// Unknown phase.
    #[error("unknown intent phase {0}")]
    BadPhase(u8),
    /// Block count zero, or payload not `block_count` blocks, or above the maximum.
    #[error("intent payload of {payload_bytes} bytes does not match {block_count} blocks")]
    BadLength {
        block_count: u32,
        payload_bytes: u32,
    },
    /// A reserved field was set.
    #[error("reserved field set")]
    Reserved,
    /// An owner port beyond the fabric.
    #[error("owner port {0} out of range")]
    BadOwner(u8),
    /// `first_block + block_count` does not fit in 32 bits.
    #[error("block range {first_block}+{block_count} overflows")]
    BlockRangeOverflow { first_block: u32, block_count: u32 },
    /// Checksum mismatch.
    #[error("intent checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
}

/// What an intent record says, without its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Intent {
    /// Owner AMF's fabric port.
    pub owner_port: u8,
    /// Operation id.
    pub op_id: u64,
    /// Stripe.
    pub stripe: u64,
    /// Array generation.
    pub array_generation: u64,
    /// First block within the stripe's data.
    pub first_block: u32,
    /// Blocks.
    pub block_count: u32,
    /// Phase.
    pub phase: IntentPhase,
}

impl Intent {
    /// Serializes header and `payload` into one record; the payload must be exactly
    /// `block_count` blocks.
    pub fn encode(&self, payload: &[u8]) -> Result<Vec<u8>, IntentError> {
        let mut record = Vec::with_capacity(INTENT_HEADER_BYTES + payload.len());
        self.encode_into(payload, &mut record)?;
        Ok(record)
    }

    /// Appends the record (header, then `payload`) to `out`: one copy of the payload,
    /// for callers that gather several records into one buffer.
    pub fn encode_into(&self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), IntentError> {
        let payload_bytes = check_length(self.block_count, payload.len())?;
        let mut header = IntentHeader {
            magic: U32::new(INTENT_MAGIC),
            version: U16::new(INTENT_VERSION),
            phase: self.phase as u8,
            owner_port: self.owner_port,
            op_id: U64::new(self.op_id),
            stripe: U64::new(self.stripe),
            array_generation: U64::new(self.array_generation),
            first_block: U32::new(self.first_block),
            block_count: U32::new(self.block_count),
            payload_bytes: U32::new(payload_bytes),
            ..Default::default()
        };
        header.checksum = U32::new(record_checksum(&header, payload));
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(payload);
        Ok(())
    }

    /// Parses and checks a record at the start of `bytes`; returns it and its payload.
    pub fn decode(bytes: &[u8]) -> Result<(Intent, &[u8]), IntentError> {
        let (header, rest) =
            IntentHeader::ref_from_prefix(bytes).map_err(|_| IntentError::Truncated {
                have: bytes.len(),
                need: INTENT_HEADER_BYTES,
            })?;
        if header.magic.get() != INTENT_MAGIC {
            return Err(IntentError::BadMagic(header.magic.get()));
        }
        if header.version.get() != INTENT_VERSION {
            return Err(IntentError::BadVersion(header.version.get()));
        }
        let phase =
            IntentPhase::from_u8(header.phase).ok_or(IntentError::BadPhase(header.phase))?;
        if header.flags != 0
            || header.reserved0 != [0; 3]
            || header.reserved1.get() != 0
            || header.reserved2.get() != 0
        {
            return Err(IntentError::Reserved);
        }
        if u32::from(header.owner_port) >= FABRIC_PORTS_MAX {
            return Err(IntentError::BadOwner(header.owner_port));
        }
        let (first_block, block_count) = (header.first_block.get(), header.block_count.get());
        if first_block.checked_add(block_count).is_none() {
            return Err(IntentError::BlockRangeOverflow {
                first_block,
                block_count,
            });
        }
        let payload_bytes = header.payload_bytes.get();
        if check_length(block_count, payload_bytes as usize)? != payload_bytes {
            return Err(IntentError::BadLength {
                block_count,
                payload_bytes,
            });
        }
        let payload = rest
            .get(..payload_bytes as usize)
            .ok_or(IntentError::Truncated {
                have: bytes.len(),
                need: INTENT_HEADER_BYTES + payload_bytes as usize,
            })?;
        let computed = record_checksum(header, payload);
        if computed != header.checksum.get() {
            return Err(IntentError::Checksum {
                stored: header.checksum.get(),
                computed,
            });
        }
        let intent = Intent {
            owner_port: header.owner_port,
            op_id: header.op_id.get(),
            stripe: header.stripe.get(),
            array_generation: header.array_generation.get(),
            first_block: header.first_block.get(),
            block_count,
            phase,
        };
        Ok((intent, payload))
    }
}

fn check_length(block_count: u32, payload_len: usize) -> Result<u32, IntentError> {
    let expected = u64::from(block_count) * u64::from(BLOCK_BYTES);
    let bad = IntentError::BadLength {
        block_count,
        payload_bytes: payload_len.min(u32::MAX as usize) as u32,
    };
    if block_count == 0
        || expected > u64::from(INTENT_PAYLOAD_BYTES_MAX)
        || payload_len as u64 != expected
    {
        return Err(bad);
    }
    Ok(expected as u32)
}

fn record_checksum(header: &IntentHeader, payload: &[u8]) -> u32 {
    let head = crc32c_with_zeroed_field(header.as_bytes(), offset_of!(IntentHeader, checksum));
    crc32c::crc32c_append(head, payload)
}

const _: () = {
    assert!(INTENT_HEADER_BYTES == 64);
    assert!(offset_of!(IntentHeader, checksum) == 12);
    assert!(offset_of!(IntentHeader, op_id) == 16);
    assert!(offset_of!(IntentHeader, stripe) == 24);
    assert!(offset_of!(IntentHeader, array_generation) == 32);
    assert!(offset_of!(IntentHeader, first_block) == 40);
    assert!(offset_of!(IntentHeader, payload_bytes) == 48);
};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> (Intent, Vec<u8>) {
        let intent = Intent {
            owner_port: 1,
            op_id: 77,
            stripe: 12345,
            array_generation: 3,
            first_block: 5,
            block_count: 2,
            phase: IntentPhase::Prepared,
        };
        (intent, (0..8192u32).map(|i| i as u8).collect())
    }

    #[test]
    fn round_trip() {
        let (intent, payload) = sample();
        let record = intent.encode(&payload).unwrap();
        let (decoded, decoded_payload) = Intent::decode(&record).unwrap();
        assert_eq!(decoded, intent);
        assert_eq!(decoded_payload, &payload[..]);
    }

    #[test]
    fn wrong_payload_length_is_refused_when_encoding() {
        let (intent, payload) = sample();
        assert!(matches!(
            intent.encode(&payload[..4096]),
            Err(IntentError::BadLength { .. })
        ));
    }

    #[test]
    fn owner_and_block_range_are_checked() {
        let (mut intent, payload) = sample();
        intent.owner_port = 8;
        let record = intent.encode(&payload).unwrap();
        assert_eq!(
            Intent::decode(&record).unwrap_err(),
            IntentError::BadOwner(8)
        );
        let (mut intent, payload) = sample();
        intent.first_block = u32::MAX;
        let record = intent.encode(&payload).unwrap();
        assert!(matches!(
            Intent::decode(&record),
            Err(IntentError::BlockRangeOverflow { .. })
        ));
    }

    #[test]
    fn freed_slot_is_not_a_record() {
        assert_eq!(
            Intent::decode(&[0u8; 128]).unwrap_err(),
            IntentError::BadMagic(0)
        );
    }

    #[test]
    fn torn_record_is_caught() {
        let (intent, payload) = sample();
        let mut record = intent.encode(&payload).unwrap();
        record[INTENT_HEADER_BYTES + 4096..].fill(0);
        assert!(matches!(
            Intent::decode(&record),
            Err(IntentError::Checksum { .. })
        ));
        assert!(matches!(
            Intent::decode(&record[..100]),
            Err(IntentError::Truncated { .. })
        ));
    }

    proptest! {
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Intent::decode(&bytes);
        }

        #[test]
        fn any_bit_flip_in_header_is_caught(bit in 0usize..512) {
            let (intent, payload) = sample();
            let mut record = intent.encode(&payload).unwrap();
            record[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(Intent::decode(&record).is_err());
        }
    }
}
