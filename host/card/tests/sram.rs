//! Card SRAM: paged window access through the driver, bounds, the SRAM file's size and
//! lock rules, and persistence across the death (`kill -9`) of the process that wrote it.

mod common;

use amf_card::sim::sram::SramError;
use amf_card::{
    Card, CardConfig, CardError, Execution, OpenSimError, SimCard, SimConfig, SimError, open_sim,
};
use common::{EXECUTIONS, SRAM_BYTES, card, pattern};
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn window_reads_back_what_was_written_across_pages_and_edges() {
    for execution in EXECUTIONS {
        let (mut card, _dir) = card(execution, CardConfig::default());
        let background = pattern(1, SRAM_BYTES as usize);
        card.sram_write(0, &background).unwrap();
        let mut expected = background;
        let cases = [
            (0u64, 1usize),
            (1, 2),
            (3, 6),
            (5, 13),
            (65_535, 2),
            (65_530, 70_000),
            (131_072, 8),
            (SRAM_BYTES - 7, 7),
        ];
        for (seed, (offset, length)) in cases.into_iter().enumerate() {
            let bytes = pattern(100 + seed as u64, length);
            card.sram_write(offset, &bytes).unwrap();
            expected[offset as usize..offset as usize + length].copy_from_slice(&bytes);
            let mut read = vec![0u8; length];
            card.sram_read(offset, &mut read).unwrap();
            assert!(read == bytes, "{offset} + {length}");
        }
        let mut whole = vec![0u8; SRAM_BYTES as usize];
        card.sram_read(0, &mut whole).unwrap();
        assert!(whole == expected, "neighbours of every write intact");
    }
}

#[test]
fn sram_access_is_bounds_checked() {
    let (mut card, _dir) = card(Execution::Stepped, CardConfig::default());
    let mut byte = [0u8; 1];
    card.sram_read(SRAM_BYTES - 1, &mut byte).unwrap();
    for (offset, length) in [(SRAM_BYTES, 1usize), (SRAM_BYTES - 1, 2), (u64::MAX, 1)] {
        let error = card.sram_read(offset, &mut vec![0u8; length]).unwrap_err();
        assert!(
            matches!(
                error,
                CardError::SramOutOfRange {
                    sram_bytes: SRAM_BYTES,
                    ..
                }
            ),
            "{error}"
        );
        let error = card.sram_write(offset, &vec![0u8; length]).unwrap_err();
        assert!(matches!(error, CardError::SramOutOfRange { .. }), "{error}");
    }
    card.check_error().unwrap();
}

#[test]
fn sram_survives_reopen_and_reset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sram");
    let bytes = pattern(7, 4096);
    {
        let sim = SimCard::open(&path, SimConfig::new(SRAM_BYTES)).unwrap();
        let mut card = Card::open(sim, CardConfig::default()).unwrap();
        card.sram_write(1000, &bytes).unwrap();
        // Reopening the driver resets the card: SRAM contents survive a reset.
        let sim = card.close().unwrap();
        let mut card = Card::open(sim, CardConfig::default()).unwrap();
        let mut read = vec![0u8; bytes.len()];
        card.sram_read(1000, &mut read).unwrap();
        assert_eq!(read, bytes);
    }
    let sim = SimCard::open(&path, SimConfig::new(SRAM_BYTES).stepped()).unwrap();
    let mut card = Card::open(sim, CardConfig::default()).unwrap();
    let mut read = vec![0u8; bytes.len()];
    card.sram_read(1000, &mut read).unwrap();
    assert_eq!(read, bytes);
}

#[test]
fn mismatched_or_bad_sram_sizes_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sram");
    drop(SimCard::open(&path, SimConfig::new(SRAM_BYTES)).unwrap());
    match SimCard::open(&path, SimConfig::new(2 * SRAM_BYTES)) {
        Err(SimError::Sram(SramError::SizeMismatch {
            expected, found, ..
        })) => {
            assert_eq!((expected, found), (2 * SRAM_BYTES, SRAM_BYTES));
        }
        other => panic!("expected a size mismatch, got {other:?}"),
    }
    assert!(matches!(
        open_sim(&path, SRAM_BYTES / 2),
        Err(OpenSimError::Sim(SimError::Sram(
            SramError::SizeMismatch { .. }
        )))
    ));
    for bytes in [0, 1000, 65_536 + 4096] {
        let result = SimCard::open(&dir.path().join("other"), SimConfig::new(bytes));
        assert!(
            matches!(result, Err(SimError::Sram(SramError::BadSize { .. }))),
            "{bytes}"
        );
    }
    // The file was left as it was.
    assert_eq!(std::fs::metadata(&path).unwrap().len(), SRAM_BYTES);
}

#[test]
fn one_card_at_a_time_holds_an_sram_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sram");
    let first = SimCard::open(&path, SimConfig::new(SRAM_BYTES)).unwrap();
    assert!(matches!(
        SimCard::open(&path, SimConfig::new(SRAM_BYTES)),
        Err(SimError::Sram(SramError::Locked { .. }))
    ));
    drop(first);
    SimCard::open(&path, SimConfig::new(SRAM_BYTES)).unwrap();
}

#[test]
fn open_sim_gives_parity_and_sram() {
    use amf_parity::ParityEngine;
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open_sim(&dir.path().join("sram"), SRAM_BYTES).unwrap();
    assert_eq!(engine.name(), "card:sim");
    let (a, b) = (pattern(1, 4096), pattern(2, 4096));
    let mut p = vec![0u8; 4096];
    engine.compute(&[&a, &b], &mut p, None).unwrap();
    assert!(
        p.iter()
            .zip(a.iter().zip(&b))
            .all(|(p, (a, b))| *p == a ^ b)
    );
    engine.card_mut().sram_write(8, b"intent").unwrap();
    let mut read = [0u8; 6];
    engine.card_mut().sram_read(8, &mut read).unwrap();
    assert_eq!(&read, b"intent");
}

const CHILD_ENV: &str = "AMF_CARD_SRAM_CHILD_PATH";
const CHILD_READY: &str = "AMF_CARD_CHILD_WROTE_SRAM";
const CHILD_SRAM_BYTES: u64 = 1 << 20;
/// Crosses window pages, unaligned at both ends.
const CHILD_OFFSET: u64 = 3 * 65_536 - 1_001;
const CHILD_LENGTH: usize = 150_003;

fn child_pattern() -> Vec<u8> {
    pattern(0xC41D, CHILD_LENGTH)
}

/// Run only as the child of `sram_outlives_kill_9_of_its_host`: writes the pattern into
/// SRAM through the window, says so, and waits to be killed.
#[test]
#[ignore = "child process of sram_outlives_kill_9_of_its_host"]
fn sram_child_writes_then_waits() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let mut engine = open_sim(Path::new(&path), CHILD_SRAM_BYTES).unwrap();
    engine
        .card_mut()
        .sram_write(CHILD_OFFSET, &child_pattern())
        .unwrap();
    println!("{CHILD_READY}");
    // No flush, no close: the parent kills this process. Bounded, should it not.
    std::thread::sleep(Duration::from_secs(120));
    panic!("the parent did not kill this child");
}

#[test]
fn sram_outlives_kill_9_of_its_host() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sram");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sram_child_writes_then_waits",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (ready_sender, ready) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains(CHILD_READY) {
                let _ = ready_sender.send(());
            }
        }
    });
    if ready.recv_timeout(Duration::from_secs(60)).is_err() {
        let _ = child.kill();
        panic!("child never wrote SRAM: {:?}", child.wait());
    }
    // While the child lives, its card holds the SRAM file.
    assert!(matches!(
        SimCard::open(&path, SimConfig::new(CHILD_SRAM_BYTES)),
        Err(SimError::Sram(SramError::Locked { .. }))
    ));
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status:?}");

    let sim = SimCard::open(&path, SimConfig::new(CHILD_SRAM_BYTES)).unwrap();
    let mut card = Card::open(sim, CardConfig::default()).unwrap();
    let mut read = vec![0u8; CHILD_LENGTH + 2];
    card.sram_read(CHILD_OFFSET - 1, &mut read).unwrap();
    assert_eq!(read[0], 0, "byte before the pattern untouched");
    assert_eq!(
        read[CHILD_LENGTH + 1],
        0,
        "byte after the pattern untouched"
    );
    assert!(
        read[1..=CHILD_LENGTH] == child_pattern()[..],
        "pattern survived kill -9"
    );
}
