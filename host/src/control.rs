//! The control socket of a serving AMF: a Unix socket beside the members (`amf.control`)
//! through which `amf rebuild`, `amf scrub` and `amf status` reach the running volume.
//!
//! One JSON object a line each way: a [`Request`], then a [`Response`]. A line longer
//! than [`REQUEST_BYTES_MAX`] or one that is not a request gets an error response and the
//! connection is closed; other connections are not disturbed. Only the socket's file
//! permissions guard it: it is created mode 0600, for the user running `amf serve`.

use crate::scrub::Mode;
use crate::tasks::{TaskReport, Tasks};
use crate::volume::{RebuildProgress, Volume, VolumeStats};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// Name of the control socket beside the members.
pub const CONTROL_SOCKET_FILE: &str = "amf.control";
/// Longest request line accepted.
pub const REQUEST_BYTES_MAX: usize = 64 * 1024;
/// How long a client waits for the server.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The volume's state and its jobs.
    Status {},
    /// Rebuild failed member `member` onto `replacement`.
    Rebuild {
        member: u32,
        replacement: PathBuf,
        #[serde(default)]
        max_rate_bytes_per_second: Option<u64>,
    },
    /// Scrub every stripe; with `repair`, rewrite mismatching parity.
    Scrub {
        repair: bool,
        #[serde(default)]
        max_rate_bytes_per_second: Option<u64>,
    },
}

/// The serving volume as the control socket reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServeStatus {
    /// Process id of `amf serve`.
    pub pid: u32,
    /// Counters.
    pub volume: VolumeStats,
    /// Members failed or missing now.
    pub failed_members: Vec<u32>,
    /// The rebuild under way.
    pub rebuild: Option<RebuildProgress>,
    /// Jobs started since the volume opened.
    pub tasks: Vec<TaskReport>,
}

/// What the server answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    /// The request was done (a job was started, or here is the status).
    Ok {
        /// The volume, after the request.
        status: ServeStatus,
    },
    /// The request was refused.
    Error {
        /// Why.
        message: String,
    },
}

/// Why the control socket could not be reached or used.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Nothing listens there: no `amf serve` runs on these members.
    #[error("no amf serve answers on {path}: {source}")]
    NotServing {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The connection broke.
    #[error("control socket {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The server's answer is not a response.
    #[error("control socket {path}: unreadable answer: {source}")]
    Garbled {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// The server refused the request.
    #[error("{0}")]
    Refused(String),
}

/// Sends `request` to the `amf serve` listening on `path` and returns its status.
pub fn call(path: &Path, request: &Request) -> Result<ServeStatus, ControlError> {
    let io = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let stream = UnixStream::connect(path).map_err(|source| ControlError::NotServing {
        path: path.to_path_buf(),
        source,
    })?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT)).map_err(io)?;
    let mut line = serde_json::to_string(request).expect("requests serialize");
    line.push('\n');
    (&stream).write_all(line.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).map_err(io)?;
    let response: Response =
        serde_json::from_str(&answer).map_err(|source| ControlError::Garbled {
            path: path.to_path_buf(),
            source,
        })?;
    match response {
        Response::Ok { status } => Ok(status),
        Response::Error { message } => Err(ControlError::Refused(message)),
    }
}

/// Why the control socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Another `amf serve` answers on the socket: these members are served already.
    #[error("{path}: another amf serve (pid {pid}) serves these members")]
    InUse { path: PathBuf, pid: u32 },
    /// The socket could not be created.
    #[error("control socket {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Binds the control socket at `path`, replacing a stale one a dead server left, and
/// refusing when a live server answers there.
pub fn bind(path: &Path) -> Result<tokio::net::UnixListener, BindError> {
    if let Ok(status) = call(path, &Request::Status {}) {
        return Err(BindError::InUse {
            path: path.to_path_buf(),
            pid: status.pid,
        });
    }
    let io = |source| BindError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(io(error)),
        _ => {}
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(io)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(listener)
}

/// Answers requests on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::UnixListener, tasks: Arc<Tasks>, volume: Arc<Volume>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let tasks = Arc::clone(&tasks);
        let volume = Arc::clone(&volume);
        tokio::spawn(async move {
            if let Err(error) = answer(stream, &tasks, &volume).await {
                tracing::warn!(%error, "control connection closed");
            }
        });
    }
}

async fn answer(
    stream: tokio::net::UnixStream,
    tasks: &Arc<Tasks>,
    volume: &Arc<Volume>,
) -> std::io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(reader.take(REQUEST_BYTES_MAX as u64 + 1));
    let mut line = Vec::new();
    while lines.read_until(b'\n', &mut line).await? > 0 {
        let complete = line.ends_with(b"\n");
        let response = match parse_request(&line) {
            Ok(request) => {
                let tasks = Arc::clone(tasks);
                let volume = Arc::clone(volume);
                tokio::task::spawn_blocking(move || handle(request, &tasks, &volume))
                    .await
                    .unwrap_or_else(|panic| error(format!("request failed: {panic}")))
            }
            Err(refused) => error(refused.to_string()),
        };
        let refused = matches!(response, Response::Error { .. });
        let mut text = serde_json::to_string(&response).expect("responses serialize");
        text.push('\n');
        writer.write_all(text.as_bytes()).await?;
        if refused || !complete {
            break;
        }
        line.clear();
    }
    Ok(())
}

/// Why a line is not a request.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Longer than [`REQUEST_BYTES_MAX`] without a newline.
    #[error("request longer than {REQUEST_BYTES_MAX} bytes")]
    TooLong,
    /// Not UTF-8 JSON of a known request.
    #[error("not a request: {0}")]
    NotARequest(#[from] serde_json::Error),
}

/// One request line (its newline included or not), or why it is none.
pub fn parse_request(line: &[u8]) -> Result<Request, RequestError> {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    if body.len() > REQUEST_BYTES_MAX {
        return Err(RequestError::TooLong);
    }
    Ok(serde_json::from_slice(body)?)
}

fn error(message: String) -> Response {
    Response::Error { message }
}

/// Does what `request` asks; blocking (a rebuild's start writes superblocks).
fn handle(request: Request, tasks: &Tasks, volume: &Volume) -> Response {
    let started = match request {
        Request::Status {} => Ok(()),
        Request::Rebuild {
            member,
            replacement,
            max_rate_bytes_per_second,
        } => tasks
            .start_rebuild(member, replacement, max_rate_bytes_per_second)
            .map(drop)
            .map_err(|error| error.to_string()),
        Request::Scrub {
            repair,
            max_rate_bytes_per_second,
        } => {
            let mode = if repair { Mode::Repair } else { Mode::Check };
            tasks.start_scrub(mode, max_rate_bytes_per_second).map(drop)
        }
    };
    match started {
        Ok(()) => Response::Ok {
            status: status(tasks, volume),
        },
        Err(message) => error(message),
    }
}

/// The volume's state now.
pub fn status(tasks: &Tasks, volume: &Volume) -> ServeStatus {
    ServeStatus {
        pid: std::process::id(),
        volume: volume.stats(),
        failed_members: volume.failed_members().iter().collect(),
        rebuild: volume.rebuild_progress(),
        tasks: tasks.reports(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_garbage_is_refused() {
        let rebuild = Request::Rebuild {
            member: 2,
            replacement: PathBuf::from("/tmp/new.img"),
            max_rate_bytes_per_second: Some(1 << 20),
        };
        let text = serde_json::to_string(&rebuild).unwrap();
        assert_eq!(parse_request(text.as_bytes()).unwrap(), rebuild);
        let long = format!(
            "{{\"command\":\"status\"{}}}\n",
            " ".repeat(REQUEST_BYTES_MAX)
        );
        assert!(matches!(
            parse_request(long.as_bytes()),
            Err(RequestError::TooLong)
        ));
        let minimal: Request =
            serde_json::from_str(r#"{"command":"scrub","repair":true}"#).unwrap();
        assert_eq!(
            minimal,
            Request::Scrub {
                repair: true,
                max_rate_bytes_per_second: None
            }
        );
        for garbage in [
            "",
            "{}",
            "null",
            r#"{"command":"format"}"#,
            r#"{"command":"rebuild","member":-1,"replacement":"x"}"#,
            r#"{"command":"status","extra":1}"#,
            "\u{0}\u{1}",
        ] {
            assert!(
                matches!(
                    parse_request(garbage.as_bytes()),
                    Err(RequestError::NotARequest(_))
                ),
                "{garbage:?}"
            );
        }
    }
}
