//! A member failing under one AMF of a real cluster is failed on every AMF at one point
//! of the fabric's order: the AMF whose I/O met the error tells its core, which
//! broadcasts `MemberFailed`; the other AMF fails the member in its own volume (and
//! superblocks) before its next stripe operation, without ever touching the member, and
//! from then on reads around it. Before, each AMF kept its own view, and a peer kept
//! reading a member the other had stopped writing.

mod serve_support;

use serve_support::Pattern;
use serve_support::cluster::{Cluster, WAIT_MAX, must};
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;
const FAILED_MEMBER: u64 = 2;

/// Waits until AMF `port` shows `member` failed; what it shows last.
fn await_failed(cluster: &Cluster, port: u8, member: u64) -> Vec<u64> {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let failed = cluster.numbers(port, "failed_members");
        if failed.contains(&member) || Instant::now() > deadline {
            return failed;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_member_failing_under_one_amf_is_failed_on_every_amf_in_the_fabrics_order() {
    let mut cluster = Cluster::start_with(6, "64M", &[]);
    // AMF 1 caches almost nothing, so AMF 0's reads below miss in its cache and go to
    // the members instead of being forwarded.
    let (status, log) = cluster.amfs[1].take().unwrap().terminate_with_log();
    assert!(status.success(), "AMF 1 stops cleanly: {log}");
    cluster.start_amf_with(1, &["--cache-size", "4K"]);
    let before = Pattern {
        offset: 0,
        length: 8 * MIB,
        byte: 0x11,
    };
    must(&cluster.uri(1), &[before.write()]);

    // Member 2 now fails every read past its superblock, for whoever reads it.
    let member = cluster.dir.join(format!("member-{FAILED_MEMBER:02}.img"));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&member)
        .unwrap()
        .set_len(8192)
        .unwrap();
    // AMF 0 meets the error (a degraded read still returns the data), then writes.
    must(&cluster.uri(0), &[before.read()]);
    let after = Pattern {
        offset: 0,
        length: 4 * MIB,
        byte: 0x22,
    };
    must(&cluster.uri(0), &[after.write()]);

    let failed_at_0 = await_failed(&cluster, 0, FAILED_MEMBER);
    let failed_at_1 = await_failed(&cluster, 1, FAILED_MEMBER);
    let errors_at_0 = cluster.counter(0, "member_errors");
    let errors_at_1 = cluster.counter(1, "member_errors");
    eprintln!(
        "figures: failed at AMF 0 {failed_at_0:?} after {errors_at_0} member errors; \
         at AMF 1 {failed_at_1:?} after {errors_at_1}"
    );
    assert_eq!(
        failed_at_0,
        [FAILED_MEMBER],
        "AMF 0 failed the member it met"
    );
    assert!(errors_at_0 > 0, "AMF 0 met the member's errors");
    assert_eq!(
        failed_at_1,
        [FAILED_MEMBER],
        "AMF 1 learnt the failure from the fabric's order"
    );
    assert_eq!(errors_at_1, 0, "AMF 1 never touched the failed member");

    // AMF 1 reads around the member: AMF 0's new data and the older data beyond it.
    let rest = Pattern {
        offset: 4 * MIB,
        length: 4 * MIB,
        byte: 0x11,
    };
    must(&cluster.uri(1), &[after.read(), rest.read()]);
    assert_eq!(
        cluster.counter(1, "member_errors"),
        0,
        "AMF 1's degraded reads never went to the failed member"
    );
    cluster.stop();
}

#[test]
fn a_scrub_runs_through_a_cluster_amf_and_offline_only_once_the_cluster_stopped() {
    let mut cluster = Cluster::start_with(6, "64M", &[]);
    let dir = cluster.dir.to_string_lossy().into_owned();
    let online = serve_support::amf(&["scrub", &dir]);
    let stdout = String::from_utf8_lossy(&online.stdout);
    assert!(
        online.status.success() && stdout.contains("0 mismatches found"),
        "the scrub runs through a cluster AMF: {}",
        serve_support::text(&online)
    );
    let with_card = serve_support::amf(&["scrub", "--card", "host", &dir]);
    assert_eq!(with_card.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&with_card.stderr).contains("--card applies to an offline scrub")
    );

    // An AMF that serves but does not answer on its control socket (here: the sockets
    // are gone) makes an offline scrub refuse: the cluster's writes would race it.
    for port in [0, 1] {
        std::fs::remove_file(cluster.dir.join(format!("amf-{port}.control"))).unwrap();
    }
    for repair in [false, true] {
        let mut arguments = vec!["scrub"];
        if repair {
            arguments.push("--repair");
        }
        arguments.push(&dir);
        let output = serve_support::amf(&arguments);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "repair {repair}: {stderr}");
        assert!(
            stderr.contains("serves these members") && stderr.contains("does not answer"),
            "repair {repair}: {stderr}"
        );
    }
    cluster.stop();
    let output = serve_support::amf(&["scrub", &dir]);
    assert!(
        output.status.success(),
        "once the cluster stopped, the scrub runs: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
