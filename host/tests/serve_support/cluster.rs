//! A cluster for real: an `amf fabric` process and `amf serve --id N --fabric` processes
//! on one RAID set of files (`cluster.rs`, `cluster_faults.rs`).

use super::{AMF, Pattern, Server, create, qemu_io};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a wait for a status file's value may take.
pub const WAIT_MAX: Duration = Duration::from_secs(20);

/// A running `amf fabric` on a Unix socket.
pub struct Fabric {
    pub child: Child,
    pub address: String,
    /// Its standard error: the log, at info.
    pub log: PathBuf,
}

impl Fabric {
    pub fn start(root: &Path) -> Fabric {
        Fabric::start_with(root, &[])
    }

    /// `amf fabric --listen unix:ROOT/fabric.sock EXTRA...` (e.g. `--heartbeat-ms`),
    /// logging at info to ROOT/fabric.log.
    pub fn start_with(root: &Path, extra: &[&str]) -> Fabric {
        let socket = root.join("fabric.sock");
        let address = format!("unix:{}", socket.display());
        let log = root.join("fabric.log");
        let mut child = Command::new(AMF)
            .args(["fabric", "--listen", &address])
            .args(extra)
            .env("AMF_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("amf fabric starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("listening"), "amf fabric printed {line:?}");
        Fabric {
            child,
            address,
            log,
        }
    }

    /// What the fabric has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Fabric {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// AMFs over one array (slot N: the AMF of fabric port N, if it runs).
pub struct Cluster {
    pub root: tempfile::TempDir,
    pub dir: PathBuf,
    pub fabric: Fabric,
    pub amfs: Vec<Option<Server>>,
}

impl Cluster {
    /// RAID-6 of 5 members of `size`, the fabric, AMFs 0 and 1.
    pub fn start(size: &str) -> Cluster {
        Cluster::start_with(5, size, &[])
    }

    /// RAID-6 of `members` members of `size` (64 KiB chunks), the fabric with
    /// `fabric_extra`, AMFs 0 and 1.
    pub fn start_with(members: u32, size: &str, fabric_extra: &[&str]) -> Cluster {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("array");
        create(&dir, "6", members, size);
        let fabric = Fabric::start_with(root.path(), fabric_extra);
        let mut cluster = Cluster {
            root,
            dir,
            fabric,
            amfs: vec![None, None],
        };
        cluster.start_amf(0);
        cluster.start_amf(1);
        cluster
    }

    pub fn start_amf(&mut self, port: u8) {
        self.start_amf_with(port, &[]);
    }

    pub fn start_amf_with(&mut self, port: u8, extra: &[&str]) {
        let id = port.to_string();
        let mut arguments = vec!["--id", &id, "--fabric", &self.fabric.address];
        arguments.extend_from_slice(extra);
        if self.amfs.len() <= port as usize {
            self.amfs.resize_with(port as usize + 1, || None);
        }
        self.amfs[port as usize] = Some(Server::start(&self.dir, &arguments));
    }

    pub fn amf(&self, port: u8) -> &Server {
        self.amfs[port as usize].as_ref().expect("the AMF runs")
    }

    pub fn uri(&self, port: u8) -> String {
        self.amf(port).uri()
    }

    /// AMF `port`'s status file (rewritten every half second).
    pub fn report(&self, port: u8) -> serde_json::Value {
        let path = self.dir.join(format!("amf-{port}.status.json"));
        let bytes = std::fs::read(&path).unwrap_or_else(|_| panic!("{} exists", path.display()));
        serde_json::from_slice(&bytes).unwrap()
    }

    /// A counter of AMF `port`'s status file.
    pub fn counter(&self, port: u8, name: &str) -> u64 {
        let report = self.report(port);
        report["cluster"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name} in {report}"))
    }

    /// Waits until `counter` of AMF `port` reaches `at_least`; its last value.
    pub fn await_counter(&self, port: u8, name: &str, at_least: u64) -> u64 {
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            let value = self.counter(port, name);
            if value >= at_least || Instant::now() > deadline {
                return value;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The live ports AMF `port`'s status file shows.
    pub fn live_ports(&self, port: u8) -> Vec<u64> {
        self.numbers(port, "live_ports")
    }

    /// A list of numbers (`live_ports`, `failed_members`) of AMF `port`'s status file.
    pub fn numbers(&self, port: u8, name: &str) -> Vec<u64> {
        let report = self.report(port);
        report["cluster"][name]
            .as_array()
            .unwrap_or_else(|| panic!("{name} in {report}"))
            .iter()
            .filter_map(serde_json::Value::as_u64)
            .collect()
    }

    /// SIGTERM to every AMF: each must stop cleanly.
    pub fn stop(&mut self) {
        for slot in &mut self.amfs {
            if let Some(server) = slot.take() {
                let (status, log) = server.terminate_with_log();
                assert!(status.success(), "amf serve exited {status}; log:\n{log}");
            }
        }
    }
}

/// qemu-io `commands` through `uri`, which must succeed.
pub fn must(uri: &str, commands: &[String]) -> String {
    let (ok, output) = qemu_io(uri, commands);
    assert!(ok, "qemu-io {uri} {commands:?}:\n{output}");
    output
}

/// Runs qemu-io writes (each its own pattern byte) through `uri` in the background.
pub fn spawn_writer(uri: &str, writes: &[Pattern]) -> Child {
    let commands: Vec<String> = writes.iter().map(Pattern::write).collect();
    super::spawn_qemu_io(uri, &commands)
}

/// The writes qemu-io reported done ("wrote N/N bytes at offset X"), in its order.
pub fn acknowledged(child: Child, writes: &[Pattern]) -> Vec<Pattern> {
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let offsets: Vec<u64> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("wrote "))
        .filter_map(|rest| rest.rsplit(' ').next()?.parse().ok())
        .collect();
    assert!(offsets.len() <= writes.len());
    for (offset, write) in offsets.iter().zip(writes) {
        assert_eq!(*offset, write.offset, "qemu-io runs its commands in order");
    }
    writes[..offsets.len()].to_vec()
}
