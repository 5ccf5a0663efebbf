//! `amf serve` under fio's nbd engine: 4 KiB random writes at depth 16 with crc32c
//! verification on a RAID-6 of real member files, a separate verify-only pass, a clean stop
//! on SIGTERM, scrub finding parity consistent, and the data verifying again after a
//! restart. fio is required (scripts/test installs it): a missing fio fails the test.

mod serve_support;

use serve_support::{Server, create, scrub_mismatches};
use std::process::Command;

/// One fio run against `uri`; panics with fio's output unless it passes.
fn fio(uri: &str, extra: &[&str]) {
    let output = Command::new("fio")
        .args([
            "--name=verify",
            "--ioengine=nbd",
            &format!("--uri={uri}"),
            "--rw=randwrite",
            "--bs=4k",
            "--iodepth=16",
            "--size=64M",
            "--verify=crc32c",
            "--verify_fatal=1",
            "--randseed=20261125",
            // Otherwise fio leaves a verify-state file in the working directory.
            "--verify_state_save=0",
        ])
        .args(extra)
        .output()
        .unwrap_or_else(|error| {
            panic!("fio must be installed (Debian package fio; scripts/test installs it): {error}")
        });
    assert!(
        output.status.success(),
        "fio {extra:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn stop(server: Server) {
    let (status, log) = server.terminate_with_log();
    assert!(status.success(), "amf serve exited {status}; log:\n{log}");
}

#[test]
fn fio_random_writes_verify_and_leave_parity_consistent() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("array");
    // RAID-6 of 6: 4 x 24 MiB of data members gives a volume above fio's 64 MiB.
    create(&dir, "6", 6, "25M");

    let server = Server::start(&dir, &[]);
    // Writes every 4 KiB block of the first 64 MiB in random order, then verifies them.
    fio(&server.uri(), &[]);
    // A second, read-only pass over the same blocks.
    fio(&server.uri(), &["--verify_only"]);
    stop(server);
    assert_eq!(
        scrub_mismatches(&dir),
        0,
        "parity after fio and a clean stop"
    );

    // What was written survives the restart.
    let server = Server::start(&dir, &[]);
    fio(&server.uri(), &["--verify_only"]);
    stop(server);
    assert_eq!(scrub_mismatches(&dir), 0, "parity after the verify pass");
}
