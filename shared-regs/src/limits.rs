//! Every bound of the card and of the array format, in one place.
//!
//! Names end in their unit. The `const` block at the bottom asserts how the bounds relate,
//! so changing one without the others fails to compile.

/// The host block: unit of caching and of the coherency contract.
pub const BLOCK_BYTES: u32 = 4096;
/// Fewest members a RAID-5 set may have.
pub const RAID5_MEMBERS_MIN: u32 = 3;
/// Fewest members a RAID-6 set may have.
pub const RAID6_MEMBERS_MIN: u32 = 4;
/// Most members any set may have.
pub const MEMBERS_MAX: u32 = 32;
/// Most data chunks in one stripe (RAID-5 with [`MEMBERS_MAX`] members).
pub const DATA_CHUNKS_MAX: u32 = MEMBERS_MAX - 1;
/// Smallest chunk: one host block.
pub const CHUNK_BYTES_MIN: u32 = BLOCK_BYTES;
/// Largest chunk.
pub const CHUNK_BYTES_MAX: u32 = 1 << 20;
/// Default chunk, as mdadm's.
pub const CHUNK_BYTES_DEFAULT: u32 = 64 * 1024;
/// Bytes reserved at the start of each member for its superblock.
pub const SUPERBLOCK_BYTES: u32 = 4096;
/// Default start of data on each member (as recorded in the superblock).
pub const DATA_OFFSET_BYTES_DEFAULT: u64 = 1 << 20;

/// The parity engine streams sources in beats of this many bytes; a descriptor's length
/// must be a multiple of it.
pub const PARITY_BEAT_BYTES: u32 = 64;
/// Most bytes per source in one parity descriptor (one chunk).
pub const PARITY_SOURCE_BYTES_MAX: u32 = CHUNK_BYTES_MAX;
/// Most data sources in one parity descriptor.
pub const PARITY_SOURCES_MAX: u32 = DATA_CHUNKS_MAX;
/// Most entries in any descriptor or completion ring (a power of two).
pub const RING_ENTRIES_MAX: u32 = 4096;
/// Fewest entries in a ring (a power of two).
pub const RING_ENTRIES_MIN: u32 = 2;

/// Most ports on the broadcast fabric (one per AMF).
pub const FABRIC_PORTS_MAX: u32 = 8;
/// Largest payload one fabric message carries: an intent record of 256 KiB of data and
/// its header, so that the default geometry's whole stripe (RAID-6 of 6 members, 64 KiB
/// chunks: 256 KiB of data) is one record, and its full-stripe and degraded (widened)
/// writes stay single operations.
pub const FABRIC_PAYLOAD_BYTES_MAX: u32 = 256 * 1024 + 4096;

/// Card SRAM size the sim card and the reference design provide.
pub const SRAM_BYTES_DEFAULT: u64 = 64 << 20;
/// Largest SRAM the register map can address.
pub const SRAM_BYTES_MAX: u64 = 1 << 32;
/// Bytes of SRAM visible at once through the BAR0 window.
pub const SRAM_WINDOW_BYTES: u32 = 64 * 1024;

/// Largest data payload carried inline in one intent record: the fabric payload less
/// room for the header. A stripe write with more new data than this is recorded as
/// several records.
pub const INTENT_PAYLOAD_BYTES_MAX: u32 = FABRIC_PAYLOAD_BYTES_MAX - 4096;

const _: () = {
    assert!(BLOCK_BYTES.is_power_of_two());
    assert!(CHUNK_BYTES_MIN.is_power_of_two() && CHUNK_BYTES_MAX.is_power_of_two());
    assert!(CHUNK_BYTES_MIN <= CHUNK_BYTES_DEFAULT && CHUNK_BYTES_DEFAULT <= CHUNK_BYTES_MAX);
    assert!(CHUNK_BYTES_MIN.is_multiple_of(PARITY_BEAT_BYTES));
    assert!(RAID5_MEMBERS_MIN < RAID6_MEMBERS_MIN && RAID6_MEMBERS_MIN <= MEMBERS_MAX);
    // One bit per member in the superblock's and the fabric's bitmaps.
    assert!(MEMBERS_MAX <= 32);
    assert!(FABRIC_PORTS_MAX <= 32);
    assert!(SUPERBLOCK_BYTES as u64 <= DATA_OFFSET_BYTES_DEFAULT);
    assert!(DATA_OFFSET_BYTES_DEFAULT.is_multiple_of(CHUNK_BYTES_MAX as u64));
    assert!(RING_ENTRIES_MIN.is_power_of_two() && RING_ENTRIES_MAX.is_power_of_two());
    assert!(SRAM_BYTES_DEFAULT <= SRAM_BYTES_MAX);
    assert!(SRAM_BYTES_DEFAULT.is_multiple_of(SRAM_WINDOW_BYTES as u64));
    assert!(INTENT_PAYLOAD_BYTES_MAX.is_multiple_of(BLOCK_BYTES));
    assert!(INTENT_PAYLOAD_BYTES_MAX < FABRIC_PAYLOAD_BYTES_MAX);
    // The default geometry's stripe (RAID-6 of six members) in one record.
    assert!((6 - 2) * CHUNK_BYTES_DEFAULT <= INTENT_PAYLOAD_BYTES_MAX);
};
