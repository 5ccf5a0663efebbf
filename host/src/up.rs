//! `amf up`: the README's one command. On the embedded defaults it creates (if absent) a
//! RAID-6 of six 1 GiB file members under `./amf-data` and starts a local cluster on it:
//! an `amf fabric` process (on `amf-data/fabric.sock`) and two `amf serve --id N` processes,
//! each with its sim card (`amf-data/card-N.sram`) and its NBD export on loopback (ports
//! 10809 and 10810). It prints the addresses and how to use them, and stays in the
//! foreground with a live status line until Ctrl-C, which stops the AMFs, then the fabric.
//! Meanwhile it supervises them: a child that dies is started again (after a short pause
//! if it died young), and the others go on: the AMFs ride through the fabric's restart,
//! and a restarted AMF rejoins as a new incarnation.

use crate::array::member_files_in;
use crate::create::{CreateSpec, Targets, create};
use crate::serve::{NBD_ADDRESS_DEFAULT, ServeError};
use amf_raid::Level;
use shared_regs::limits::CHUNK_BYTES_DEFAULT;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// AMFs `amf up` starts.
pub const UP_AMFS: u8 = 2;

fn print_hint(addresses: &[SocketAddr], volume_bytes: u64) {
    println!(
        "amf up: {UP_AMFS} AMFs serve one {} volume, active-active, at",
        crate::status::human_bytes(volume_bytes)
    );
    println!();
    for (id, address) in addresses.iter().enumerate() {
        println!("    nbd://{address}      (AMF {id})");
    }
    let uri = format!("nbd://{}", addresses[0]);
    println!();
    println!("  nbdinfo {uri}");
    println!("  qemu-io -f raw -c 'write -P 0xab 0 1M' -c 'read -P 0xab 0 1M' {uri}");
    println!("  nbdcopy disk.img {uri}      # or: qemu-img convert -n -O raw disk.img {uri}");
    println!("  amf status amf-data             # fabric ports, stripes held, protocol counters");
    println!();
    println!("Ctrl-C stops (requests in flight finish, members are flushed).");
}

/// The NBD addresses of the AMFs: `base`, then the following ports.
fn amf_addresses(base: &str) -> Result<Vec<SocketAddr>, ServeError> {
    let first: SocketAddr = base
        .parse()
        .map_err(|error| format!("--nbd {base}: {error} (expected IP:PORT)"))?;
    (0..u16::from(UP_AMFS))
        .map(|id| {
            let port = first
                .port()
                .checked_add(id)
                .filter(|_| first.port() != 0)
                .ok_or_else(|| format!("--nbd {base}: needs a port below 65535, not 0"))?;
            Ok(SocketAddr::new(first.ip(), port))
        })
        .collect()
}

/// A process `amf up` started, and how to start it again.
struct Supervised {
    name: String,
    /// The program and its arguments.
    command: Vec<String>,
    log: PathBuf,
    ready: String,
    child: Child,
    started: Instant,
}

/// The processes `amf up` started; killed if `amf up` ends before stopping them.
#[derive(Default)]
pub(crate) struct Processes(Vec<Supervised>);

/// A child that ran at least this long is restarted at once; one that died sooner waits
/// out the rest of it first, so a child that cannot start does not spin.
const RESTART_UPTIME_MIN: Duration = Duration::from_secs(2);

impl Processes {
    /// Starts `amf ARGUMENTS`, logging to `log`, and waits for the first line it prints
    /// containing `ready` (returned).
    pub(crate) fn start(
        &mut self,
        name: &str,
        arguments: &[&str],
        log: &Path,
        ready: &str,
    ) -> Result<String, ServeError> {
        let amf = std::env::current_exe()?.display().to_string();
        let command: Vec<&str> = std::iter::once(amf.as_str())
            .chain(arguments.iter().copied())
            .collect();
        self.start_command(name, &command, log, ready)
    }

    /// [`Processes::start`] of any program: `command` is the program and its arguments.
    pub(crate) fn start_command(
        &mut self,
        name: &str,
        command: &[&str],
        log: &Path,
        ready: &str,
    ) -> Result<String, ServeError> {
        let command: Vec<String> = command.iter().map(|each| each.to_string()).collect();
        let log_file =
            std::fs::File::create(log).map_err(|error| format!("{}: {error}", log.display()))?;
        let (child, line) = spawn_until(name, &command, log_file, log, ready)?;
        self.0.push(Supervised {
            name: name.to_owned(),
            command,
            log: log.to_path_buf(),
            ready: ready.to_owned(),
            child,
            started: Instant::now(),
        });
        Ok(line)
    }

    /// The first process that has exited, if any.
    pub(crate) fn exited(&mut self) -> Option<String> {
        self.0.iter_mut().find_map(|process| {
            let status = process.child.try_wait().ok().flatten()?;
            Some(format!("{} exited ({status})", process.name))
        })
    }

    /// Starts again every process that exited (its log goes on in the same file); one
    /// line for each, saying what happened.
    pub(crate) fn restart_exited(&mut self) -> Vec<String> {
        let mut said = Vec::new();
        for process in &mut self.0 {
            let Ok(Some(status)) = process.child.try_wait() else {
                continue;
            };
            if let Some(rest) = RESTART_UPTIME_MIN.checked_sub(process.started.elapsed()) {
                std::thread::sleep(rest);
            }
            let restarted = std::fs::OpenOptions::new()
                .append(true)
                .open(&process.log)
                .map_err(|error| -> ServeError {
                    format!("{}: {error}", process.log.display()).into()
                })
                .and_then(|log_file| {
                    spawn_until(
                        &process.name,
                        &process.command,
                        log_file,
                        &process.log,
                        &process.ready,
                    )
                });
            process.started = Instant::now();
            match restarted {
                Ok((child, _)) => {
                    process.child = child;
                    said.push(format!("{} exited ({status}); restarted", process.name));
                }
                Err(error) => said.push(format!(
                    "{} exited ({status}); restarting it failed: {error}",
                    process.name
                )),
            }
        }
        said
    }

    /// SIGTERM to each, newest first (the AMFs before the fabric), waiting for each to end.
    pub(crate) fn stop(&mut self) -> Result<(), ServeError> {
        let mut failed = Vec::new();
        while let Some(Supervised {
            name, mut child, ..
        }) = self.0.pop()
        {
            let pid = rustix::process::Pid::from_child(&child);
            // It may have ended already; the wait below tells either way.
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            let status = child.wait()?;
            if !status.success() {
                failed.push(format!("{name} exited {status}"));
            }
        }
        match failed.is_empty() {
            true => Ok(()),
            false => Err(failed.join("; ").into()),
        }
    }
}

/// Starts `command` (a program and its arguments) logging to `log_file` and waits for its
/// first line containing `ready`: the child and that line.
fn spawn_until(
    name: &str,
    command: &[String],
    log_file: std::fs::File,
    log: &Path,
    ready: &str,
) -> Result<(Child, String), ServeError> {
    let (program, arguments) = command.split_first().ok_or("an empty command")?;
    let mut child = Command::new(program)
        .args(arguments)
        .env(
            "AMF_LOG",
            std::env::var("AMF_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()?;
    let mut reader = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    while !line.contains(ready) {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            let _ = child.kill();
            let _ = child.wait();
            return Err(
                format!("{name} stopped before it was ready; see {}", log.display()).into(),
            );
        }
    }
    // Whatever it prints later goes nowhere, but must not block it.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    Ok((child, line.trim().to_owned()))
}

impl Drop for Processes {
    fn drop(&mut self) {
        for process in &mut self.0 {
            let _ = process.child.kill();
            let _ = process.child.wait();
        }
    }
}

/// Runs `amf up` until Ctrl-C or SIGTERM: `amf fabric` and two `amf serve --id N` as
/// processes over the array, each logging to `DIR/amf-*.log`.
pub fn run(config: &UpConfig) -> Result<(), ServeError> {
    ensure_array(&config.directory)?;
    let members = vec![config.directory.clone()];
    let paths = crate::array::member_paths(&members)?;
    let volume_bytes = crate::array::Array::open(&paths, false)?
        .geometry
        .volume_bytes();
    let addresses = amf_addresses(&config.address)?;
    let directory = config.directory.display().to_string();
    let fabric = format!("unix:{}", config.directory.join("fabric.sock").display());
    let mut processes = Processes::default();
    let log = |name: &str| config.directory.join(format!("{name}.log"));
    processes.start(
        "amf fabric",
        &["fabric", "--listen", &fabric],
        &log("amf-fabric"),
        "listening",
    )?;
    for (id, address) in addresses.iter().enumerate() {
        let (id, address) = (id.to_string(), address.to_string());
        // Every AMF of `amf up` runs on this host's kernel, so its page cache is one
        // for all of them and member I/O may use it.
        let arguments = [
            "serve",
            "--id",
            &id,
            "--fabric",
            &fabric,
            "--nbd",
            &address,
            "--member-io",
            "page-cache",
            &directory,
        ];
        processes.start(
            &format!("AMF {id}"),
            &arguments,
            &log(&format!("amf-{id}")),
            "nbd://",
        )?;
    }
    print_hint(&addresses, volume_bytes);
    let _ = std::io::stdout().flush();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let ended = runtime.block_on(watch(&mut processes, &members));
    let stopped = processes.stop();
    ended?;
    stopped?;
    println!("amf up: stopped cleanly");
    Ok(())
}

/// Until a signal: a status line a second on a terminal, and an error if a process ends.
async fn watch(processes: &mut Processes, members: &[PathBuf]) -> Result<(), ServeError> {
    let shutdown = crate::serve::shutdown_signal()?;
    let mut shutdown = std::pin::pin!(shutdown);
    let terminal = std::io::stderr().is_terminal();
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
        // A dead child is started again; the others go on (the AMFs ride through the
        // fabric's restart, and an AMF that comes back rejoins as a new incarnation).
        for said in processes.restart_exited() {
            eprintln!("\ramf up: {said}; see the logs in the array directory");
        }
        if terminal {
            let line = crate::serve_cluster::read_reports(members)
                .iter()
                .map(|amf| {
                    let cluster = &amf.cluster;
                    format!(
                        "AMF {}: ports {:?}, {} stripes, {} bcast, {} fwd, {} inval, {} replays",
                        cluster.port,
                        cluster.live_ports,
                        cluster.stripes_held,
                        cluster.broadcasts,
                        cluster.forwards,
                        cluster.invalidations,
                        cluster.replays
                    )
                })
                .collect::<Vec<_>>()
                .join(" | ");
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K{line}");
            let _ = stderr.flush();
        }
    }
}
