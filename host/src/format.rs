//! The member superblock: the first 4 KiB of every member.
//!
//! Layout (all integers little-endian; `docs/FORMAT.md` has the byte table):
//! magic, format version, array uuid, level, member count, this member's index, chunk
//! size, data offset and size, generation, creation time, this member's uuid, the state of
//! every member as this member last knew it, and a CRC-32C over the whole 4 KiB with the
//! checksum field as zero. Reserved bytes are zero when written and covered by the
//! checksum.

use amf_raid::Level;
use core::mem::{offset_of, size_of};
use shared_regs::limits::{
    BLOCK_BYTES, CHUNK_BYTES_MAX, CHUNK_BYTES_MIN, MEMBERS_MAX, SUPERBLOCK_BYTES,
};
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

/// First eight bytes of every member.
pub const SUPERBLOCK_MAGIC: [u8; 8] = *b"AMFLINK\0";
/// Format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;

shared_regs::wire_enum! {
    /// State of one member, as recorded in every superblock.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
    #[serde(rename_all = "lowercase")]
    pub enum MemberState: u8, from_u8 {
        /// In service, in sync.
        Active = 1,
        /// Out of service: its contents are not trusted.
        Failed = 2,
        /// Being rebuilt onto; not yet trusted.
        Rebuilding = 3,
    }
}

impl MemberState {
    /// Lower-case name, as `amf status` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Failed => "failed",
            Self::Rebuilding => "rebuilding",
        }
    }
}

/// The superblock as it lies on the member: exactly [`SUPERBLOCK_BYTES`].
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawSuperblock {
    /// [`SUPERBLOCK_MAGIC`].
    pub magic: [u8; 8],
    /// [`FORMAT_VERSION`].
    pub format_version: U32,
    /// Bytes of the superblock, [`SUPERBLOCK_BYTES`].
    pub superblock_bytes: U32,
    /// Identity of the array; equal on every member.
    pub array_uuid: [u8; 16],
    /// 5 or 6.
    pub level: u8,
    /// Members in the array.
    pub member_count: u8,
    /// This member's index, `0..member_count`: its position in the layout.
    pub member_index: u8,
    /// Zero.
    pub reserved0: u8,
    /// Chunk size in bytes, a power of two.
    pub chunk_bytes: U32,
    /// Byte offset of the data area on every member.
    pub data_offset: U64,
    /// Bytes of the data area on every member, a whole number of chunks.
    pub data_bytes: U64,
    /// Bumped on every change of membership or member state.
    pub generation: U64,
    /// Creation time, seconds since the Unix epoch (informational).
    pub created_unix_seconds: U64,
    /// Identity of this member device (changes when a member is replaced).
    pub member_uuid: [u8; 16],
    /// State of members `0..member_count` (a [`MemberState`] each); zero beyond.
    pub member_states: [u8; 32],
    /// While a member is [`MemberState::Rebuilding`]: the first stripe not yet rebuilt onto
    /// it (stripes below are in sync and take writes); zero otherwise.
    pub rebuild_next_stripe: U64,
    /// Zero.
    pub reserved1: [u8; 3964],
    /// CRC-32C of all 4096 bytes with this field as zero.
    pub checksum: U32,
}

const _: () = {
    assert!(size_of::<RawSuperblock>() == SUPERBLOCK_BYTES as usize);
    assert!(offset_of!(RawSuperblock, array_uuid) == 16);
    assert!(offset_of!(RawSuperblock, level) == 32);
    assert!(offset_of!(RawSuperblock, chunk_bytes) == 36);
    assert!(offset_of!(RawSuperblock, data_offset) == 40);
    assert!(offset_of!(RawSuperblock, data_bytes) == 48);
    assert!(offset_of!(RawSuperblock, generation) == 56);
    assert!(offset_of!(RawSuperblock, created_unix_seconds) == 64);
    assert!(offset_of!(RawSuperblock, member_uuid) == 72);
    assert!(offset_of!(RawSuperblock, member_states) == 88);
    assert!(offset_of!(RawSuperblock, rebuild_next_stripe) == 120);
    assert!(offset_of!(RawSuperblock, checksum) == 4092);
    assert!(MEMBERS_MAX as usize <= 32);
};

/// What a superblock says, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Superblock {
    /// Array identity.
    pub array_uuid: [u8; 16],
    /// RAID level.
    pub level: Level,
    /// Members in the array.
    pub member_count: u32,
    /// This member's index.
    pub member_index: u32,
    /// Chunk size.
    pub chunk_bytes: u32,
    /// Start of the data area.
    pub data_offset: u64,
    /// Size of the data area.
    pub data_bytes: u64,
    /// Generation.
    pub generation: u64,
    /// Creation time.
    pub created_unix_seconds: u64,
    /// This member's identity.
    pub member_uuid: [u8; 16],
    /// State of every member, `member_count` entries.
    pub member_states: Vec<MemberState>,
    /// Rebuild checkpoint: stripes below it are in sync on the rebuilding member.
    pub rebuild_next_stripe: u64,
}

/// Why 4 KiB of a member are not a superblock of ours. Carries the field at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SuperblockError {
    /// Fewer than 4 KiB.
    #[error("superblock truncated: {have} bytes, need {SUPERBLOCK_BYTES}")]
    Truncated { have: usize },
    /// Not an amflink member (another format, or never written).
    #[error("no amflink superblock (magic {found:02x?})")]
    Foreign { found: [u8; 8] },
    /// A format we do not read.
    #[error("field format_version: {found} is not supported (this build reads {FORMAT_VERSION})")]
    UnsupportedVersion { found: u32 },
    /// Corrupt.
    #[error("field checksum: stored {stored:#010x}, computed {computed:#010x}: superblock corrupt")]
    Checksum { stored: u32, computed: u32 },
    /// A field out of its range.
    #[error("field {field}: {value} {reason}")]
    BadField {
        field: &'static str,
        value: u64,
        reason: &'static str,
    },
}

fn bad(field: &'static str, value: u64, reason: &'static str) -> SuperblockError {
    SuperblockError::BadField {
        field,
        value,
        reason,
    }
}

impl Superblock {
    /// Serializes into the on-disk 4 KiB, checksum included.
    pub fn encode(&self) -> Vec<u8> {
        assert!(self.member_states.len() == self.member_count as usize);
        assert!(self.member_index < self.member_count);
        let mut raw = RawSuperblock::new_zeroed();
        raw.magic = SUPERBLOCK_MAGIC;
        raw.format_version = U32::new(FORMAT_VERSION);
        raw.superblock_bytes = U32::new(SUPERBLOCK_BYTES);
        raw.array_uuid = self.array_uuid;
        raw.level = level_byte(self.level);
        raw.member_count = self.member_count as u8;
        raw.member_index = self.member_index as u8;
        raw.chunk_bytes = U32::new(self.chunk_bytes);
        raw.data_offset = U64::new(self.data_offset);
        raw.data_bytes = U64::new(self.data_bytes);
        raw.generation = U64::new(self.generation);
        raw.created_unix_seconds = U64::new(self.created_unix_seconds);
        raw.member_uuid = self.member_uuid;
        for (slot, state) in raw.member_states.iter_mut().zip(&self.member_states) {
            *slot = *state as u8;
        }
        raw.rebuild_next_stripe = U64::new(self.rebuild_next_stripe);
        raw.checksum = U32::new(checksum(&raw));
        let bytes = raw.as_bytes().to_vec();
        debug_assert_eq!(Superblock::decode(&bytes).as_ref(), Ok(self));
        bytes
    }

    /// Parses and checks the first 4 KiB of a member.
    pub fn decode(bytes: &[u8]) -> Result<Superblock, SuperblockError> {
        let raw = bytes
            .get(..SUPERBLOCK_BYTES as usize)
            .and_then(|head| RawSuperblock::ref_from_bytes(head).ok())
            .ok_or(SuperblockError::Truncated { have: bytes.len() })?;
        if raw.magic != SUPERBLOCK_MAGIC {
            return Err(SuperblockError::Foreign { found: raw.magic });
        }
        // Version and size come before the checksum: a later format may move the checksum,
        // and must be reported as a version we do not read, not as corruption.
        if raw.format_version.get() != FORMAT_VERSION {
            return Err(SuperblockError::UnsupportedVersion {
                found: raw.format_version.get(),
            });
        }
        if raw.superblock_bytes.get() != SUPERBLOCK_BYTES {
            let value = raw.superblock_bytes.get().into();
            return Err(bad("superblock_bytes", value, "is not 4096"));
        }
        let computed = checksum(raw);
        if computed != raw.checksum.get() {
            return Err(SuperblockError::Checksum {
                stored: raw.checksum.get(),
                computed,
            });
        }
        check_reserved(raw)?;
        check_fields(raw)
    }
}

fn check_reserved(raw: &RawSuperblock) -> Result<(), SuperblockError> {
    if raw.reserved0 != 0 {
        return Err(bad("reserved0", raw.reserved0.into(), "is not zero"));
    }
    match raw.reserved1.iter().position(|&byte| byte != 0) {
        Some(index) => Err(bad("reserved1", index as u64, "(byte index) is not zero")),
        None => Ok(()),
    }
}

fn check_fields(raw: &RawSuperblock) -> Result<Superblock, SuperblockError> {
    let level = match raw.level {
        5 => Level::Raid5,
        6 => Level::Raid6,
        other => return Err(bad("level", other.into(), "is not 5 or 6")),
    };
    let member_count = u32::from(raw.member_count);
    if member_count < level.members_min() || member_count > MEMBERS_MAX {
        return Err(bad(
            "member_count",
            member_count.into(),
            "is out of range for the level",
        ));
    }
    let member_index = u32::from(raw.member_index);
    if member_index >= member_count {
        return Err(bad(
            "member_index",
            member_index.into(),
            "is not below member_count",
        ));
    }
    let chunk_bytes = raw.chunk_bytes.get();
    if !chunk_bytes.is_power_of_two() || !(CHUNK_BYTES_MIN..=CHUNK_BYTES_MAX).contains(&chunk_bytes)
    {
        return Err(bad(
            "chunk_bytes",
            chunk_bytes.into(),
            "is not a power of two in 4 KiB..=1 MiB",
        ));
    }
    let data_offset = raw.data_offset.get();
    if data_offset < u64::from(SUPERBLOCK_BYTES)
        || !data_offset.is_multiple_of(u64::from(BLOCK_BYTES))
    {
        return Err(bad(
            "data_offset",
            data_offset,
            "is inside the superblock or not 4 KiB aligned",
        ));
    }
    let data_bytes = raw.data_bytes.get();
    if data_bytes == 0 || !data_bytes.is_multiple_of(u64::from(chunk_bytes)) {
        return Err(bad(
            "data_bytes",
            data_bytes,
            "is zero or not a whole number of chunks",
        ));
    }
    // Member offsets are i64 for the kernel (pread/pwrite): the data area must end there.
    if data_offset
        .checked_add(data_bytes)
        .is_none_or(|end| end > i64::MAX as u64)
    {
        return Err(bad(
            "data_bytes",
            data_bytes,
            "ends beyond the largest member offset",
        ));
    }
    let member_states = decode_states(raw, member_count)?;
    let rebuild_next_stripe = raw.rebuild_next_stripe.get();
    let rebuilding = member_states.contains(&MemberState::Rebuilding);
    if rebuild_next_stripe > data_bytes / u64::from(chunk_bytes)
        || (!rebuilding && rebuild_next_stripe != 0)
    {
        return Err(bad(
            "rebuild_next_stripe",
            rebuild_next_stripe,
            "is past the last stripe, or set with no member rebuilding",
        ));
    }
    Ok(Superblock {
        array_uuid: raw.array_uuid,
        level,
        member_count,
        member_index,
        chunk_bytes,
        data_offset,
        data_bytes,
        generation: raw.generation.get(),
        created_unix_seconds: raw.created_unix_seconds.get(),
        member_uuid: raw.member_uuid,
        member_states,
        rebuild_next_stripe,
    })
}

fn decode_states(
    raw: &RawSuperblock,
    member_count: u32,
) -> Result<Vec<MemberState>, SuperblockError> {
    let (used, unused) = raw.member_states.split_at(member_count as usize);
    if let Some(&byte) = unused.iter().find(|&&byte| byte != 0) {
        return Err(bad(
            "member_states",
            byte.into(),
            "is set beyond member_count",
        ));
    }
    used.iter()
        .map(|&byte| {
            MemberState::from_u8(byte).ok_or(bad(
                "member_states",
                byte.into(),
                "is not a member state",
            ))
        })
        .collect()
}

fn level_byte(level: Level) -> u8 {
    match level {
        Level::Raid5 => 5,
        Level::Raid6 => 6,
    }
}

fn checksum(raw: &RawSuperblock) -> u32 {
    raw.computed_checksum()
}

impl RawSuperblock {
    /// CRC-32C of these 4 KiB with the checksum field as zero: what `checksum` must hold.
    pub fn computed_checksum(&self) -> u32 {
        shared_regs::crc32c_with_zeroed_field(self.as_bytes(), offset_of!(RawSuperblock, checksum))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Superblock {
        Superblock {
            array_uuid: [7; 16],
            level: Level::Raid6,
            member_count: 6,
            member_index: 2,
            chunk_bytes: 65536,
            data_offset: 1 << 20,
            data_bytes: 255 << 20,
            generation: 9,
            created_unix_seconds: 1_700_000_000,
            member_uuid: [3; 16],
            member_states: vec![MemberState::Active; 6],
            rebuild_next_stripe: 0,
        }
    }

    #[test]
    fn round_trip() {
        let superblock = sample();
        assert_eq!(Superblock::decode(&superblock.encode()), Ok(superblock));
    }

    #[test]
    fn every_byte_flip_is_caught() {
        let good = sample().encode();
        for index in 0..good.len() {
            let mut bytes = good.clone();
            bytes[index] ^= 0x40;
            assert!(
                Superblock::decode(&bytes).is_err(),
                "flip at byte {index} went unnoticed"
            );
        }
    }

    #[test]
    fn foreign_and_truncated_are_named() {
        assert!(matches!(
            Superblock::decode(&[0u8; 4096]),
            Err(SuperblockError::Foreign { .. })
        ));
        assert_eq!(
            Superblock::decode(&[0u8; 100]),
            Err(SuperblockError::Truncated { have: 100 })
        );
    }

    #[test]
    fn bad_fields_with_valid_checksum_are_named() {
        let mut raw = RawSuperblock::read_from_bytes(&sample().encode()).unwrap();
        raw.level = 4;
        raw.checksum = U32::new(checksum(&raw));
        let error = Superblock::decode(raw.as_bytes()).unwrap_err();
        assert!(
            matches!(error, SuperblockError::BadField { field: "level", .. }),
            "{error}"
        );
        let mut raw = RawSuperblock::read_from_bytes(&sample().encode()).unwrap();
        raw.member_index = 6;
        raw.checksum = U32::new(checksum(&raw));
        assert!(matches!(
            Superblock::decode(raw.as_bytes()),
            Err(SuperblockError::BadField {
                field: "member_index",
                ..
            })
        ));
        let mut raw = RawSuperblock::read_from_bytes(&sample().encode()).unwrap();
        raw.format_version = U32::new(2);
        raw.checksum = U32::new(checksum(&raw));
        assert_eq!(
            Superblock::decode(raw.as_bytes()),
            Err(SuperblockError::UnsupportedVersion { found: 2 })
        );
    }

    #[test]
    fn reserved_bytes_must_be_zero() {
        let mut raw = RawSuperblock::read_from_bytes(&sample().encode()).unwrap();
        raw.reserved0 = 9;
        raw.checksum = U32::new(checksum(&raw));
        assert!(matches!(
            Superblock::decode(raw.as_bytes()),
            Err(SuperblockError::BadField {
                field: "reserved0",
                ..
            })
        ));
        let mut raw = RawSuperblock::read_from_bytes(&sample().encode()).unwrap();
        raw.reserved1[100] = 1;
        raw.checksum = U32::new(checksum(&raw));
        assert!(matches!(
            Superblock::decode(raw.as_bytes()),
            Err(SuperblockError::BadField {
                field: "reserved1",
                value: 100,
                ..
            })
        ));
    }

    #[test]
    fn newer_version_is_reported_as_such_even_with_another_checksum() {
        let mut raw = RawSuperblock::read_from_bytes(&sample().encode()).unwrap();
        raw.format_version = U32::new(2);
        assert_eq!(
            Superblock::decode(raw.as_bytes()),
            Err(SuperblockError::UnsupportedVersion { found: 2 })
        );
    }

    #[test]
    fn data_area_ending_past_the_largest_offset_is_refused() {
        let mut raw = RawSuperblock::read_from_bytes(&sample().encode()).unwrap();
        raw.data_offset = U64::new(u64::MAX - 4095);
        raw.checksum = U32::new(checksum(&raw));
        assert!(matches!(
            Superblock::decode(raw.as_bytes()),
            Err(SuperblockError::BadField {
                field: "data_bytes",
                ..
            })
        ));
    }

    proptest! {
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4200)) {
            let _ = Superblock::decode(&bytes);
        }
    }
}
