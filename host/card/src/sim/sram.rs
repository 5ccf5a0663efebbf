//! The sim card's SRAM: a file mapped into memory, so that what peers replicated into it
//! outlives a `kill -9` of the host process, as a real card's SRAM outlives its host.
//!
//! Writes land in the kernel's page cache through the mapping; the process may die at any
//! instruction and the file still holds every completed store. [`SramFile::flush`] pushes
//! the pages to the disk for the rarer case of a machine crash.
//!
//! The file is locked exclusively (`flock`) for as long as it is mapped: a second card, in
//! this or any other process, that opens the same file gets [`SramError::Locked`] instead
//! of a second, racing mapping.

use shared_regs::limits::{SRAM_BYTES_MAX, SRAM_WINDOW_BYTES};
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// Why the SRAM file could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum SramError {
    /// The requested size is zero, above the register map's reach, or not whole windows.
    #[error(
        "SRAM size {bytes} bytes is invalid: it must be a non-zero multiple of {window} up to {max}",
        window = SRAM_WINDOW_BYTES,
        max = SRAM_BYTES_MAX
    )]
    BadSize {
        /// Requested size.
        bytes: u64,
    },
    /// An existing SRAM file has another size than the card was configured with.
    #[error("SRAM file {path} is {found} bytes, expected {expected}")]
    SizeMismatch {
        /// The file.
        path: PathBuf,
        /// Configured size.
        expected: u64,
        /// The file's size.
        found: u64,
    },
    /// Another card holds the file.
    #[error("SRAM file {path} is in use by another card")]
    Locked {
        /// The file.
        path: PathBuf,
    },
    /// Opening, sizing, locking, mapping or flushing failed.
    #[error("SRAM file {path}: {operation} failed")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        operation: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// The mapped SRAM file. Owns the mapping and the lock; both end on drop.
#[derive(Debug)]
pub struct SramFile {
    path: PathBuf,
    mapping: sys::Mapping,
}

impl SramFile {
    /// Opens the SRAM file at `path`, creating it zero-filled with `bytes` when it does not
    /// exist; an existing file keeps its contents and must be exactly `bytes` long.
    pub fn open(path: &Path, bytes: u64) -> Result<Self, SramError> {
        if bytes == 0
            || bytes > SRAM_BYTES_MAX
            || !bytes.is_multiple_of(u64::from(SRAM_WINDOW_BYTES))
        {
            return Err(SramError::BadSize { bytes });
        }
        let io_error = |operation: &'static str| {
            let path = path.to_path_buf();
            move |source: io::Error| SramError::Io {
                path,
                operation,
                source,
            }
        };
        let (file, created) = open_or_create(path).map_err(io_error("open"))?;
        lock_exclusive(&file, path)?;
        if created {
            file.set_len(bytes).map_err(io_error("set length"))?;
        }
        let found = file.metadata().map_err(io_error("stat"))?.len();
        if found != bytes {
            return Err(SramError::SizeMismatch {
                path: path.to_path_buf(),
                expected: bytes,
                found,
            });
        }
        let mapping = sys::Mapping::new(file, bytes).map_err(io_error("mmap"))?;
        assert_eq!(mapping.bytes().len() as u64, bytes);
        Ok(Self {
            path: path.to_path_buf(),
            mapping,
        })
    }

    /// Size in bytes.
    pub fn len_bytes(&self) -> u64 {
        self.mapping.bytes().len() as u64
    }

    /// The SRAM contents.
    pub fn bytes(&self) -> &[u8] {
        self.mapping.bytes()
    }

    /// The SRAM contents, for writing.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        self.mapping.bytes_mut()
    }

    /// Writes the mapped pages back to the file on disk (survives a machine crash, not
    /// only a process death).
    pub fn flush(&self) -> Result<(), SramError> {
        self.mapping.flush().map_err(|source| SramError::Io {
            path: self.path.clone(),
            operation: "flush",
            source,
        })
    }
}

fn open_or_create(path: &Path) -> io::Result<(File, bool)> {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    match options.clone().create_new(true).open(path) {
        Ok(file) => Ok((file, true)),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            Ok((options.open(path)?, false))
        }
        Err(error) => Err(error),
    }
}

fn lock_exclusive(file: &File, path: &Path) -> Result<(), SramError> {
    use rustix::fs::{FlockOperation, flock};
    match flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(()),
        Err(errno) if errno == rustix::io::Errno::WOULDBLOCK => Err(SramError::Locked {
            path: path.to_path_buf(),
        }),
        Err(errno) => Err(SramError::Io {
            path: path.to_path_buf(),
            operation: "lock",
            source: errno.into(),
        }),
    }
}

/// The only `unsafe` in the crate: mapping the file.
#[allow(unsafe_code)]
mod sys {
    use memmap2::{MmapMut, MmapOptions};
    use std::fs::File;
    use std::io;

    /// A shared, writable mapping of a whole file that this process holds `flock`ed.
    #[derive(Debug)]
    pub(super) struct Mapping {
        map: MmapMut,
        // Keeps the descriptor, and with it the `flock`, alive as long as the mapping.
        _file: File,
    }

    impl Mapping {
        /// Maps the first `bytes` of `file`, which the caller has locked exclusively and
        /// checked to be exactly `bytes` long.
        pub(super) fn new(file: File, bytes: u64) -> io::Result<Self> {
            let length = usize::try_from(bytes)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "SRAM too large"))?;
            // SAFETY: `MmapMut::map_mut` is unsafe because the memory behind the slice it
            // hands out can change or vanish under us if the file is modified or truncated
            // by someone else. The caller holds an exclusive `flock` on the file, kept for
            // the life of the mapping (the `File` is stored next to it), so no other card,
            // in this process or another, maps or resizes it; the file is the card's
            // private SRAM, which nothing else in amflink opens. `length` equals the file's
            // size, checked by the caller after taking the lock, so every mapped byte is
            // backed by the file and no access past its end can raise SIGBUS.
            let map = unsafe { MmapOptions::new().len(length).map_mut(&file)? };
            Ok(Self { map, _file: file })
        }

        pub(super) fn bytes(&self) -> &[u8] {
            &self.map
        }

        pub(super) fn bytes_mut(&mut self) -> &mut [u8] {
            &mut self.map
        }

        pub(super) fn flush(&self) -> io::Result<()> {
            self.map.flush()
        }
    }
}
