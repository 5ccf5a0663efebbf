//! The faults a data centre has, against a real cluster: an `amf fabric` process and
//! `amf serve --id N --fabric` processes on one RAID-6 of six files with 64 KiB chunks
//! (the product default; 256 KiB of data a stripe), driven by real NBD clients (qemu-io,
//! nbdinfo). Two clients patching sectors of one block at once, requests of the largest
//! size the export advertises, an AMF paused (SIGSTOP) long enough for its peer to take
//! over and then resumed, every AMF killed at once in the middle of writes, and a flush at
//! one AMF that must make another AMF's writes durable.
//!
//! Every test prints one `figures:` line (rounds, losses, mismatches, times) and fails on
//! a missing tool with a message naming it. Every qemu-io has a timeout: a hang fails the
//! test instead of hanging CI.

mod serve_support;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serve_support::cluster::{Cluster, WAIT_MAX};
use serve_support::{Pattern, finish_qemu_io, qemu_io_within, scrub_mismatches, spawn_qemu_io};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const BLOCK: u64 = 4 * KIB;
const SECTOR: u64 = 512;
/// RAID-6 of 6 members with 64 KiB chunks: 256 KiB of data a stripe.
const MEMBERS: u32 = 6;
const STRIPE_DATA_BYTES: u64 = 256 * KIB;
/// The longest one qemu-io may take before the test calls it hung.
const QEMU_IO_TIMEOUT: Duration = Duration::from_secs(40);

/// Fails the test, with a message saying what to install, if `tool` does not run.
fn require(tool: &str, version_flag: &str, package: &str) {
    let runs = Command::new(tool)
        .arg(version_flag)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        runs,
        "this test needs `{tool}`, which does not run here: apt-get install -y {package}"
    );
}

fn env_number(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

/// qemu-io that must succeed within [`QEMU_IO_TIMEOUT`].
fn must(uri: &str, commands: &[String]) -> String {
    let (ok, output) = qemu_io_within(uri, commands, QEMU_IO_TIMEOUT);
    assert!(ok, "qemu-io {uri} {commands:?}:\n{output}");
    output
}

/// The offsets of the reads whose pattern check failed ("Pattern verification failed at
/// offset X, N bytes": X is the read's offset).
fn failed_reads(output: &str) -> BTreeSet<u64> {
    output
        .lines()
        .filter_map(|line| line.strip_prefix("Pattern verification failed at offset "))
        .filter_map(|rest| rest.split(',').next()?.trim().parse().ok())
        .collect()
}

/// `commands` are `read -P` checks only: the offsets whose check failed. Any other
/// failure (an I/O error, a timeout) fails the test.
fn check_reads(uri: &str, commands: &[String]) -> BTreeSet<u64> {
    let (ok, output) = qemu_io_within(uri, commands, QEMU_IO_TIMEOUT);
    let failed = failed_reads(&output);
    let other_failure = !ok
        && output
            .lines()
            .any(|line| line.contains("failed") && !line.starts_with("Pattern verification"));
    assert!(
        ok || (!failed.is_empty() && !other_failure),
        "qemu-io {uri} reads failed otherwise than by pattern:\n{output}"
    );
    failed
}

fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) on a child process this test started and has not reaped.
    let sent = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(sent, 0, "kill({pid}, {signal}) failed");
}

fn describe(status: ExitStatus) -> String {
    match status.signal() {
        Some(libc::SIGKILL) => "killed by SIGKILL".to_owned(),
        Some(number) => format!("killed by signal {number}"),
        None => format!("exited with code {}", status.code().unwrap_or(-1)),
    }
}

#[test]
fn concurrent_sub_block_writes_of_one_block_are_never_lost() {
    require("qemu-io", "--version", "qemu-utils");
    let rounds = env_number("AMF_SUB_BLOCK_ROUNDS", 100);
    let mut cluster = Cluster::start_with(MEMBERS, "16M", &[]);
    // Each round has a stripe of its own (fresh zeros, and a first acquire of that
    // stripe), wrapping round when the volume has fewer: a reused block is zeroed first.
    let stripes = 200u64;
    let mut rng = ChaCha8Rng::seed_from_u64(0x5ec7);
    let started = Instant::now();
    let (mut lost, mut corrupt, mut writes) = (Vec::new(), Vec::new(), 0u64);
    for round in 0..u64::from(rounds) {
        let stripe = round % stripes;
        let one_block = stripe * STRIPE_DATA_BYTES + (round % 32) * BLOCK;
        let two_block = stripe * STRIPE_DATA_BYTES + (32 + round % 32) * BLOCK;
        let reader = ((round + 1) % 2) as u8;
        if round >= stripes {
            must(
                &cluster.uri(reader),
                &[
                    format!("write -P 0 {one_block} 4k"),
                    format!("write -P 0 {two_block} 4k"),
                ],
            );
        }
        let two_sectors = |rng: &mut ChaCha8Rng| {
            let first = rng.gen_range(0..8u64);
            let second = (first + rng.gen_range(1..8u64)) % 8;
            (first, second)
        };
        let (aa, bb) = two_sectors(&mut rng);
        let (cc, dd) = two_sectors(&mut rng);
        // What each sector of the two blocks must hold.
        let mut expected: BTreeMap<u64, u8> = (0..8)
            .flat_map(|sector| [one_block + sector * SECTOR, two_block + sector * SECTOR])
            .map(|offset| (offset, 0))
            .collect();
        let written = [
            (one_block + aa * SECTOR, 0xaa),
            (one_block + bb * SECTOR, 0xbb),
            (two_block + cc * SECTOR, 0xcc),
            (two_block + dd * SECTOR, 0xdd),
        ];
        expected.extend(written);
        writes += written.len() as u64;
        // Two concurrent writes through one AMF (alternating which), and one write
        // through each AMF, the three clients started together.
        let through = (round % 2) as u8;
        let one_amf = spawn_qemu_io(
            &cluster.uri(through),
            &[
                format!("aio_write -P 0xaa {} 512", written[0].0),
                format!("aio_write -P 0xbb {} 512", written[1].0),
                "aio_flush".to_owned(),
            ],
        );
        let amf_0 = spawn_qemu_io(
            &cluster.uri(0),
            &[format!("write -P 0xcc {} 512", written[2].0)],
        );
        let amf_1 = spawn_qemu_io(
            &cluster.uri(1),
            &[format!("write -P 0xdd {} 512", written[3].0)],
        );
        for (what, child) in [("one AMF", one_amf), ("AMF 0", amf_0), ("AMF 1", amf_1)] {
            let (ok, output) = finish_qemu_io(child, QEMU_IO_TIMEOUT);
            assert!(
                ok,
                "round {round}: the write through {what} failed:\n{output}"
            );
        }
        let reads: Vec<String> = expected
            .iter()
            .map(|(offset, byte)| format!("read -P {byte} {offset} 512"))
            .collect();
        for offset in check_reads(&cluster.uri(reader), &reads) {
            let byte = expected[&offset];
            let entry = format!("round {round}: sector at {offset} (expected {byte:#x})");
            if byte == 0 {
                corrupt.push(entry);
            } else {
                lost.push(entry);
            }
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "figures: {rounds} rounds, {writes} sub-block writes ({} through one AMF at once, {} \
         through two AMFs at once), {} lost, {} untouched sectors changed, {elapsed:.1?}",
        writes / 2,
        writes / 2,
        lost.len(),
        corrupt.len()
    );
    assert!(
        lost.is_empty() && corrupt.is_empty(),
        "lost writes: {lost:#?}\nsectors nobody wrote that changed: {corrupt:#?}"
    );
    cluster.stop();
    assert_eq!(scrub_mismatches(&cluster.dir), 0, "parity after the rounds");
}

/// `block_size_maximum` of the export at `uri`, as `nbdinfo --json` reports it.
fn advertised_maximum(uri: &str) -> u64 {
    let output = Command::new("nbdinfo")
        .args(["--json", uri])
        .output()
        .expect("nbdinfo runs");
    assert!(output.status.success(), "nbdinfo {uri}: {output:?}");
    let info: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    info["exports"][0]["block_size_maximum"]
        .as_u64()
        .unwrap_or_else(|| panic!("no block_size_maximum in {info}"))
}

#[test]
fn requests_of_the_advertised_maximum_complete_through_every_amf() {
    require("qemu-io", "--version", "qemu-utils");
    require("nbdinfo", "--version", "libnbd-bin");
    let mut cluster = Cluster::start_with(MEMBERS, "40M", &[]);
    let maximum = advertised_maximum(&cluster.uri(0));
    assert_eq!(
        advertised_maximum(&cluster.uri(1)),
        maximum,
        "the AMFs advertise different maximum request sizes"
    );
    assert!(
        maximum >= 16 * MIB,
        "the export advertises a maximum request of {maximum} bytes"
    );
    // Per AMF: 16 MiB stripe-aligned, then the maximum at an offset that is not even
    // block-aligned (a patch at both ends, every stripe between written whole).
    let mut writes = Vec::new();
    let mut offset = 0;
    for port in [0u8, 1] {
        for (index, length) in [16 * MIB, maximum].into_iter().enumerate() {
            let byte = 0x21 + port * 0x10 + index as u8;
            writes.push((
                port,
                Pattern {
                    offset,
                    length,
                    byte,
                },
            ));
            offset += length + 7 * SECTOR;
        }
    }
    let mut timings = Vec::new();
    for (port, write) in &writes {
        let started = Instant::now();
        must(&cluster.uri(*port), &[write.write()]);
        let wrote = started.elapsed();
        let started = Instant::now();
        let (ok, output) = qemu_io_within(&cluster.uri(1 - port), &[write.read()], QEMU_IO_TIMEOUT);
        assert!(
            ok,
            "{} MiB written through AMF {port} does not read back through AMF {}:\n{output}",
            write.length / MIB,
            1 - port
        );
        timings.push(format!(
            "{} MiB via AMF {port}: write {wrote:.2?}, read via AMF {} {:.2?}",
            write.length / MIB,
            1 - port,
            started.elapsed()
        ));
    }
    cluster.stop();
    let mismatches = scrub_mismatches(&cluster.dir);
    eprintln!(
        "figures: advertised maximum {} MiB; {}; scrub {mismatches} mismatches",
        maximum / MIB,
        timings.join("; ")
    );
    assert_eq!(mismatches, 0, "parity after the largest requests");
}

/// Waits until AMF `observer`'s status file no longer lists `gone` among the live ports.
fn await_gone(cluster: &Cluster, observer: u8, gone: u8) -> Duration {
    let started = Instant::now();
    while cluster.live_ports(observer).contains(&u64::from(gone)) {
        assert!(
            started.elapsed() < WAIT_MAX,
            "AMF {observer} still lists AMF {gone} as live after {WAIT_MAX:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// Waits until AMF `observer`'s status file lists `port` among the live ports.
fn await_live(cluster: &Cluster, observer: u8, port: u8) {
    let started = Instant::now();
    while !cluster.live_ports(observer).contains(&u64::from(port)) {
        assert!(
            started.elapsed() < WAIT_MAX,
            "AMF {observer} does not list AMF {port} as live after {WAIT_MAX:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_paused_amf_is_fenced_before_its_peer_takes_over() {
    require("qemu-io", "--version", "qemu-utils");
    let rounds = env_number("AMF_PAUSE_ROUNDS", 20);
    let settle = Duration::from_millis(env_number("AMF_PAUSE_SETTLE_MS", 500).into());
    const REGION: u64 = 32 * MIB;
    // A shorter heartbeat than the default 200 ms x 10 (a port silent for 0.5 s is down),
    // so 20 rounds stay within the test's time; the pause is far longer than that.
    let mut cluster = Cluster::start_with(
        MEMBERS,
        "12M",
        &["--heartbeat-ms", "50", "--heartbeat-misses", "10"],
    );
    let mut rng = ChaCha8Rng::seed_from_u64(0x57_0b);
    let started = Instant::now();
    let mut lost_rounds = Vec::new();
    let (mut lost_blocks, mut mismatches, mut fenced, mut late_fences) = (0u64, 0usize, 0, 0);
    let mut unfenced = 0;
    let mut detection = Duration::ZERO;
    for round in 0..rounds {
        for port in [0, 1] {
            if cluster.amfs[port as usize].is_none() {
                cluster.start_amf(port);
            }
        }
        await_live(&cluster, 1, 0);
        // Every AMF of this test appends to one log: this round's part starts here.
        let log_start = cluster.amf(0).log_text().len();
        // AMF 0's client: 64 KiB writes at random offsets of the region, in a loop.
        let old_byte = 1 + (round % 60) as u8;
        let old_writes: Vec<String> = (0..2000)
            .map(|_| {
                let offset = rng.gen_range(0..(REGION - 64 * KIB) / SECTOR) * SECTOR;
                format!("write -P {old_byte} {offset} 64k")
            })
            .collect();
        let writer = spawn_qemu_io(&cluster.uri(0), &old_writes);
        std::thread::sleep(Duration::from_millis(150 + rng.gen_range(0..250)));
        let paused = cluster.amf(0).child.id();
        signal(paused, libc::SIGSTOP);
        detection += await_gone(&cluster, 1, 0);
        // The fabric has announced AMF 0's death: a fence, if there is one, has acted.
        let amfs = &mut cluster.amfs;
        let gone_before_takeover = amfs[0].as_mut().unwrap().child.try_wait().unwrap();
        let new_byte = 0x80 + (round % 100) as u8;
        let takeover = Pattern {
            offset: 0,
            length: REGION,
            byte: new_byte,
        };
        must(&cluster.uri(1), &[takeover.write()]);
        // Acknowledged after the takeover: nothing AMF 0 still had may land over it.
        if gone_before_takeover.is_none() {
            signal(paused, libc::SIGCONT);
        }
        // Time for whatever AMF 0 still had to land (its threads run at once on SIGCONT).
        std::thread::sleep(settle);
        let (_, writer_output) = finish_qemu_io(writer, QEMU_IO_TIMEOUT);
        let old_acknowledged = writer_output.matches("wrote ").count();
        let mut amf_0 = cluster.amfs[0].take().unwrap();
        let (ended, log_0) = match amf_0.child.try_wait().unwrap() {
            Some(status) => (status, amf_0.log_text()),
            None => amf_0.terminate_with_log(),
        };
        let killed = ended.signal() == Some(libc::SIGKILL);
        match (killed, gone_before_takeover.is_some()) {
            (true, true) => fenced += 1,
            (true, false) => late_fences += 1,
            (false, _) => unfenced += 1,
        }
        cluster.stop();
        // A fresh AMF, alone on the fabric, reads the members.
        cluster.start_amf(2);
        let (ok, output) = qemu_io_within(&cluster.uri(2), &[takeover.read()], QEMU_IO_TIMEOUT);
        let mut bad = 0;
        if !ok {
            let pieces: Vec<String> = (0..REGION / (64 * KIB))
                .map(|piece| format!("read -P {new_byte} {} 64k", piece * 64 * KIB))
                .collect();
            bad = check_reads(&cluster.uri(2), &pieces).len() as u64;
            assert!(bad > 0, "round {round}: the region read failed:\n{output}");
        }
        cluster.stop();
        let round_mismatches = scrub_mismatches(&cluster.dir);
        eprintln!(
            "round {round}: AMF 0 {} ({}), {old_acknowledged} of its writes acknowledged; \
             {bad} of {} 64 KiB pieces lost AMF 1's write; {round_mismatches} scrub mismatches",
            describe(ended),
            if gone_before_takeover.is_some() {
                "gone before the takeover"
            } else {
                "alive at the takeover, resumed after it"
            },
            REGION / (64 * KIB),
        );
        if bad > 0 || round_mismatches > 0 {
            let said: Vec<&str> = log_0
                .get(log_start..)
                .unwrap_or_default()
                .lines()
                .filter(|line| line.contains("ERROR") || line.contains("WARN"))
                .take(8)
                .collect();
            eprintln!(
                "round {round}: the AMFs' log, errors and warnings:\n{}",
                said.join("\n")
            );
            lost_rounds.push(round);
            lost_blocks += bad;
            mismatches += round_mismatches;
            // The next round starts from consistent parity.
            let repair = serve_support::amf(&["scrub", "--repair", cluster.dir.to_str().unwrap()]);
            assert!(
                repair.status.code().is_some(),
                "amf scrub --repair: {repair:?}"
            );
        }
    }
    eprintln!(
        "figures: {rounds} rounds, AMF 0 fenced before the takeover in {fenced}, killed only \
         after it in {late_fences}, never killed in {unfenced}; rounds losing AMF 1's \
         write {lost_rounds:?} ({lost_blocks} 64 KiB pieces lost); {mismatches} scrub \
         mismatches; death seen after {:.2?} on average; {settle:?} after SIGCONT; {:.1?}",
        detection / rounds.max(1),
        started.elapsed()
    );
    assert!(
        late_fences == 0,
        "in {late_fences} rounds AMF 0 was SIGKILLed only after its peer had taken over"
    );
    assert!(
        lost_rounds.is_empty() && mismatches == 0,
        "a paused AMF resumed and wrote over a write acknowledged after its peer took \
         over: rounds {lost_rounds:?}, {lost_blocks} 64 KiB pieces lost, {mismatches} \
         scrub mismatches"
    );
}

#[test]
fn every_amf_killed_mid_writes_then_restarted_loses_no_acknowledged_write() {
    require("qemu-io", "--version", "qemu-utils");
    let rounds = env_number("AMF_KILL_ALL_ROUNDS", 10);
    let mut cluster = Cluster::start_with(MEMBERS, "24M", &[]);
    // AMF 0's client writes the first 32 MiB, AMF 1's the next: 256 KiB..1 MiB each, the
    // same extents every round (a new byte each round), some not block-aligned.
    let plan = |port: u64, byte: u8| -> Vec<Pattern> {
        let mut offset = port * 32 * MIB;
        (0..40u64)
            .map(|index| {
                let length = 256 * KIB * (1 + index % 4);
                let write = Pattern {
                    offset: offset + (index % 3) * SECTOR,
                    length,
                    byte,
                };
                offset += length + 64 * KIB;
                write
            })
            .collect()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(0xdead);
    let started = Instant::now();
    // What each acknowledged write left, by offset.
    let mut expected: BTreeMap<u64, Pattern> = BTreeMap::new();
    let (mut acknowledged_writes, mut lost, mut mismatches) = (0, Vec::new(), 0);
    // Writers the kill caught with writes unacknowledged (of two a round).
    let mut mid_writes = 0;
    for round in 0..rounds {
        let plans = [
            plan(0, 1 + (2 * round % 250) as u8),
            plan(1, 2 + (2 * round % 250) as u8),
        ];
        // Even rounds: one write at a time; odd rounds: every write submitted at once
        // (aio_write, up to qemu's 16 requests in flight), so the kill tears many stripes.
        let queued = round % 2 == 1;
        let writers: Vec<Child> = plans
            .iter()
            .zip([0u8, 1])
            .map(|(plan, port)| {
                let mut commands: Vec<String> = plan
                    .iter()
                    .map(|write| {
                        let command = write.write();
                        if queued {
                            format!("aio_{command}")
                        } else {
                            command
                        }
                    })
                    .collect();
                if queued {
                    commands.push("aio_flush".to_owned());
                }
                spawn_qemu_io(&cluster.uri(port), &commands)
            })
            .collect();
        std::thread::sleep(Duration::from_millis(80 + rng.gen_range(0..250)));
        let pids = [cluster.amf(0).child.id(), cluster.amf(1).child.id()];
        for pid in pids {
            signal(pid, libc::SIGKILL);
        }
        for slot in &mut cluster.amfs {
            let mut server = slot.take().unwrap();
            server.child.wait().unwrap();
        }
        let mut done = Vec::new();
        for (writer, plan) in writers.into_iter().zip(&plans) {
            let (_, output) = finish_qemu_io(writer, QEMU_IO_TIMEOUT);
            let acked = acknowledged_offsets(&output);
            done.push(acked.len());
            if acked.len() < plan.len() {
                mid_writes += 1;
            }
            for write in plan {
                if acked.contains(&write.offset) {
                    expected.insert(write.offset, *write);
                } else {
                    // Taken but not acknowledged: may or may not have landed.
                    expected.remove(&write.offset);
                }
            }
            acknowledged_writes += acked.len();
        }
        cluster.start_amf(0);
        cluster.start_amf(1);
        // Every acknowledged write, read through the other AMF than the one it went to.
        let mut round_lost = 0;
        for port in [0u8, 1] {
            let reads: Vec<String> = expected
                .values()
                .filter(|write| write.offset / (32 * MIB) != u64::from(port))
                .map(Pattern::read)
                .collect();
            for offset in check_reads(&cluster.uri(port), &reads) {
                round_lost += 1;
                lost.push(format!("round {round}: {:?}", expected[&offset]));
            }
        }
        cluster.stop();
        let round_mismatches = scrub_mismatches(&cluster.dir);
        eprintln!(
            "round {round} ({}): {} + {} of {} writes acknowledged before kill -9 of both AMFs; \
             {round_lost} acknowledged writes lost; {round_mismatches} scrub mismatches",
            if queued { "queued" } else { "one at a time" },
            done[0],
            done[1],
            plans[0].len() + plans[1].len()
        );
        if round_mismatches > 0 {
            mismatches += round_mismatches;
            let repair = serve_support::amf(&["scrub", "--repair", cluster.dir.to_str().unwrap()]);
            assert!(
                repair.status.code().is_some(),
                "amf scrub --repair: {repair:?}"
            );
        }
        cluster.start_amf(0);
        cluster.start_amf(1);
    }
    cluster.stop();
    eprintln!(
        "figures: {rounds} rounds, kill -9 caught {mid_writes} of {} writers mid-writes, \
         {acknowledged_writes} writes acknowledged, {} lost, {mismatches} scrub mismatches after \
         the restarts, {:.1?}",
        2 * rounds,
        lost.len(),
        started.elapsed()
    );
    assert!(
        mid_writes > 0,
        "the kill -9 never caught a writer with writes unacknowledged: nothing was tested"
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:#?}");
    assert_eq!(
        mismatches, 0,
        "stripes left torn by the kill -9 of every AMF were not resynced at restart"
    );
}

/// The offsets of the writes qemu-io reported done ("wrote N/N bytes at offset X").
fn acknowledged_offsets(output: &str) -> BTreeSet<u64> {
    output
        .lines()
        .filter_map(|line| line.strip_prefix("wrote "))
        .filter_map(|rest| rest.rsplit(' ').next()?.parse().ok())
        .collect()
}

fn unix_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// `strace -f -ttt -y -e trace=fdatasync,fsync -p PID`: attached to every thread of a
/// running process, writing to `trace` until SIGINT.
struct Strace {
    child: std::process::Child,
    trace: PathBuf,
}

impl Strace {
    fn attach(pid: u32, trace: PathBuf) -> Strace {
        let mut child = Command::new("strace")
            .args(["-f", "-ttt", "-y", "-e", "trace=fdatasync,fsync", "-o"])
            .arg(&trace)
            .args(["-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("strace starts");
        let (sender, receiver) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        let line = receiver.recv_timeout(Duration::from_secs(10));
        match line {
            Ok(line) if line.contains("attached") => Strace { child, trace },
            other => {
                let _ = child.kill();
                panic!("strace -p {pid} did not attach: {other:?}")
            }
        }
    }

    /// SIGINT (strace detaches), then (unix time, fd path) of every successful sync.
    fn finish(mut self) -> Vec<(f64, String)> {
        signal(self.child.id(), libc::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "strace did not stop on SIGINT");
            std::thread::sleep(Duration::from_millis(20));
        }
        let text = std::fs::read_to_string(&self.trace).unwrap();
        parse_syncs(&text)
    }
}

/// Successful syncs in strace `-f -ttt -y` output: (unix time it returned, fd path). A
/// call that another thread interrupted is two lines, "PID T fdatasync(12</m0> <unfinished
/// ...>" and "PID T <... fdatasync resumed>) = 0".
fn parse_syncs(text: &str) -> Vec<(f64, String)> {
    let mut pending: BTreeMap<String, String> = BTreeMap::new();
    let mut syncs = Vec::new();
    for line in text.lines() {
        let mut rest = line.trim();
        let mut pid = String::new();
        if let Some((first, after)) = rest.split_once(' ')
            && first.bytes().all(|byte| byte.is_ascii_digit())
        {
            pid = first.to_owned();
            rest = after.trim_start();
        }
        let Some((time, call)) = rest.split_once(' ') else {
            continue;
        };
        let Ok(time) = time.parse::<f64>() else {
            continue;
        };
        let path = || Some(call.split_once('<')?.1.split_once('>')?.0.to_owned());
        if call.ends_with("<unfinished ...>") {
            if let Some(path) = path() {
                pending.insert(pid, path);
            }
        } else if call.starts_with("<...") {
            if let Some(path) = pending.remove(&pid)
                && call.ends_with("= 0")
            {
                syncs.push((time, path));
            }
        } else if call.ends_with("= 0")
            && let Some(path) = path()
        {
            syncs.push((time, path));
        }
    }
    syncs
}

impl Drop for Strace {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Why a flush at AMF 1 is enough for writes AMF 0 completed, here: the members are files
/// on one machine, so every AMF's completed writes are in the one page cache of each
/// member file, and an fdatasync of a member by any process writes back all of that
/// file's dirty pages, AMF 0's included (the kernel keeps one cache per inode, not per
/// process). A cross-host deployment has no such shared cache: each host's completed
/// writes sit in its own page cache or HBA/disk write cache, so a FLUSH at one AMF must
/// be carried to every live AMF (a broadcast that each answers after its own member
/// syncs), or every AMF must write through to stable storage (O_DIRECT plus FUA) before
/// it acknowledges.
#[test]
fn flush_at_one_amf_makes_writes_at_another_durable() {
    require("qemu-io", "--version", "qemu-utils");
    require("strace", "-V", "strace");
    let mut cluster = Cluster::start_with(MEMBERS, "16M", &[]);
    let members: Vec<String> = (0..MEMBERS)
        .map(|index| {
            let path = cluster.dir.join(format!("member-{index:02}.img"));
            std::fs::canonicalize(path)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let strace = Strace::attach(
        cluster.amf(1).child.id(),
        cluster.root.path().join("amf-1.strace"),
    );
    let written = Pattern {
        offset: 3 * STRIPE_DATA_BYTES + 4 * KIB,
        length: 4 * MIB,
        byte: 0x5c,
    };
    must(&cluster.uri(0), &[written.write()]);
    let flush_started = unix_seconds();
    let started = Instant::now();
    must(&cluster.uri(1), &["flush".to_owned()]);
    let flush_took = started.elapsed();
    let syncs = strace.finish();
    let after: Vec<&(f64, String)> = syncs
        .iter()
        .filter(|(time, _)| *time >= flush_started)
        .collect();
    let unsynced: Vec<&String> = members
        .iter()
        .filter(|member| !after.iter().any(|(_, path)| path == *member))
        .collect();
    eprintln!(
        "figures: FLUSH at AMF 1 took {flush_took:.2?}; AMF 1 made {} syncs after it ({} \
         before), {} of {} members synced; {} left unsynced",
        after.len(),
        syncs.len() - after.len(),
        members.len() - unsynced.len(),
        members.len(),
        unsynced.len()
    );
    assert!(
        unsynced.is_empty(),
        "a FLUSH at AMF 1 did not fdatasync/fsync {unsynced:?}; AMF 1's syncs: {syncs:?}"
    );
    must(&cluster.uri(1), &[written.read()]);
    cluster.stop();
}
