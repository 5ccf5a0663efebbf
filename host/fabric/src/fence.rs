//! Fencing: making sure the peer of a dead link can no longer change a member before the
//! fabric announces its port down.
//!
//! A link can end while its AMF still runs: paused (SIGSTOP, a stalled VM), partitioned,
//! or too slow. If the fabric announced it down at once, a survivor would replay its
//! writes and take its stripes, and the paused AMF, resumed, would write old data over
//! them. So the [`Arbiter`](crate::Arbiter) asks for a fence ([`Output::Fence`]) and
//! broadcasts `MemberDown` only once the shell reports the port fenced; until then the
//! port stays reserved.
//!
//! The peer of a link is identified when the link is accepted ([`identify_unix`],
//! [`identify_tcp`]): the process that holds the other end of the socket, held by a
//! pidfd so that a reused pid cannot make the fabric kill another process. Agents:
//!
//! * [`FenceAgent::Kill`] (the default): SIGKILL through the pidfd, then wait until the
//!   pidfd is readable (the whole process has exited: no thread of it is left in a write;
//!   a blocking poll on the runtime's blocking pool).
//!   A peer that is the fabric's own process (tests that run a fabric and sim cards in one
//!   process) is taken as fenced when its link closes: it cannot be killed without killing
//!   the fabric. A peer whose process could not be found (a remote TCP peer, or a socket
//!   several processes share) cannot be fenced this way and is refused at its `Join`.
//! * [`FenceAgent::Command`]: an external agent, in the style of Pacemaker's fence agents:
//!   `sh -c 'CMD "$@"' amf-fence --port N --address A [--pid P]`, exit status 0 meaning
//!   fenced; killed and counted as a failure after its timeout. Every peer is accepted: the
//!   agent decides how to fence it (a power switch, a storage reservation, ssh and kill).
//!
//! A failed attempt is reported to the arbiter, which asks again after a back-off and
//! never announces an unfenced port. A port that says `Leave` (its host stopped every
//! member write) is not fenced at all.
//!
//! [`Output::Fence`]: crate::Output::Fence

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

/// How long the kill agent waits for a killed process to be gone before it reports a
/// failure (and the arbiter asks again, which kills again).
pub const KILL_WAIT_MS_MAX: u64 = 10_000;
/// Default time an external fence agent may take.
pub const COMMAND_TIMEOUT_MS_DEFAULT: u64 = 30_000;

/// How the fabric fences the peer of a dead link.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum FenceAgent {
    /// SIGKILL the peer process through a pidfd and wait until it is gone.
    #[default]
    Kill,
    /// Run an external agent (see the [module docs](self)).
    Command {
        /// Shell text; the fence arguments follow it.
        command: String,
        /// Longest run; past it the agent is killed and the attempt failed.
        timeout_ms: u64,
    },
}

/// Who is at the other end of a link, found when it was accepted.
#[derive(Debug)]
pub struct Peer {
    /// The peer's address as the fabric sees it (`tcp:IP:PORT` or `unix`).
    pub address: String,
    /// Its process.
    pub process: PeerProcess,
}

/// The process at the other end of a link.
#[derive(Debug)]
pub enum PeerProcess {
    /// The fabric's own process: fenced once its link closed.
    Own,
    /// Another process of this machine, held by a pidfd.
    Process {
        /// Its pid (for logs and the command agent).
        pid: i32,
        /// A pidfd opened at accept.
        pidfd: OwnedFd,
    },
    /// Not found: why.
    Unknown(String),
}

impl fmt::Display for Peer {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.process {
            PeerProcess::Own => write!(formatter, "{} (this process)", self.address),
            PeerProcess::Process { pid, .. } => write!(formatter, "{} (pid {pid})", self.address),
            PeerProcess::Unknown(why) => write!(formatter, "{} ({why})", self.address),
        }
    }
}

impl Peer {
    /// Its pid, when it is a known process.
    pub fn pid(&self) -> Option<i32> {
        match &self.process {
            PeerProcess::Own => Some(std::process::id() as i32),
            PeerProcess::Process { pid, .. } => Some(*pid),
            PeerProcess::Unknown(_) => None,
        }
    }
}

/// Why a fence attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    /// The kill agent has no process to kill.
    #[error("no process to kill: {0}")]
    NoProcess(String),
    /// Sending SIGKILL failed.
    #[error("SIGKILL to pid {pid} failed")]
    Signal {
        /// The peer.
        pid: i32,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for the killed process failed.
    #[error("waiting for pid {pid} to exit failed")]
    Wait {
        /// The peer.
        pid: i32,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The killed process did not exit in time (stuck in the kernel, perhaps in a write).
    #[error("pid {pid} was still there {waited_ms} ms after SIGKILL")]
    StillAlive {
        /// The peer.
        pid: i32,
        /// How long we waited.
        waited_ms: u64,
    },
    /// The external agent could not be started.
    #[error("fence command '{command}' could not start")]
    Spawn {
        /// The command.
        command: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The external agent said no.
    #[error("fence command '{command}' failed ({status})")]
    CommandFailed {
        /// The command.
        command: String,
        /// How it exited.
        status: std::process::ExitStatus,
    },
    /// The external agent took too long and was killed.
    #[error("fence command '{command}' timed out after {timeout_ms} ms")]
    CommandTimeout {
        /// The command.
        command: String,
        /// Its limit.
        timeout_ms: u64,
    },
}

impl FenceAgent {
    /// Whether this agent can fence `peer`; `Err(why)` refuses its `Join`.
    pub fn check(&self, peer: &Peer) -> Result<(), String> {
        match (self, &peer.process) {
            (Self::Kill, PeerProcess::Unknown(why)) => Err(format!(
                "the kill fence agent needs the peer's process, and {why}; \
                 connect over unix: or a loopback TCP address, or run the fabric with \
                 --fence command"
            )),
            _ => Ok(()),
        }
    }

    /// Fences `peer`, the other end of `port`'s ended link.
    pub async fn fence(&self, port: u8, peer: &Peer) -> Result<(), FenceError> {
        if let PeerProcess::Own = peer.process {
            // Its link is closed and it is this process: nothing is left to stop.
            return Ok(());
        }
        match self {
            Self::Kill => match &peer.process {
                PeerProcess::Process { pid, pidfd } => kill(*pid, pidfd).await,
                PeerProcess::Unknown(why) => Err(FenceError::NoProcess(why.clone())),
                PeerProcess::Own => Ok(()),
            },
            Self::Command {
                command,
                timeout_ms,
            } => run_command(command, *timeout_ms, port, peer).await,
        }
    }
}

/// SIGKILL through the pidfd, then waits until the process is gone.
async fn kill(pid: i32, pidfd: &OwnedFd) -> Result<(), FenceError> {
    match rustix::process::pidfd_send_signal(pidfd, rustix::process::Signal::KILL) {
        // ESRCH: it has already exited (perhaps not yet reaped): as good as killed.
        Ok(()) | Err(rustix::io::Errno::SRCH) => {}
        Err(errno) => {
            return Err(FenceError::Signal {
                pid,
                source: errno.into(),
            });
        }
    }
    let wait_error = |source| FenceError::Wait { pid, source };
    let watched = pidfd.try_clone().map_err(wait_error)?;
    // A blocking poll on a thread of the runtime's pool, not `AsyncFd`: registering a
    // descriptor with tokio is `unsafe` (tokio 1.54), and this crate forbids unsafe code.
    let waited = tokio::task::spawn_blocking(move || wait_exit(&watched, KILL_WAIT_MS_MAX))
        .await
        .map_err(|error| wait_error(std::io::Error::other(error)))?;
    match waited.map_err(wait_error)? {
        true => Ok(()),
        false => Err(FenceError::StillAlive {
            pid,
            waited_ms: KILL_WAIT_MS_MAX,
        }),
    }
}

/// Waits at most `timeout_ms` for the process of `pidfd` to exit (the pidfd becomes
/// readable once every thread of it is gone); true when it did.
fn wait_exit(pidfd: &OwnedFd, timeout_ms: u64) -> std::io::Result<bool> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let deadline = std::time::Instant::now() + Duration::from_millis(timeout_ms);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let timeout = Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(0) if left.is_zero() => return Ok(false),
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => return Ok(true),
            Err(errno) => return Err(errno.into()),
        }
    }
}

/// Runs the external agent: `sh -c 'CMD "$@"' amf-fence --port N --address A [--pid P]`.
async fn run_command(
    command: &str,
    timeout_ms: u64,
    port: u8,
    peer: &Peer,
) -> Result<(), FenceError> {
    let mut process = tokio::process::Command::new("/bin/sh");
    process
        .arg("-c")
        .arg(format!("{command} \"$@\""))
        .arg("amf-fence")
        .args(["--port", &port.to_string(), "--address", &peer.address]);
    if let Some(pid) = peer.pid() {
        process.args(["--pid", &pid.to_string()]);
    }
    process
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let mut child = process.spawn().map_err(|source| FenceError::Spawn {
        command: command.to_string(),
        source,
    })?;
    let waited = tokio::time::timeout(Duration::from_millis(timeout_ms), child.wait()).await;
    match waited {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(FenceError::CommandFailed {
            command: command.to_string(),
            status,
        }),
        Ok(Err(source)) => Err(FenceError::Spawn {
            command: command.to_string(),
            source,
        }),
        Err(_) => {
            let _ = child.kill().await;
            Err(FenceError::CommandTimeout {
                command: command.to_string(),
                timeout_ms,
            })
        }
    }
}

/// The peer of an accepted Unix stream: `SO_PEERCRED`'s pid, held by a pidfd.
pub fn identify_unix(stream: &tokio::net::UnixStream) -> Peer {
    let address = "unix".to_string();
    let pid = match stream.peer_cred() {
        Ok(credentials) => credentials.pid(),
        Err(error) => return unknown(address, format!("SO_PEERCRED failed: {error}")),
    };
    let Some(pid) = pid else {
        return unknown(address, "SO_PEERCRED gave no pid".into());
    };
    let process = hold_process(pid, stream);
    Peer { address, process }
}

/// The peer of an accepted TCP stream: when it is a socket of this machine, the process
/// holding it (found through `/proc/net/tcp{,6}` and `/proc/*/fd`), held by a pidfd.
pub fn identify_tcp(stream: &tokio::net::TcpStream) -> Peer {
    let (peer_address, local_address) = match (stream.peer_addr(), stream.local_addr()) {
        (Ok(peer), Ok(local)) => (peer, local),
        (Err(error), _) | (_, Err(error)) => {
            return unknown("tcp".into(), format!("its address is unknown: {error}"));
        }
    };
    let address = format!("tcp:{peer_address}");
    let inode = match socket_inode(peer_address, local_address) {
        Ok(Some(inode)) => inode,
        Ok(None) => {
            return unknown(
                address,
                "no socket of this machine is its end: a remote peer".into(),
            );
        }
        Err(error) => return unknown(address, format!("/proc/net/tcp unreadable: {error}")),
    };
    if process_holds(&std::path::PathBuf::from("/proc/self/fd"), inode) {
        return Peer {
            address,
            process: PeerProcess::Own,
        };
    }
    let holders = settled_holders(inode);
    let process = match holders.iter().collect::<Vec<_>>().as_slice() {
        [pid] => {
            let pid = **pid;
            let process = hold_process(pid, stream);
            // The pidfd is of the process that held the socket when we looked, if it
            // still holds it now (a pid reused in between would not).
            let path = std::path::PathBuf::from(format!("/proc/{pid}/fd"));
            match process {
                PeerProcess::Process { .. } if !process_holds(&path, inode) => {
                    PeerProcess::Unknown(format!("pid {pid} let go of its socket"))
                }
                process => process,
            }
        }
        [] => PeerProcess::Unknown(format!(
            "no process of ours holds its socket (inode {inode})"
        )),
        pids => PeerProcess::Unknown(format!(
            "processes {pids:?} share its socket: killing one would not fence it"
        )),
    };
    Peer { address, process }
}

fn unknown(address: String, why: String) -> Peer {
    Peer {
        address,
        process: PeerProcess::Unknown(why),
    }
}

/// A pidfd for `pid`, the peer of `socket`; checked after opening so a pid reused between
/// the peer's connect and this open is not taken for it: if the peer had exited, its end
/// of the socket would have hung up.
fn hold_process(pid: i32, socket: &impl AsFd) -> PeerProcess {
    if pid == std::process::id() as i32 {
        return PeerProcess::Own;
    }
    let Some(raw) = rustix::process::Pid::from_raw(pid) else {
        return PeerProcess::Unknown(format!("pid {pid} is not a process id"));
    };
    let pidfd = match rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty()) {
        Ok(pidfd) => pidfd,
        Err(errno) => {
            return PeerProcess::Unknown(format!("pidfd_open({pid}) failed: {errno}"));
        }
    };
    if hung_up(socket) || hung_up(&pidfd) {
        return PeerProcess::Unknown(format!("pid {pid} exited while its link was accepted"));
    }
    PeerProcess::Process { pid, pidfd }
}

/// Whether `fd` reports a hang-up (a socket whose peer closed) or, for a pidfd, an exit,
/// without waiting.
fn hung_up(fd: &impl AsFd) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(fd, PollFlags::RDHUP | PollFlags::IN)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match rustix::event::poll(&mut fds, Some(&now)) {
        Ok(0) => false,
        Ok(_) => {
            let events = fds[0].revents();
            let pidfd_exited = events.contains(PollFlags::IN) && !is_socket(fd);
            events.intersects(PollFlags::RDHUP | PollFlags::HUP) || pidfd_exited
        }
        Err(_) => true,
    }
}

fn is_socket(fd: &impl AsFd) -> bool {
    rustix::fs::fstat(fd)
        .is_ok_and(|stat| rustix::fs::FileType::from_raw_mode(stat.st_mode).is_socket())
}

/// The inode of the socket whose local end is `peer` and remote end `local`: the peer's
/// end of our accepted connection, when it is on this machine.
fn socket_inode(peer: SocketAddr, local: SocketAddr) -> std::io::Result<Option<u64>> {
    let want = (canonical(peer), canonical(local));
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = match std::fs::read_to_string(table) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        if let Some(inode) = text.lines().skip(1).find_map(|line| row_inode(line, want)) {
            return Ok(Some(inode));
        }
    }
    Ok(None)
}

fn canonical(address: SocketAddr) -> (IpAddr, u16) {
    (address.ip().to_canonical(), address.port())
}

/// One `/proc/net/tcp{,6}` row's inode, if its local and remote ends are `want`.
fn row_inode(line: &str, want: ((IpAddr, u16), (IpAddr, u16))) -> Option<u64> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (local, remote, inode) = (fields.get(1)?, fields.get(2)?, fields.get(9)?);
    if parse_proc_address(local)? != want.0 || parse_proc_address(remote)? != want.1 {
        return None;
    }
    inode.parse().ok().filter(|&inode| inode != 0)
}

/// `0100007F:1F90` (IPv4) or 32 hex digits `:PORT` (IPv6): each 32-bit word is the
/// address's bytes in network order read as a native integer, then printed in hex.
fn parse_proc_address(text: &str) -> Option<(IpAddr, u16)> {
    let (address, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |index: usize| -> Option<[u8; 4]> {
        let hex = address.get(index * 8..index * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match address.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut octets = [0u8; 16];
            for index in 0..4 {
                octets[index * 4..index * 4 + 4].copy_from_slice(&word(index)?);
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some((ip.to_canonical(), port))
}

/// Tries [`socket_holders`] takes for one holder to remain.
const HOLDER_TRIES_MAX: u32 = 10;
/// Pause between those tries.
const HOLDER_RETRY_MS: u64 = 10;

/// The holders of socket `inode`, looked at again while several hold it: a child the
/// holder forks (to exec a program) holds its close-on-exec descriptors too, until its
/// exec a moment later, so a second holder is most often one that is about to let go.
fn settled_holders(inode: u64) -> BTreeSet<i32> {
    let mut holders = socket_holders(inode);
    for _ in 1..HOLDER_TRIES_MAX {
        if holders.len() <= 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(HOLDER_RETRY_MS));
        holders = socket_holders(inode);
    }
    holders
}

/// Pids of the processes (not threads) that hold socket `inode` open.
fn socket_holders(inode: u64) -> BTreeSet<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| process_holds(&std::path::PathBuf::from(format!("/proc/{pid}/fd")), inode))
        .collect()
}

/// Whether one of the descriptors in `fd_directory` is socket `inode`.
fn process_holds(fd_directory: &std::path::Path, inode: u64) -> bool {
    let want = format!("socket:[{inode}]");
    let Ok(entries) = std::fs::read_dir(fd_directory) else {
        // Gone, or not ours to look at.
        return false;
    };
    entries.flatten().any(|entry| {
        std::fs::read_link(entry.path()).is_ok_and(|target| target.as_os_str() == want.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_addresses_decode() {
        let loopback = u32::from_ne_bytes([127, 0, 0, 1]);
        let text = format!("{loopback:08X}:1F90");
        assert_eq!(
            parse_proc_address(&text),
            Some((IpAddr::V4(Ipv4Addr::LOCALHOST), 8080))
        );
        let mapped = Ipv4Addr::LOCALHOST.to_ipv6_mapped().octets();
        let words: String = mapped
            .chunks(4)
            .map(|chunk| format!("{:08X}", u32::from_ne_bytes(chunk.try_into().unwrap())))
            .collect();
        assert_eq!(
            parse_proc_address(&format!("{words}:0050")),
            Some((IpAddr::V4(Ipv4Addr::LOCALHOST), 80)),
            "a v4-mapped v6 address is the v4 one"
        );
        for bad in ["", "0100007F", "XYZ:1", "0100007F:GGGG", "0100:0001"] {
            assert_eq!(parse_proc_address(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_kill_agent_refuses_peers_it_cannot_find() {
        let remote = unknown("tcp:192.0.2.1:5".into(), "a remote peer".into());
        let why = FenceAgent::Kill.check(&remote).unwrap_err();
        assert!(
            why.contains("a remote peer") && why.contains("--fence command"),
            "{why}"
        );
        let command = FenceAgent::Command {
            command: "true".into(),
            timeout_ms: 1_000,
        };
        assert!(command.check(&remote).is_ok());
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_loopback_tcp_peer_in_this_process_is_our_own() {
        runtime().block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            let _client = tokio::net::TcpStream::connect(address).await.unwrap();
            let (accepted, _) = listener.accept().await.unwrap();
            let peer = identify_tcp(&accepted);
            assert!(matches!(peer.process, PeerProcess::Own), "{peer}");
        });
    }

    const HELPER_SOCKET: &str = "AMF_FENCE_TEST_SOCKET";

    /// Not a test on its own: run by the test below in a process of its own.
    #[test]
    fn peer_helper() {
        if let Some(path) = std::env::var_os(HELPER_SOCKET) {
            let _stream = std::os::unix::net::UnixStream::connect(path).unwrap();
            std::thread::sleep(Duration::from_secs(60));
        }
    }

    #[test]
    fn a_unix_peer_in_another_process_is_killed_and_waited_for() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("s");
        runtime().block_on(async {
            let listener = tokio::net::UnixListener::bind(&path).unwrap();
            // This test binary again, as the helper below: another process that
            // connects and then just waits.
            let mut child = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "fence::tests::peer_helper", "--nocapture"])
                .env(HELPER_SOCKET, &path)
                .spawn()
                .unwrap();
            let (accepted, _) = listener.accept().await.unwrap();
            let peer = identify_unix(&accepted);
            assert_eq!(peer.pid(), Some(child.id() as i32), "{peer}");
            FenceAgent::Kill.fence(0, &peer).await.unwrap();
            let status = child.try_wait().unwrap().expect("gone once fenced");
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(status.signal(), Some(9));
        });
    }

    #[test]
    fn the_command_agent_gets_the_port_and_its_exit_status_counts() {
        let directory = tempfile::tempdir().unwrap();
        let log = directory.path().join("args");
        let peer = unknown("tcp:192.0.2.1:5".into(), "remote".into());
        let agent = |command: String, timeout_ms| FenceAgent::Command {
            command,
            timeout_ms,
        };
        runtime().block_on(async {
            let record = agent(format!("echo >{}", log.display()), 5_000);
            record.fence(3, &peer).await.unwrap();
            let args = std::fs::read_to_string(&log).unwrap();
            assert_eq!(args.trim(), "--port 3 --address tcp:192.0.2.1:5");
            let failing = agent("false".into(), 5_000).fence(3, &peer).await;
            assert!(matches!(failing, Err(FenceError::CommandFailed { .. })));
            let slow = agent("sleep 30;".into(), 100).fence(3, &peer).await;
            assert!(
                matches!(slow, Err(FenceError::CommandTimeout { .. })),
                "{slow:?}"
            );
        });
    }
}
