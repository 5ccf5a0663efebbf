//! The coherency messages and their compact, checked binary encoding.
//!
//! Each message is one fabric payload (`shared_regs::fabric`): a one-byte tag, then
//! fixed little-endian fields, then (for the messages that carry blocks) the block data.
//! Decoding checks the tag, every length and that no byte is left over, and returns a
//! typed [`DecodeError`] for each failure: a malformed payload never panics and is never
//! half-applied.

use shared_regs::limits::{BLOCK_BYTES, FABRIC_PAYLOAD_BYTES_MAX};

/// What an acquire asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// A readable copy; other holders may keep theirs (read search, claims 5-9).
    Shared,
    /// The only copy; every other holder drops its own (write-invalidate, claims 3, 14).
    Exclusive,
}

/// One coherency message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Broadcast: `requester` (the sender) wants `stripe` in `mode`; blocks
    /// `first_block .. first_block + block_count` of the stripe's data are what it is
    /// about to read, so that a peer holding them can forward them.
    Acquire {
        stripe: u64,
        acquire_id: u64,
        mode: Mode,
        first_block: u32,
        block_count: u32,
    },
    /// Unicast answer to an acquire: the sender no longer conflicts with it (it dropped
    /// or downgraded its copy). `data` holds blocks `first_block ..` it forwards; empty
    /// when it has none to give. `failed_members` (bit `m` for member `m`) are the
    /// members the sender had taken as failed when it answered: it may have planned
    /// around them on this stripe, so the grantee waits until it has taken each of them
    /// too (a `MemberFailed` ordered after its acquire) before it uses the grant.
    /// `membership` is the rest of the sender's view of the members: the rebuild it
    /// follows and the members it saw rebuilt, so that the grantee also waits for a
    /// rebuild's progress the sender had taken on this stripe.
    Reply {
        stripe: u64,
        acquire_id: u64,
        first_block: u32,
        failed_members: u32,
        membership: RebuildView,
        data: Vec<u8>,
    },
    /// Broadcast: the write recorded by `owner` in its SRAM slot `slot` with `op_id` is
    /// durable; every peer frees its copy.
    Retire { owner: u8, op_id: u64, slot: u32 },
    /// Broadcast by the AMF completing a dead `owner`'s writes: all of them it could
    /// complete are retired; every peer drops what is left of `owner`'s records.
    Recovered { owner: u8 },
    /// Broadcast by an AMF whose member I/O met an error on `member`: from this point of
    /// the total order every AMF treats the member as failed (degraded plans around it).
    MemberFailed { member: u32 },
    /// Broadcast by the AMF that starts an online rebuild of failed `member` onto the
    /// device at `replacement` (a path, as bytes, that every AMF opens): from this point
    /// of the order every AMF writes the replacement on the stripes below the rebuild's
    /// checkpoint (none yet), and the sender drives the rebuild.
    /// The rebuild is named `RebuildId { port: sender, op_id }`.
    RebuildBegin {
        op_id: u64,
        member: u32,
        replacement: Vec<u8>,
    },
    /// Broadcast: every stripe below `next_stripe` of `member` is rebuilt on its
    /// replacement. From this point of the order every AMF treats the member as in
    /// service there; at the volume's last stripe the member is back in service.
    RebuildProgress {
        rebuild: RebuildId,
        member: u32,
        next_stripe: u64,
    },
}

/// One online rebuild, named by the AMF that began it and that AMF's op id for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RebuildId {
    pub port: u8,
    pub op_id: u64,
}

/// What a `Reply`'s sender knows of rebuilds besides its failed members.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RebuildView {
    /// The rebuild it follows: (rebuild, member, first stripe not yet rebuilt).
    pub rebuilding: Option<(RebuildId, u32, u64)>,
    /// The rebuild it last saw bring `member` back into service, if that member has not
    /// failed since: (rebuild, member).
    pub restored: Option<(RebuildId, u32)>,
}

/// Longest replacement path a `RebuildBegin` carries.
pub const REPLACEMENT_PATH_BYTES_MAX: usize = 4096;

/// Why a payload is not a coherency message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("coherency message truncated: {have} bytes, need {need}")]
    Truncated { have: usize, need: usize },
    #[error("unknown coherency message tag {0}")]
    UnknownTag(u8),
    #[error("unknown acquire mode {0}")]
    BadMode(u8),
    #[error("block data of {0} bytes is not whole blocks")]
    BadDataLength(usize),
    #[error("{0} bytes left over after the message")]
    TrailingBytes(usize),
    #[error("a broadcast message arrived point-to-point")]
    UnexpectedUnicast,
    #[error("presence byte {0} is neither 0 nor 1")]
    BadPresence(u8),
    #[error("replacement path of {0} bytes is empty or longer than {REPLACEMENT_PATH_BYTES_MAX}")]
    BadPath(usize),
}

const TAG_ACQUIRE: u8 = 1;
const TAG_REPLY: u8 = 2;
const TAG_RETIRE: u8 = 3;
const TAG_RECOVERED: u8 = 4;
const TAG_MEMBER_FAILED: u8 = 5;
const TAG_REBUILD_BEGIN: u8 = 6;
const TAG_REBUILD_PROGRESS: u8 = 7;
const MODE_SHARED: u8 = 1;
const MODE_EXCLUSIVE: u8 = 2;

/// Bytes of a `Reply` before its data.
pub const REPLY_HEADER_BYTES: usize = 1 + 8 + 8 + 4 + 4 + REBUILD_VIEW_BYTES + 4;
/// Bytes of a `RebuildView` on the wire: a presence byte, the rebuild (port, op id) and
/// the member, then the next stripe; the same without the stripe for `restored`.
const REBUILD_VIEW_BYTES: usize = (1 + 1 + 8 + 4 + 8) + (1 + 1 + 8 + 4);
/// Most block bytes a `Reply` forwards, so that it fits one fabric payload.
pub const REPLY_DATA_BYTES_MAX: usize = (FABRIC_PAYLOAD_BYTES_MAX as usize - REPLY_HEADER_BYTES)
    / BLOCK_BYTES as usize
    * BLOCK_BYTES as usize;

const _: () = {
    assert!(REPLY_DATA_BYTES_MAX > 0);
    assert!(REPLY_HEADER_BYTES + REPLY_DATA_BYTES_MAX <= FABRIC_PAYLOAD_BYTES_MAX as usize);
};

impl Message {
    /// The payload bytes of this message.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        match self {
            Message::Acquire {
                stripe,
                acquire_id,
                mode,
                first_block,
                block_count,
            } => {
                out.push(TAG_ACQUIRE);
                out.extend_from_slice(&stripe.to_le_bytes());
                out.extend_from_slice(&acquire_id.to_le_bytes());
                out.push(match mode {
                    Mode::Shared => MODE_SHARED,
                    Mode::Exclusive => MODE_EXCLUSIVE,
                });
                out.extend_from_slice(&first_block.to_le_bytes());
                out.extend_from_slice(&block_count.to_le_bytes());
            }
            Message::Reply {
                stripe,
                acquire_id,
                first_block,
                failed_members,
                membership,
                data,
            } => {
                assert!(data.len().is_multiple_of(BLOCK_BYTES as usize));
                assert!(data.len() <= REPLY_DATA_BYTES_MAX);
                out.push(TAG_REPLY);
                out.extend_from_slice(&stripe.to_le_bytes());
                out.extend_from_slice(&acquire_id.to_le_bytes());
                out.extend_from_slice(&first_block.to_le_bytes());
                out.extend_from_slice(&failed_members.to_le_bytes());
                membership.encode(&mut out);
                out.extend_from_slice(&(data.len() as u32).to_le_bytes());
                out.extend_from_slice(data);
            }
            Message::Retire { owner, op_id, slot } => {
                out.push(TAG_RETIRE);
                out.push(*owner);
                out.extend_from_slice(&op_id.to_le_bytes());
                out.extend_from_slice(&slot.to_le_bytes());
            }
            Message::Recovered { owner } => {
                out.push(TAG_RECOVERED);
                out.push(*owner);
            }
            Message::MemberFailed { member } => {
                out.push(TAG_MEMBER_FAILED);
                out.extend_from_slice(&member.to_le_bytes());
            }
            Message::RebuildBegin {
                op_id,
                member,
                replacement,
            } => {
                assert!((1..=REPLACEMENT_PATH_BYTES_MAX).contains(&replacement.len()));
                out.push(TAG_REBUILD_BEGIN);
                out.extend_from_slice(&op_id.to_le_bytes());
                out.extend_from_slice(&member.to_le_bytes());
                out.extend_from_slice(&(replacement.len() as u32).to_le_bytes());
                out.extend_from_slice(replacement);
            }
            Message::RebuildProgress {
                rebuild,
                member,
                next_stripe,
            } => {
                out.push(TAG_REBUILD_PROGRESS);
                encode_rebuild_id(*rebuild, &mut out);
                out.extend_from_slice(&member.to_le_bytes());
                out.extend_from_slice(&next_stripe.to_le_bytes());
            }
        }
        assert!(out.len() <= FABRIC_PAYLOAD_BYTES_MAX as usize);
        out
    }

    /// Parses one whole payload.
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        let mut reader = Reader { bytes, at: 0 };
        let message = match reader.u8()? {
            TAG_ACQUIRE => Message::Acquire {
                stripe: reader.u64()?,
                acquire_id: reader.u64()?,
                mode: match reader.u8()? {
                    MODE_SHARED => Mode::Shared,
                    MODE_EXCLUSIVE => Mode::Exclusive,
                    other => return Err(DecodeError::BadMode(other)),
                },
                first_block: reader.u32()?,
                block_count: reader.u32()?,
            },
            TAG_REPLY => {
                let stripe = reader.u64()?;
                let acquire_id = reader.u64()?;
                let first_block = reader.u32()?;
                let failed_members = reader.u32()?;
                let membership = RebuildView::decode(&mut reader)?;
                let length = reader.u32()? as usize;
                if !length.is_multiple_of(BLOCK_BYTES as usize) || length > REPLY_DATA_BYTES_MAX {
                    return Err(DecodeError::BadDataLength(length));
                }
                Message::Reply {
                    stripe,
                    acquire_id,
                    first_block,
                    failed_members,
                    membership,
                    data: reader.take(length)?.to_vec(),
                }
            }
            TAG_RETIRE => Message::Retire {
                owner: reader.u8()?,
                op_id: reader.u64()?,
                slot: reader.u32()?,
            },
            TAG_RECOVERED => Message::Recovered {
                owner: reader.u8()?,
            },
            TAG_MEMBER_FAILED => Message::MemberFailed {
                member: reader.u32()?,
            },
            TAG_REBUILD_BEGIN => {
                let op_id = reader.u64()?;
                let member = reader.u32()?;
                let length = reader.u32()? as usize;
                if !(1..=REPLACEMENT_PATH_BYTES_MAX).contains(&length) {
                    return Err(DecodeError::BadPath(length));
                }
                Message::RebuildBegin {
                    op_id,
                    member,
                    replacement: reader.take(length)?.to_vec(),
                }
            }
            TAG_REBUILD_PROGRESS => Message::RebuildProgress {
                rebuild: decode_rebuild_id(&mut reader)?,
                member: reader.u32()?,
                next_stripe: reader.u64()?,
            },
            other => return Err(DecodeError::UnknownTag(other)),
        };
        let left = bytes.len() - reader.at;
        if left != 0 {
            return Err(DecodeError::TrailingBytes(left));
        }
        Ok(message)
    }
}

fn encode_rebuild_id(rebuild: RebuildId, out: &mut Vec<u8>) {
    out.push(rebuild.port);
    out.extend_from_slice(&rebuild.op_id.to_le_bytes());
}

fn decode_rebuild_id(reader: &mut Reader<'_>) -> Result<RebuildId, DecodeError> {
    Ok(RebuildId {
        port: reader.u8()?,
        op_id: reader.u64()?,
    })
}

impl RebuildView {
    /// Fixed size whatever is present: absent parts are zeros after a 0 presence byte.
    fn encode(&self, out: &mut Vec<u8>) {
        let (present, (rebuild, member, next_stripe)) = match self.rebuilding {
            Some(rebuilding) => (1, rebuilding),
            None => (0, (RebuildId::default(), 0, 0)),
        };
        out.push(present);
        encode_rebuild_id(rebuild, out);
        out.extend_from_slice(&member.to_le_bytes());
        out.extend_from_slice(&next_stripe.to_le_bytes());
        let (present, (rebuild, member)) = match self.restored {
            Some(restored) => (1, restored),
            None => (0, (RebuildId::default(), 0)),
        };
        out.push(present);
        encode_rebuild_id(rebuild, out);
        out.extend_from_slice(&member.to_le_bytes());
    }

    fn decode(reader: &mut Reader<'_>) -> Result<RebuildView, DecodeError> {
        let presence = |byte| match byte {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(DecodeError::BadPresence(other)),
        };
        let rebuilding_present = presence(reader.u8()?)?;
        let rebuilding = (decode_rebuild_id(reader)?, reader.u32()?, reader.u64()?);
        let restored_present = presence(reader.u8()?)?;
        let restored = (decode_rebuild_id(reader)?, reader.u32()?);
        Ok(RebuildView {
            rebuilding: rebuilding_present.then_some(rebuilding),
            restored: restored_present.then_some(restored),
        })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, length: usize) -> Result<&'a [u8], DecodeError> {
        let need = self.at + length;
        let taken = self
            .bytes
            .get(self.at..need)
            .ok_or(DecodeError::Truncated {
                have: self.bytes.len(),
                need,
            })?;
        self.at = need;
        Ok(taken)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Message> {
        vec![
            Message::Acquire {
                stripe: 7,
                acquire_id: 9,
                mode: Mode::Exclusive,
                first_block: 1,
                block_count: 3,
            },
            Message::Reply {
                stripe: 7,
                acquire_id: 9,
                first_block: 2,
                failed_members: 0b1010,
                membership: RebuildView {
                    rebuilding: Some((RebuildId { port: 1, op_id: 5 }, 3, 17)),
                    restored: Some((
                        RebuildId {
                            port: 2,
                            op_id: 1 << 41,
                        },
                        2,
                    )),
                },
                data: vec![0xAB; 2 * BLOCK_BYTES as usize],
            },
            Message::Reply {
                stripe: 1,
                acquire_id: 2,
                first_block: 0,
                failed_members: 0,
                membership: RebuildView::default(),
                data: Vec::new(),
            },
            Message::Retire {
                owner: 3,
                op_id: 44,
                slot: 5,
            },
            Message::Recovered { owner: 2 },
            Message::MemberFailed { member: 3 },
            Message::RebuildBegin {
                op_id: 12,
                member: 1,
                replacement: b"/dev/disk/by-id/new".to_vec(),
            },
            Message::RebuildProgress {
                rebuild: RebuildId { port: 0, op_id: 12 },
                member: 1,
                next_stripe: 640,
            },
        ]
    }

    #[test]
    fn round_trip() {
        for message in samples() {
            assert_eq!(Message::decode(&message.encode()).unwrap(), message);
        }
    }

    #[test]
    fn every_prefix_and_extension_is_refused() {
        for message in samples() {
            let bytes = message.encode();
            for length in 0..bytes.len() {
                assert!(Message::decode(&bytes[..length]).is_err());
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(Message::decode(&longer), Err(DecodeError::TrailingBytes(1)));
        }
    }

    #[test]
    fn bad_fields_are_typed() {
        assert_eq!(Message::decode(&[99]), Err(DecodeError::UnknownTag(99)));
        let mut acquire = samples()[0].encode();
        acquire[17] = 7;
        assert_eq!(Message::decode(&acquire), Err(DecodeError::BadMode(7)));
        let mut reply = samples()[2].encode();
        reply[REPLY_HEADER_BYTES - 4] = 1;
        assert_eq!(Message::decode(&reply), Err(DecodeError::BadDataLength(1)));
        let mut begin = samples()[6].encode();
        begin[13..17].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(Message::decode(&begin), Err(DecodeError::BadPath(0)));
        let mut reply = samples()[1].encode();
        reply[25] = 2;
        assert_eq!(Message::decode(&reply), Err(DecodeError::BadPresence(2)));
    }

    #[test]
    fn decoder_never_panics_on_noise() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for length in 0..64 {
            let bytes: Vec<u8> = (0..length)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let _ = Message::decode(&bytes);
        }
    }
}
