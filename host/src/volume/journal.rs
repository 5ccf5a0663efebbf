//! The intent journal: fixed slots in the card's SRAM (or, with `--card host`, in an
//! intent file beside the members), one per stripe write in flight. Layout byte by byte:
//! `docs/FORMAT.md`, section 9.
//!
//! A slot holds a 64-byte slot header and, after it, one or more `shared_regs::intent`
//! records of the same operation and stripe: first the *images* of the stripe's lost data
//! chunks (their contents before the write, so that a replay does not have to trust parity
//! that the crash may have torn), then the write's new data, each record at most
//! [`INTENT_PAYLOAD_BYTES_MAX`]. The records go in first, the slot header last: the header
//! is the commit. Freeing a slot zeroes its header.

use amf_raid::Geometry;
use shared_regs::checksum::crc32c_with_zeroed_field;
use shared_regs::intent::{INTENT_HEADER_BYTES, Intent, IntentError, IntentPhase};
use shared_regs::limits::{BLOCK_BYTES, INTENT_PAYLOAD_BYTES_MAX};
use std::borrow::Cow;

/// Bytes before the first slot: the region header, padded.
pub const REGION_BYTES: u64 = 4096;
/// Bytes of the region header and of a slot header.
pub const HEADER_BYTES: usize = 64;
/// Most slots a journal has: the most stripe writes in flight at once.
pub const SLOTS_MAX: u32 = 64;
/// Slots of an intent file (`--card host`).
pub const FILE_SLOTS: u32 = 16;
/// Region header magic: ASCII "AMFJ".
pub const REGION_MAGIC: u32 = u32::from_le_bytes(*b"AMFJ");
/// Slot header magic: ASCII "AMFS".
pub const SLOT_MAGIC: u32 = u32::from_le_bytes(*b"AMFS");
/// Version of region and slot headers.
pub const JOURNAL_VERSION: u16 = 1;
/// Offset of the checksum in both headers.
const CHECKSUM_OFFSET: usize = 60;
/// The largest record payload, in whole blocks.
const RECORD_PAYLOAD_BYTES_MAX: u64 = (INTENT_PAYLOAD_BYTES_MAX / BLOCK_BYTES * BLOCK_BYTES) as u64;

const _: () = assert!(RECORD_PAYLOAD_BYTES_MAX >= BLOCK_BYTES as u64);
const _: () = assert!(INTENT_HEADER_BYTES == HEADER_BYTES);
const _: () = assert!(HEADER_BYTES as u64 <= REGION_BYTES);

/// Where the slots are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Bytes per slot, a multiple of 4096.
    pub slot_bytes: u32,
    /// Slots.
    pub slot_count: u32,
}

impl Layout {
    /// Bytes one slot needs for `geometry`: its header, a whole stripe of new data and one
    /// image per parity chunk (the most lost data chunks a write can face), each cut into
    /// records with their own headers; rounded up to 4 KiB.
    pub fn slot_bytes_for(geometry: &Geometry) -> u64 {
        let chunk = u64::from(geometry.chunk_bytes());
        let data = u64::from(geometry.data_chunks()) * chunk;
        let images = u64::from(geometry.parity_count()) * chunk;
        let records = data.div_ceil(RECORD_PAYLOAD_BYTES_MAX)
            + u64::from(geometry.parity_count()) * chunk.div_ceil(RECORD_PAYLOAD_BYTES_MAX);
        let bytes = HEADER_BYTES as u64 + data + images + records * HEADER_BYTES as u64;
        bytes.div_ceil(4096) * 4096
    }

    /// The layout for `geometry` in a store of `store_bytes`, at most `slots_max` slots;
    /// `None` when not even one slot fits.
    pub fn for_store(geometry: &Geometry, store_bytes: u64, slots_max: u32) -> Option<Layout> {
        let slot_bytes = Self::slot_bytes_for(geometry);
        let fit = store_bytes.saturating_sub(REGION_BYTES) / slot_bytes;
        let slot_count = u32::try_from(fit.min(u64::from(slots_max))).ok()?;
        let slot_bytes = u32::try_from(slot_bytes).ok()?;
        (slot_count > 0).then_some(Layout {
            slot_bytes,
            slot_count,
        })
    }

    /// Byte offset of slot `slot` in the store.
    pub fn slot_offset(&self, slot: u32) -> u64 {
        assert!(slot < self.slot_count);
        REGION_BYTES + u64::from(slot) * u64::from(self.slot_bytes)
    }

    /// Bytes the store must have.
    pub fn store_bytes(&self) -> u64 {
        REGION_BYTES + u64::from(self.slot_count) * u64::from(self.slot_bytes)
    }
}

/// The region header: which array and layout the slots belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// Slot layout.
    pub layout: Layout,
    /// The array the intents belong to.
    pub array_uuid: [u8; 16],
}

/// Why a header is not valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Magic is zero: never written, or freed.
    #[error("free")]
    Free,
    /// Magic is neither zero nor ours.
    #[error("bad magic {0:#010x}")]
    BadMagic(u32),
    /// Unknown version.
    #[error("unsupported version {0}")]
    BadVersion(u16),
    /// Checksum mismatch.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    /// A field out of range.
    #[error("field {0} out of range")]
    BadField(&'static str),
}

fn put_u16(bytes: &mut [u8], offset: usize, value: u16) {
    bytes[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
}
fn put_u32(bytes: &mut [u8], offset: usize, value: u32) {
    bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}
fn put_u64(bytes: &mut [u8], offset: usize, value: u64) {
    bytes[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
}
fn get_u16(bytes: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes(bytes[offset..offset + 2].try_into().expect("2 bytes"))
}
fn get_u32(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"))
}
fn get_u64(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().expect("8 bytes"))
}

fn seal(bytes: &mut [u8; HEADER_BYTES]) {
    let checksum = crc32c_with_zeroed_field(bytes, CHECKSUM_OFFSET);
    put_u32(bytes, CHECKSUM_OFFSET, checksum);
}

/// Checks magic, version and checksum common to both headers.
fn check_header(bytes: &[u8; HEADER_BYTES], magic: u32) -> Result<(), HeaderError> {
    match get_u32(bytes, 0) {
        0 => return Err(HeaderError::Free),
        found if found != magic => return Err(HeaderError::BadMagic(found)),
        _ => {}
    }
    if get_u16(bytes, 4) != JOURNAL_VERSION {
        return Err(HeaderError::BadVersion(get_u16(bytes, 4)));
    }
    let stored = get_u32(bytes, CHECKSUM_OFFSET);
    let computed = crc32c_with_zeroed_field(bytes, CHECKSUM_OFFSET);
    if stored != computed {
        return Err(HeaderError::Checksum { stored, computed });
    }
    Ok(())
}

impl Region {
    /// The 64-byte region header.
    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut bytes = [0u8; HEADER_BYTES];
        put_u32(&mut bytes, 0, REGION_MAGIC);
        put_u16(&mut bytes, 4, JOURNAL_VERSION);
        put_u32(&mut bytes, 8, self.layout.slot_bytes);
        put_u32(&mut bytes, 12, self.layout.slot_count);
        bytes[16..32].copy_from_slice(&self.array_uuid);
        seal(&mut bytes);
        bytes
    }

    /// Parses and checks a region header.
    pub fn decode(bytes: &[u8; HEADER_BYTES]) -> Result<Region, HeaderError> {
        check_header(bytes, REGION_MAGIC)?;
        if bytes[6..8] != [0; 2] || bytes[32..CHECKSUM_OFFSET].iter().any(|&b| b != 0) {
            return Err(HeaderError::BadField("reserved"));
        }
        let slot_bytes = get_u32(bytes, 8);
        let slot_count = get_u32(bytes, 12);
        if slot_bytes == 0 || !slot_bytes.is_multiple_of(4096) {
            return Err(HeaderError::BadField("slot_bytes"));
        }
        if slot_count == 0 || slot_count > SLOTS_MAX {
            return Err(HeaderError::BadField("slot_count"));
        }
        Ok(Region {
            layout: Layout {
                slot_bytes,
                slot_count,
            },
            array_uuid: bytes[16..32].try_into().expect("16 bytes"),
        })
    }
}

/// A slot header: the commit record of one stripe write's intent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotHeader {
    /// Records after the header.
    pub record_count: u16,
    /// Operation id (all records carry it).
    pub op_id: u64,
    /// Stripe written (all records carry it).
    pub stripe: u64,
    /// Array generation when recorded.
    pub array_generation: u64,
    /// Bytes of the records after the header.
    pub records_bytes: u32,
}

impl SlotHeader {
    /// The 64-byte slot header.
    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut bytes = [0u8; HEADER_BYTES];
        put_u32(&mut bytes, 0, SLOT_MAGIC);
        put_u16(&mut bytes, 4, JOURNAL_VERSION);
        put_u16(&mut bytes, 6, self.record_count);
        put_u64(&mut bytes, 8, self.op_id);
        put_u64(&mut bytes, 16, self.stripe);
        put_u64(&mut bytes, 24, self.array_generation);
        put_u32(&mut bytes, 32, self.records_bytes);
        seal(&mut bytes);
        bytes
    }

    /// Parses and checks a slot header.
    pub fn decode(bytes: &[u8; HEADER_BYTES]) -> Result<SlotHeader, HeaderError> {
        check_header(bytes, SLOT_MAGIC)?;
        if bytes[36..CHECKSUM_OFFSET].iter().any(|&b| b != 0) {
            return Err(HeaderError::BadField("reserved"));
        }
        let header = SlotHeader {
            record_count: get_u16(bytes, 6),
            op_id: get_u64(bytes, 8),
            stripe: get_u64(bytes, 16),
            array_generation: get_u64(bytes, 24),
            records_bytes: get_u32(bytes, 32),
        };
        if header.record_count == 0 {
            return Err(HeaderError::BadField("record_count"));
        }
        Ok(header)
    }
}

/// Blocks of a stripe's data with their contents: what one slot says to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockRun<'a> {
    /// First 4 KiB block, counted within the stripe's data.
    pub first_block: u32,
    /// Contents, whole blocks: borrowed from the request or the slot when it can be.
    pub bytes: Cow<'a, [u8]>,
}

/// Why a live slot is not replayed.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    /// The slot header is bad.
    #[error("slot header: {0}")]
    Header(#[from] HeaderError),
    /// The records do not fit the slot.
    #[error("records of {records_bytes} bytes do not fit a {slot_bytes}-byte slot")]
    TooLong { records_bytes: u32, slot_bytes: u32 },
    /// A record does not decode.
    #[error("record {index}: {source}")]
    Record {
        index: u16,
        #[source]
        source: IntentError,
    },
    /// A record belongs to another operation or stripe than its slot header.
    #[error(
        "record {index} is of op {op_id} stripe {stripe}, the slot of op {slot_op_id} stripe {slot_stripe}"
    )]
    Foreign {
        index: u16,
        op_id: u64,
        stripe: u64,
        slot_op_id: u64,
        slot_stripe: u64,
    },
    /// The records end before or after the slot header says.
    #[error("records end at byte {end}, the slot header says {records_bytes}")]
    Length { end: usize, records_bytes: u32 },
}

/// Encodes a slot: its records (`runs`, in replay order, each cut into records of at most
/// [`RECORD_PAYLOAD_BYTES_MAX`]) and its header. Returns (header, records).
pub fn encode_slot(
    op_id: u64,
    stripe: u64,
    array_generation: u64,
    runs: &[BlockRun<'_>],
) -> ([u8; HEADER_BYTES], Vec<u8>) {
    let block = BLOCK_BYTES as usize;
    let mut records = Vec::new();
    let mut record_count: u16 = 0;
    for run in runs {
        assert!(!run.bytes.is_empty() && run.bytes.len().is_multiple_of(block));
        for (index, piece) in run
            .bytes
            .chunks(RECORD_PAYLOAD_BYTES_MAX as usize)
            .enumerate()
        {
            let offset_blocks = index * (RECORD_PAYLOAD_BYTES_MAX as usize / block);
            let intent = Intent {
                owner_port: 0,
                op_id,
                stripe,
                array_generation,
                first_block: run.first_block + offset_blocks as u32,
                block_count: (piece.len() / block) as u32,
                phase: IntentPhase::Prepared,
            };
            let start = records.len();
            intent
                .encode_into(piece, &mut records)
                .expect("whole blocks within the maximum");
            // Pair-check: what goes into the slot decodes to what was meant.
            debug_assert_eq!(
                Intent::decode(&records[start..]).map(|(i, _)| i),
                Ok(intent)
            );
            record_count += 1;
        }
    }
    let header = SlotHeader {
        record_count,
        op_id,
        stripe,
        array_generation,
        records_bytes: u32::try_from(records.len()).expect("a slot is below 4 GiB"),
    };
    (header.encode(), records)
}

/// Decodes the records of a live slot whose header is `header`; `records` is at least
/// `header.records_bytes` long. Every record must decode and belong to the header's
/// operation and stripe, or nothing is replayed.
pub fn decode_records<'a>(
    header: &SlotHeader,
    records: &'a [u8],
) -> Result<Vec<BlockRun<'a>>, SlotError> {
    let mut runs = Vec::with_capacity(header.record_count as usize);
    let mut position = 0usize;
    for index in 0..header.record_count {
        let (intent, payload) = Intent::decode(&records[position..])
            .map_err(|source| SlotError::Record { index, source })?;
        if intent.op_id != header.op_id || intent.stripe != header.stripe {
            return Err(SlotError::Foreign {
                index,
                op_id: intent.op_id,
                stripe: intent.stripe,
                slot_op_id: header.op_id,
                slot_stripe: header.stripe,
            });
        }
        position += INTENT_HEADER_BYTES + payload.len();
        runs.push(BlockRun {
            first_block: intent.first_block,
            bytes: Cow::Borrowed(payload),
        });
    }
    if position != header.records_bytes as usize {
        return Err(SlotError::Length {
            end: position,
            records_bytes: header.records_bytes,
        });
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use amf_raid::Level;

    fn geometry() -> Geometry {
        Geometry::new(Level::Raid6, 6, 64 * 1024, 64 * 1024 * 16).unwrap()
    }

    #[test]
    fn slots_fit_the_worst_write() {
        let geometry = geometry();
        let bytes = Layout::slot_bytes_for(&geometry);
        assert!(bytes >= 6 * 64 * 1024 + 64);
        assert_eq!(bytes % 4096, 0);
        let layout = Layout::for_store(&geometry, 64 << 20, SLOTS_MAX).unwrap();
        assert_eq!(layout.slot_count, SLOTS_MAX);
        assert!(layout.store_bytes() <= 64 << 20);
        assert!(Layout::for_store(&geometry, 4096 + bytes - 1, SLOTS_MAX).is_none());
        // A whole stripe of new data and two chunk images encode within one slot.
        let runs = [
            BlockRun {
                first_block: 0,
                bytes: vec![1; 16 * 4096].into(),
            },
            BlockRun {
                first_block: 16,
                bytes: vec![2; 16 * 4096].into(),
            },
            BlockRun {
                first_block: 0,
                bytes: vec![3; 64 * 4096].into(),
            },
        ];
        let (_, records) = encode_slot(1, 2, 3, &runs);
        assert!(HEADER_BYTES + records.len() <= layout.slot_bytes as usize);
    }

    #[test]
    fn slot_round_trip_and_torn_records_are_refused() {
        let runs = vec![
            BlockRun {
                first_block: 3,
                bytes: (0..70 * 4096).map(|i| i as u8).collect(),
            },
            BlockRun {
                first_block: 0,
                bytes: vec![9; 4096].into(),
            },
        ];
        let (header_bytes, mut records) = encode_slot(42, 7, 1, &runs);
        let header = SlotHeader::decode(&header_bytes).unwrap();
        assert_eq!(
            (header.op_id, header.stripe, header.record_count),
            (42, 7, 3)
        );
        let decoded = decode_records(&header, &records).unwrap();
        let joined: Vec<u8> = decoded[..2]
            .iter()
            .flat_map(|r| r.bytes.iter().copied())
            .collect();
        assert_eq!(joined, *runs[0].bytes);
        let blocks_max = (RECORD_PAYLOAD_BYTES_MAX / u64::from(BLOCK_BYTES)) as u32;
        assert_eq!(decoded[1].first_block, 3 + blocks_max);
        assert_eq!(decoded[2], runs[1]);
        let last = records.len() - 1;
        records[last] ^= 1;
        assert!(matches!(
            decode_records(&header, &records),
            Err(SlotError::Record { index: 2, .. })
        ));
        let mut torn = header_bytes;
        torn[20] ^= 1;
        assert!(matches!(
            SlotHeader::decode(&torn),
            Err(HeaderError::Checksum { .. })
        ));
        assert_eq!(
            SlotHeader::decode(&[0; HEADER_BYTES]),
            Err(HeaderError::Free)
        );
    }

    #[test]
    fn region_round_trip() {
        let region = Region {
            layout: Layout {
                slot_bytes: 4096 * 3,
                slot_count: 5,
            },
            array_uuid: [7; 16],
        };
        assert_eq!(Region::decode(&region.encode()), Ok(region));
        let mut bad = region.encode();
        bad[9] ^= 1;
        assert!(Region::decode(&bad).is_err());
    }
}
