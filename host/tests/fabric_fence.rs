//! Fencing for real: an `amf fabric` process and `amf serve --id N` processes on one
//! array. A paused AMF (SIGSTOP) is killed by the fabric before its death is announced,
//! so it can never resume and write old data over what a survivor replays; a clean stop
//! (SIGTERM) leaves the fabric with a `Leave` and is not killed; a failing external fence
//! agent keeps the port reserved and unannounced, retried until it succeeds.

mod serve_support;

use amf_fabric::client;
use amf_fabric::{Address, ClientError};
use serve_support::cluster::Fabric;
use serve_support::{Server, create};
use shared_regs::fabric::{MessageKind, RefusalReason};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// Longest wait for anything in these tests; none should come near it.
const WAIT_MAX: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(10);
/// SIGKILL's number on Linux.
const SIGKILL: i32 = 9;

/// `amf fabric` on ROOT/fabric.sock that finds a paused AMF silent in 0.5 s.
fn start_fabric(root: &Path, extra: &[&str]) -> Fabric {
    let mut arguments = vec!["--heartbeat-ms", "50", "--heartbeat-misses", "10"];
    arguments.extend_from_slice(extra);
    Fabric::start_with(root, &arguments)
}

/// AMF `port`'s live ports as its status file last said (empty before the first one).
fn live_ports(dir: &Path, port: u8) -> Vec<u64> {
    let path = dir.join(format!("amf-{port}.status.json"));
    let Ok(bytes) = std::fs::read(&path) else {
        return Vec::new();
    };
    // Read while being rewritten: try again on the next poll.
    let Ok(report) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Vec::new();
    };
    report["cluster"]["live_ports"]
        .as_array()
        .map(|ports| ports.iter().filter_map(serde_json::Value::as_u64).collect())
        .unwrap_or_default()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT_MAX;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(POLL);
    }
}

fn signal(child: &Child, name: &str) {
    let sent = Command::new("kill")
        .args([name, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill {name}");
}

#[test]
fn a_paused_amf_is_killed_before_its_death_is_announced_and_a_clean_stop_is_not() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("array");
    create(&dir, "5", 3, "8M");
    let fabric = start_fabric(root.path(), &[]);
    let start = |port: &str| Server::start(&dir, &["--id", port, "--fabric", &fabric.address]);
    let mut paused = start("0");
    let survivor = start("1");
    wait_for("AMF 1 to see both ports", || live_ports(&dir, 1) == [0, 1]);

    signal(&paused.child, "-STOP");
    // Until AMF 0 is gone, AMF 1 must still count it live: its death is announced only
    // once it can no longer write. Each round reads the status first, then the process.
    let status: ExitStatus = loop {
        let announced = !live_ports(&dir, 1).contains(&0);
        let exited = paused.child.try_wait().unwrap();
        assert!(
            !announced || exited.is_some(),
            "AMF 1 was told AMF 0 is down while AMF 0 still ran; fabric log:\n{}",
            fabric.log_text()
        );
        if let Some(status) = exited {
            break status;
        }
        std::thread::sleep(POLL);
    };
    assert_eq!(
        status.signal(),
        Some(SIGKILL),
        "fenced by SIGKILL: {status:?}"
    );
    wait_for("AMF 1 to see AMF 0 down", || live_ports(&dir, 1) == [1]);
    let log = fabric.log_text();
    assert!(log.contains("fencing the port's peer"), "{log}");

    // A clean stop says Leave: the fabric announces it without killing it.
    let (status, serve_log) = survivor.terminate_with_log();
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM is a clean stop: {status:?}\n{serve_log}"
    );
    wait_for("the fabric to log AMF 1's leave", || {
        fabric.log_text().contains("left cleanly")
    });
    let log = fabric.log_text();
    let fences = log.matches("fencing the port's peer").count();
    assert_eq!(fences, 1, "only the paused AMF was fenced:\n{log}");
}

#[test]
fn a_failing_fence_agent_is_retried_and_the_port_stays_reserved_until_it_succeeds() {
    let root = tempfile::tempdir().unwrap();
    let calls = root.path().join("fence-calls");
    let fenced = root.path().join("fenced");
    // The agent logs its arguments and succeeds only once the test allows it.
    let agent = root.path().join("fence-agent");
    let script = format!(
        "#!/bin/sh\necho \"$@\" >>'{}'\ntest -e '{}'\n",
        calls.display(),
        fenced.display()
    );
    std::fs::write(&agent, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
    let agent = agent.display().to_string();
    let fabric = start_fabric(
        root.path(),
        &["--fence", "command", "--fence-command", &agent],
    );
    let address: Address = fabric.address.parse().unwrap();
    let array = [0x5A; 16];
    let timeout = Duration::from_secs(10);
    let mut watcher = client::join(&address, 1, array, timeout).unwrap();
    let interval = Duration::from_millis(50);
    let _beat = watcher.writer.start_heartbeat(interval).unwrap();
    let doomed = client::join(&address, 0, array, timeout).unwrap();
    drop(doomed);

    let attempts = || {
        std::fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("--port"))
            .count()
    };
    wait_for("a retried fence", || attempts() >= 2);
    let rejoin = client::join(&address, 0, array, timeout);
    match rejoin {
        Err(ClientError::Refused {
            reason: RefusalReason::PortInUse,
            detail,
            ..
        }) => assert!(detail.contains("not fenced"), "{detail}"),
        other => panic!("a port being fenced must not be joinable: {other:?}"),
    }
    let log = fabric.log_text();
    assert!(
        log.contains("ERROR") && log.contains("fencing failed"),
        "{log}"
    );
    let first_call = std::fs::read_to_string(&calls).unwrap();
    let expected = format!("--port 0 --address unix --pid {}", std::process::id());
    assert!(first_call.contains(&expected), "{first_call}");

    std::fs::write(&fenced, b"").unwrap();
    let down = loop {
        let frame = watcher.reader.recv().unwrap();
        if frame.kind() == MessageKind::MemberDown {
            break frame;
        }
    };
    assert_eq!(down.source_port(), 0);
    let again = client::join(&address, 0, array, timeout).unwrap();
    assert_eq!(again.welcome.live_ports().collect::<Vec<_>>(), vec![1, 0]);
}
