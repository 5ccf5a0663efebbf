//! `amf up`: on the embedded defaults it creates a RAID-6 of six 1 GiB files and starts the
//! fabric and two AMFs on it, printing both NBD addresses and a hint; what a client writes
//! through one AMF reads back through the other; Ctrl-C stops everything cleanly; a second
//! `amf up` serves the same array and the data is still there. `amf up` keeps its children
//! running: a fabric or an AMF killed with `kill -9` is started again while the others go
//! on serving.

mod serve_support;

use serve_support::{AMF, Pattern, qemu_io};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// A port `p` free with `p + 1` free too (AMF 0 and AMF 1).
fn free_port() -> u16 {
    loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

/// Runs `amf up` in `dir` until its address shows; returns the child and all it printed.
fn up(dir: &std::path::Path, port: u16) -> (std::process::Child, String) {
    let mut child = Command::new(AMF)
        .current_dir(dir)
        .args(["up", "--nbd", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    while !printed.contains("Ctrl-C") {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            panic!("amf up ended early:\n{printed}");
        }
        printed.push_str(&line);
    }
    // Keep draining stdout so the final line can be written.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    (child, printed)
}

fn interrupt(child: &mut std::process::Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    child.wait().unwrap()
}

#[test]
fn up_creates_serves_and_stops_on_ctrl_c() {
    let base = tempfile::tempdir().unwrap();
    let port = free_port();
    let (mut child, printed) = up(base.path(), port);
    assert!(
        printed.contains("created a RAID-6 of 6 members"),
        "{printed}"
    );
    for amf_port in [port, port + 1] {
        assert!(
            printed.contains(&format!("nbd://127.0.0.1:{amf_port}")),
            "{printed}"
        );
    }
    assert!(
        printed.contains("qemu-io") && printed.contains("nbdinfo"),
        "{printed}"
    );
    let uri = format!("nbd://127.0.0.1:{port}");
    let pattern = Pattern {
        offset: 3 << 30,
        length: 3 << 20,
        byte: 0x42,
    };
    let (ok, output) = qemu_io(&uri, &[pattern.write(), pattern.read()]);
    assert!(ok, "{output}");
    let other = format!("nbd://127.0.0.1:{}", port + 1);
    let (ok, output) = qemu_io(&other, &[pattern.read()]);
    assert!(ok, "AMF 1 does not see what AMF 0 wrote: {output}");
    assert!(interrupt(&mut child).success());
    for index in 0..6 {
        let member = base.path().join(format!("amf-data/member-{index:02}.img"));
        assert_eq!(std::fs::metadata(member).unwrap().len(), 1 << 30);
    }

    let port = free_port();
    let (mut child, printed) = up(base.path(), port);
    assert!(printed.contains("using the array in amf-data"), "{printed}");
    let (ok, output) = qemu_io(&format!("nbd://127.0.0.1:{port}"), &[pattern.read()]);
    assert!(ok, "{output}");
    assert!(interrupt(&mut child).success());
}

/// `amf up`'s children: (pid, command line).
fn children(parent: u32) -> Vec<(u32, String)> {
    let listed = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
        .unwrap_or_default();
    listed
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .map(|pid: u32| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            (pid, String::from_utf8_lossy(&cmdline).replace('\0', " "))
        })
        .collect()
}

/// The pid of `amf up`'s child whose command line holds `marker`, once there is one
/// other than `not`.
fn child_with(parent: u32, marker: &str, not: Option<u32>) -> u32 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let found = children(parent)
            .into_iter()
            .find(|(pid, cmdline)| cmdline.contains(marker) && Some(*pid) != not);
        if let Some((pid, _)) = found {
            return pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no child of amf up runs {marker:?}: {:?}",
            children(parent)
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn kill9(pid: u32) {
    let killed = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
}

/// qemu-io `commands` through `uri`, tried again for up to 20 s (a restarted AMF takes a
/// moment to listen again).
fn eventually(uri: &str, commands: &[String]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (ok, output) = qemu_io(uri, commands);
        if ok {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{uri}: {output}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn up_restarts_a_killed_fabric_and_a_killed_amf_and_the_others_go_on() {
    let base = tempfile::tempdir().unwrap();
    let port = free_port();
    let (mut child, _) = up(base.path(), port);
    let uris = [port, port + 1].map(|port| format!("nbd://127.0.0.1:{port}"));
    let pattern = |byte: u8| Pattern {
        offset: u64::from(byte) << 20,
        length: 1 << 20,
        byte,
    };
    let (ok, output) = qemu_io(&uris[0], &[pattern(1).write()]);
    assert!(ok, "{output}");

    // The fabric dies: amf up starts a new one and both AMFs serve again, their data
    // intact; neither AMF was restarted (they rode through).
    let amfs_before: Vec<u32> = [" --id 0 ", " --id 1 "]
        .map(|marker| child_with(child.id(), marker, None))
        .into();
    let fabric = child_with(child.id(), " fabric ", None);
    kill9(fabric);
    let new_fabric = child_with(child.id(), " fabric ", Some(fabric));
    for (index, uri) in uris.iter().enumerate() {
        eventually(uri, &[pattern(1).read(), pattern(2 + index as u8).write()]);
    }
    let amfs_after: Vec<u32> = [" --id 0 ", " --id 1 "]
        .map(|marker| child_with(child.id(), marker, None))
        .into();
    assert_eq!(
        amfs_before, amfs_after,
        "the AMFs rode through the fabric's restart"
    );
    assert_ne!(new_fabric, fabric);

    // AMF 1 dies: amf up starts it again, AMF 0 serves throughout.
    kill9(amfs_after[1]);
    let (ok, output) = qemu_io(&uris[0], &[pattern(2).read(), pattern(4).write()]);
    assert!(ok, "AMF 0 serves while AMF 1 is restarted: {output}");
    child_with(child.id(), " --id 1 ", Some(amfs_after[1]));
    eventually(&uris[1], &[pattern(3).read(), pattern(4).read()]);
    assert!(interrupt(&mut child).success(), "amf up stops cleanly");
}
