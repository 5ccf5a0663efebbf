//! `amf bench cluster`: what active-active costs. 4 KiB random writes at queue depth 16
//! under fio's nbd engine, in one run: one AMF alone (the reference), two AMFs each
//! writing its own half of the volume, and two AMFs writing the same half. For each case:
//! total IOPS, the ratio to one AMF, fio's p50/p99 completion latency, and the fabric
//! frames and acquire broadcasts per stripe write, read from the AMFs' status files.
//!
//! Each AMF is a real `amf serve --id N --fabric` process beside a real `amf fabric`, as
//! `amf up` starts them. The same run adds two AMFs on disjoint halves whose fabrics are
//! replicas over corosync (`amf fabric --corosync`, one corosync node in a network
//! namespace of its own), when root may make one and corosync is installed.

use crate::bench_nbd::{BenchError, IODEPTH, TempDir, check_tools, create_array};
use crate::serve_cluster::{AmfReport, read_reports};
use crate::up::Processes;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Default volume size.
pub const SIZE_DEFAULT: &str = "256M";
/// Default seconds per case.
pub const SECONDS_DEFAULT: u64 = 5;
/// How long an AMF's status file may lag its counters.
const STATUS_SETTLE_MS: u64 = 700;

/// What `amf bench cluster` measures.
#[derive(Clone, Copy, Debug)]
pub struct ClusterBenchOptions {
    /// Volume bytes.
    pub size_bytes: u64,
    /// Seconds of fio per case.
    pub seconds: u64,
}

/// One case's figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterBenchRow {
    /// "one-amf", "two-amfs-disjoint", "two-amfs-shared" or "two-amfs-disjoint-corosync".
    pub case: String,
    /// AMFs written through.
    pub amfs: u32,
    /// 4 KiB writes per second, all clients together.
    pub iops: f64,
    /// `iops` over the one-AMF case's.
    pub ratio_to_one_amf: f64,
    /// Completion latency, median and 99th percentile, in microseconds (the worse
    /// client's).
    pub latency_p50_us: f64,
    pub latency_p99_us: f64,
    /// Fabric frames sent per stripe write (acquires, replies, intent records, retires).
    pub fabric_frames_per_write: f64,
    /// Acquire broadcasts per stripe write.
    pub broadcasts_per_write: f64,
}

/// The whole report (`--json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterBenchReport {
    pub results: Vec<ClusterBenchRow>,
    /// Why a case did not run (the corosync case needs root, `ip` and `corosync`).
    #[serde(default)]
    pub skipped: Vec<String>,
}

/// One fio job's figures.
#[derive(Clone, Copy, Debug, PartialEq)]
struct FioFigures {
    iops: f64,
    p50_us: f64,
    p99_us: f64,
}

/// Counters summed over every AMF.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct FabricTotals {
    frames: u64,
    broadcasts: u64,
    writes: u64,
}

/// Runs the three cases; `progress` is told what runs.
pub fn run(
    options: &ClusterBenchOptions,
    mut progress: impl FnMut(&str),
) -> Result<ClusterBenchReport, BenchError> {
    check_tools()?;
    let work = TempDir::new()?;
    let members = work.path.join("array");
    let volume_bytes = create_array(&members, options.size_bytes)?;
    let half = volume_bytes / 2 / 4096 * 4096;
    let mut rows = Vec::new();
    progress("one AMF");
    {
        let mut cluster = Cluster::start(&work.path, &members, 1)?;
        let figures = cluster.measure(&[(0, 0, half)], options.seconds);
        rows.push(row("one-amf", cluster.stop(figures)?));
    }
    progress("two AMFs: disjoint halves, then one shared half");
    let mut cluster = Cluster::start(&work.path, &members, 2)?;
    let disjoint = cluster.measure(&[(0, 0, half), (1, half, half)], options.seconds);
    let disjoint = disjoint.map(|figures| row("two-amfs-disjoint", figures));
    let shared = cluster.measure(&[(0, 0, half), (1, 0, half)], options.seconds);
    let shared = shared.map(|figures| row("two-amfs-shared", figures));
    cluster.stop(Ok(()))?;
    rows.push(disjoint?);
    rows.push(shared?);
    let mut skipped = Vec::new();
    match CorosyncHost::unavailable() {
        Some(why) => skipped.push(format!("two-amfs-disjoint-corosync: {why}")),
        None => {
            progress("two AMFs on disjoint halves, each on its own fabric over corosync");
            let host = CorosyncHost::start(&work.path)?;
            let mut cluster = Cluster::start_on_corosync(&work.path, &members, &host)?;
            let figures = cluster.measure(&[(0, 0, half), (1, half, half)], options.seconds);
            rows.push(row("two-amfs-disjoint-corosync", cluster.stop(figures)?));
        }
    }
    let reference = rows[0].iops;
    for row in &mut rows {
        row.ratio_to_one_amf = row.iops / reference;
    }
    Ok(ClusterBenchReport {
        results: rows,
        skipped,
    })
}

fn row(case: &str, (clients, fabric): (Vec<FioFigures>, FabricTotals)) -> ClusterBenchRow {
    let writes = fabric.writes.max(1) as f64;
    let worst = |pick: fn(&FioFigures) -> f64| clients.iter().map(pick).fold(0.0, f64::max);
    ClusterBenchRow {
        case: case.to_owned(),
        amfs: clients.len() as u32,
        iops: clients.iter().map(|client| client.iops).sum(),
        ratio_to_one_amf: 1.0,
        latency_p50_us: worst(|client| client.p50_us),
        latency_p99_us: worst(|client| client.p99_us),
        fabric_frames_per_write: fabric.frames as f64 / writes,
        broadcasts_per_write: fabric.broadcasts as f64 / writes,
    }
}

/// The table printed without `--json`.
pub fn render_table(report: &ClusterBenchReport) -> String {
    let mut text = format!(
        "{:<27} {:>4} {:>10} {:>8} {:>9} {:>9} {:>13} {:>12}\n",
        "case", "amfs", "IOPS", "ratio", "p50 us", "p99 us", "frames/write", "bcast/write"
    );
    for row in &report.results {
        text.push_str(&format!(
            "{:<27} {:>4} {:>10.0} {:>7.2}x {:>9.0} {:>9.0} {:>13.3} {:>12.4}\n",
            row.case,
            row.amfs,
            row.iops,
            row.ratio_to_one_amf,
            row.latency_p50_us,
            row.latency_p99_us,
            row.fabric_frames_per_write,
            row.broadcasts_per_write
        ));
    }
    text.push_str(&format!(
        "4 KiB random writes, queue depth {IODEPTH} per client (fio --ioengine=nbd); \
         RAID-6 of 6 files, one client per AMF; the corosync case: one corosync (knet on \
         loopback, aes256) in a network namespace, an `amf fabric --corosync` per AMF\n"
    ));
    for why in &report.skipped {
        text.push_str(&format!("skipped {why}\n"));
    }
    text
}

/// A corosync daemon of its own for the bench: one node on loopback in a network
/// namespace (its IPC sockets are the namespace's, so a host's own corosync is left
/// alone), with a /run of its own for its pid file.
struct CorosyncHost {
    namespace: String,
    group: String,
    corosync: Child,
}

impl CorosyncHost {
    /// Why the corosync case cannot run here, if it cannot.
    fn unavailable() -> Option<String> {
        if !rustix::process::geteuid().is_root() {
            return Some("needs root (a network namespace)".into());
        }
        ["corosync", "corosync-quorumtool", "ip", "unshare"]
            .into_iter()
            .find(|tool| which(tool).is_none())
            .map(|tool| format!("{tool} is not installed"))
    }

    fn start(work: &Path) -> Result<CorosyncHost, BenchError> {
        let tag = format!("amfbench{}", std::process::id() % 100_000);
        let dir = work.join("corosync");
        std::fs::create_dir_all(dir.join("run"))?;
        let authkey = dir.join("authkey");
        let mut key = vec![0u8; 256];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut key)?;
        std::fs::write(&authkey, key)?;
        let conf = format!(
            "totem {{\n  version: 2\n  cluster_name: {tag}\n  transport: knet\n  \
             crypto_cipher: aes256\n  crypto_hash: sha256\n  keyfile: {key}\n}}\n\
             nodelist {{\n  node {{\n    ring0_addr: 127.0.0.1\n    nodeid: 1\n  }}\n}}\n\
             quorum {{\n  provider: corosync_votequorum\n}}\n\
             logging {{\n  to_stderr: yes\n  to_syslog: no\n}}\n\
             system {{\n  state_dir: {state}\n  allow_knet_handle_fallback: yes\n}}\n",
            key = authkey.display(),
            state = dir.display(),
        );
        std::fs::write(dir.join("corosync.conf"), conf)?;
        run_tool("ip", &["netns", "add", &tag])?;
        let host = CorosyncHost {
            corosync: spawn_corosync(&dir, &tag)?,
            namespace: tag.clone(),
            group: tag,
        };
        run_tool("ip", &["-n", &host.namespace, "link", "set", "lo", "up"])?;
        host.await_quorate()?;
        Ok(host)
    }

    fn await_quorate(&self) -> Result<(), BenchError> {
        for _ in 0..200 {
            let output = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &self.namespace,
                    "corosync-quorumtool",
                    "-s",
                ])
                .output()?;
            if String::from_utf8_lossy(&output.stdout).contains("Quorate:          Yes") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("the bench's corosync did not become quorate in 20 s".into())
    }
}

fn spawn_corosync(dir: &Path, namespace: &str) -> Result<Child, BenchError> {
    let script = format!(
        "mount --bind {run} /run && exec corosync -f -c {conf}",
        run = dir.join("run").display(),
        conf = dir.join("corosync.conf").display()
    );
    let log = std::fs::File::create(dir.join("corosync.log"))?;
    Ok(Command::new("ip")
        .args([
            "netns", "exec", namespace, "unshare", "--mount", "sh", "-c", &script,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?)
}

impl Drop for CorosyncHost {
    fn drop(&mut self) {
        let _ = self.corosync.kill();
        let _ = self.corosync.wait();
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.namespace])
            .status();
    }
}

fn run_tool(program: &str, arguments: &[&str]) -> Result<(), BenchError> {
    let status = Command::new(program).args(arguments).status()?;
    match status.success() {
        true => Ok(()),
        false => Err(format!("{program} {}: {status}", arguments.join(" ")).into()),
    }
}

/// `program`'s path on `PATH`, if any.
fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}

/// A fabric and `amfs` AMFs over `members`.
struct Cluster {
    processes: Processes,
    members: Vec<PathBuf>,
    uris: Vec<String>,
}

impl Cluster {
    fn start(work: &Path, members: &Path, amfs: u8) -> Result<Cluster, BenchError> {
        let mut processes = Processes::default();
        let fabric = format!(
            "unix:{}",
            work.join(format!("fabric-{amfs}.sock")).display()
        );
        processes.start(
            "amf fabric",
            &["fabric", "--listen", &fabric],
            &work.join(format!("fabric-{amfs}.log")),
            "listening",
        )?;
        let fabrics = vec![fabric; usize::from(amfs)];
        Self::start_amfs(processes, work, members, &fabrics)
    }

    /// Two AMFs, each on a fabric of its own; the fabrics are replicas over `host`'s
    /// corosync (as on two machines, but one corosync node between them).
    fn start_on_corosync(
        work: &Path,
        members: &Path,
        host: &CorosyncHost,
    ) -> Result<Cluster, BenchError> {
        let mut processes = Processes::default();
        let amf = std::env::current_exe()?.display().to_string();
        let mut fabrics = Vec::new();
        for id in 0..2 {
            let fabric = format!(
                "unix:{}",
                work.join(format!("corosync-{id}.sock")).display()
            );
            processes.start_command(
                &format!("amf fabric --corosync ({id})"),
                &["ip", "netns", "exec", &host.namespace, &amf, "fabric"]
                    .into_iter()
                    .chain(["--listen", &fabric, "--corosync", &host.group])
                    .collect::<Vec<_>>(),
                &work.join(format!("corosync-fabric-{id}.log")),
                "listening",
            )?;
            fabrics.push(fabric);
        }
        Self::start_amfs(processes, work, members, &fabrics)
    }

    /// AMF N on `fabrics[N]`, each serving NBD on a free port.
    fn start_amfs(
        mut processes: Processes,
        work: &Path,
        members: &Path,
        fabrics: &[String],
    ) -> Result<Cluster, BenchError> {
        let amfs = fabrics.len();
        let directory = members.display().to_string();
        let mut uris = Vec::new();
        for (id, fabric) in fabrics.iter().enumerate() {
            let id = id.to_string();
            let arguments = [
                "serve",
                "--id",
                &id,
                "--fabric",
                fabric,
                "--nbd",
                "127.0.0.1:0",
                // One host, one page cache: as under `amf up`, and as `amf serve` alone.
                "--member-io",
                "page-cache",
                &directory,
            ];
            let line = processes.start(
                &format!("AMF {id}"),
                &arguments,
                &work.join(format!("amf-{id}-of-{amfs}.log")),
                "nbd://",
            )?;
            let uri = line.split_whitespace().last().unwrap_or_default();
            uris.push(uri.to_owned());
        }
        Ok(Cluster {
            processes,
            members: vec![members.to_path_buf()],
            uris,
        })
    }

    /// fio on each `(amf, offset, length)` at once; its figures and the fabric counters
    /// those writes moved.
    fn measure(
        &mut self,
        clients: &[(usize, u64, u64)],
        seconds: u64,
    ) -> Result<(Vec<FioFigures>, FabricTotals), BenchError> {
        let before = self.totals();
        let jobs: Vec<Child> = clients
            .iter()
            .map(|&(amf, offset, length)| spawn_fio(&self.uris[amf], offset, length, seconds))
            .collect::<Result<_, _>>()?;
        let figures = jobs
            .into_iter()
            .map(wait_fio)
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(exited) = self.processes.exited() {
            return Err(format!("{exited} during the run").into());
        }
        std::thread::sleep(Duration::from_millis(STATUS_SETTLE_MS));
        let after = self.totals();
        let moved = FabricTotals {
            frames: after.frames - before.frames,
            broadcasts: after.broadcasts - before.broadcasts,
            writes: after.writes - before.writes,
        };
        Ok((figures, moved))
    }

    fn totals(&self) -> FabricTotals {
        read_reports(&self.members)
            .iter()
            .map(|report: &AmfReport| &report.cluster)
            .fold(FabricTotals::default(), |sum, amf| FabricTotals {
                frames: sum.frames + amf.frames_sent,
                broadcasts: sum.broadcasts + amf.broadcasts,
                writes: sum.writes + amf.stripe_writes,
            })
    }

    /// Stops every process; a failed stop outranks `result` only if it succeeded.
    fn stop<T>(mut self, result: Result<T, BenchError>) -> Result<T, BenchError> {
        let stopped = self.processes.stop();
        let value = result?;
        stopped?;
        Ok(value)
    }
}

fn spawn_fio(uri: &str, offset: u64, length: u64, seconds: u64) -> Result<Child, BenchError> {
    Command::new("fio")
        .args([
            "--name=rand-write-4k",
            "--ioengine=nbd",
            &format!("--uri={uri}"),
            "--rw=randwrite",
            "--bs=4k",
            &format!("--offset={offset}"),
            &format!("--size={length}"),
            &format!("--iodepth={IODEPTH}"),
            "--numjobs=1",
            "--time_based",
            &format!("--runtime={seconds}"),
            "--output-format=json",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("fio: {error}").into())
}

fn wait_fio(child: Child) -> Result<FioFigures, BenchError> {
    let output = child.wait_with_output()?;
    if !output.status.success() {
        return Err(format!(
            "fio failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    parse_fio(&String::from_utf8_lossy(&output.stdout))
        .map_err(|error| format!("fio: {error}").into())
}

/// IOPS and completion-latency percentiles of the write side of fio's JSON.
fn parse_fio(stdout: &str) -> Result<FioFigures, String> {
    let start = stdout.find('{').ok_or("no JSON in fio's output")?;
    let value: serde_json::Value =
        serde_json::from_str(&stdout[start..]).map_err(|error| format!("fio's JSON: {error}"))?;
    let write = &value["jobs"][0]["write"];
    let field = |path: &[&str]| {
        path.iter()
            .fold(write, |node, key| &node[*key])
            .as_f64()
            .ok_or_else(|| format!("no jobs[0].write.{}", path.join(".")))
    };
    Ok(FioFigures {
        iops: field(&["iops"])?,
        p50_us: field(&["clat_ns", "percentile", "50.000000"])? / 1e3,
        p99_us: field(&["clat_ns", "percentile", "99.000000"])? / 1e3,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fio_write_percentiles_parse_and_missing_ones_are_errors() {
        let text = "note: a line before the JSON\n{\"jobs\":[{\"write\":{\"iops\":1500.5,\
            \"clat_ns\":{\"percentile\":{\"50.000000\":250000,\"99.000000\":1200000}}}}]}";
        assert_eq!(
            parse_fio(text),
            Ok(FioFigures {
                iops: 1500.5,
                p50_us: 250.0,
                p99_us: 1200.0
            })
        );
        let without = "{\"jobs\":[{\"write\":{\"iops\":1.0}}]}";
        assert!(parse_fio(without).unwrap_err().contains("clat_ns"));
        assert!(parse_fio("fio: no such engine").is_err());
    }

    #[test]
    fn rows_sum_clients_and_take_the_worse_latency() {
        let clients = vec![
            FioFigures {
                iops: 100.0,
                p50_us: 10.0,
                p99_us: 50.0,
            },
            FioFigures {
                iops: 300.0,
                p50_us: 20.0,
                p99_us: 40.0,
            },
        ];
        let fabric = FabricTotals {
            frames: 800,
            broadcasts: 4,
            writes: 400,
        };
        let row = row("two-amfs-disjoint", (clients, fabric));
        assert_eq!(row.amfs, 2);
        assert_eq!(row.iops, 400.0);
        assert_eq!((row.latency_p50_us, row.latency_p99_us), (20.0, 50.0));
        assert_eq!(row.fabric_frames_per_write, 2.0);
        assert_eq!(row.broadcasts_per_write, 0.01);
        let report = ClusterBenchReport {
            results: vec![row],
            skipped: vec!["two-amfs-disjoint-corosync: needs root".into()],
        };
        assert!(render_table(&report).contains("two-amfs-disjoint"));
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["results"][0]["iops"], 400.0);
    }
}
