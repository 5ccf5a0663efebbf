//! The boundary between the front end (NBD) and the volume behind it.
//!
//! The NBD server speaks to any [`BlockDevice`]; `amf serve` gives it the RAID volume.
//! Calls are synchronous and may block on member I/O: the async server runs them on
//! blocking threads, several at once, so an implementation must be `Sync` and do its own
//! locking (per stripe, for the RAID volume).

/// Why a block request failed. Each maps to the errno NBD sends back.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The request reaches past the end of the volume.
    #[error("request {offset}+{length} reaches past the end of the {size_bytes}-byte volume")]
    OutOfRange {
        offset: u64,
        length: u64,
        size_bytes: u64,
    },
    /// The request is malformed in a way the protocol layer could not see (alignment, size).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The volume cannot serve I/O (too many members lost): never wrong data, an error.
    #[error("volume unavailable: {0}")]
    Unavailable(String),
    /// A member or card failure the volume could not work around.
    #[error("I/O error: {0}")]
    Io(String),
}

impl BlockError {
    /// The errno value NBD carries for this error (Linux numbering, as the protocol says).
    pub fn nbd_errno(&self) -> u32 {
        const EIO: u32 = 5;
        const EINVAL: u32 = 22;
        const ENOSPC: u32 = 28;
        match self {
            BlockError::OutOfRange { .. } => ENOSPC,
            BlockError::Invalid(_) => EINVAL,
            BlockError::Unavailable(_) | BlockError::Io(_) => EIO,
        }
    }
}

/// Bytes of zeros one piece of the default [`BlockDevice::write_zeroes`] writes.
pub const ZEROES_BYTES_MAX: u64 = 4 << 20;

/// A byte-addressed volume.
pub trait BlockDevice: Send + Sync + 'static {
    /// Bytes the volume exports.
    fn size_bytes(&self) -> u64;

    /// Fills `buffer` from `offset`.
    fn read(&self, offset: u64, buffer: &mut [u8]) -> Result<(), BlockError>;

    /// Writes `data` at `offset`; with `fua`, durable before returning.
    fn write(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), BlockError>;

    /// Writes zeros over `length` bytes at `offset`; with `fua`, durable before returning.
    /// By default: plain writes of zeros, [`ZEROES_BYTES_MAX`] at a time, then a flush.
    fn write_zeroes(&self, offset: u64, length: u64, fua: bool) -> Result<(), BlockError> {
        check_range(offset, length, self.size_bytes())?;
        let zeros = vec![0u8; length.min(ZEROES_BYTES_MAX) as usize];
        let mut done = 0;
        while done < length {
            let piece = (length - done).min(ZEROES_BYTES_MAX);
            self.write(offset + done, &zeros[..piece as usize], false)?;
            done += piece;
        }
        if fua {
            self.flush()?;
        }
        Ok(())
    }

    /// Says `length` bytes at `offset` are no longer needed (may do nothing; reads after it
    /// return either the old data or zeros, per NBD).
    fn trim(&self, offset: u64, length: u64) -> Result<(), BlockError>;

    /// Makes every completed write durable.
    fn flush(&self) -> Result<(), BlockError>;

    /// Whether a small read may run on the NBD server's async worker instead of its
    /// blocking pool: true only when a read waits on nothing slower than a local file
    /// (no network round trip, no long lock), so the hand-off would cost more than the
    /// read.
    fn quick_reads(&self) -> bool {
        false
    }
}

/// Checks that `offset + length` lies within a volume of `size_bytes`.
pub fn check_range(offset: u64, length: u64, size_bytes: u64) -> Result<(), BlockError> {
    match offset.checked_add(length) {
        Some(end) if end <= size_bytes => Ok(()),
        _ => Err(BlockError::OutOfRange {
            offset,
            length,
            size_bytes,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_check_catches_overflow_and_end() {
        assert!(check_range(0, 10, 10).is_ok());
        assert!(check_range(10, 0, 10).is_ok());
        assert!(matches!(
            check_range(5, 6, 10),
            Err(BlockError::OutOfRange { .. })
        ));
        assert!(matches!(
            check_range(u64::MAX, 2, 10),
            Err(BlockError::OutOfRange { .. })
        ));
        assert_eq!(check_range(11, 0, 10).unwrap_err().nbd_errno(), 28);
    }
}
