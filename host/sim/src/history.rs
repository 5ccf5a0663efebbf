//! What hosts asked and were told, and the per-sector linearizability check over it.
//!
//! The unit checked is the 512-byte sector, the smallest a host may write (a block write
//! sets a block's 8 sectors, a patch some of them). Every written sector carries its
//! write's tag in every 8-byte word but the second, which holds the sector's volume
//! address (block × 8 + sector), so a torn or misplaced sector is seen at once.
//! A read of a sector may return the initial zeros or any write of that sector, except
//! one that is certainly overwritten: a write `w` that completed before the read began,
//! and began after the returned write completed. A write that never completed (its AMF
//! died) may take effect at any later time.

use std::collections::BTreeMap;
use std::ops::Range;

use shared_regs::limits::BLOCK_BYTES;

/// Bytes of the smallest unit a host writes.
pub const SECTOR_BYTES: usize = 512;
/// Sectors of one 4 KiB block.
pub const BLOCK_SECTORS: u64 = BLOCK_BYTES as u64 / SECTOR_BYTES as u64;
const SECTOR_WORDS: usize = SECTOR_BYTES / 8;

/// The volume address of sector `sector` of block `block`.
pub fn sector_address(block: u64, sector: u64) -> u64 {
    assert!(sector < BLOCK_SECTORS);
    block * BLOCK_SECTORS + sector
}

/// A sector address written for people: "block B sector S".
fn named(address: u64) -> String {
    format!(
        "block {} sector {}",
        address / BLOCK_SECTORS,
        address % BLOCK_SECTORS
    )
}

/// The sector a write with `tag` puts at volume sector `address`.
pub fn sector_bytes(tag: u64, address: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(SECTOR_BYTES);
    for word in 0..SECTOR_WORDS {
        let value = if word == 1 { address } else { tag };
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    bytes
}

/// The block a whole-block write with `tag` puts at volume block `block`.
pub fn block_bytes(tag: u64, block: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(BLOCK_BYTES as usize);
    for sector in 0..BLOCK_SECTORS {
        bytes.extend_from_slice(&sector_bytes(tag, sector_address(block, sector)));
    }
    bytes
}

/// The tag a sector holds, or why it holds nothing a write put there.
pub fn decode_sector(bytes: &[u8], address: u64) -> Result<u64, String> {
    assert_eq!(bytes.len(), SECTOR_BYTES);
    if bytes.iter().all(|&byte| byte == 0) {
        return Ok(0);
    }
    let word = |index: usize| u64::from_le_bytes(bytes[index * 8..][..8].try_into().expect("8"));
    let tag = word(0);
    if word(1) != address {
        return Err(format!(
            "{} holds {}'s data",
            named(address),
            named(word(1))
        ));
    }
    if let Some(index) = (2..SECTOR_WORDS).find(|&index| word(index) != tag) {
        return Err(format!(
            "{} is torn: word 0 says write {tag}, word {index} says {}",
            named(address),
            word(index)
        ));
    }
    Ok(tag)
}

/// The tags of `bytes`, consecutive sectors from volume sector `first_address`.
pub fn decode_sectors(bytes: &[u8], first_address: u64) -> Result<Vec<u64>, String> {
    assert_eq!(bytes.len() % SECTOR_BYTES, 0);
    bytes
        .chunks_exact(SECTOR_BYTES)
        .enumerate()
        .map(|(index, sector)| decode_sector(sector, first_address + index as u64))
        .collect()
}

#[derive(Clone, Copy, Debug)]
struct Write {
    invoked: u64,
    completed: Option<u64>,
}

/// Every write ever invoked, by sector.
#[derive(Debug, Default)]
pub struct History {
    writes: BTreeMap<u64, Write>,
    by_sector: BTreeMap<u64, Vec<u64>>,
}

impl History {
    /// Write `tag` began at step `now`, writing volume sectors `sectors`.
    pub fn write_invoked(&mut self, tag: u64, sectors: Range<u64>, now: u64) {
        assert!(tag != 0);
        assert!(!sectors.is_empty());
        let previous = self.writes.insert(
            tag,
            Write {
                invoked: now,
                completed: None,
            },
        );
        assert!(previous.is_none());
        for address in sectors {
            self.by_sector.entry(address).or_default().push(tag);
        }
    }

    pub fn write_completed(&mut self, tag: u64, now: u64) {
        let write = self.writes.get_mut(&tag).expect("known write");
        assert!(write.completed.is_none());
        write.completed = Some(now);
    }

    /// When write `tag` completed; `None` while it runs (or if it never will).
    pub fn completed(&self, tag: u64) -> Option<u64> {
        self.writes.get(&tag).and_then(|write| write.completed)
    }

    /// Checks that a read of volume sector `address` invoked at `invoked` may return
    /// `tag`.
    pub fn check_read(&self, address: u64, tag: u64, invoked: u64) -> Result<(), String> {
        let tags = self.by_sector.get(&address).map_or(&[][..], Vec::as_slice);
        let returned = if tag == 0 {
            None
        } else {
            if !tags.contains(&tag) {
                return Err(format!(
                    "{} returned write {tag}, which never wrote it",
                    named(address)
                ));
            }
            Some(self.writes[&tag])
        };
        for &other in tags.iter().filter(|&&other| other != tag) {
            let write = self.writes[&other];
            let done_before_read = write.completed.is_some_and(|done| done < invoked);
            let after_returned = match returned {
                None => true,
                Some(returned) => returned.completed.is_some_and(|done| done < write.invoked),
            };
            if done_before_read && after_returned {
                return Err(format!(
                    "{}: read invoked at step {invoked} returned {} but write {other} \
                     (steps {}..{:?}) had overwritten it",
                    named(address),
                    if tag == 0 {
                        "the initial zeros".to_owned()
                    } else {
                        format!("write {tag}")
                    },
                    write.invoked,
                    write.completed
                ));
            }
        }
        Ok(())
    }

    /// Checks every sector of `bytes`, consecutive from volume sector `first_address`,
    /// read by a read invoked at `invoked`.
    pub fn check_sectors(
        &self,
        bytes: &[u8],
        first_address: u64,
        invoked: u64,
    ) -> Result<(), String> {
        let tags = decode_sectors(bytes, first_address)?;
        for (index, tag) in tags.into_iter().enumerate() {
            self.check_read(first_address + index as u64, tag, invoked)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_read_is_caught_and_concurrent_one_is_not() {
        let mut history = History::default();
        history.write_invoked(1, 80..88, 0);
        history.write_completed(1, 1);
        history.write_invoked(2, 80..88, 2);
        assert!(
            history.check_read(80, 1, 3).is_ok(),
            "write 2 still running"
        );
        history.write_completed(2, 4);
        assert!(history.check_read(80, 2, 5).is_ok());
        assert!(
            history.check_read(80, 1, 5).is_err(),
            "write 2 completed before"
        );
        assert!(history.check_read(80, 0, 5).is_err());
        assert!(history.check_read(80, 3, 5).is_err());
    }

    #[test]
    fn a_patch_overwrites_only_its_sectors() {
        let mut history = History::default();
        history.write_invoked(1, 80..88, 0);
        history.write_completed(1, 1);
        history.write_invoked(2, 82..84, 2);
        history.write_completed(2, 3);
        assert!(history.check_read(81, 1, 5).is_ok(), "sector 1 not patched");
        assert!(history.check_read(82, 2, 5).is_ok());
        assert!(history.check_read(83, 1, 5).is_err(), "sector 3 patched");
        assert!(
            history.check_read(84, 2, 5).is_err(),
            "never wrote sector 4"
        );
    }

    #[test]
    fn torn_and_misplaced_sectors_are_caught() {
        let mut bytes = block_bytes(7, 3);
        assert_eq!(decode_sectors(&bytes, 24), Ok(vec![7; 8]));
        assert!(decode_sectors(&bytes, 32).is_err());
        // A sector of another block's data, or of another sector of this block.
        bytes[512..1024].copy_from_slice(&sector_bytes(7, 25 + 8));
        assert!(decode_sectors(&bytes, 24).is_err());
        bytes[512..1024].copy_from_slice(&sector_bytes(7, 26));
        assert!(decode_sectors(&bytes, 24).is_err());
        bytes[512..1024].copy_from_slice(&sector_bytes(9, 25));
        assert_eq!(decode_sectors(&bytes, 24).unwrap()[1], 9);
        bytes[4000] ^= 1;
        assert!(decode_sectors(&bytes, 24).is_err());
        assert_eq!(decode_sectors(&[0; 4096], 72), Ok(vec![0; 8]));
    }
}
