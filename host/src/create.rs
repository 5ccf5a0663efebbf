//! `amf create`: lay down superblocks on new or existing member devices.
//!
//! Regular files are (re)sized and zero-filled, which makes every stripe's parity
//! consistent at once (P and Q of zeros are zeros). Block devices cannot be cleared
//! cheaply, so the caller runs a parity repair pass over them after creation.

use crate::array::{
    ArrayError, device_bytes, member_file_name, member_files_in, read_superblock,
    reject_duplicate_paths, write_superblock,
};
use crate::format::{MemberState, Superblock, SuperblockError};
use amf_raid::{Geometry, GeometryError, Level};
use shared_regs::limits::{DATA_OFFSET_BYTES_DEFAULT, SUPERBLOCK_BYTES};
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
    /// A target holds data that is not an amflink member.
    #[error("{path} holds data (no amflink superblock); pass --force to overwrite it")]
    HoldsData { path: PathBuf },
    /// `--size` asks for more than a block device has.
    #[error("{path}: --size {wanted} is larger than the device's {available} bytes")]
    DeviceTooSmall {
        path: PathBuf,
        wanted: u64,
        available: u64,
    },
    /// A new member file's directory does not exist.
    #[error("{path}: directory {directory} does not exist")]
    NoDirectory { path: PathBuf, directory: PathBuf },
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
///
/// Everything is checked first (geometry, every target's current contents and size);
/// only then are members truncated and superblocks written, and leftover member files of
/// a wider old array removed last.
pub fn create(spec: &CreateSpec, targets: &Targets) -> Result<Created, CreateError> {
    Geometry::new(
        spec.level,
        spec.members,
        spec.chunk_bytes,
        u64::from(spec.chunk_bytes),
    )?;
    let (paths, leftovers) = target_paths(spec, targets)?;
    reject_duplicate_paths(&paths)?;
    for path in paths.iter().chain(&leftovers) {
        refuse_existing(path, spec.force)?;
    }
    let sizes = paths
        .iter()
        .map(|path| device_size(path, spec.member_bytes))
        .collect::<Result<Vec<_>, _>>()?;
    let data_bytes = data_bytes_for(&paths, &sizes, spec.chunk_bytes)?;
    let geometry = Geometry::new(spec.level, spec.members, spec.chunk_bytes, data_bytes)?;
    if let Targets::Directory(directory) = targets {
        std::fs::create_dir_all(directory).map_err(|source| ArrayError::Io {
            path: directory.clone(),
            source,
        })?;
    }
    for (index, (path, size)) in paths.iter().zip(&sizes).enumerate() {
        let file = prepare_device(path, size)?;
        write_superblock(&file, path, &superblock_for(spec, index as u32, data_bytes))?;
    }
    for leftover in &leftovers {
        // A leftover member of the old, wider array would be picked up by `DIR`.
        std::fs::remove_file(leftover).map_err(|source| ArrayError::Io {
            path: leftover.clone(),
            source,
        })?;
    }
    let needs_parity_sync = sizes.iter().any(|size| size.is_block_device);
    Ok(Created {
        paths,
        geometry,
        needs_parity_sync,
    })
}

/// The member paths to write, and (directory mode) existing member files beyond them.
fn target_paths(
    spec: &CreateSpec,
    targets: &Targets,
) -> Result<(Vec<PathBuf>, Vec<PathBuf>), CreateError> {
    match targets {
        Targets::Directory(directory) => {
            let wanted: Vec<PathBuf> = (0..spec.members)
                .map(|index| member_file_name(directory, index))
                .collect();
            let existing = if directory.is_dir() {
                member_files_in(directory)?
            } else {
                Vec::new()
            };
            let leftovers = existing
                .into_iter()
                .filter(|path| !wanted.contains(path))
                .collect();
            Ok((wanted, leftovers))
        }
        Targets::Devices(devices) if devices.len() != spec.members as usize => {
            Err(CreateError::DeviceCount {
                members: spec.members,
                devices: devices.len(),
            })
        }
        Targets::Devices(devices) => {
            devices
                .iter()
                .try_for_each(|device| check_directory_exists(device))?;
            Ok((devices.clone(), Vec::new()))
        }
    }
}

/// A new member file can only be made in a directory that exists.
fn check_directory_exists(path: &Path) -> Result<(), CreateError> {
    let directory = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty());
    match directory {
        Some(directory) if !path.exists() && !directory.is_dir() => Err(CreateError::NoDirectory {
            path: path.to_path_buf(),
            directory: directory.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

fn existing_error(path: &Path) -> CreateError {
    let array_uuid = File::open(path)
        .ok()
        .and_then(|file| read_superblock(&file, path).ok())
        .map_or_else(
            || "unknown (unreadable superblock)".to_string(),
            |superblock| uuid::Uuid::from_bytes(superblock.array_uuid).to_string(),
        );
    CreateError::Exists {
        path: path.to_path_buf(),
        array_uuid,
    }
}

/// Without `force`, refuses a target that carries an amflink superblock (even a corrupt
/// one, recognised by its magic) or any other non-zero data in its first 4 KiB: that may
/// be a file system or another array. Absent and all-zero targets are always fine.
fn refuse_existing(path: &Path, force: bool) -> Result<(), CreateError> {
    let Ok(file) = File::open(path) else {
        return Ok(());
    };
    if force {
        return Ok(());
    }
    match read_superblock(&file, path) {
        Err(ArrayError::Superblock {
            source: SuperblockError::Foreign { .. } | SuperblockError::Truncated { .. },
            ..
        }) if head_is_zero(&file) => Ok(()),
        Err(ArrayError::Superblock {
            source: SuperblockError::Foreign { .. } | SuperblockError::Truncated { .. },
            ..
        }) => Err(CreateError::HoldsData {
            path: path.to_path_buf(),
        }),
        Err(ArrayError::Io { .. }) => Ok(()),
        _ => Err(existing_error(path)),
    }
}

fn head_is_zero(file: &File) -> bool {
    use std::os::unix::fs::FileExt;
    let mut head = vec![0u8; SUPERBLOCK_BYTES as usize];
    let mut filled = 0;
    while filled < head.len() {
        match file.read_at(&mut head[filled..], filled as u64) {
            Ok(0) => break,
            Ok(count) => filled += count,
            Err(_) => return false,
        }
    }
    head[..filled].iter().all(|&byte| byte == 0)
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
        let available = File::open(path)
            .and_then(|file| device_bytes(&file))
            .map_err(io)?;
        return match member_bytes {
            Some(wanted) if wanted > available => Err(CreateError::DeviceTooSmall {
                path: path.to_path_buf(),
                wanted,
                available,
            }),
            wanted => Ok(DeviceSize {
                bytes: wanted.unwrap_or(available),
                is_block_device: true,
            }),
        };
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

/// Opens (creating if needed) one device at its size; regular files are zero-filled.
/// Block devices are opened exclusively, so a mounted or otherwise claimed disk is refused.
fn prepare_device(path: &Path, size: &DeviceSize) -> Result<File, CreateError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| ArrayError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    if size.is_block_device {
        options.custom_flags(libc::O_EXCL);
    } else {
        options.create(true).truncate(false);
    }
    let file = options.open(path).map_err(io)?;
    if !size.is_block_device {
        // Truncating to zero first drops old contents, so the data area reads as zeros.
        file.set_len(0).map_err(io)?;
        file.set_len(size.bytes).map_err(io)?;
    }
    Ok(file)
}

/// Data area per member: what the smallest device holds after the data offset, in whole
/// chunks. A device too small for one chunk is named.
fn data_bytes_for(
    paths: &[PathBuf],
    sizes: &[DeviceSize],
    chunk_bytes: u32,
) -> Result<u64, CreateError> {
    let (path, member_bytes) = paths
        .iter()
        .zip(sizes)
        .map(|(path, size)| (path, size.bytes))
        .min_by_key(|(_, bytes)| *bytes)
        .expect("the geometry check guarantees members");
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
        rebuild_next_stripe: 0,
    }
}
