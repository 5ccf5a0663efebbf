//! Online rebuild and scrub through a real cluster, as an operator runs them: a member
//! fails under one AMF (its file truncated and removed under the cluster) and is failed
//! at both; `amf rebuild` through either AMF's control socket puts a new file in its slot
//! while qemu-io writes through both AMFs; both see the member back in service at one
//! point of the fabric's order, the data reads back through each, and `amf scrub` (online
//! through a cluster AMF, then offline) finds every stripe's parity consistent with the
//! rebuilt chunks. An online scrub through an AMF finds and repairs planted bad parity.
//! Faults mid-rebuild: `kill -9` of the driver (the survivor drives on), the driver paused
//! (SIGSTOP: the fabric fences it, the survivor drives on), a port joining (the rebuild
//! begins again with it), every AMF killed at once (the member stays failed; `amf
//! rebuild` again).

mod serve_support;

use serve_support::cluster::{Cluster, WAIT_MAX, acknowledged, must, spawn_writer};
use serve_support::{
    Pattern, amf, destroy_member, member_path, patterns, rebuild as rebuild_command,
    scrub_mismatches, text,
};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;
const MEMBERS: u32 = 6;
const MEMBER_MIB: u64 = 40;
/// RAID-6 of 6: four data chunks a stripe; each member's first MiB is its superblock.
const VOLUME_BYTES: u64 = 4 * (MEMBER_MIB - 1) * MIB;
const REBUILT: u32 = 2;
const DATA_OFFSET: u64 = MIB;
const CHUNK_BYTES: u64 = 64 * 1024;
/// Members big enough that a rebuild takes a few seconds: long enough to be caught mid-way.
const LARGE_MEMBER_MIB: u64 = 200;
const REBUILD_WAIT_MAX: Duration = Duration::from_secs(60);

/// Waits until AMF `port`'s status file satisfies `done`; the status last read.
fn await_status(
    cluster: &Cluster,
    port: u8,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let report = cluster.report(port);
        if done(&report["cluster"]) {
            return report;
        }
        assert!(Instant::now() < deadline, "AMF {port}: no {what}: {report}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn failed_members(status: &serde_json::Value) -> Vec<u64> {
    status["failed_members"]
        .as_array()
        .map(|members| members.iter().filter_map(|m| m.as_u64()).collect())
        .unwrap_or_default()
}

/// `amf rebuild` of `member` onto a new file in its slot, through `control` (or the AMF
/// the CLI finds), with `extra` arguments; its output, which must be a success.
fn run_rebuild(dir: &Path, member: u32, control: Option<&Path>, extra: &[&str]) -> Output {
    let control = control.map(|path| path.to_string_lossy().into_owned());
    let mut arguments = extra.to_vec();
    if let Some(control) = &control {
        arguments.extend(["--control", control]);
    }
    let output = rebuild_command(dir, member, &arguments);
    assert!(output.status.success(), "amf rebuild: {}", text(&output));
    output
}

/// `amf rebuild` of member `REBUILT`, waited for; its JSON report.
fn rebuild(dir: &Path, control: Option<&Path>) -> serde_json::Value {
    let output = run_rebuild(dir, REBUILT, control, &["--json"]);
    serde_json::from_slice(&output.stdout).unwrap()
}

fn control_of(cluster: &Cluster, port: u8) -> PathBuf {
    cluster.dir.join(format!("amf-{port}.control"))
}

/// A cluster of `MEMBERS` members of `member_mib` MiB whose AMFs cache almost nothing, so
/// that reads go to the members rather than to the peer's cache.
fn uncached_cluster(member_mib: u64) -> Cluster {
    uncached_cluster_with(member_mib, &[])
}

/// As [`uncached_cluster`], the fabric started with `fabric_extra`.
fn uncached_cluster_with(member_mib: u64, fabric_extra: &[&str]) -> Cluster {
    let mut cluster = Cluster::start_with(MEMBERS, &format!("{member_mib}M"), fabric_extra);
    for port in [0, 1] {
        restart_uncached(&mut cluster, port);
    }
    cluster
}

fn restart_uncached(cluster: &mut Cluster, port: u8) {
    if let Some(server) = cluster.amfs[port as usize].take() {
        let (status, log) = server.terminate_with_log();
        assert!(status.success(), "AMF {port} stops cleanly: {log}");
    }
    cluster.start_amf_with(port, &["--cache-size", "4K"]);
}

/// Destroys `member` under the cluster and reads `data` through AMF `port`, which meets
/// the error; waits until both AMFs show the member failed.
fn fail_member(cluster: &Cluster, member: u32, port: u8, data: &[Pattern]) {
    destroy_member(&cluster.dir, member);
    must(&cluster.uri(port), &reads(data));
    for port in [0, 1] {
        await_status(cluster, port, "failed member", |status| {
            failed_members(status).contains(&u64::from(member))
        });
    }
}

/// Waits (up to a minute) until AMF `port` shows a rebuild for which `done` holds.
fn await_rebuild(
    cluster: &Cluster,
    port: u8,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + REBUILD_WAIT_MAX;
    loop {
        let report = cluster.report(port);
        let rebuild = &report["cluster"]["rebuild"];
        if done(rebuild) {
            return rebuild.clone();
        }
        assert!(Instant::now() < deadline, "AMF {port}: no {what}: {report}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A cluster of large members with member `REBUILT` being rebuilt.
struct MidRebuild {
    cluster: Cluster,
    volume_bytes: u64,
    /// Written before the member failed.
    data: Vec<Pattern>,
    /// The rebuild as the observer first saw it past stripe 0.
    seen: serde_json::Value,
}

/// `data` (pattern bytes from `salt`) written through AMF `writer`, member `REBUILT`
/// failed under AMF 0, its rebuild begun through AMF `through`'s socket (`None`: the one
/// the CLI finds) and seen past stripe 0 by AMF `observer`.
fn mid_rebuild(
    fabric_extra: &[&str],
    salt: u8,
    writer: u8,
    through: Option<u8>,
    observer: u8,
) -> MidRebuild {
    let cluster = uncached_cluster_with(LARGE_MEMBER_MIB, fabric_extra);
    let volume_bytes = 4 * (LARGE_MEMBER_MIB - 1) * MIB;
    let data = patterns(volume_bytes, 8 * MIB, salt);
    must(&cluster.uri(writer), &writes(&data));
    fail_member(&cluster, REBUILT, 0, &data);
    let control = through.map(|port| control_of(&cluster, port));
    run_rebuild(&cluster.dir, REBUILT, control.as_deref(), &["--no-wait"]);
    let seen = await_rebuild(&cluster, observer, "rebuild under way", running_past_zero);
    MidRebuild {
        cluster,
        volume_bytes,
        data,
        seen,
    }
}

fn running_past_zero(rebuild: &serde_json::Value) -> bool {
    rebuild["state"] == "running" && rebuild["next_stripe"].as_u64().unwrap_or(0) > 0
}

/// `amf scrub --json [EXTRA] DIR`: exit code and report.
fn scrub(dir: &Path, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let dir = dir.to_string_lossy();
    let mut arguments = vec!["scrub", "--json"];
    arguments.extend_from_slice(extra);
    arguments.push(&dir);
    let output = amf(&arguments);
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("amf scrub: {}", text(&output)));
    (output.status.code(), report)
}

/// The patterns of `all` that none of `newer` overlaps.
fn untouched(all: &[Pattern], newer: &[Pattern]) -> Vec<Pattern> {
    all.iter()
        .copied()
        .filter(|old| {
            newer.iter().all(|new| {
                new.offset >= old.offset + old.length || old.offset >= new.offset + new.length
            })
        })
        .collect()
}

fn reads(patterns: &[Pattern]) -> Vec<String> {
    patterns.iter().map(Pattern::read).collect()
}

fn writes(patterns: &[Pattern]) -> Vec<String> {
    patterns.iter().map(Pattern::write).collect()
}

#[test]
fn a_failed_member_is_rebuilt_online_through_either_amf_while_both_write() {
    let mut cluster = uncached_cluster(MEMBER_MIB);
    let mut latest: Vec<Pattern> = Vec::new();
    // Round 0: the member fails under AMF 0 and is rebuilt through AMF 1's socket, named;
    // round 1: it fails under AMF 1 and is rebuilt through the AMF the CLI finds (0).
    for (round, meets, through) in [(0u8, 0u8, Some(1u8)), (1, 1, None)] {
        let before = patterns(VOLUME_BYTES, 4 * MIB, 0x10 + round * 0x40);
        must(&cluster.uri(1 - meets), &writes(&before));
        fail_member(&cluster, REBUILT, meets, &before);

        // Each AMF writes its own half of the volume while the rebuild runs.
        let during = patterns(VOLUME_BYTES, 3 * MIB, 0x30 + round * 0x40);
        let (first_half, second_half) = during.split_at(during.len() / 2);
        let control = through.map(|port| control_of(&cluster, port));
        let report = std::thread::scope(|scope| {
            for (port, half) in [(0u8, first_half), (1, second_half)] {
                let uri = cluster.uri(port);
                scope.spawn(move || {
                    for pattern in half {
                        must(&uri, &[pattern.write()]);
                    }
                });
            }
            rebuild(&cluster.dir, control.as_deref())
        });
        assert_eq!(report["state"], "done", "round {round}: {report}");
        assert_eq!(report["stripes_done"], report["stripes_total"], "{report}");
        let driver = through.unwrap_or(0);
        for port in [0, 1] {
            let status = await_status(&cluster, port, "finished rebuild", |status| {
                status["rebuild"]["state"] == "done"
            });
            let status = &status["cluster"];
            assert_eq!(
                failed_members(status),
                Vec::<u64>::new(),
                "AMF {port}: {status}"
            );
            assert_eq!(status["rebuild"]["member"], REBUILT, "{status}");
            assert_eq!(
                status["rebuild"]["driving"],
                port == driver,
                "the AMF asked drives the rebuild: {status}"
            );
        }
        eprintln!(
            "figures: round {round}: {} stripes rebuilt in {:.2}s through AMF {driver}",
            report["stripes_total"],
            report["elapsed_seconds"].as_f64().unwrap_or(0.0)
        );
        // What was written during the rebuild reads back through both AMFs, and so does
        // what was written before it where nothing newer landed.
        let older = [untouched(&latest, &before), before].concat();
        latest = [untouched(&older, &during), during.clone()].concat();
        for port in [0, 1] {
            must(&cluster.uri(port), &reads(&latest));
        }
    }

    let output = amf(&["status", &cluster.dir.to_string_lossy()]);
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(
        shown.contains(&format!("rebuild of member {REBUILT}:"))
            && shown.contains("this AMF drives it")
            && shown.contains("done: the member is in service"),
        "amf status shows the rebuild: {shown}"
    );

    // Online scrub through the AMF the CLI finds: every stripe checked, nothing wrong.
    let (code, report) = scrub(&cluster.dir, &[]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["mismatches"], serde_json::json!([]), "{report}");
    assert_eq!(report["stripes_checked"], report["stripes"], "{report}");
    cluster.stop();
    assert_eq!(
        scrub_mismatches(&cluster.dir),
        0,
        "offline scrub after the stop"
    );
}

#[test]
fn an_online_scrub_through_a_cluster_amf_finds_and_repairs_bad_parity() {
    let mut cluster = Cluster::start_with(MEMBERS, "24M", &[]);
    let data = patterns(4 * 23 * MIB, 2 * MIB, 0x51);
    must(&cluster.uri(0), &writes(&data));
    const STRIPE: u64 = 7;
    let member = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(member_path(&cluster.dir, 0))
        .unwrap();
    let offset = DATA_OFFSET + STRIPE * CHUNK_BYTES + 100;
    let mut byte = [0u8];
    member.read_exact_at(&mut byte, offset).unwrap();
    member.write_all_at(&[byte[0] ^ 0xff], offset).unwrap();

    let through_1 = control_of(&cluster, 1).to_string_lossy().into_owned();
    let (code, report) = scrub(&cluster.dir, &["--control", &through_1]);
    assert_eq!(code, Some(1), "a mismatch is an exit code: {report}");
    let stripes: Vec<u64> = report["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|mismatch| mismatch["stripe"].as_u64())
        .collect();
    assert!(
        !stripes.is_empty() && stripes.iter().all(|&stripe| stripe == STRIPE),
        "{report}"
    );
    let through_0 = control_of(&cluster, 0).to_string_lossy().into_owned();
    let (code, report) = scrub(&cluster.dir, &["--repair", "--control", &through_0]);
    assert_eq!(report["repaired"], true, "{report}");
    assert_eq!(code, Some(1), "a repair reports what it found: {report}");
    let (code, report) = scrub(&cluster.dir, &[]);
    assert_eq!(code, Some(0), "repaired: {report}");
    cluster.stop();
    assert_eq!(scrub_mismatches(&cluster.dir), 0);
}

#[test]
fn a_rebuild_goes_on_when_its_driver_is_killed_and_begins_again_when_a_port_joins() {
    // The driver, AMF 0, is killed mid-rebuild: AMF 1, the oldest survivor, drives on
    // from the checkpoint the two shared.
    let MidRebuild {
        mut cluster,
        data,
        seen,
        ..
    } = mid_rebuild(&[], 0x21, 0, Some(0), 1);
    cluster.amfs[0].take().unwrap().kill9();
    let finished = await_rebuild(&cluster, 1, "finished rebuild", |rebuild| {
        rebuild["state"] == "done"
    });
    assert_eq!(
        finished["driving"], true,
        "AMF 1 took the rebuild over: {finished}"
    );
    assert_eq!(
        failed_members(&cluster.report(1)["cluster"]),
        Vec::<u64>::new()
    );
    eprintln!(
        "figures: driver killed at stripe {} or later of {}; AMF 1 finished it",
        seen["next_stripe"], finished["stripes"]
    );
    restart_uncached(&mut cluster, 0);
    for port in [0, 1] {
        must(&cluster.uri(port), &reads(&data));
    }

    // A port joins mid-rebuild: the rebuild stops and its driver, AMF 1, begins it again
    // from stripe 0 with the joiner in; both see it end.
    const SECOND: u32 = 4;
    fail_member(&cluster, SECOND, 1, &data);
    let (status, log) = cluster.amfs[0].take().unwrap().terminate_with_log();
    assert!(status.success(), "AMF 0 stops cleanly: {log}");
    run_rebuild(
        &cluster.dir,
        SECOND,
        Some(&control_of(&cluster, 1)),
        &["--no-wait"],
    );
    await_rebuild(&cluster, 1, "rebuild under way", |rebuild| {
        rebuild["member"] == SECOND && running_past_zero(rebuild)
    });
    restart_uncached(&mut cluster, 0);
    for port in [0, 1] {
        let finished = await_rebuild(&cluster, port, "rebuild after the join", |rebuild| {
            rebuild["member"] == SECOND && rebuild["state"] == "done"
        });
        assert_eq!(finished["driving"], port == 1, "{finished}");
    }
    let log = cluster.amf(1).log_text();
    assert!(
        log.contains("rebuild stopped") && log.contains("a port joined"),
        "AMF 1 logged the restart:\n{log}"
    );
    for port in [0, 1] {
        must(&cluster.uri(port), &reads(&data));
    }
    cluster.stop();
    assert_eq!(scrub_mismatches(&cluster.dir), 0);
}

#[test]
fn every_amf_killed_mid_rebuild_leaves_the_member_failed_until_it_is_rebuilt_again() {
    let MidRebuild {
        mut cluster,
        data,
        volume_bytes,
        ..
    } = mid_rebuild(&[], 0x43, 1, None, 0);
    // Writes land on both sides of the checkpoint while both AMFs die at once.
    let during = patterns(volume_bytes, 5 * MIB, 0x65);
    let writer = spawn_writer(&cluster.uri(1), &during);
    std::thread::sleep(Duration::from_millis(300));
    let at_kill = cluster.report(0)["cluster"]["rebuild"].clone();
    for port in [0, 1] {
        cluster.amfs[port].take().unwrap().kill9();
    }
    let acknowledged = acknowledged(writer, &during);
    assert_eq!(at_kill["state"], "running", "killed mid-rebuild: {at_kill}");
    eprintln!(
        "figures: both AMFs killed near stripe {} of {}, {} of {} writes acknowledged",
        at_kill["next_stripe"],
        at_kill["stripes"],
        acknowledged.len(),
        during.len()
    );
    // The superblocks never said "rebuilding": the member is failed for whoever opens
    // the array next, and nothing of the half-done rebuild is trusted.
    let offline = amf(&["status", "--json", &cluster.dir.to_string_lossy()]);
    let offline: serde_json::Value = serde_json::from_slice(&offline.stdout).unwrap();
    let state = &offline["members"][REBUILT as usize]["state"];
    assert!(state == "failed" || state == "stale", "{offline}");
    for port in [0, 1] {
        restart_uncached(&mut cluster, port);
    }
    for port in [0, 1] {
        await_status(
            &cluster,
            port,
            "failed member after the restart",
            |status| failed_members(status) == [u64::from(REBUILT)],
        );
    }
    // What was acknowledged reads back, and what no write of the killed run touched.
    let latest = [untouched(&data, &during), acknowledged].concat();
    must(&cluster.uri(0), &reads(&latest));
    let output = run_rebuild(&cluster.dir, REBUILT, None, &["--json"]);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["state"], "done", "{report}");
    for port in [0, 1] {
        must(&cluster.uri(port), &reads(&latest));
    }
    cluster.stop();
    assert_eq!(scrub_mismatches(&cluster.dir), 0);
}

#[test]
fn a_paused_driver_is_fenced_and_its_peer_finishes_the_rebuild() {
    // A short heartbeat: a port silent for 0.5 s is fenced (killed) and announced down.
    let fabric = ["--heartbeat-ms", "50", "--heartbeat-misses", "10"];
    let MidRebuild {
        mut cluster,
        data,
        seen,
        ..
    } = mid_rebuild(&fabric, 0x37, 1, Some(0), 1);
    let paused = cluster.amf(0).child.id();
    // SAFETY: kill(2) on a child process this test started and has not reaped.
    let sent = unsafe { libc::kill(paused as libc::pid_t, libc::SIGSTOP) };
    assert_eq!(sent, 0, "SIGSTOP to AMF 0");
    let finished = await_rebuild(&cluster, 1, "finished rebuild", |rebuild| {
        rebuild["state"] == "done"
    });
    assert_eq!(
        finished["driving"], true,
        "AMF 1 took the rebuild over: {finished}"
    );
    let mut amf_0 = cluster.amfs[0].take().unwrap();
    let ended = amf_0.child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&ended),
        Some(libc::SIGKILL),
        "the fabric fenced the paused driver: {ended}"
    );
    eprintln!(
        "figures: driver paused at stripe {} or later of {}; fenced, AMF 1 finished it",
        seen["next_stripe"], finished["stripes"]
    );
    restart_uncached(&mut cluster, 0);
    for port in [0, 1] {
        must(&cluster.uri(port), &reads(&data));
    }
    cluster.stop();
    assert_eq!(scrub_mismatches(&cluster.dir), 0);
}
