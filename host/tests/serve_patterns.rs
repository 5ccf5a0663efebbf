//! `amf serve` end to end: qemu-io writes patterns through NBD into a real RAID set of
//! files, reads them back, the server stops cleanly on SIGTERM, scrub finds parity
//! consistent, and the same data reads back with members removed, up to what the level
//! survives; one more and reads fail with an I/O error, never with wrong data.

mod serve_support;

use serve_support::{Pattern, Server, create, qemu_io, scrub_mismatches};
use std::path::Path;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// Aligned and unaligned, inside a block, crossing chunks and stripes, 512 B to 4 MiB.
/// RAID-6 of 6 with 64 KiB chunks: a stripe holds 256 KiB of data; RAID-5 of 4: 192 KiB.
fn patterns() -> Vec<Pattern> {
    let list = [
        (0, 4 * KIB),
        (4 * KIB + 513, 512),
        (8 * KIB + 100, 3000),
        (64 * KIB - 512, 1024),
        (192 * KIB - 2000, 5000),
        (256 * KIB - 700, 9000),
        (MIB + 7, 4 * MIB),
        (6 * MIB, 4 * MIB),
        (11 * MIB + 4096, 768 * KIB),
        (20 * MIB - 1, 1),
    ];
    list.iter()
        .enumerate()
        .map(|(index, &(offset, length))| Pattern {
            offset,
            length,
            byte: 0x11 + index as u8 * 0x17,
        })
        .collect()
}

fn write_all(server: &Server, patterns: &[Pattern]) {
    let mut commands: Vec<String> = patterns.iter().map(Pattern::write).collect();
    commands.push("flush".to_owned());
    let (ok, output) = qemu_io(&server.uri(), &commands);
    assert!(ok, "writes failed:\n{output}");
}

fn read_all(server: &Server, patterns: &[Pattern]) -> (bool, String) {
    let commands: Vec<String> = patterns.iter().map(Pattern::read).collect();
    qemu_io(&server.uri(), &commands)
}

fn stop(server: Server) {
    let (status, log) = server.terminate_with_log();
    assert!(status.success(), "amf serve exited {status}; log:\n{log}");
}

fn remove_member(dir: &Path, index: u32) {
    std::fs::remove_file(dir.join(format!("member-{index:02}.img"))).unwrap();
}

fn degraded_round_trip(
    level: &str,
    members: u32,
    survivable: &[u32],
    one_more: u32,
    card: &[&str],
) {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("array");
    create(&dir, level, members, "48M");
    let patterns = patterns();
    let server = Server::start(&dir, card);
    write_all(&server, &patterns);
    let (ok, output) = read_all(&server, &patterns);
    assert!(ok, "clean read back failed:\n{output}");
    stop(server);
    assert_eq!(scrub_mismatches(&dir), 0, "parity after a clean stop");

    for &index in survivable {
        remove_member(&dir, index);
    }
    let server = Server::start(&dir, card);
    let (ok, output) = read_all(&server, &patterns);
    assert!(ok, "degraded read back failed:\n{output}");
    // Writes go on degraded and read back too.
    let update = Pattern {
        offset: 300 * KIB + 3,
        length: 700 * KIB,
        byte: 0xEE,
    };
    let (ok, output) = qemu_io(&server.uri(), &[update.write(), update.read()]);
    assert!(ok, "degraded write failed:\n{output}");

    // One more member lost while serving: its data area vanishes underneath.
    let victim = dir.join(format!("member-{one_more:02}.img"));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&victim)
        .unwrap()
        .set_len(4096)
        .unwrap();
    let (ok, output) = read_all(&server, &patterns);
    assert!(!ok, "reads with too many members lost must fail:\n{output}");
    assert!(
        output.contains("Input/output error"),
        "an I/O error, not data:\n{output}"
    );
    assert!(
        !output.contains("Pattern verification failed"),
        "wrong data returned:\n{output}"
    );
    // The stop still finishes, and says the volume is lost rather than claiming a clean flush.
    let (status, log) = server.terminate_with_log();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("volume unavailable"), "{log}");
}

#[test]
fn raid6_patterns_round_trip_survive_two_lost_members_and_fail_on_a_third() {
    degraded_round_trip("6", 6, &[1, 4], 2, &[]);
}

#[test]
fn raid5_with_host_parity_survives_one_lost_member_and_fails_on_a_second() {
    degraded_round_trip("5", 4, &[2], 0, &["--card", "host"]);
}

#[test]
fn serve_refuses_to_start_with_too_many_members_missing() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("array");
    create(&dir, "5", 3, "8M");
    remove_member(&dir, 0);
    remove_member(&dir, 1);
    let output = serve_support::amf(&["serve", "--nbd", "127.0.0.1:0", dir.to_str().unwrap()]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        serve_support::text(&output)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("array unavailable"), "{stderr}");
}
