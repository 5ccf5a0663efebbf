//! `amf fabric` as a process: ports on threads of this test join it over TCP and a Unix
//! socket, bad arguments get one clear line, SIGTERM stops it cleanly.

use amf_fabric::client;
use amf_fabric::{Address, ClientError, OwnedFrame};
use shared_regs::fabric::{MessageKind, PORT_BROADCAST, RefusalReason};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);

/// A running `amf fabric`; killed if the test fails before stopping it.
struct FabricProcess {
    child: Child,
    address: Address,
}

impl FabricProcess {
    fn start(arguments: &[&str]) -> FabricProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_amf"))
            .arg("fabric")
            .args(arguments)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("amf runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line
            .trim()
            .strip_prefix("amf fabric: listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        FabricProcess { child, address }
    }

    /// SIGTERM, then the exit status and standard error.
    fn stop(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        let status = self.child.wait().unwrap();
        let mut stderr = String::new();
        use std::io::Read;
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (status, stderr)
    }
}

impl Drop for FabricProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn exchange_and_stop(fabric: FabricProcess, array: [u8; 16]) {
    let mut first = client::join(&fabric.address, 0, array, TIMEOUT).unwrap();
    let mut second = client::join(&fabric.address, 1, array, TIMEOUT).unwrap();
    let hello = OwnedFrame::new(MessageKind::Broadcast, 1, PORT_BROADCAST, 0, b"hi".to_vec());
    second.writer.send(&hello).unwrap();
    for reader in [&mut first.reader, &mut second.reader] {
        let frame = loop {
            let frame = reader.recv().unwrap();
            if frame.kind() == MessageKind::Broadcast {
                break frame;
            }
        };
        assert_eq!((frame.source_port(), frame.payload()), (1, &b"hi"[..]));
    }
    let (status, _) = fabric.stop();
    assert!(status.success(), "SIGTERM is a clean stop: {status:?}");
    let error = loop {
        if let Err(error) = first.reader.recv() {
            break error;
        }
    };
    assert!(
        matches!(
            error,
            ClientError::Refused {
                reason: RefusalReason::ShuttingDown,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn ports_exchange_over_tcp_and_a_stop_refuses_them() {
    let fabric = FabricProcess::start(&["--listen", "tcp:127.0.0.1:0"]);
    exchange_and_stop(fabric, [3; 16]);
}

#[test]
fn unix_socket_and_a_fixed_array() {
    let directory = tempfile::tempdir().unwrap();
    let socket = format!("unix:{}", directory.path().join("fabric.sock").display());
    let array = "01234567-89ab-cdef-0123-456789abcdef";
    let fabric = FabricProcess::start(&["--listen", &socket, "--array", array]);
    let foreign = client::join(&fabric.address, 2, [0; 16], TIMEOUT);
    assert!(matches!(
        foreign,
        Err(ClientError::Refused {
            reason: RefusalReason::WrongArray,
            ..
        })
    ));
    exchange_and_stop(fabric, *uuid::Uuid::parse_str(array).unwrap().as_bytes());
    assert!(
        !directory.path().join("fabric.sock").exists(),
        "the socket file is removed on exit"
    );
}

#[test]
fn bad_arguments_get_one_clear_line() {
    for (arguments, needle) in [
        (&["fabric", "--listen", "nowhere"][..], "--listen"),
        (&["fabric", "--listen", "unix:"][..], "no path"),
        (&["fabric", "--heartbeat-ms", "0"][..], "heartbeat-ms"),
        (&["fabric", "--array", "not-a-uuid"][..], "--array"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_amf"))
            .args(arguments)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{arguments:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{arguments:?}: {stderr}");
    }
}
