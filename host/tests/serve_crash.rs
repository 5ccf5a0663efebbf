//! `kill -9` of `amf serve` in the middle of a stream of writes, several times: after each
//! restart (which replays the intents the crash left in the sim card's SRAM) every
//! acknowledged write reads back, and at the end scrub finds every stripe's P and Q
//! consistent with its data.
//!
//! Each write is one qemu-io process, so a write counts as acknowledged exactly when its
//! qemu-io said it wrote. Rounds: `AMF_CRASH_ROUNDS` (default 20, as the NBD issue asks); choices come from
//! `AMF_CRASH_SEED` (default: the clock, printed) — the kill's timing is the OS's.
//! For a longer soak: `AMF_CRASH_ROUNDS=100 cargo test -p amflink --test serve_crash`.

mod serve_support;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serve_support::{Pattern, Server, create, qemu_io, scrub_mismatches};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const REGION_BYTES: u64 = 1 << 20;
const REGIONS: u64 = 160;
const WRITERS: u64 = 3;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
}

/// A write inside region `region`: 512 B to 900 KiB, aligned or not.
fn random_write(rng: &mut ChaCha8Rng, region: u64, byte: u8) -> Pattern {
    let length = match rng.gen_range(0..4) {
        0 => rng.gen_range(1..=8) * 512,
        1 => rng.gen_range(1..=64) * 4096,
        _ => rng.gen_range(4096..900 * 1024),
    };
    let offset = region * REGION_BYTES + rng.gen_range(0..REGION_BYTES - length);
    Pattern {
        offset,
        length,
        byte,
    }
}

/// Reads every region's last acknowledged write back; panics naming the first that differs.
fn verify(server: &Server, acknowledged: &BTreeMap<u64, Pattern>, round: u32, seed: u64) {
    let patterns: Vec<&Pattern> = acknowledged.values().collect();
    for batch in patterns.chunks(40) {
        let commands: Vec<String> = batch.iter().map(|pattern| pattern.read()).collect();
        let (ok, output) = qemu_io(&server.uri(), &commands);
        assert!(
            ok,
            "round {round} (AMF_CRASH_SEED={seed}): an acknowledged write did not read back:\n{output}\nserver log:\n{}",
            server.log_text()
        );
    }
}

#[test]
fn kill_9_mid_writes_loses_no_acknowledged_write_and_leaves_no_write_hole() {
    let seed = env_u64("AMF_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let rounds = env_u64("AMF_CRASH_ROUNDS").unwrap_or(20) as u32;
    eprintln!("AMF_CRASH_SEED={seed} AMF_CRASH_ROUNDS={rounds}");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("array");
    create(&dir, "6", 6, "48M");
    let acknowledged: Arc<Mutex<BTreeMap<u64, Pattern>>> = Arc::default();
    let mut next_region = 0u64;
    let mut server = Server::start(&dir, &[]);
    let mut replays = 0usize;
    for round in 0..rounds {
        let writes: Vec<(u64, Pattern)> = (0..REGIONS - WRITERS)
            .map(|index| {
                let region = (next_region + index) % REGIONS;
                let byte = rng.gen_range(1..=255u8);
                (region, random_write(&mut rng, region, byte))
            })
            .collect();
        let uri = server.uri();
        let stop = Arc::new(AtomicBool::new(false));
        // Several writers at once, on disjoint regions, so that a kill finds stripes in
        // every phase: journal being written, committed, members being written.
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let mine: Vec<(u64, Pattern)> = writes
                    .iter()
                    .filter(|(region, _)| region % WRITERS == writer)
                    .copied()
                    .collect();
                let (acknowledged, stop, uri) =
                    (Arc::clone(&acknowledged), Arc::clone(&stop), uri.clone());
                std::thread::spawn(move || {
                    let mut issued = 0u64;
                    for (region, pattern) in mine {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        issued += 1;
                        // Until acknowledged, the region's old contents are no longer promised.
                        acknowledged.lock().unwrap().remove(&region);
                        let (ok, _) = qemu_io(&uri, &[pattern.write()]);
                        if !ok {
                            break;
                        }
                        acknowledged.lock().unwrap().insert(region, pattern);
                    }
                    issued
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.gen_range(150..1200)));
        stop.store(true, Ordering::SeqCst);
        server.kill9();
        let issued: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
        next_region += issued.max(WRITERS).div_ceil(WRITERS) * WRITERS;
        server = Server::start(&dir, &[]);
        let acknowledged = acknowledged.lock().unwrap().clone();
        verify(&server, &acknowledged, round, seed);
        replays = server
            .log_text()
            .matches("replaying an unfinished stripe write")
            .count();
        eprintln!(
            "round {round}: {} regions hold acknowledged writes, {replays} stripe replays logged so far",
            acknowledged.len()
        );
    }
    let (status, log) = server.terminate_with_log();
    assert!(status.success(), "amf serve exited {status}:\n{log}");
    assert_eq!(
        scrub_mismatches(&dir),
        0,
        "AMF_CRASH_SEED={seed}: parity mismatches after crashes"
    );
    eprintln!("{replays} stripe replays over {rounds} crashes");
}
