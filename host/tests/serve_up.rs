//! `amf up`: on the embedded defaults it creates a RAID-6 of six 1 GiB files and starts the
//! fabric and two AMFs on it, printing both NBD addresses and a hint; what a client writes
//! through one AMF reads back through the other; Ctrl-C stops everything cleanly; a second
//! `amf up` serves the same array and the data is still there.

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
