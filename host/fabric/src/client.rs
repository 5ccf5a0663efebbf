//! A port's side of a link, blocking: join, send, receive, beat.
//!
//! Used by the sim card's fabric port (threads, no runtime) and by tests. [`join`]
//! connects, sends the `Join` and waits for the `Welcome` (or the fabric's `Refused`,
//! returned as [`ClientError::Refused`]). The reader hides heartbeats and treats a fabric
//! silent for the Welcome's `heartbeat_misses_max` intervals as gone; the writer is shared
//! (a clone per thread), and [`LinkWriter::start_heartbeat`] beats from a thread of its
//! own until the returned guard is dropped.

use crate::address::Address;
use crate::codec::{FrameDecoder, OwnedFrame};
use shared_regs::fabric::{
    FrameError, JoinPayload, MessageKind, PORT_BROADCAST, RefusalReason, WelcomePayload,
};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zerocopy::{FromBytes, IntoBytes};

/// Why a link could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting to the fabric failed.
    #[error("cannot connect to the fabric at {address}")]
    Connect {
        /// Where.
        address: Address,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The fabric refused the port or dropped the link.
    #[error("the fabric refused port {port}: {reason:?}: {detail}")]
    Refused {
        /// The port.
        port: u8,
        /// Why.
        reason: RefusalReason,
        /// The fabric's explanation.
        detail: String,
    },
    /// The fabric sent bytes that are not a frame.
    #[error("the fabric sent a malformed frame")]
    Malformed(#[source] FrameError),
    /// The fabric sent something out of protocol.
    #[error("the fabric broke the protocol: {0}")]
    Protocol(String),
    /// The fabric sent nothing (not even a heartbeat) for too long.
    #[error("the fabric was silent for {silence_ms} ms")]
    Silent {
        /// How long.
        silence_ms: u64,
    },
    /// The fabric closed the link.
    #[error("the fabric closed the link")]
    Closed,
    /// Reading or writing the socket failed.
    #[error("fabric link I/O failed")]
    Io(#[from] io::Error),
}

/// A connected socket of either family.
#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn connect(address: &Address, timeout: Duration) -> Result<Self, ClientError> {
        let connect_error = |source| ClientError::Connect {
            address: address.clone(),
            source,
        };
        match address {
            Address::Tcp(host_port) => {
                let mut last_error = io::Error::new(io::ErrorKind::NotFound, "no address");
                for socket_address in host_port.to_socket_addrs().map_err(connect_error)? {
                    match TcpStream::connect_timeout(&socket_address, timeout) {
                        Ok(stream) => {
                            stream.set_nodelay(true)?;
                            return Ok(Self::Tcp(stream));
                        }
                        Err(error) => last_error = error,
                    }
                }
                Err(connect_error(last_error))
            }
            Address::Unix(path) => Ok(Self::Unix(
                UnixStream::connect(path).map_err(connect_error)?,
            )),
        }
    }

    fn try_clone(&self) -> io::Result<Self> {
        Ok(match self {
            Self::Tcp(stream) => Self::Tcp(stream.try_clone()?),
            Self::Unix(stream) => Self::Unix(stream.try_clone()?),
        })
    }

    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Self::Tcp(stream) => stream.set_read_timeout(timeout),
            Self::Unix(stream) => stream.set_read_timeout(timeout),
        }
    }

    fn shutdown(&self) {
        self.shutdown_direction(Shutdown::Both);
    }

    fn shutdown_direction(&self, direction: Shutdown) {
        // Already closed is as good as closed.
        let _ = match self {
            Self::Tcp(stream) => stream.shutdown(direction),
            Self::Unix(stream) => stream.shutdown(direction),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(stream) => stream.read(buffer),
            Self::Unix(stream) => stream.read(buffer),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(stream) => stream.write(bytes),
            Self::Unix(stream) => stream.write(bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Tcp(stream) => stream.flush(),
            Self::Unix(stream) => stream.flush(),
        }
    }
}

/// A joined link: what the fabric said, and the two directions.
#[derive(Debug)]
pub struct Joined {
    /// The fabric's `Welcome`, decoded.
    pub welcome: WelcomePayload,
    /// The `Welcome` frame itself (a card hands it to its host as the first frame).
    pub welcome_frame: OwnedFrame,
    /// Incoming frames.
    pub reader: LinkReader,
    /// Outgoing frames.
    pub writer: LinkWriter,
}

/// Connects to the fabric at `address` as `port` of the array `array_uuid` and waits (at
/// most `timeout`) for the fabric's answer.
pub fn join(
    address: &Address,
    port: u8,
    array_uuid: [u8; 16],
    timeout: Duration,
) -> Result<Joined, ClientError> {
    let stream = Stream::connect(address, timeout)?;
    let mut writer = LinkWriter {
        stream: Arc::new(Mutex::new(stream.try_clone()?)),
        port,
    };
    let mut reader = LinkReader {
        stream,
        decoder: FrameDecoder::new(),
        chunk: vec![0; 64 * 1024],
        port,
        silence_ms_max: duration_ms(timeout),
    };
    reader.stream.set_read_timeout(Some(timeout))?;
    let join = JoinPayload { array_uuid };
    writer.send(&OwnedFrame::new(
        MessageKind::Join,
        port,
        PORT_BROADCAST,
        0,
        join.as_bytes().to_vec(),
    ))?;
    let answer = reader.recv()?;
    if answer.kind() != MessageKind::Welcome || answer.source_port() != port {
        return Err(ClientError::Protocol(format!(
            "answered a Join with a {:?} for port {}",
            answer.kind(),
            answer.source_port()
        )));
    }
    let welcome = WelcomePayload::read_from_bytes(answer.payload()).expect("length checked");
    let silence_ms_max = u64::from(welcome.heartbeat_interval_ms.get())
        * u64::from(welcome.heartbeat_misses_max.get());
    reader.silence_ms_max = silence_ms_max.max(1);
    reader
        .stream
        .set_read_timeout(Some(Duration::from_millis(reader.silence_ms_max)))?;
    Ok(Joined {
        welcome,
        welcome_frame: answer,
        reader,
        writer,
    })
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// The incoming direction of a link.
#[derive(Debug)]
pub struct LinkReader {
    stream: Stream,
    decoder: FrameDecoder,
    chunk: Vec<u8>,
    port: u8,
    silence_ms_max: u64,
}

impl LinkReader {
    /// The next frame that is not a heartbeat. A `Refused` frame from the fabric is
    /// returned as [`ClientError::Refused`].
    pub fn recv(&mut self) -> Result<OwnedFrame, ClientError> {
        loop {
            let frame = self.next_frame()?;
            match frame.kind() {
                MessageKind::Heartbeat => continue,
                MessageKind::Refused => return Err(refusal(self.port, frame.payload())),
                _ => return Ok(frame),
            }
        }
    }

    fn next_frame(&mut self) -> Result<OwnedFrame, ClientError> {
        loop {
            if let Some(frame) = self.decoder.next_frame().map_err(ClientError::Malformed)? {
                return Ok(frame);
            }
            let read = match self.stream.read(&mut self.chunk) {
                Ok(0) => return Err(ClientError::Closed),
                Ok(read) => read,
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(ClientError::Silent {
                        silence_ms: self.silence_ms_max,
                    });
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error.into()),
            };
            self.decoder.push(&self.chunk[..read]);
        }
    }

    /// Closes both directions of the link (the fabric then announces the port down); a
    /// reader blocked in [`LinkReader::recv`] on another thread returns.
    pub fn close(&self) {
        self.stream.shutdown();
    }

    /// A handle that closes this link from another thread.
    pub fn closer(&self) -> Result<LinkCloser, ClientError> {
        Ok(LinkCloser {
            stream: self.stream.try_clone()?,
        })
    }
}

/// Closes a link from any thread.
#[derive(Debug)]
pub struct LinkCloser {
    stream: Stream,
}

impl LinkCloser {
    /// Closes both directions.
    pub fn close(&self) {
        self.stream.shutdown();
    }
}

fn refusal(port: u8, payload: &[u8]) -> ClientError {
    let (&code, text) = payload.split_first().expect("length checked by parse");
    match RefusalReason::from_u8(code) {
        Some(reason) => ClientError::Refused {
            port,
            reason,
            detail: String::from_utf8_lossy(text).into_owned(),
        },
        None => ClientError::Protocol(format!("refused with unknown reason {code}")),
    }
}

/// The outgoing direction of a link; clones share the socket.
#[derive(Clone, Debug)]
pub struct LinkWriter {
    stream: Arc<Mutex<Stream>>,
    port: u8,
}

impl LinkWriter {
    /// The port this link joined as.
    pub fn port(&self) -> u8 {
        self.port
    }

    /// Sends one frame whole.
    pub fn send(&mut self, frame: &OwnedFrame) -> Result<(), ClientError> {
        self.send_bytes(&frame.encode())
    }

    /// Sends bytes that already are one or more encoded frames (or, in tests, are not).
    pub fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let mut stream = self
            .stream
            .lock()
            .map_err(|_| ClientError::Protocol("a sender panicked mid-frame".into()))?;
        stream.write_all(bytes)?;
        Ok(())
    }

    /// Says `Leave` and closes the sending direction: the fabric announces this port down
    /// without fencing it. Only for a host that has stopped every member write: a port
    /// that leaves must not write again. Frames sent after it are never taken.
    pub fn leave(&mut self) -> Result<(), ClientError> {
        let leave = OwnedFrame::new(MessageKind::Leave, self.port, PORT_BROADCAST, 0, vec![]);
        let mut stream = self
            .stream
            .lock()
            .map_err(|_| ClientError::Protocol("a sender panicked mid-frame".into()))?;
        stream.write_all(&leave.encode())?;
        stream.shutdown_direction(Shutdown::Write);
        Ok(())
    }

    /// Beats every `interval` from a thread of its own until the guard is dropped or a
    /// send fails.
    pub fn start_heartbeat(&self, interval: Duration) -> io::Result<HeartbeatGuard> {
        let (stop, stopped) = mpsc::channel::<()>();
        let mut writer = self.clone();
        let beat = OwnedFrame::new(MessageKind::Heartbeat, self.port, PORT_BROADCAST, 0, vec![]);
        let handle = std::thread::Builder::new()
            .name(format!("amf-fabric-beat-{}", self.port))
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    if writer.send(&beat).is_err() {
                        return;
                    }
                }
            })?;
        Ok(HeartbeatGuard {
            stop: Some(stop),
            handle: Some(handle),
        })
    }
}

/// Stops the heartbeat thread when dropped.
#[derive(Debug)]
pub struct HeartbeatGuard {
    stop: Option<mpsc::Sender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for HeartbeatGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}
