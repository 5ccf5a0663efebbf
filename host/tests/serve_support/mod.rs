//! Helpers for the `amf serve` tests: real `amf` processes on real member files, driven
//! by real NBD clients (qemu-io).
#![allow(dead_code)]

pub mod cluster;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub const AMF: &str = env!("CARGO_BIN_EXE_amf");

/// Runs `amf ARGS`, returning its output.
pub fn amf(arguments: &[&str]) -> Output {
    Command::new(AMF)
        .args(arguments)
        .output()
        .expect("amf runs")
}

/// `amf create` of `members` files of `size` in `dir`.
pub fn create(dir: &Path, level: &str, members: u32, size: &str) {
    let output = amf(&[
        "create",
        "--level",
        level,
        "--members",
        &members.to_string(),
        "--size",
        size,
        dir.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "amf create: {}", text(&output));
}

/// Mismatches `amf scrub --json` reports.
pub fn scrub_mismatches(dir: &Path) -> usize {
    let output = amf(&["scrub", "--json", dir.to_str().unwrap()]);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("amf scrub --json: {}", text(&output)));
    report["mismatches"].as_array().expect("a list").len()
}

pub fn member_path(dir: &Path, index: u32) -> PathBuf {
    dir.join(format!("member-{index:02}.img"))
}

/// Truncates a member's data area away under the server, then removes the file: its next
/// read fails and the server marks it failed. The slot's path is then free for a new file.
pub fn destroy_member(dir: &Path, index: u32) {
    let path = member_path(dir, index);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(4096)
        .unwrap();
    std::fs::remove_file(path).unwrap();
}

/// Patterns over the whole of a `volume_bytes` volume, one per `step` bytes.
pub fn patterns(volume_bytes: u64, step: u64, salt: u8) -> Vec<Pattern> {
    (0..volume_bytes / step)
        .map(|index| Pattern {
            offset: index * step + (index * 4099) % (step / 2),
            length: step / 3 + index % 5000,
            byte: salt.wrapping_add((index as u8).wrapping_mul(7)) | 1,
        })
        .collect()
}

/// `amf rebuild --member MEMBER --replacement DIR/member-MM.img EXTRA... DIR`: a new file
/// in the member's slot.
pub fn rebuild(dir: &Path, member: u32, extra: &[&str]) -> Output {
    let replacement = member_path(dir, member);
    let mut arguments = vec![
        "rebuild".to_owned(),
        "--member".to_owned(),
        member.to_string(),
        "--replacement".to_owned(),
        replacement.to_str().unwrap().to_owned(),
    ];
    arguments.extend(extra.iter().map(|each| each.to_string()));
    arguments.push(dir.to_str().unwrap().to_owned());
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    amf(&arguments)
}

pub fn text(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A running `amf serve`.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Server {
    /// Starts `amf serve --nbd 127.0.0.1:0 EXTRA... DIR` and waits for its address.
    pub fn start(dir: &Path, extra: &[&str]) -> Server {
        let log = dir.with_extension(format!("serve-{}.log", std::process::id()));
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut child = Command::new(AMF)
            .arg("serve")
            .args(["--nbd", "127.0.0.1:0"])
            .args(extra)
            .arg(dir)
            .env("AMF_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .expect("amf serve starts");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!(
                    "amf serve printed {line:?}; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        Server { child, port, log }
    }

    pub fn uri(&self) -> String {
        format!("nbd://127.0.0.1:{}", self.port)
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(self) -> ExitStatus {
        self.terminate_with_log().0
    }

    /// SIGTERM, then the exit status and the server's log.
    pub fn terminate_with_log(mut self) -> (ExitStatus, String) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let status = wait_timeout(&mut self.child, Duration::from_secs(60));
        (status, self.log_text())
    }

    /// SIGKILL: the process dies wherever it is.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A test that fails half-way must not leave its server running.
impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("amf serve did not stop within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `qemu-io -f raw` with `commands` against `uri`; (success, text).
pub fn qemu_io(uri: &str, commands: &[String]) -> (bool, String) {
    let output = qemu_io_command(uri, commands)
        .output()
        .expect("qemu-io runs");
    judge_qemu_io(output.status.success(), &output.stdout, &output.stderr)
}

fn qemu_io_command(uri: &str, commands: &[String]) -> Command {
    let mut command = Command::new("qemu-io");
    command.args(["-f", "raw"]);
    for each in commands {
        command.args(["-c", each]);
    }
    command.arg(uri);
    command
}

fn judge_qemu_io(exited_ok: bool, stdout: &[u8], stderr: &[u8]) -> (bool, String) {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(stdout),
        String::from_utf8_lossy(stderr)
    );
    // qemu-io exits 0 even when a command fails; its messages say so.
    let failed = !exited_ok
        || all.contains("failed")
        || all.contains("error")
        || all.contains("Pattern verification");
    (!failed, all)
}

/// qemu-io `commands` against `uri` started in the background (stdout and stderr piped).
pub fn spawn_qemu_io(uri: &str, commands: &[String]) -> Child {
    qemu_io_command(uri, commands)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-io starts")
}

/// Waits for a qemu-io of [`spawn_qemu_io`]; (success, text) as [`qemu_io`]. One still
/// running after `timeout` is killed and fails, its text saying so: a hang fails the
/// test instead of hanging it.
pub fn finish_qemu_io(mut child: Child, timeout: Duration) -> (bool, String) {
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr piped")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    let (ok, text) = judge_qemu_io(status.is_some_and(|s| s.success()), &stdout, &stderr);
    match status {
        Some(_) => (ok, text),
        None => (
            false,
            format!("qemu-io timed out after {timeout:?}, killed\n{text}"),
        ),
    }
}

/// [`qemu_io`] that fails (killed) if it has not finished within `timeout`.
pub fn qemu_io_within(uri: &str, commands: &[String], timeout: Duration) -> (bool, String) {
    finish_qemu_io(spawn_qemu_io(uri, commands), timeout)
}

/// One write: `length` bytes of `pattern` at `offset`.
#[derive(Clone, Copy, Debug)]
pub struct Pattern {
    pub offset: u64,
    pub length: u64,
    pub byte: u8,
}

impl Pattern {
    pub fn write(&self) -> String {
        format!("write -P {} {} {}", self.byte, self.offset, self.length)
    }
    pub fn read(&self) -> String {
        format!("read -P {} {} {}", self.byte, self.offset, self.length)
    }
}
