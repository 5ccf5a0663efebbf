//! `amf create`: lay down superblocks on new or existing member devices.
//!
//! Regular files are (re)sized and zero-filled, which makes every stripe's parity
//! consistent at once (P and Q of zeros are zeros). Block devices cannot be cleared
//! cheaply, so the caller runs a parity repair pass over them after creation.

use crate::array::{
    ArrayError, member_file_name, member_files_in, read_superblock, write_superblock,
};
use crate::format::{MemberState, Superblock, SuperblockError};
use amf_raid::{Geometry, GeometryError, Level};
use shared_regs::limits::DATA_OFFSET_BYTES_DEFAULT;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// Where the members go.
#[derive(Clone, Debug)]
pub enum Targets {
    /// Make `member-NN.img` files in this directory (created if missing).
    Directory(PathBuf),
    /// Use these existing (or new) files or block devices, in member-index order.
    Devices(Vec<PathBuf>),
}

/// What to create.
#[derive(Clone, Debug)]
pub struct CreateSpec {
    /// RAID level.
    pub level: Level,
    /// Number of members (must match the device count for [`Targets::Devices`]).
    pub members: u32,
    /// Chunk size.
    pub chunk_bytes: u32,
    /// Bytes of each member (file size); `None` uses each existing device's size.
    pub member_bytes: Option<u64>,
    /// Overwrite an existing array.
    pub force: bool,
    /// Array identity (random in the CLI, fixed in tests).
    pub array_uuid: [u8; 16],
    /// Creation time for the superblock.
    pub created_unix_seconds: u64,
}

/// Why creation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// Member I/O or superblock trouble.
    #[error(transparent)]
    Array(#[from] ArrayError),
    /// The level/members/chunk/size make no valid array.
    #[error("{0}")]
    Geometry(#[from] GeometryError),
    /// A target already carries an array.
    #[error("{path} already holds a member of array {array_uuid}; pass --force to overwrite it")]
    Exists { path: PathBuf, array_uuid: String },
    /// Device count differs from --members.
    #[error("--members is {members} but {devices} devices were given")]
    DeviceCount { members: u32, devices: usize },
    /// A member too small for the data offset plus one chunk.
    #[error("{path}: {bytes} bytes is too small: a member needs at least {needed} bytes")]
    TooSmall {
        path: PathBuf,
        bytes: u64,
        needed: u64,
    },
    /// No size known for a new file.
    #[error("{path}: new member file needs --size")]
    SizeNeeded { path: PathBuf },
}

/// What was created; `needs_parity_sync` lists block devices whose old contents must be
/// folded into parity before use.
#[derive(Debug)]
pub struct Created {
    /// Member paths in index order.
    pub paths: Vec<PathBuf>,
    /// The geometry.
    pub geometry: Geometry,
    /// True when some member is a block device that was not zeroed.
    pub needs_parity_sync: bool,
}

/// Creates the array described by `spec` on `targets`.
pub fn create(spec: &CreateSpec, targets: &Targets) -> Result<Created, CreateError> {
    // Level, member count and chunk are checked before anything is touched on disk.
    Geometry::new(
        spec.level,
        spec.members,
        spec.chunk_bytes,
        u64::from(spec.chunk_bytes),
    )?;
    let paths = target_paths(spec, targets)?;
    for path in &paths {
        refuse_existing(path, spec.force)?;
    }
    let sizes = paths
        .iter()
        .map(|path| device_size(path, spec.member_bytes))
        .collect::<Result<Vec<_>, _>>()?;
    let member_bytes = sizes.iter().map(|size| size.bytes).min().unwrap_or(0);
    let data_bytes = data_bytes_for(member_bytes, spec.chunk_bytes, &paths[0])?;
    let geometry = Geometry::new(spec.level, spec.members, spec.chunk_bytes, data_bytes)?;
    // Every check has passed: only now is anything written.
    for (index, (path, size)) in paths.iter().zip(&sizes).enumerate() {
        let file = prepare_device(path, size)?;
        write_superblock(&file, path, &superblock_for(spec, index as u32, data_bytes))?;
    }
    let needs_parity_sync = sizes.iter().any(|size| size.is_block_device);
    Ok(Created {
        paths,
        geometry,
        needs_parity_sync,
    })
}

fn target_paths(spec: &CreateSpec, targets: &Targets) -> Result<Vec<PathBuf>, CreateError> {
    match targets {
        Targets::Directory(directory) => {
            let io = |source| ArrayError::Io {
                path: directory.clone(),
                source,
            };
            std::fs::create_dir_all(directory).map_err(io)?;
            let wanted: Vec<PathBuf> = (0..spec.members)
                .map(|index| member_file_name(directory, index))
                .collect();
            for existing in member_files_in(directory)? {
                if !spec.force {
                    return Err(existing_error(&existing));
                }
                if !wanted.contains(&existing) {
                    // A leftover member of the old, wider array would be picked up by `DIR`.
                    std::fs::remove_file(&existing).map_err(|source| ArrayError::Io {
                        path: existing.clone(),
                        source,
                    })?;
                }
            }
            Ok(wanted)
        }
        Targets::Devices(devices) if devices.len() != spec.members as usize => {
            Err(CreateError::DeviceCount {
                members: spec.members,
                devices: devices.len(),
            })
        }
        Targets::Devices(devices) => Ok(devices.clone()),
    }
}

fn existing_error(path: &Path) -> CreateError {
    let array_uuid = File::open(path)
        .ok()
        .and_then(|file| read_superblock(&file, path).ok())
        .map_or_else(
            || "unknown (unreadable superblock)".to_string(),
            |sb| uuid::Uuid::from_bytes(sb.array_uuid).to_string(),
        );
    CreateError::Exists {
        path: path.to_path_buf(),
        array_uuid,
    }
}

/// Refuses a device that already carries an amflink superblock (even a corrupt one,
/// recognised by its magic), unless `force`.
fn refuse_existing(path: &Path, force: bool) -> Result<(), CreateError> {
    let Ok(file) = File::open(path) else {
        return Ok(());
    };
    match read_superblock(&file, path) {
        Err(ArrayError::Superblock {
            source: SuperblockError::Foreign { .. } | SuperblockError::Truncated { .. },
            ..
        }) => Ok(()),
        Err(ArrayError::Io { .. }) => Ok(()),
        _ if force => Ok(()),
        _ => Err(existing_error(path)),
    }
}

/// The size a member device will have, found without changing anything.
#[derive(Clone, Copy, Debug)]
struct DeviceSize {
    bytes: u64,
    is_block_device: bool,
}

fn device_size(path: &Path, member_bytes: Option<u64>) -> Result<DeviceSize, CreateError> {
    let io = |source| ArrayError::Io {
        path: path.to_path_buf(),
        source,
    };
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => Some(metadata),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(io(error).into()),
    };
    if metadata
        .as_ref()
        .is_some_and(|meta| meta.file_type().is_block_device())
    {
        let device_bytes = block_device_bytes(path).map_err(io)?;
        let bytes = member_bytes.map_or(device_bytes, |wanted| wanted.min(device_bytes));
        return Ok(DeviceSize {
            bytes,
            is_block_device: true,
        });
    }
    let existing = metadata.map_or(0, |meta| meta.len());
    match member_bytes {
        Some(bytes) => Ok(DeviceSize {
            bytes,
            is_block_device: false,
        }),
        None if existing > 0 => Ok(DeviceSize {
            bytes: existing,
            is_block_device: false,
        }),
        None => Err(CreateError::SizeNeeded {
            path: path.to_path_buf(),
        }),
    }
}

fn block_device_bytes(path: &Path) -> std::io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    File::open(path)?.seek(SeekFrom::End(0))
}

/// Opens (creating if needed) one device at its size; regular files are zero-filled.
fn prepare_device(path: &Path, size: &DeviceSize) -> Result<File, CreateError> {
    let io = |source| ArrayError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(!size.is_block_device)
        .truncate(false)
        .open(path)
        .map_err(io)?;
    if !size.is_block_device {
        // Truncating to zero first drops old contents, so the data area reads as zeros.
        file.set_len(0).map_err(io)?;
        file.set_len(size.bytes).map_err(io)?;
    }
    Ok(file)
}

fn data_bytes_for(member_bytes: u64, chunk_bytes: u32, path: &Path) -> Result<u64, CreateError> {
    let chunk = u64::from(chunk_bytes.max(1));
    let needed = DATA_OFFSET_BYTES_DEFAULT + chunk;
    if member_bytes < needed {
        return Err(CreateError::TooSmall {
            path: path.to_path_buf(),
            bytes: member_bytes,
            needed,
        });
    }
    Ok((member_bytes - DATA_OFFSET_BYTES_DEFAULT) / chunk * chunk)
}

fn superblock_for(spec: &CreateSpec, member_index: u32, data_bytes: u64) -> Superblock {
    Superblock {
        array_uuid: spec.array_uuid,
        level: spec.level,
        member_count: spec.members,
        member_index,
        chunk_bytes: spec.chunk_bytes,
        data_offset: DATA_OFFSET_BYTES_DEFAULT,
        data_bytes,
        generation: 1,
        created_unix_seconds: spec.created_unix_seconds,
        member_uuid: *uuid::Uuid::new_v4().as_bytes(),
        member_states: vec![MemberState::Active; spec.members as usize],
    }
}
