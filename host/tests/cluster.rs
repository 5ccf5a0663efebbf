//! Active-active for real: an `amf fabric` process and two `amf serve --id N --fabric`
//! processes on one RAID-6 of files, driven by qemu-io and qemu-img as a user would.
//! Coherency (write through one AMF, read through the other; write-invalidate; a read miss
//! served by a peer's forward), concurrent writers through both AMFs, `kill -9` of an AMF
//! in the middle of writes (every acknowledged write reads back through the survivor, which
//! replays the dead AMF's records; scrub finds parity consistent; the AMF restarts and
//! serves again), and refusals (a port already in use, an AMF of another array).

mod serve_support;

use serve_support::cluster::{Cluster, acknowledged, must, spawn_writer};
use serve_support::{Pattern, amf, create, qemu_io, scrub_mismatches, text};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const KIB: u64 = 1024;
/// RAID-6 of 5 members with 64 KiB chunks: 192 KiB of data a stripe.
const STRIPE_DATA_BYTES: u64 = 192 * KIB;
/// Failover rounds (`AMF_FAILOVER_ROUNDS` for a soak run).
const FAILOVER_ROUNDS_DEFAULT: u32 = 20;

/// Aligned and unaligned, within a block, across chunks and across stripes.
fn patterns(first_byte: u8) -> Vec<Pattern> {
    [
        (0, 4 * KIB),
        (8 * KIB + 512, 512),
        (64 * KIB - 1024, 3 * KIB),
        (STRIPE_DATA_BYTES - 5000, 10_000),
        (3 * STRIPE_DATA_BYTES + 4 * KIB, 256 * KIB),
        (5 * STRIPE_DATA_BYTES + 7, 70 * KIB),
        (9 * STRIPE_DATA_BYTES, 2 * STRIPE_DATA_BYTES),
        (14 * STRIPE_DATA_BYTES - 1, 2),
    ]
    .iter()
    .enumerate()
    .map(|(index, &(offset, length))| Pattern {
        offset,
        length,
        byte: first_byte.wrapping_add(index as u8 * 7),
    })
    .collect()
}

#[test]
fn both_amfs_see_one_volume_write_invalidate_and_forward() {
    let mut cluster = Cluster::start("16M");
    let written = patterns(0x31);
    must(
        &cluster.uri(0),
        &written.iter().map(Pattern::write).collect::<Vec<_>>(),
    );
    must(
        &cluster.uri(1),
        &written.iter().map(Pattern::read).collect::<Vec<_>>(),
    );

    // AMF 1 now caches these blocks; a write through AMF 0 must invalidate them there.
    let newer = patterns(0x91);
    let invalidations_before = cluster.counter(1, "invalidations");
    must(
        &cluster.uri(0),
        &newer.iter().map(Pattern::write).collect::<Vec<_>>(),
    );
    must(
        &cluster.uri(1),
        &newer.iter().map(Pattern::read).collect::<Vec<_>>(),
    );
    let invalidations = cluster.await_counter(1, "invalidations", invalidations_before + 1);
    assert!(
        invalidations > invalidations_before,
        "AMF 1 dropped no cached copy"
    );

    // Written and read through AMF 0 (cached there), then a first read through AMF 1: a
    // miss that AMF 0's forward serves.
    let fresh = Pattern {
        offset: 20 * STRIPE_DATA_BYTES,
        length: 64 * KIB,
        byte: 0x5a,
    };
    must(&cluster.uri(0), &[fresh.write(), fresh.read()]);
    let forwards_before = cluster.counter(1, "forwards");
    must(&cluster.uri(1), &[fresh.read()]);
    let forwards = cluster.await_counter(1, "forwards", forwards_before + 1);
    assert!(forwards > forwards_before, "no forward served AMF 1's miss");

    // The same counters in AMF 0's Prometheus metrics (AMF 0 restarted with --metrics).
    cluster.amfs[0].take().unwrap().terminate();
    let metrics_port = free_port();
    let metrics_address = format!("127.0.0.1:{metrics_port}");
    cluster.start_amf_with(0, &["--metrics", &metrics_address]);
    must(&cluster.uri(0), &[fresh.write()]);
    let text = scrape(&metrics_address);
    let written = metric(&text, "amf_cluster_events_total{event=\"stripe_writes\"}");
    assert!(written >= 1.0, "{text}");
    assert_eq!(metric(&text, "amf_cluster_live_ports"), 2.0, "{text}");

    cluster.stop();
    assert_eq!(scrub_mismatches(&cluster.dir), 0);
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `GET /metrics` from `address`: the body.
fn scrape(address: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("metrics listen");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: amf\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The value of the sample `name` (with its labels) in the metrics `text`.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

#[test]
fn concurrent_writers_through_both_amfs_leave_one_acknowledged_value_per_block() {
    let mut cluster = Cluster::start("16M");
    // Both clients write the same 24 blocks-wide windows, in opposite orders, with their
    // own pattern bytes: every block ends holding the last value one of them wrote there.
    let window = 96 * KIB;
    let plan = |first_byte: u8, reverse: bool| -> Vec<Pattern> {
        let mut writes: Vec<Pattern> = (0..48u64)
            .map(|index| Pattern {
                offset: (index % 16) * 40 * KIB,
                length: window,
                byte: first_byte + index as u8,
            })
            .collect();
        if reverse {
            writes.reverse();
        }
        writes
    };
    let (plan_a, plan_b) = (plan(0x10, false), plan(0x80, true));
    let writer_a = spawn_writer(&cluster.uri(0), &plan_a);
    let writer_b = spawn_writer(&cluster.uri(1), &plan_b);
    let (done_a, done_b) = (
        acknowledged(writer_a, &plan_a),
        acknowledged(writer_b, &plan_b),
    );
    assert_eq!((done_a.len(), done_b.len()), (plan_a.len(), plan_b.len()));

    let span = 16 * 40 * KIB + window;
    for port in [0, 1] {
        let image = read_volume(&cluster, port, span);
        for block in 0..span / (4 * KIB) {
            let offset = block * 4 * KIB;
            let last_of = |writes: &[Pattern]| {
                writes
                    .iter()
                    .rev()
                    .find(|w| w.offset <= offset && offset < w.offset + w.length)
                    .map(|w| w.byte)
            };
            let allowed = [last_of(&done_a), last_of(&done_b)];
            let found = &image[offset as usize..(offset + 4 * KIB) as usize];
            let value = if allowed == [None, None] { 0 } else { found[0] };
            assert!(
                found.iter().all(|&byte| byte == value)
                    && (allowed.contains(&Some(value)) || allowed == [None, None]),
                "AMF {port}: block {block} holds {:#x}.., allowed {allowed:x?}",
                found[0]
            );
        }
    }
    cluster.stop();
    assert_eq!(scrub_mismatches(&cluster.dir), 0);
}

/// The first `length` bytes of the volume through AMF `port` (qemu-img over NBD).
fn read_volume(cluster: &Cluster, port: u8, length: u64) -> Vec<u8> {
    let target = cluster.root.path().join(format!("image-{port}.raw"));
    let options = format!(
        "driver=raw,offset=0,size={length},file.driver=nbd,file.host=127.0.0.1,file.port={}",
        cluster.amf(port).port
    );
    let output = Command::new("qemu-img")
        .args(["convert", "-O", "raw", "--image-opts", &options])
        .arg(&target)
        .output()
        .expect("qemu-img runs");
    assert!(output.status.success(), "qemu-img: {}", text(&output));
    std::fs::read(&target).unwrap()
}

/// A cheap random number per round (the test's own, not the product's).
fn round_random(round: u32, bound: u64) -> u64 {
    let mut state = u64::from(round).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    state ^= state >> 29;
    state = state.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    state ^= state >> 32;
    state % bound
}

#[test]
fn kill9_of_an_amf_mid_writes_loses_no_acknowledged_write() {
    let rounds = std::env::var("AMF_FAILOVER_ROUNDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(FAILOVER_ROUNDS_DEFAULT);
    let mut cluster = Cluster::start("32M");
    // What each acknowledged write left, by offset: checked after every round.
    let mut expected: BTreeMap<u64, Pattern> = BTreeMap::new();
    for round in 0..rounds {
        let byte = 1 + (round % 250) as u8;
        // AMF 0's writer covers the first 60 stripes, AMF 1's the next ones: each block is
        // written by one client, so what an acknowledged write left is known.
        let through = |first: u64, count: u64| -> Vec<Pattern> {
            (0..count)
                .map(|index| Pattern {
                    offset: (first + index * 2) * STRIPE_DATA_BYTES / 2,
                    length: 128 * KIB,
                    byte,
                })
                .collect()
        };
        let (plan_0, plan_1) = (through(0, 60), through(120, 30));
        let writer_0 = spawn_writer(&cluster.uri(0), &plan_0);
        let writer_1 = spawn_writer(&cluster.uri(1), &plan_1);
        std::thread::sleep(Duration::from_millis(20 + round_random(round, 250)));
        cluster.amfs[0].take().expect("AMF 0 runs").kill9();
        let done_1 = acknowledged(writer_1, &plan_1);
        let done_0 = acknowledged(writer_0, &plan_0);
        assert_eq!(
            done_1.len(),
            plan_1.len(),
            "round {round}: AMF 1 stopped serving"
        );
        eprintln!(
            "round {round}: AMF 0 acknowledged {} of {} writes before kill -9",
            done_0.len(),
            plan_0.len()
        );
        for write in done_0.iter().chain(&done_1) {
            expected.insert(write.offset, *write);
        }
        // Writes AMF 0 took but never acknowledged may or may not have landed.
        for lost in &plan_0[done_0.len()..] {
            expected.remove(&lost.offset);
        }
        let reads: Vec<String> = expected.values().map(Pattern::read).collect();
        let (ok, output) = qemu_io(&cluster.uri(1), &reads);
        assert!(
            ok,
            "round {round}: an acknowledged write does not read back through the survivor \
             ({} of AMF 0's writes acknowledged):\n{output}",
            done_0.len()
        );
        cluster.start_amf(0);
    }
    let replays = cluster.await_counter(1, "replays", 1);
    eprintln!("the survivor replayed {replays} of the dead AMF's writes in {rounds} rounds");
    let log = cluster.amf(1).log_text();
    assert!(
        log.contains("completed a dead AMF's writes from the intent records"),
        "the survivor's log does not say it replayed:\n{log}"
    );
    assert!(
        replays >= 1,
        "in {rounds} rounds the survivor completed none of the dead AMF's writes"
    );
    let reads: Vec<String> = expected.values().map(Pattern::read).collect();
    must(&cluster.uri(0), &reads);
    cluster.stop();
    assert_eq!(scrub_mismatches(&cluster.dir), 0);
}

#[test]
fn an_amf_writing_its_own_range_stops_broadcasting_after_warm_up() {
    let mut cluster = Cluster::start("16M");
    // AMF 0 writes stripes 0..16, AMF 1 stripes 16..32: 4 KiB writes spread over them.
    let writes = |port: u8, count: u64| -> Vec<String> {
        let first_stripe = u64::from(port) * 16;
        (0..count)
            .map(|index| {
                let stripe = first_stripe + index % 16;
                let block = (index * 7) % (STRIPE_DATA_BYTES / (4 * KIB));
                let offset = stripe * STRIPE_DATA_BYTES + block * 4 * KIB;
                format!("write -P {} {offset} 4k", 1 + index % 200)
            })
            .collect()
    };
    // Warm-up: each AMF comes to own its stripes.
    for port in [0, 1] {
        must(&cluster.uri(port), &writes(port, 16));
    }
    let counts_of = |cluster: &Cluster, port: u8| {
        (
            cluster.counter(port, "broadcasts"),
            cluster.counter(port, "stripe_writes"),
        )
    };
    std::thread::sleep(Duration::from_millis(700));
    let before = [counts_of(&cluster, 0), counts_of(&cluster, 1)];
    const WRITES: u64 = 400;
    for port in [0, 1] {
        must(&cluster.uri(port), &writes(port, WRITES));
    }
    for port in [0u8, 1] {
        let (broadcasts_before, writes_before) = before[port as usize];
        let stripe_writes = cluster.await_counter(port, "stripe_writes", writes_before + WRITES);
        let broadcasts = cluster.counter(port, "broadcasts") - broadcasts_before;
        let written = stripe_writes - writes_before;
        eprintln!("AMF {port}: {broadcasts} broadcasts for {written} stripe writes after warm-up");
        assert!(
            written >= WRITES,
            "AMF {port}: {written} stripe writes counted"
        );
        assert!(
            broadcasts * 100 < written,
            "AMF {port}: {broadcasts} broadcasts for {written} writes on its own range"
        );
    }
    cluster.stop();
    assert_eq!(scrub_mismatches(&cluster.dir), 0);
}

#[test]
fn a_port_in_use_and_an_amf_of_another_array_are_refused() {
    let cluster = Cluster::start("8M");
    let spare_control = cluster.root.path().join("spare.control");
    let refused = |dir: &Path, id: &str, control: Option<&Path>| {
        let card = format!("sim:{}", cluster.root.path().join("spare.sram").display());
        let mut arguments = vec![
            "serve",
            "--nbd",
            "127.0.0.1:0",
            "--id",
            id,
            "--fabric",
            &cluster.fabric.address,
            "--card",
            &card,
        ];
        let control = control.map(|path| path.to_string_lossy().into_owned());
        if let Some(control) = &control {
            arguments.extend(["--control", control]);
        }
        arguments.push(dir.to_str().unwrap());
        let output = amf(&arguments);
        assert_eq!(output.status.code(), Some(2), "{}", text(&output));
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    // On this host, AMF 1's control socket answers first; from elsewhere (another
    // socket), the fabric refuses the port.
    let local = refused(&cluster.dir, "1", None);
    assert!(
        local.contains("amf-1.control") && local.contains("serves these members"),
        "{local}"
    );
    let in_use = refused(&cluster.dir, "1", Some(&spare_control));
    assert!(
        in_use.contains("port 1") && in_use.contains("in use"),
        "{in_use}"
    );
    let other = cluster.root.path().join("other");
    create(&other, "6", 5, "8M");
    let foreign = refused(&other, "2", None);
    assert!(foreign.contains("array"), "{foreign}");
    // Both AMFs still serve.
    let pattern = Pattern {
        offset: 0,
        length: 4 * KIB,
        byte: 0x42,
    };
    must(&cluster.uri(0), &[pattern.write()]);
    must(&cluster.uri(1), &[pattern.read()]);
}
