//! Online rebuild and scrub through a real cluster, as an operator runs them: a member
//! fails under one AMF (its file truncated and removed under the cluster) and is failed
//! at both; `amf rebuild` through either AMF's control socket puts a new file in its slot
//! while qemu-io writes through both AMFs; both see the member back in service at one
//! point of the fabric's order, the data reads back through each, and `amf scrub` (online
//! through a cluster AMF, then offline) finds every stripe's parity consistent with the
//! rebuilt chunks. An online scrub through an AMF finds and repairs planted bad parity.

mod serve_support;

use serve_support::cluster::{Cluster, WAIT_MAX, must};
use serve_support::{Pattern, amf, destroy_member, member_path, patterns, scrub_mismatches, text};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;
const MEMBERS: u32 = 6;
const MEMBER_MIB: u64 = 40;
/// RAID-6 of 6: four data chunks a stripe; each member's first MiB is its superblock.
const VOLUME_BYTES: u64 = 4 * (MEMBER_MIB - 1) * MIB;
const REBUILT: u32 = 2;
const DATA_OFFSET: u64 = MIB;
const CHUNK_BYTES: u64 = 64 * 1024;

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

/// `amf rebuild` of member `REBUILT` onto a new file in its slot, through `control` (or
/// the AMF the CLI finds), waited for; its JSON report.
fn rebuild(dir: &Path, control: Option<&Path>) -> serde_json::Value {
    let replacement = member_path(dir, REBUILT);
    let mut arguments = vec![
        "rebuild".to_owned(),
        "--member".to_owned(),
        REBUILT.to_string(),
        "--replacement".to_owned(),
        replacement.to_string_lossy().into_owned(),
        "--json".to_owned(),
    ];
    if let Some(control) = control {
        arguments.extend([
            "--control".to_owned(),
            control.to_string_lossy().into_owned(),
        ]);
    }
    arguments.push(dir.to_string_lossy().into_owned());
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    let output = amf(&arguments);
    assert!(output.status.success(), "amf rebuild: {}", text(&output));
    serde_json::from_slice(&output.stdout).unwrap()
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

#[test]
fn a_failed_member_is_rebuilt_online_through_either_amf_while_both_write() {
    let mut cluster = Cluster::start_with(MEMBERS, &format!("{MEMBER_MIB}M"), &[]);
    // Both AMFs cache almost nothing: reads go to the members, not to the peer's cache.
    for port in [0, 1] {
        let (status, log) = cluster.amfs[port as usize]
            .take()
            .unwrap()
            .terminate_with_log();
        assert!(status.success(), "AMF {port} stops cleanly: {log}");
        cluster.start_amf_with(port, &["--cache-size", "4K"]);
    }
    let mut latest: Vec<Pattern> = Vec::new();
    // Round 0: the member fails under AMF 0 and is rebuilt through AMF 1's socket, named;
    // round 1: it fails under AMF 1 and is rebuilt through the AMF the CLI finds (0).
    for (round, meets, through) in [(0u8, 0u8, Some(1u8)), (1, 1, None)] {
        let before = patterns(VOLUME_BYTES, 4 * MIB, 0x10 + round * 0x40);
        must(
            &cluster.uri(1 - meets),
            &before.iter().map(Pattern::write).collect::<Vec<_>>(),
        );
        destroy_member(&cluster.dir, REBUILT);
        must(&cluster.uri(meets), &reads(&before));
        for port in [0, 1] {
            await_status(&cluster, port, "failed member", |status| {
                failed_members(status) == [u64::from(REBUILT)]
            });
        }

        // Each AMF writes its own half of the volume while the rebuild runs.
        let during = patterns(VOLUME_BYTES, 3 * MIB, 0x30 + round * 0x40);
        let (first_half, second_half) = during.split_at(during.len() / 2);
        let control = through.map(|port| cluster.dir.join(format!("amf-{port}.control")));
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
    must(
        &cluster.uri(0),
        &data.iter().map(Pattern::write).collect::<Vec<_>>(),
    );
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

    let control = |port: u8| cluster.dir.join(format!("amf-{port}.control"));
    let through_1 = control(1).to_string_lossy().into_owned();
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
    let through_0 = control(0).to_string_lossy().into_owned();
    let (code, report) = scrub(&cluster.dir, &["--repair", "--control", &through_0]);
    assert_eq!(report["repaired"], true, "{report}");
    assert_eq!(code, Some(1), "a repair reports what it found: {report}");
    let (code, report) = scrub(&cluster.dir, &[]);
    assert_eq!(code, Some(0), "repaired: {report}");
    cluster.stop();
    assert_eq!(scrub_mismatches(&cluster.dir), 0);
}
