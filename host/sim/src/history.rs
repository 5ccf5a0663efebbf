//! What hosts asked and were told, and the per-block linearizability check over it.
//!
//! Every written block carries its write's tag in every 8-byte word but the second,
//! which holds the block's volume number, so a torn or misplaced block is seen at once.
//! A read of a block may return the initial zeros or any write of that block, except one
//! that is certainly overwritten: a write `w` that completed before the read began, and
//! began after the returned write completed. A write that never completed (its AMF died)
//! may take effect at any later time.

use std::collections::BTreeMap;

use shared_regs::limits::BLOCK_BYTES;

const WORDS: usize = BLOCK_BYTES as usize / 8;

/// The block a write with `tag` puts at volume block `block`.
pub fn block_bytes(tag: u64, block: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(BLOCK_BYTES as usize);
    for word in 0..WORDS {
        let value = if word == 1 { block } else { tag };
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    bytes
}

/// The tag a block holds, or why it holds nothing a write put there.
pub fn decode_block(bytes: &[u8], block: u64) -> Result<u64, String> {
    assert_eq!(bytes.len(), BLOCK_BYTES as usize);
    if bytes.iter().all(|&byte| byte == 0) {
        return Ok(0);
    }
    let word = |index: usize| u64::from_le_bytes(bytes[index * 8..][..8].try_into().expect("8"));
    let tag = word(0);
    if word(1) != block {
        return Err(format!("block {block} holds block {}'s data", word(1)));
    }
    if let Some(index) = (2..WORDS).find(|&index| word(index) != tag) {
        return Err(format!(
            "block {block} is torn: word 0 says write {tag}, word {index} says {}",
            word(index)
        ));
    }
    Ok(tag)
}

#[derive(Clone, Copy, Debug)]
struct Write {
    invoked: u64,
    completed: Option<u64>,
}

/// Every write ever invoked, by block.
#[derive(Debug, Default)]
pub struct History {
    writes: BTreeMap<u64, Write>,
    by_block: BTreeMap<u64, Vec<u64>>,
}

impl History {
    pub fn write_invoked(&mut self, tag: u64, first_block: u64, block_count: u32, now: u64) {
        assert!(tag != 0);
        let previous = self.writes.insert(
            tag,
            Write {
                invoked: now,
                completed: None,
            },
        );
        assert!(previous.is_none());
        for block in first_block..first_block + u64::from(block_count) {
            self.by_block.entry(block).or_default().push(tag);
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

    /// Checks that a read of `block` invoked at `invoked` may return `tag`.
    pub fn check_read(&self, block: u64, tag: u64, invoked: u64) -> Result<(), String> {
        let tags = self.by_block.get(&block).map_or(&[][..], Vec::as_slice);
        let returned = if tag == 0 {
            None
        } else {
            if !tags.contains(&tag) {
                return Err(format!(
                    "block {block} returned write {tag}, which never wrote it"
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
                    "block {block}: read invoked at step {invoked} returned {} but write {other} \
                     (steps {}..{:?}) had overwritten it",
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_read_is_caught_and_concurrent_one_is_not() {
        let mut history = History::default();
        history.write_invoked(1, 10, 1, 0);
        history.write_completed(1, 1);
        history.write_invoked(2, 10, 1, 2);
        assert!(
            history.check_read(10, 1, 3).is_ok(),
            "write 2 still running"
        );
        history.write_completed(2, 4);
        assert!(history.check_read(10, 2, 5).is_ok());
        assert!(
            history.check_read(10, 1, 5).is_err(),
            "write 2 completed before"
        );
        assert!(history.check_read(10, 0, 5).is_err());
        assert!(history.check_read(10, 3, 5).is_err());
    }

    #[test]
    fn torn_and_misplaced_blocks_are_caught() {
        let mut bytes = block_bytes(7, 3);
        assert_eq!(decode_block(&bytes, 3), Ok(7));
        assert!(decode_block(&bytes, 4).is_err());
        bytes[4000] ^= 1;
        assert!(decode_block(&bytes, 3).is_err());
        assert_eq!(decode_block(&[0; 4096], 9), Ok(0));
    }
}
