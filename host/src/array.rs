//! The I/O shell around the RAID core: members opened from files or block devices, their
//! superblocks checked one by one and against each other, and byte access to each
//! member's data area.
//!
//! Members are found from the command line: a directory stands for the `member-NN.img`
//! files inside it (what `amf create DIR` makes); a file stands for itself.

use crate::format::{MemberState, Superblock, SuperblockError};
use amf_raid::{Geometry, GeometryError};
use shared_regs::limits::{BLOCK_BYTES, SUPERBLOCK_BYTES};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Prefix of the member files `amf create DIR` makes.
pub const MEMBER_FILE_PREFIX: &str = "member-";
/// Suffix of the member files `amf create DIR` makes.
pub const MEMBER_FILE_SUFFIX: &str = ".img";

/// Why an array cannot be opened or used. Every variant names the member (path) or the
/// member index at fault, and the field where one is involved.
#[derive(Debug, thiserror::Error)]
pub enum ArrayError {
    /// An I/O error on a member or a directory.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// A member's superblock is unreadable.
    #[error("member {path}: {source}")]
    Superblock {
        path: PathBuf,
        source: SuperblockError,
    },
    /// A member disagrees with the reference member (the newest of the majority array).
    #[error("member {path}: field {field}: {found} but member {reference} has {expected}")]
    Disagree {
        path: PathBuf,
        field: &'static str,
        expected: String,
        found: String,
        reference: PathBuf,
    },
    /// As many members belong to one array as to another: no majority says which is meant.
    #[error(
        "members {path} and {other} belong to different arrays ({uuid} and {other_uuid}) and neither has a majority"
    )]
    NoMajority {
        path: PathBuf,
        uuid: String,
        other: PathBuf,
        other_uuid: String,
    },
    /// The same device was given twice.
    #[error("{path}: given twice (also as {other})")]
    DuplicatePath { path: PathBuf, other: PathBuf },
    /// A member is shorter than the data area its superblock describes.
    #[error(
        "member {path}: field data_bytes: the data area ends at byte {needed_bytes} but the member is {member_bytes} bytes long"
    )]
    Short {
        path: PathBuf,
        needed_bytes: u64,
        member_bytes: u64,
    },
    /// Two members claim the same index.
    #[error("member {path}: field member_index: {index} is also claimed by {other}")]
    DuplicateIndex {
        path: PathBuf,
        index: u32,
        other: PathBuf,
    },
    /// The member's file system refuses `O_DIRECT`.
    #[error(
        "{path}: its file system refuses O_DIRECT; use --member-io page-cache if every AMF runs on this host"
    )]
    DirectRefused { path: PathBuf },
    /// Nothing to open.
    #[error("{path}: no member files found (expected {MEMBER_FILE_PREFIX}NN{MEMBER_FILE_SUFFIX})")]
    NoMembers { path: PathBuf },
    /// The superblocks describe an impossible geometry.
    #[error("member {path}: {source}")]
    Geometry {
        path: PathBuf,
        source: GeometryError,
    },
    /// More members missing or failed than the level's parity covers.
    #[error(
        "array unavailable: {unavailable} of {members} members missing or failed, RAID-{level} survives {parity}"
    )]
    Unavailable {
        unavailable: u32,
        members: u32,
        level: u8,
        parity: u32,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ArrayError + '_ {
    move |source| ArrayError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Expands the command line's DIR|FILE arguments into member paths.
pub fn member_paths(arguments: &[PathBuf]) -> Result<Vec<PathBuf>, ArrayError> {
    let mut paths = Vec::new();
    for argument in arguments {
        if argument.is_dir() {
            let found = member_files_in(argument)?;
            if found.is_empty() {
                return Err(ArrayError::NoMembers {
                    path: argument.clone(),
                });
            }
            paths.extend(found);
        } else {
            paths.push(argument.clone());
        }
    }
    Ok(paths)
}

/// The `member-NN.img` files in `directory`, sorted by name.
pub fn member_files_in(directory: &Path) -> Result<Vec<PathBuf>, ArrayError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(directory).map_err(io_error(directory))? {
        let entry = entry.map_err(io_error(directory))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if is_member_file_name(&name) {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// True for `member-NN.img` with NN decimal digits.
pub fn is_member_file_name(name: &str) -> bool {
    name.strip_prefix(MEMBER_FILE_PREFIX)
        .and_then(|rest| rest.strip_suffix(MEMBER_FILE_SUFFIX))
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// Path of member `index` inside `directory`.
pub fn member_file_name(directory: &Path, index: u32) -> PathBuf {
    directory.join(format!(
        "{MEMBER_FILE_PREFIX}{index:02}{MEMBER_FILE_SUFFIX}"
    ))
}

/// How a member's data and superblock reach its device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MemberCaching {
    /// Through this host's page cache. Right while every process that opens the members
    /// runs on one kernel: a file has one page cache per host, so all of them see each
    /// other's writes (`amf serve`, `amf up`).
    #[default]
    PageCache,
    /// `O_DIRECT`, around the page cache: AMFs on several hosts share the devices (a
    /// shared LUN, multipath), and a page cached here would hide a peer's newer write.
    /// I/O goes through [`DIRECT_ALIGN_BYTES`]-aligned bounce buffers.
    Direct,
}

/// Alignment of direct member I/O (offset, length and buffer address): the largest
/// logical block size of a disk (4Kn), so every device and file system takes it.
pub const DIRECT_ALIGN_BYTES: u64 = BLOCK_BYTES as u64;

/// One opened member device.
#[derive(Debug)]
pub struct Member {
    /// Where it was opened from.
    pub path: PathBuf,
    /// Its superblock.
    pub superblock: Superblock,
    /// Whether its I/O goes around the page cache.
    pub caching: MemberCaching,
    file: File,
}

impl Member {
    /// Opens `path` read-write (or read-only) through the page cache and reads its
    /// superblock.
    pub fn open(path: &Path, writable: bool) -> Result<Member, ArrayError> {
        Self::open_with(path, writable, MemberCaching::PageCache)
    }

    /// Opens `path` read-write (or read-only) with `caching` and reads its superblock. A
    /// file system that refuses `O_DIRECT` (tmpfs) is an error that names the way out.
    pub fn open_with(
        path: &Path,
        writable: bool,
        caching: MemberCaching,
    ) -> Result<Member, ArrayError> {
        let mut options = OpenOptions::new();
        options.read(true).write(writable);
        if caching == MemberCaching::Direct {
            options.custom_flags(libc::O_DIRECT);
        }
        let file = options
            .open(path)
            .map_err(|source| match source.raw_os_error() {
                Some(libc::EINVAL) if caching == MemberCaching::Direct => {
                    ArrayError::DirectRefused {
                        path: path.to_path_buf(),
                    }
                }
                _ => io_error(path)(source),
            })?;
        let superblock = match caching {
            MemberCaching::PageCache => read_superblock(&file, path)?,
            MemberCaching::Direct => read_superblock_direct(&file, path)?,
        };
        let member_bytes = device_bytes(&file).map_err(io_error(path))?;
        let needed_bytes = superblock.data_offset + superblock.data_bytes;
        if member_bytes < needed_bytes {
            let path = path.to_path_buf();
            return Err(ArrayError::Short {
                path,
                needed_bytes,
                member_bytes,
            });
        }
        Ok(Member {
            path: path.to_path_buf(),
            superblock,
            caching,
            file,
        })
    }

    /// Reads `buffer.len()` bytes at `offset` of the data area.
    pub fn read_data(&self, offset: u64, buffer: &mut [u8]) -> Result<(), ArrayError> {
        self.check_range(offset, buffer.len())?;
        let position = self.superblock.data_offset + offset;
        let read = match self.caching {
            MemberCaching::PageCache => self.file.read_exact_at(buffer, position),
            MemberCaching::Direct => read_direct(&self.file, position, buffer),
        };
        read.map_err(io_error(&self.path))
    }

    /// Writes `bytes` at `offset` of the data area.
    pub fn write_data(&self, offset: u64, bytes: &[u8]) -> Result<(), ArrayError> {
        self.check_range(offset, bytes.len())?;
        let position = self.superblock.data_offset + offset;
        let written = match self.caching {
            MemberCaching::PageCache => self.file.write_all_at(bytes, position),
            MemberCaching::Direct => write_direct(&self.file, position, bytes),
        };
        written.map_err(io_error(&self.path))
    }

    /// The opened device's (device, inode), to tell whether a path names it.
    pub fn identity(&self) -> io::Result<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        let metadata = self.file.metadata()?;
        Ok((metadata.dev(), metadata.ino()))
    }

    /// The open descriptor, for tests that look at its flags.
    #[cfg(test)]
    pub(crate) fn descriptor(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.file.as_raw_fd()
    }

    /// Makes written data durable.
    pub fn sync(&self) -> Result<(), ArrayError> {
        self.file.sync_data().map_err(io_error(&self.path))
    }

    fn check_range(&self, offset: u64, length: usize) -> Result<(), ArrayError> {
        let end = offset.checked_add(length as u64);
        if end.is_none_or(|end| end > self.superblock.data_bytes) {
            let message = format!(
                "access {offset}+{length} beyond the data area of {} bytes",
                self.superblock.data_bytes
            );
            return Err(ArrayError::Io {
                path: self.path.clone(),
                source: io::Error::new(io::ErrorKind::InvalidInput, message),
            });
        }
        Ok(())
    }
}

/// Bytes in a regular file or block device (whose metadata length is zero).
pub fn device_bytes(file: &File) -> io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    let mut handle = file;
    let end = handle.seek(SeekFrom::End(0))?;
    handle.seek(SeekFrom::Start(0))?;
    Ok(end)
}

/// Refuses a list that names one device twice (by device and inode, so two spellings of
/// one path are caught too). Paths that do not exist yet are compared as given.
pub fn reject_duplicate_paths(paths: &[PathBuf]) -> Result<(), ArrayError> {
    use std::os::unix::fs::MetadataExt;
    let identity = |path: &PathBuf| match std::fs::metadata(path) {
        Ok(meta) => (meta.dev(), meta.ino(), None),
        Err(_) => (0, 0, Some(path.clone())),
    };
    for (index, path) in paths.iter().enumerate() {
        let this = identity(path);
        if let Some(other) = paths[..index].iter().find(|other| identity(other) == this) {
            return Err(ArrayError::DuplicatePath {
                path: path.clone(),
                other: other.clone(),
            });
        }
    }
    Ok(())
}

/// Reads and decodes the superblock at the start of `file`.
pub fn read_superblock(file: &File, path: &Path) -> Result<Superblock, ArrayError> {
    let mut bytes = vec![0u8; SUPERBLOCK_BYTES as usize];
    let read = read_up_to(file, &mut bytes).map_err(io_error(path))?;
    Superblock::decode(&bytes[..read]).map_err(|source| ArrayError::Superblock {
        path: path.to_path_buf(),
        source,
    })
}

/// [`read_superblock`] of an `O_DIRECT` file: a shorter file is not a superblock.
fn read_superblock_direct(file: &File, path: &Path) -> Result<Superblock, ArrayError> {
    let mut bytes = vec![0u8; SUPERBLOCK_BYTES as usize];
    read_direct(file, 0, &mut bytes).map_err(io_error(path))?;
    Superblock::decode(&bytes).map_err(|source| ArrayError::Superblock {
        path: path.to_path_buf(),
        source,
    })
}

fn read_up_to(file: &File, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read_at(&mut buffer[filled..], filled as u64)? {
            0 => break,
            count => filled += count,
        }
    }
    Ok(filled)
}

/// Writes `superblock` at the start of `file` and makes it durable.
pub fn write_superblock(
    file: &File,
    path: &Path,
    superblock: &Superblock,
) -> Result<(), ArrayError> {
    file.write_all_at(&superblock.encode(), 0)
        .map_err(io_error(path))?;
    file.sync_data().map_err(io_error(path))
}

/// A zeroed buffer of `length` bytes whose start is [`DIRECT_ALIGN_BYTES`]-aligned, cut
/// from a slightly larger vector (no allocator of our own, no `unsafe`).
struct AlignedBuffer {
    storage: Vec<u8>,
    start: usize,
    length: usize,
}

impl AlignedBuffer {
    fn zeroed(length: usize) -> AlignedBuffer {
        let align = DIRECT_ALIGN_BYTES as usize;
        let storage = vec![0u8; length + align];
        let start = storage.as_ptr().align_offset(align);
        AlignedBuffer {
            storage,
            start,
            length,
        }
    }

    fn bytes(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.length]
    }
}

/// The aligned span around `length` bytes at `position`: its first byte's position and
/// the offset of `position` in it, and its length.
fn aligned_span(position: u64, length: usize) -> (u64, usize, usize) {
    let head = (position % DIRECT_ALIGN_BYTES) as usize;
    let begin = position - head as u64;
    let span = (head + length).next_multiple_of(DIRECT_ALIGN_BYTES as usize);
    (begin, head, span)
}

/// Reads `buffer` at `position` of an `O_DIRECT` file through an aligned bounce buffer
/// covering the aligned span around it.
fn read_direct(file: &File, position: u64, buffer: &mut [u8]) -> io::Result<()> {
    let (begin, head, span) = aligned_span(position, buffer.len());
    let mut bounce = AlignedBuffer::zeroed(span);
    file.read_exact_at(bounce.bytes(), begin)?;
    buffer.copy_from_slice(&bounce.bytes()[head..head + buffer.len()]);
    Ok(())
}

/// Writes `bytes` at `position` of an `O_DIRECT` file. An unaligned edge is read, patched
/// and written whole: the bytes around it lie in the same 4 KiB block, so in the same
/// chunk, whose stripe this AMF holds while it writes (no peer writes them meanwhile).
fn write_direct(file: &File, position: u64, bytes: &[u8]) -> io::Result<()> {
    let (begin, head, span) = aligned_span(position, bytes.len());
    let mut bounce = AlignedBuffer::zeroed(span);
    if head != 0 || span != bytes.len() {
        file.read_exact_at(bounce.bytes(), begin)?;
    }
    bounce.bytes()[head..head + bytes.len()].copy_from_slice(bytes);
    file.write_all_at(bounce.bytes(), begin)
}

/// How one member slot of the array stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotState {
    /// Present and in the state its peers record.
    Present(MemberState),
    /// Present but from an older generation: it missed changes, its contents are stale.
    Stale,
    /// Not among the opened members.
    Missing,
}

impl SlotState {
    /// True when the member's contents can be trusted for reads.
    pub fn is_usable(self) -> bool {
        self == SlotState::Present(MemberState::Active)
    }

    /// Name as `amf status` prints it.
    pub fn name(self) -> &'static str {
        match self {
            SlotState::Present(state) => state.name(),
            SlotState::Stale => "stale",
            SlotState::Missing => "missing",
        }
    }
}

/// Overall health of an array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Every member usable.
    Clean,
    /// Some members unusable, within what parity covers: reads reconstruct.
    Degraded,
    /// More members unusable than parity covers: no I/O.
    Failed,
}

impl Health {
    /// Lower-case name, as in `amf status --json`.
    pub fn name(self) -> &'static str {
        match self {
            Health::Clean => "clean",
            Health::Degraded => "degraded",
            Health::Failed => "failed",
        }
    }
}

/// An opened array: members by index, their states, and the geometry.
#[derive(Debug)]
pub struct Array {
    /// Layout.
    pub geometry: Geometry,
    /// The authoritative superblock (highest generation).
    pub superblock: Superblock,
    /// How its members' I/O meets the page cache (replacements open the same way).
    pub caching: MemberCaching,
    members: Vec<Option<Arc<Member>>>,
    slots: Vec<SlotState>,
}

impl Array {
    /// Opens the members at `paths`, checks that they form one array, and works out each
    /// slot's state. An array with too many unusable members still opens (so `status` can
    /// show it); I/O paths call [`Array::check_available`].
    pub fn open(paths: &[PathBuf], writable: bool) -> Result<Array, ArrayError> {
        Self::open_with(paths, writable, MemberCaching::PageCache)
    }

    /// [`Array::open`] with every member opened with `caching`.
    pub fn open_with(
        paths: &[PathBuf],
        writable: bool,
        caching: MemberCaching,
    ) -> Result<Array, ArrayError> {
        reject_duplicate_paths(paths)?;
        let opened = paths
            .iter()
            .map(|path| Member::open_with(path, writable, caching))
            .collect::<Result<Vec<_>, _>>()?;
        let reference = choose_reference(&opened)?;
        let superblock = reference.superblock.clone();
        let geometry = geometry_of(&superblock).map_err(|source| ArrayError::Geometry {
            path: reference.path.clone(),
            source,
        })?;
        for member in &opened {
            check_agrees(reference, member)?;
        }
        let members = place_by_index(opened, superblock.member_count)?;
        let slots = slot_states(&superblock, &members);
        Ok(Array {
            geometry,
            superblock,
            caching,
            members,
            slots,
        })
    }

    /// State of every slot, by member index.
    pub fn slots(&self) -> &[SlotState] {
        &self.slots
    }

    /// The opened member at `index`, if any (whatever its state).
    pub fn member(&self, index: u32) -> Option<&Member> {
        self.members.get(index as usize).and_then(Option::as_deref)
    }

    /// Every slot's opened member, shared (a running volume swaps in replacements).
    pub fn shared_members(&self) -> Vec<Option<Arc<Member>>> {
        self.members.clone()
    }

    /// Overall health, as `amf status` reports it.
    pub fn health(&self) -> Health {
        match self.unusable_members().len() {
            0 => Health::Clean,
            count if count <= self.geometry.parity_count() as usize => Health::Degraded,
            _ => Health::Failed,
        }
    }

    /// Indices whose contents cannot be trusted (missing, stale, failed or rebuilding).
    pub fn unusable_members(&self) -> Vec<u32> {
        (0..self.superblock.member_count)
            .filter(|&index| !self.slots[index as usize].is_usable())
            .collect()
    }

    /// The member at `index` when its contents can be trusted.
    pub fn usable_member(&self, index: u32) -> Option<&Member> {
        let usable = self
            .slots
            .get(index as usize)
            .is_some_and(|slot| slot.is_usable());
        usable.then(|| self.member(index)).flatten()
    }

    /// Fails when more members are unusable than the level's parity covers.
    pub fn check_available(&self) -> Result<(), ArrayError> {
        let unavailable = self.unusable_members().len() as u32;
        let parity = self.geometry.level().parity_count();
        if unavailable > parity {
            return Err(ArrayError::Unavailable {
                unavailable,
                members: self.superblock.member_count,
                level: level_number(&self.superblock),
                parity,
            });
        }
        Ok(())
    }
}

/// 5 or 6.
pub fn level_number(superblock: &Superblock) -> u8 {
    match superblock.level {
        amf_raid::Level::Raid5 => 5,
        amf_raid::Level::Raid6 => 6,
    }
}

/// The geometry a superblock describes.
pub fn geometry_of(superblock: &Superblock) -> Result<Geometry, GeometryError> {
    Geometry::new(
        superblock.level,
        superblock.member_count,
        superblock.chunk_bytes,
        superblock.data_bytes,
    )
}

/// The member whose superblock speaks for the array: the newest member of the array most
/// of the given members belong to. A member of another array is then the odd one out,
/// whatever its generation.
fn choose_reference(opened: &[Member]) -> Result<&Member, ArrayError> {
    let votes = |uuid: [u8; 16]| {
        opened
            .iter()
            .filter(|m| m.superblock.array_uuid == uuid)
            .count()
    };
    let leader = opened
        .iter()
        .max_by_key(|member| votes(member.superblock.array_uuid))
        .ok_or_else(|| ArrayError::NoMembers {
            path: PathBuf::from("(no arguments)"),
        })?;
    let leader_uuid = leader.superblock.array_uuid;
    let rival = opened.iter().find(|member| {
        let uuid = member.superblock.array_uuid;
        uuid != leader_uuid && votes(uuid) == votes(leader_uuid)
    });
    if let Some(rival) = rival {
        let show = |uuid: [u8; 16]| uuid::Uuid::from_bytes(uuid).to_string();
        return Err(ArrayError::NoMajority {
            path: leader.path.clone(),
            uuid: show(leader_uuid),
            other: rival.path.clone(),
            other_uuid: show(rival.superblock.array_uuid),
        });
    }
    let newest = opened
        .iter()
        .filter(|member| member.superblock.array_uuid == leader_uuid)
        .max_by_key(|member| member.superblock.generation);
    Ok(newest.unwrap_or(leader))
}

fn check_agrees(reference_member: &Member, member: &Member) -> Result<(), ArrayError> {
    let reference = &reference_member.superblock;
    let found = &member.superblock;
    let disagree = |field: &'static str, expected: String, found: String| ArrayError::Disagree {
        path: member.path.clone(),
        field,
        expected,
        found,
        reference: reference_member.path.clone(),
    };
    if found.array_uuid != reference.array_uuid {
        let show = |uuid: [u8; 16]| uuid::Uuid::from_bytes(uuid).to_string();
        return Err(disagree(
            "array_uuid",
            show(reference.array_uuid),
            format!("{} (a member of another array)", show(found.array_uuid)),
        ));
    }
    let fields: [(&'static str, u64, u64); 5] = [
        (
            "level",
            level_number(reference).into(),
            level_number(found).into(),
        ),
        (
            "member_count",
            reference.member_count.into(),
            found.member_count.into(),
        ),
        (
            "chunk_bytes",
            reference.chunk_bytes.into(),
            found.chunk_bytes.into(),
        ),
        ("data_offset", reference.data_offset, found.data_offset),
        ("data_bytes", reference.data_bytes, found.data_bytes),
    ];
    if let Some((field, expected, value)) = fields
        .into_iter()
        .find(|(_, expected, value)| expected != value)
    {
        return Err(disagree(field, expected.to_string(), value.to_string()));
    }
    if found.generation == reference.generation && found.member_states != reference.member_states {
        return Err(disagree(
            "member_states",
            format!("{:?}", reference.member_states),
            format!("{:?}", found.member_states),
        ));
    }
    Ok(())
}

fn place_by_index(
    opened: Vec<Member>,
    member_count: u32,
) -> Result<Vec<Option<Arc<Member>>>, ArrayError> {
    let mut members: Vec<Option<Arc<Member>>> = (0..member_count).map(|_| None).collect();
    for member in opened {
        let index = member.superblock.member_index;
        if let Some(other) = &members[index as usize] {
            return Err(ArrayError::DuplicateIndex {
                path: member.path.clone(),
                index,
                other: other.path.clone(),
            });
        }
        members[index as usize] = Some(Arc::new(member));
    }
    Ok(members)
}

fn slot_states(reference: &Superblock, members: &[Option<Arc<Member>>]) -> Vec<SlotState> {
    members
        .iter()
        .zip(&reference.member_states)
        .map(|(member, &recorded)| match member {
            None => SlotState::Missing,
            Some(member)
                if member.superblock.generation < reference.generation
                    && recorded == MemberState::Active =>
            {
                SlotState::Stale
            }
            Some(_) => SlotState::Present(recorded),
        })
        .collect()
}
