//! Online rebuild and scrub against a running `amf serve`, through its control socket, as
//! an operator runs them: members fail under a serving RAID-6 (their files truncated
//! under the server), `amf rebuild` puts replacements in their slots while qemu-io keeps
//! writing, `amf scrub` checks parity online, and the data reads back. A rebuild cut by
//! `kill -9` resumes from its checkpoint when the server starts again.

mod serve_support;

use serve_support::{
    AMF, Pattern, Server, amf, create, destroy_member, member_path, patterns, qemu_io, rebuild,
    scrub_mismatches, text,
};
use std::path::Path;
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;

fn run_qemu_io(server: &Server, commands: Vec<String>) {
    let (ok, output) = qemu_io(&server.uri(), &commands);
    assert!(ok, "qemu-io failed:\n{output}");
}

fn writes(patterns: &[Pattern]) -> Vec<String> {
    patterns.iter().map(Pattern::write).collect()
}

fn reads(patterns: &[Pattern]) -> Vec<String> {
    patterns.iter().map(Pattern::read).collect()
}

fn status_json(dir: &Path) -> serde_json::Value {
    let output = amf(&["status", "--json", dir.to_str().unwrap()]);
    assert!(output.status.success(), "amf status: {}", text(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn raid6_rebuilds_two_members_online_while_qemu_io_writes() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("array");
    create(&dir, "6", 6, "24M");
    let server = Server::start(&dir, &[]);
    let volume_bytes = 4 * 24 * MIB - 4 * MIB;
    let before = patterns(volume_bytes, 3 * MIB, 0x20);
    run_qemu_io(&server, writes(&before));
    destroy_member(&dir, 1);
    destroy_member(&dir, 4);
    run_qemu_io(&server, reads(&before));
    let failed = status_json(&dir)["serving"]["failed_members"].clone();
    assert_eq!(failed, serde_json::json!([1, 4]));

    // Rebuild both, one after the other, while a client keeps writing.
    let during = patterns(volume_bytes, 5 * MIB, 0x40);
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            for pattern in &during {
                run_qemu_io(&server, vec![pattern.write()]);
            }
        });
        for member in [1, 4] {
            let output = rebuild(&dir, member, &["--json", "--max-rate", "40M"]);
            assert!(output.status.success(), "amf rebuild: {}", text(&output));
            assert!(output.stderr.is_empty(), "amf rebuild: {}", text(&output));
            let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
            assert_eq!(report["state"], "done", "{report}");
            assert_eq!(report["stripes_done"], report["stripes_total"]);
        }
        writer.join().unwrap();
    });
    let status = status_json(&dir);
    assert_eq!(status["health"], "clean", "{status}");
    assert_eq!(status["serving"]["failed_members"], serde_json::json!([]));

    // Online scrub through the same socket, then the data, then offline scrub.
    let output = amf(&["scrub", "--json", dir.to_str().unwrap()]);
    assert!(output.status.success(), "online scrub: {}", text(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["mismatches"], serde_json::json!([]), "{report}");
    assert_eq!(report["stripes_checked"], report["stripes"]);
    // Later patterns overwrite earlier ones where they overlap: check the newest whole,
    // and the older ones only where nothing newer landed.
    run_qemu_io(&server, reads(&during));
    let untouched: Vec<Pattern> = before
        .iter()
        .copied()
        .filter(|old| {
            during.iter().all(|new| {
                new.offset >= old.offset + old.length || old.offset >= new.offset + new.length
            })
        })
        .collect();
    assert!(!untouched.is_empty());
    run_qemu_io(&server, reads(&untouched));
    let (status, log) = server.terminate_with_log();
    assert!(status.success(), "amf serve exited {status}; log:\n{log}");
    assert!(log.contains("rebuild complete"), "log:\n{log}");
    assert_eq!(scrub_mismatches(&dir), 0);
}

fn rebuild_task(dir: &Path) -> Option<serde_json::Value> {
    let status = status_json(dir);
    status["serving"]["tasks"]
        .as_array()?
        .iter()
        .find(|task| task["kind"] == "rebuild")
        .cloned()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_rebuild_cut_by_kill_9_resumes_from_its_checkpoint() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("array");
    create(&dir, "5", 4, "32M");
    let server = Server::start(&dir, &[]);
    let data = patterns(3 * 31 * MIB, 2 * MIB, 0x60);
    run_qemu_io(&server, writes(&data));
    destroy_member(&dir, 2);
    run_qemu_io(&server, reads(&data));
    // Slow enough to be caught half-way: 4 MiB/s over 31 MiB.
    let output = rebuild(&dir, 2, &["--no-wait", "--max-rate", "4M"]);
    assert!(output.status.success(), "amf rebuild: {}", text(&output));
    let mut checkpoint = 0;
    wait_for("a checkpoint past stripe 0", || {
        checkpoint = status_json(&dir)["serving"]["rebuild"]["next_stripe"]
            .as_u64()
            .unwrap_or(0);
        checkpoint > 0
    });
    server.kill9();
    // The superblocks hold the checkpoint, and the replacement is rebuilding.
    let offline = status_json(&dir);
    assert_eq!(offline["members"][2]["state"], "rebuilding", "{offline}");
    let recorded = offline["rebuild_next_stripe"].as_u64().unwrap();
    assert!(recorded >= checkpoint && recorded < offline["stripes"].as_u64().unwrap());

    let server = Server::start(&dir, &[]);
    let resumed = rebuild_task(&dir).expect("the restarted server resumes the rebuild");
    assert_eq!(resumed["member"], 2);
    assert!(
        resumed["stripes_done"].as_u64().unwrap() >= recorded,
        "{resumed}"
    );
    wait_for("the resumed rebuild", || {
        rebuild_task(&dir).is_some_and(|task| task["state"] != "running")
    });
    assert_eq!(rebuild_task(&dir).unwrap()["state"], "done");
    run_qemu_io(&server, reads(&data));
    let (status, log) = server.terminate_with_log();
    assert!(status.success(), "amf serve exited {status}; log:\n{log}");
    assert!(
        log.contains("resuming the rebuild from its checkpoint"),
        "log:\n{log}"
    );
    assert_eq!(status_json(&dir)["health"], "clean");
    assert_eq!(scrub_mismatches(&dir), 0);
    // Member 2's own chunks carry the data: read with member 0 gone.
    std::fs::remove_file(member_path(&dir, 0)).unwrap();
    let server = Server::start(&dir, &[]);
    run_qemu_io(&server, reads(&data));
    server.terminate();
}

#[test]
fn control_socket_refuses_bad_requests_and_a_second_server() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("array");
    create(&dir, "5", 3, "8M");
    let server = Server::start(&dir, &[]);
    // Rebuilding an active member, or a member that does not exist: one clear line, exit 2.
    for (member, expected) in [("1", "is active"), ("7", "members 0..3")] {
        let output = amf(&[
            "rebuild",
            "--member",
            member,
            "--replacement",
            base.path().join("spare.img").to_str().unwrap(),
            dir.to_str().unwrap(),
        ]);
        assert_eq!(output.status.code(), Some(2), "{}", text(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{stderr}");
        // spare.img lies outside the array's directory: a restart would not find it.
        assert!(
            stderr.contains("is not one of the member files"),
            "{stderr}"
        );
    }
    // Garbage on the socket gets an error line; the server goes on.
    let socket = dir.join("amf.control");
    {
        use std::io::{BufRead, BufReader, Write};
        let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        stream.write_all(b"\x00\xffnot json\n").unwrap();
        let mut answer = String::new();
        BufReader::new(&stream).read_line(&mut answer).unwrap();
        assert!(answer.contains("not a request"), "{answer}");
    }
    // A second server on the same members stops before touching them.
    let second = std::process::Command::new(AMF)
        .args(["serve", "--nbd", "127.0.0.1:0", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2), "{}", text(&second));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another amf serve"),
        "{}",
        text(&second)
    );
    // The first still serves, and still answers.
    run_qemu_io(
        &server,
        vec!["write -P 7 0 64k".into(), "read -P 7 0 64k".into()],
    );
    assert!(status_json(&dir)["serving"]["pid"].as_u64().is_some());
    assert!(server.terminate().success());
    assert!(!socket.exists(), "the socket is removed on exit");
}
