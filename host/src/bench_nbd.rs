//! `amf bench nbd`: `amf serve` over a RAID-6 of six file members beside `nbdkit file`
//! over one plain file of the same size, both measured by fio's nbd engine in one run.
//!
//! Everything lives in one temporary directory (under `$TMPDIR`, so on one disk): the six
//! members, the sim card's SRAM and nbdkit's file. Each server runs the four workloads in
//! turn — sequential 1 MiB write, sequential 1 MiB read, 4 KiB random read, 4 KiB random
//! write, all at iodepth 16 and time-based — then is stopped with SIGTERM. The table gives
//! each figure for amf and nbdkit and their ratio; sequential write is also compared
//! against nbdkit scaled by (n-p)/n, the share of member bandwidth a RAID-6 of n members
//! can give to data, since it writes n/(n-p) bytes per byte.

use crate::create::{CreateSpec, Targets, create};
use amf_raid::Level;
use serde::{Deserialize, Serialize};
use shared_regs::limits::{CHUNK_BYTES_DEFAULT, DATA_OFFSET_BYTES_DEFAULT};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Boxed error with the cause chain kept.
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;

/// Members of the benchmark's RAID-6.
pub const MEMBERS: u32 = 6;
/// Parity members of a RAID-6.
pub const PARITY_MEMBERS: u32 = 2;
/// Default volume size.
pub const SIZE_DEFAULT: &str = "1G";
/// Default seconds per workload and server.
pub const SECONDS_DEFAULT: u64 = 5;
/// Requests in flight for every workload.
pub const IODEPTH: u32 = 16;

/// How long a server may take to start or to stop.
const SERVER_TIMEOUT: Duration = Duration::from_secs(60);

/// What to measure.
#[derive(Clone, Debug)]
pub struct NbdBenchOptions {
    /// Volume bytes (rounded down to whole stripes); nbdkit's file gets the same size.
    pub size_bytes: u64,
    /// Time-based seconds of each workload on each server.
    pub seconds: u64,
}

/// One fio workload.
#[derive(Clone, Copy, Debug)]
struct Workload {
    name: &'static str,
    rw: &'static str,
    block: &'static str,
    /// Figure in IOPS rather than MB/s.
    iops: bool,
    /// Which side of fio's report holds the figure.
    write: bool,
}

const WORKLOADS: [Workload; 4] = [
    Workload {
        name: "seq-write-1m",
        rw: "write",
        block: "1m",
        iops: false,
        write: true,
    },
    Workload {
        name: "seq-read-1m",
        rw: "read",
        block: "1m",
        iops: false,
        write: false,
    },
    Workload {
        name: "rand-read-4k",
        rw: "randread",
        block: "4k",
        iops: true,
        write: false,
    },
    Workload {
        name: "rand-write-4k",
        rw: "randwrite",
        block: "4k",
        iops: true,
        write: true,
    },
];

/// One row of the report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NbdBenchRow {
    /// Workload name, e.g. `seq-write-1m`; the RAID-6-scaled row ends in `-scaled`.
    pub workload: String,
    /// amf's figure.
    pub amf: f64,
    /// nbdkit's figure (for the scaled row: times (n-p)/n).
    pub nbdkit: f64,
    /// amf / nbdkit.
    pub ratio: f64,
    /// `MB/s` (1e6 bytes) or `IOPS`.
    pub unit: String,
}

/// The whole report (`--json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NbdBenchReport {
    /// One row per workload, plus the scaled sequential write.
    pub results: Vec<NbdBenchRow>,
}

/// Runs the benchmark; `progress` is told what runs (for stderr).
pub fn run(
    options: &NbdBenchOptions,
    mut progress: impl FnMut(&str),
) -> Result<NbdBenchReport, BenchError> {
    check_tools()?;
    let work = TempDir::new()?;
    let members_dir = work.path.join("array");
    let volume_bytes = create_array(&members_dir, options.size_bytes)?;
    let plain = work.path.join("nbdkit.img");
    std::fs::File::create(&plain)
        .and_then(|file| file.set_len(volume_bytes))
        .map_err(|error| format!("{}: {error}", plain.display()))?;

    progress("amf serve: RAID-6 of 6 file members");
    let amf = {
        let server = Server::start_amf(&members_dir, &work.path)?;
        let figures = run_workloads(&server.uri, options.seconds, &mut progress);
        server.stop(figures)?
    };
    progress("nbdkit file: one plain file");
    let nbdkit = {
        let server = Server::start_nbdkit(&plain, &work.path)?;
        let figures = run_workloads(&server.uri, options.seconds, &mut progress);
        server.stop(figures)?
    };
    Ok(report(&amf, &nbdkit))
}

fn report(amf: &[f64], nbdkit: &[f64]) -> NbdBenchReport {
    let mut results = Vec::new();
    for ((workload, &ours), &theirs) in WORKLOADS.iter().zip(amf).zip(nbdkit) {
        let unit = if workload.iops { "IOPS" } else { "MB/s" };
        results.push(row(workload.name.to_owned(), ours, theirs, unit));
        if workload.name == "seq-write-1m" {
            let share = f64::from(MEMBERS - PARITY_MEMBERS) / f64::from(MEMBERS);
            results.push(row(
                format!("{}-scaled", workload.name),
                ours,
                theirs * share,
                unit,
            ));
        }
    }
    NbdBenchReport { results }
}

fn row(workload: String, amf: f64, nbdkit: f64, unit: &str) -> NbdBenchRow {
    let ratio = if nbdkit > 0.0 { amf / nbdkit } else { 0.0 };
    NbdBenchRow {
        workload,
        amf,
        nbdkit,
        ratio,
        unit: unit.to_owned(),
    }
}

/// The report as a table.
pub fn render_table(report: &NbdBenchReport) -> String {
    let mut table = format!(
        "{:<20} {:>12} {:>12} {:>7} {}\n",
        "workload", "amf", "nbdkit", "ratio", "unit"
    );
    for row in &report.results {
        table.push_str(&format!(
            "{:<20} {:>12.1} {:>12.1} {:>6.2}x {}\n",
            row.workload, row.amf, row.nbdkit, row.ratio, row.unit
        ));
    }
    table.push_str(&format!(
        "iodepth {IODEPTH}, fio nbd engine; amf: RAID-6 of {MEMBERS} file members, sim card; \
         nbdkit: file plugin, one file.\n\
         *-scaled: nbdkit x {}/{MEMBERS}, as RAID-6 writes {MEMBERS}/{} bytes per byte.\n",
        MEMBERS - PARITY_MEMBERS,
        MEMBERS - PARITY_MEMBERS,
    ));
    table
}

/// fio (with its nbd engine) and nbdkit, or a one-line error naming the Debian package.
pub(crate) fn check_tools() -> Result<(), BenchError> {
    let fio = Command::new("fio")
        .arg("--enghelp=nbd")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output();
    match fio {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err("fio not found: install the Debian package fio".into());
        }
        Err(error) => return Err(format!("fio: {error}").into()),
        Ok(output) if !output.status.success() => {
            return Err(
                "fio has no nbd engine: install the Debian package fio (built with libnbd)".into(),
            );
        }
        Ok(_) => {}
    }
    match Command::new("nbdkit")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            Err("nbdkit not found: install the Debian package nbdkit".into())
        }
        Err(error) => Err(format!("nbdkit: {error}").into()),
        Ok(_) => Ok(()),
    }
}

/// Creates a RAID-6 of [`MEMBERS`] sparse files in `dir` holding `size_bytes` of volume
/// (rounded down to whole stripes, at least one); returns the volume's bytes.
pub(crate) fn create_array(dir: &Path, size_bytes: u64) -> Result<u64, BenchError> {
    let chunk = u64::from(CHUNK_BYTES_DEFAULT);
    let data_members = u64::from(MEMBERS - PARITY_MEMBERS);
    let chunks = (size_bytes / (chunk * data_members)).max(1);
    let spec = CreateSpec {
        level: Level::Raid6,
        members: MEMBERS,
        chunk_bytes: CHUNK_BYTES_DEFAULT,
        member_bytes: Some(DATA_OFFSET_BYTES_DEFAULT + chunks * chunk),
        force: false,
        array_uuid: *uuid::Uuid::new_v4().as_bytes(),
        created_unix_seconds: 0,
    };
    let created = create(&spec, &Targets::Directory(dir.to_path_buf()))?;
    Ok(created.geometry.volume_bytes())
}

/// Runs every workload against `uri`, in order; the first failure stops the run.
fn run_workloads(
    uri: &str,
    seconds: u64,
    progress: &mut impl FnMut(&str),
) -> Result<Vec<f64>, BenchError> {
    WORKLOADS
        .iter()
        .map(|workload| {
            progress(&format!("  fio {} {seconds}s", workload.name));
            fio(uri, workload, seconds)
        })
        .collect()
}

/// One time-based fio run; the figure in MB/s or IOPS.
fn fio(uri: &str, workload: &Workload, seconds: u64) -> Result<f64, BenchError> {
    let output = Command::new("fio")
        .args([
            &format!("--name={}", workload.name),
            "--ioengine=nbd",
            &format!("--uri={uri}"),
            &format!("--rw={}", workload.rw),
            &format!("--bs={}", workload.block),
            &format!("--iodepth={IODEPTH}"),
            "--numjobs=1",
            "--time_based",
            &format!("--runtime={seconds}"),
            "--output-format=json",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("fio: {error}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "fio {} against {uri} failed ({}): {}",
            workload.name,
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    parse_fio(&stdout, workload).map_err(|error| format!("fio {}: {error}", workload.name).into())
}

/// The figure from fio's JSON (which may follow a few lines of notes).
fn parse_fio(stdout: &str, workload: &Workload) -> Result<f64, String> {
    let start = stdout.find('{').ok_or("no JSON in fio's output")?;
    let value: serde_json::Value =
        serde_json::from_str(&stdout[start..]).map_err(|error| format!("fio's JSON: {error}"))?;
    let side = if workload.write { "write" } else { "read" };
    let job = &value["jobs"][0][side];
    if workload.iops {
        job["iops"]
            .as_f64()
            .ok_or_else(|| format!("no jobs[0].{side}.iops"))
    } else {
        job["bw_bytes"]
            .as_f64()
            .map(|bytes| bytes / 1e6)
            .ok_or_else(|| format!("no jobs[0].{side}.bw_bytes"))
    }
}

/// A server child process, stopped with SIGTERM.
struct Server {
    name: &'static str,
    child: Option<Child>,
    uri: String,
    log: PathBuf,
}

impl Server {
    /// `amf serve --nbd 127.0.0.1:0 DIR` (this executable); the address from its first line.
    fn start_amf(members: &Path, work: &Path) -> Result<Server, BenchError> {
        let exe =
            std::env::current_exe().map_err(|error| format!("current executable: {error}"))?;
        let log = work.join("amf-serve.log");
        let mut child = Command::new(exe)
            .args(["serve", "--nbd", "127.0.0.1:0"])
            .arg(members)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file(&log)?)
            .spawn()
            .map_err(|error| format!("starting amf serve: {error}"))?;
        let stdout = child.stdout.take().ok_or("amf serve: no stdout")?;
        let mut server = Server {
            name: "amf serve",
            child: Some(child),
            uri: String::new(),
            log,
        };
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        match line.trim().strip_prefix("amf serve: ") {
            Some(uri) if read.is_ok() && uri.starts_with("nbd://") => {
                server.uri = uri.to_owned();
                Ok(server)
            }
            _ => Err(format!("amf serve did not print its address: {}", server.log_tail()).into()),
        }
    }

    /// `nbdkit file FILE` on a free loopback port, ready once it accepts a connection.
    fn start_nbdkit(file: &Path, work: &Path) -> Result<Server, BenchError> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|error| format!("finding a free port: {error}"))?
            .port();
        let log = work.join("nbdkit.log");
        let child = Command::new("nbdkit")
            .args([
                "--foreground",
                "--exit-with-parent",
                "--ipaddr",
                "127.0.0.1",
            ])
            .args(["--port", &port.to_string()])
            .arg("file")
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(&log)?)
            .spawn()
            .map_err(|error| match error.kind() {
                std::io::ErrorKind::NotFound => {
                    "nbdkit not found: install the Debian package nbdkit".to_owned()
                }
                _ => format!("starting nbdkit: {error}"),
            })?;
        let mut server = Server {
            name: "nbdkit",
            child: Some(child),
            uri: format!("nbd://127.0.0.1:{port}"),
            log,
        };
        let deadline = Instant::now() + SERVER_TIMEOUT;
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(server);
            }
            let exited = server
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                return Err(format!("nbdkit did not start: {}", server.log_tail()).into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and wait; a failed stop outranks `figures` only if they succeeded.
    fn stop(mut self, figures: Result<Vec<f64>, BenchError>) -> Result<Vec<f64>, BenchError> {
        let status = self.terminate();
        let figures = figures?;
        match status {
            Ok(status) if status.success() => Ok(figures),
            Ok(status) => Err(format!(
                "{} exited {status} on SIGTERM: {}",
                self.name,
                self.log_tail()
            )
            .into()),
            Err(error) => Err(format!("stopping {}: {error}", self.name).into()),
        }
    }

    fn terminate(&mut self) -> Result<ExitStatus, BenchError> {
        let mut child = self.child.take().ok_or("already stopped")?;
        let pid = child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .map_err(|error| format!("kill -TERM {pid}: {error}"))?;
        let deadline = Instant::now() + SERVER_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{} did not stop within {SERVER_TIMEOUT:?}", self.name).into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last lines of the server's log, on one line.
    fn log_tail(&self) -> String {
        let mut text = String::new();
        let _ = std::fs::File::open(&self.log).and_then(|mut file| file.read_to_string(&mut text));
        let lines: Vec<&str> = text.lines().rev().take(3).collect();
        if lines.is_empty() {
            "(no log)".to_owned()
        } else {
            lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
        }
    }
}

impl Drop for Server {
    /// A server not stopped on purpose (an error on the way) is stopped here.
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.terminate();
        }
    }
}

fn log_file(path: &Path) -> Result<std::fs::File, BenchError> {
    std::fs::File::create(path).map_err(|error| format!("{}: {error}", path.display()).into())
}

/// A directory under `$TMPDIR`, removed with everything in it when dropped.
pub(crate) struct TempDir {
    pub(crate) path: PathBuf,
}

impl TempDir {
    pub(crate) fn new() -> Result<TempDir, BenchError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("amf-bench-nbd-{}-{nanos:08x}", std::process::id()));
        std::fs::create_dir(&path).map_err(|error| format!("{}: {error}", path.display()))?;
        Ok(TempDir { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fio_json_after_notes_parses() {
        let text = "note: both iodepth >= 1 and synchronous I/O engine are selected\n\
            {\"jobs\":[{\"read\":{\"bw_bytes\":2000000,\"iops\":5.0},\
            \"write\":{\"bw_bytes\":3000000,\"iops\":7.5}}]}";
        assert_eq!(parse_fio(text, &WORKLOADS[0]), Ok(3.0));
        assert_eq!(parse_fio(text, &WORKLOADS[1]), Ok(2.0));
        assert_eq!(parse_fio(text, &WORKLOADS[2]), Ok(5.0));
        assert_eq!(parse_fio(text, &WORKLOADS[3]), Ok(7.5));
        assert!(parse_fio("fio: oops", &WORKLOADS[0]).is_err());
    }

    #[test]
    fn report_scales_sequential_write_by_data_share() {
        let report = report(
            &[40.0, 100.0, 1000.0, 500.0],
            &[90.0, 100.0, 2000.0, 1000.0],
        );
        let names: Vec<&str> = report.results.iter().map(|r| r.workload.as_str()).collect();
        assert_eq!(
            names,
            [
                "seq-write-1m",
                "seq-write-1m-scaled",
                "seq-read-1m",
                "rand-read-4k",
                "rand-write-4k"
            ]
        );
        let scaled = &report.results[1];
        assert!((scaled.nbdkit - 60.0).abs() < 1e-9);
        assert!((scaled.ratio - 40.0 / 60.0).abs() < 1e-9);
        assert_eq!(report.results[3].unit, "IOPS");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["results"][0]["unit"], "MB/s");
        assert!(render_table(&report).contains("seq-write-1m-scaled"));
    }
}
