//! `amf up`: the README's one command. On the embedded defaults it creates (if absent) a
//! RAID-6 of six 1 GiB file members under `./amf-data`, serves it over NBD on loopback with
//! a sim card beside the members, prints the address and how to use it, and stays in the
//! foreground with a live status line until Ctrl-C.

use crate::array::member_files_in;
use crate::create::{CreateSpec, Targets, create};
use crate::serve::{NBD_ADDRESS_DEFAULT, ServeConfig, ServeError};
use amf_raid::Level;
use shared_regs::limits::CHUNK_BYTES_DEFAULT;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Where `amf up` keeps its members, relative to the working directory.
pub const UP_DIRECTORY_DEFAULT: &str = "amf-data";
/// `amf up`'s level.
pub const UP_LEVEL: Level = Level::Raid6;
/// `amf up`'s member count.
pub const UP_MEMBERS: u32 = 6;
/// `amf up`'s member size (sparse files).
pub const UP_MEMBER_BYTES: u64 = 1 << 30;

/// What `amf up` runs.
#[derive(Clone, Debug)]
pub struct UpConfig {
    /// Member directory.
    pub directory: PathBuf,
    /// NBD address.
    pub address: String,
}

impl Default for UpConfig {
    fn default() -> Self {
        UpConfig {
            directory: PathBuf::from(UP_DIRECTORY_DEFAULT),
            address: NBD_ADDRESS_DEFAULT.to_owned(),
        }
    }
}

/// Creates the array if `directory` holds no members; says what it did.
fn ensure_array(directory: &Path) -> Result<(), ServeError> {
    let existing = directory.is_dir() && !member_files_in(directory)?.is_empty();
    if existing {
        println!("amf up: using the array in {}", directory.display());
        return Ok(());
    }
    let spec = CreateSpec {
        level: UP_LEVEL,
        members: UP_MEMBERS,
        chunk_bytes: CHUNK_BYTES_DEFAULT,
        member_bytes: Some(UP_MEMBER_BYTES),
        force: false,
        array_uuid: *uuid::Uuid::new_v4().as_bytes(),
        created_unix_seconds: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs()),
    };
    let created = create(&spec, &Targets::Directory(directory.to_path_buf()))?;
    assert!(
        !created.needs_parity_sync,
        "new files are zeros, parity included"
    );
    println!(
        "amf up: created a RAID-6 of {UP_MEMBERS} members of {} in {}",
        crate::status::human_bytes(UP_MEMBER_BYTES),
        directory.display()
    );
    Ok(())
}

fn print_hint(address: SocketAddr, volume_bytes: u64) {
    let uri = format!("nbd://{address}");
    println!(
        "amf up: serving {} volume at",
        crate::status::human_bytes(volume_bytes)
    );
    println!();
    println!("    {uri}");
    println!();
    println!("  nbdinfo {uri}");
    println!("  qemu-io -f raw -c 'write -P 0xab 0 1M' -c 'read -P 0xab 0 1M' {uri}");
    println!("  nbdcopy disk.img {uri}      # or: qemu-img convert -n -O raw disk.img {uri}");
    println!();
    println!("Ctrl-C stops (requests in flight finish, members are flushed).");
}

/// Runs `amf up` until Ctrl-C or SIGTERM.
pub fn run(config: &UpConfig) -> Result<(), ServeError> {
    ensure_array(&config.directory)?;
    let serve = ServeConfig {
        members: vec![config.directory.clone()],
        address: config.address.clone(),
        card: None,
        status_line: true,
        control: None,
        metrics: None,
    };
    let paths = crate::array::member_paths(&serve.members)?;
    let volume_bytes = crate::array::Array::open(&paths, false)?
        .geometry
        .volume_bytes();
    crate::serve::run(&serve, |address| print_hint(address, volume_bytes))?;
    println!("amf up: stopped cleanly");
    Ok(())
}
