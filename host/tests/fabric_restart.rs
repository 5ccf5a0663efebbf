//! The fabric process is no single point of failure on one host: `kill -9` of `amf fabric`
//! under writes through both AMFs of a real cluster, then a new `amf fabric` on the same
//! socket. Both AMFs keep running, hold the requests they had and those that come, rejoin
//! as new incarnations once the fabric is back, and serve again; every write qemu-io saw
//! acknowledged reads back through both AMFs, and scrub finds 0 mismatches.

mod serve_support;

use serve_support::cluster::{Cluster, Fabric, acknowledged, must, spawn_writer};
use serve_support::{Pattern, patterns, scrub_mismatches};
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;
const MEMBER_MIB: u64 = 48;
/// RAID-6 of 5 members: three data chunks a stripe, after each member's 1 MiB superblock.
const VOLUME_BYTES: u64 = 3 * (MEMBER_MIB - 1) * MIB;
const BACK_WITHIN: Duration = Duration::from_secs(10);

/// Waits until AMF `port` has rejoined: no outage, both ports live; how long it took.
fn await_rejoined(cluster: &Cluster, port: u8) -> Duration {
    let started = Instant::now();
    loop {
        let report = cluster.report(port);
        let status = &report["cluster"];
        let live = status["live_ports"].as_array().map_or(0, Vec::len);
        if status["outage"].is_null() && live == 2 && status["down"].is_null() {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < BACK_WITHIN,
            "AMF {port} did not serve again within {BACK_WITHIN:?} of the fabric's return: {report}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_fabric_killed_and_restarted_under_writes_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(&format!("{MEMBER_MIB}M"));
    for round in 0..3u8 {
        // Each AMF's client writes its own half, one write after another.
        let all = patterns(VOLUME_BYTES, 2 * MIB, 0x11 + round * 0x30);
        let (first, second) = all.split_at(all.len() / 2);
        let writers = [(0u8, first), (1, second)]
            .map(|(port, half)| (spawn_writer(&cluster.uri(port), half), half));
        std::thread::sleep(Duration::from_millis(150));
        let _ = cluster.fabric.child.kill();
        let _ = cluster.fabric.child.wait();
        std::thread::sleep(Duration::from_millis(300));
        // The outage shows in the status files while the AMFs hold their requests.
        for port in [0, 1] {
            let status = &cluster.report(port)["cluster"];
            assert!(
                status["down"].is_null(),
                "AMF {port} left the cluster: {status}"
            );
        }
        let restarted = Instant::now();
        cluster.fabric = Fabric::start(cluster.root.path());
        let back: Vec<Duration> = [0, 1].map(|port| await_rejoined(&cluster, port)).into();
        let acked: Vec<Vec<Pattern>> = writers
            .into_iter()
            .map(|(writer, half)| acknowledged(writer, half))
            .collect();
        for (port, half) in [first, second].iter().enumerate() {
            assert_eq!(
                acked[port].len(),
                half.len(),
                "round {round}: every write through AMF {port} completed after the rejoin"
            );
        }
        eprintln!(
            "figures: round {round}: serving again {:?} / {:?} after the fabric's restart \
             ({:?} since), {} + {} writes acknowledged",
            back[0],
            back[1],
            restarted.elapsed(),
            acked[0].len(),
            acked[1].len()
        );
        for port in [0, 1] {
            assert!(
                cluster.amf(port).log_text().contains("rejoined the fabric"),
                "AMF {port} logged its rejoin"
            );
            let reads: Vec<String> = all.iter().map(Pattern::read).collect();
            must(&cluster.uri(port), &reads);
        }
    }
    cluster.stop();
    assert_eq!(scrub_mismatches(&cluster.dir), 0);
}
