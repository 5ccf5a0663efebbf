//! The NBD server: a tokio accept loop, one task per connection, device calls on blocking
//! threads.
//!
//! Per connection: the handshake runs under a timeout; then one reader parses requests in
//! order and starts each on its own task (at most [`ServerOptions::requests_in_flight_max`]
//! at once, and at most [`ServerOptions::bytes_in_flight_max`] of payload), every device call
//! runs on `spawn_blocking`, and one writer task sends the replies, whole, in the order they
//! complete, so replies never interleave. A connection that breaks the protocol is closed
//! and logged; it shares nothing with the others but the device.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::protocol::{self as wire, ClientOption, Command, ExportLimits, Payload};
use crate::block::{BlockDevice, BlockError};

/// What a server exports and how much it lets each client ask for.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The export's name; the empty name (the protocol's default export) is always accepted too.
    pub export_name: String,
    /// Text sent as `NBD_INFO_DESCRIPTION` and in `NBD_OPT_LIST`.
    pub description: String,
    /// Largest read or write payload, advertised as the maximum block size. A multiple of
    /// 512, at least 4096.
    pub max_request_bytes: u32,
    /// Refuse writes, trims and write-zeroes with `EPERM`.
    pub read_only: bool,
    /// Advertise `NBD_FLAG_CAN_MULTI_CONN`: a client may spread its I/O over several
    /// connections and flush on any one of them. That is sound when the device's `flush`
    /// makes every completed write durable, whichever connection it came from; this is what
    /// [`BlockDevice::flush`] promises and what the RAID volume does (its flush syncs every
    /// member, and a write completes only once it is in the members or in peers' SRAM).
    /// Set it false for a device whose flush covers less.
    pub can_multi_conn: bool,
    /// Time a client has to finish the handshake.
    pub handshake_timeout: Duration,
    /// Requests one connection may have running at once.
    pub requests_in_flight_max: u32,
    /// Read and write payload bytes one connection may hold at once (a single request
    /// larger than this runs alone).
    pub bytes_in_flight_max: u32,
    /// Connections served at once; more are closed at accept.
    pub connections_max: u32,
    /// Options one handshake may send before we close it.
    pub options_max: u32,
    /// Time a closing connection (or a shutdown) waits for replies in flight to go out.
    pub drain_timeout: Duration,
    /// Told of every request the device runs (metrics); none by default.
    pub observer: Option<Arc<dyn RequestObserver>>,
}

/// The kind of a request the device runs, for [`RequestObserver`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// `NBD_CMD_READ`.
    Read,
    /// `NBD_CMD_WRITE`.
    Write,
    /// `NBD_CMD_FLUSH`.
    Flush,
    /// `NBD_CMD_TRIM`.
    Trim,
    /// `NBD_CMD_WRITE_ZEROES`.
    WriteZeroes,
}

impl RequestKind {
    /// Lower-case name, as in the metrics' `kind` label.
    pub fn name(self) -> &'static str {
        match self {
            RequestKind::Read => "read",
            RequestKind::Write => "write",
            RequestKind::Flush => "flush",
            RequestKind::Trim => "trim",
            RequestKind::WriteZeroes => "write_zeroes",
        }
    }

    fn of(command: &Command) -> Option<(RequestKind, u64)> {
        Some(match *command {
            Command::Read { length, .. } => (RequestKind::Read, length.into()),
            Command::Write { length, .. } => (RequestKind::Write, length.into()),
            Command::Flush => (RequestKind::Flush, 0),
            Command::Trim { length, .. } => (RequestKind::Trim, length.into()),
            Command::WriteZeroes { length, .. } => (RequestKind::WriteZeroes, length.into()),
            Command::Disconnect => return None,
        })
    }
}

/// Watches the requests a server runs: when each starts on the device and how it ended.
pub trait RequestObserver: Send + Sync + std::fmt::Debug {
    /// A request of `kind` was handed to the device.
    fn started(&self, kind: RequestKind);
    /// It finished after `latency` (from its header being read), `bytes` long, `ok` or not.
    fn finished(&self, kind: RequestKind, bytes: u64, latency: Duration, ok: bool);
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            export_name: String::new(),
            description: String::from("amflink volume"),
            max_request_bytes: 32 * 1024 * 1024,
            read_only: false,
            can_multi_conn: true,
            handshake_timeout: Duration::from_secs(10),
            observer: None,
            requests_in_flight_max: 16,
            bytes_in_flight_max: 64 * 1024 * 1024,
            connections_max: 64,
            options_max: 256,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

impl ServerOptions {
    fn check(&self) -> io::Result<()> {
        let invalid = |message: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, message));
        if self.max_request_bytes < wire::BLOCK_BYTES_PREFERRED
            || !self.max_request_bytes.is_multiple_of(wire::BLOCK_BYTES_MIN)
        {
            return invalid("max_request_bytes must be a multiple of 512 and at least 4096");
        }
        if self.export_name.len() > wire::EXPORT_NAME_BYTES_MAX {
            return invalid("export_name is longer than 4096 bytes");
        }
        if self.description.len() > wire::EXPORT_NAME_BYTES_MAX {
            return invalid("description is longer than 4096 bytes");
        }
        if self.requests_in_flight_max == 0
            || self.bytes_in_flight_max == 0
            || self.connections_max == 0
            || self.options_max == 0
        {
            return invalid("in-flight, connection and option limits must be at least 1");
        }
        Ok(())
    }

    fn transmission_flags(&self) -> u16 {
        let mut flags = wire::TRANSMIT_HAS_FLAGS
            | wire::TRANSMIT_SEND_FLUSH
            | wire::TRANSMIT_SEND_FUA
            | wire::TRANSMIT_SEND_TRIM
            | wire::TRANSMIT_SEND_WRITE_ZEROES;
        if self.read_only {
            flags |= wire::TRANSMIT_READ_ONLY;
        }
        if self.can_multi_conn {
            flags |= wire::TRANSMIT_CAN_MULTI_CONN;
        }
        flags
    }

    fn names_export(&self, name: &[u8]) -> bool {
        name.is_empty() || name == self.export_name.as_bytes()
    }
}

/// What a server did, returned when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Connections accepted and served (handshake attempted).
    pub connections: u64,
    /// Connections closed at accept because `connections_max` were being served.
    pub connections_refused: u64,
    /// Request headers received in the transmission phase (refused ones included).
    pub requests: u64,
    /// Connections closed for breaking the protocol (bad magic, unknown flags, timeout...).
    pub protocol_errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    connections_refused: AtomicU64,
    requests: AtomicU64,
    protocol_errors: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ServerStats {
        ServerStats {
            connections: self.connections.load(Ordering::Relaxed),
            connections_refused: self.connections_refused.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            protocol_errors: self.protocol_errors.load(Ordering::Relaxed),
        }
    }
}

struct Shared {
    device: Arc<dyn BlockDevice>,
    options: ServerOptions,
    limits: ExportLimits,
    counters: Counters,
}

/// Why a connection ended without an error of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    /// `NBD_CMD_DISC`.
    Disconnect,
    /// `NBD_OPT_ABORT` in the handshake.
    Abort,
    /// The client closed its end between messages.
    EndOfStream,
    /// The server is shutting down.
    Shutdown,
}

/// Why a connection was closed by us (or broke).
#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Protocol(#[from] wire::ProtocolError),
    #[error("handshake not finished within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("NBD_OPT_EXPORT_NAME asked for an unknown export {0:?}")]
    UnknownExport(String),
    #[error("option {0} is too long to use as an export name")]
    ExportNameTooLong(u32),
    #[error("more than {0} options in one handshake")]
    TooManyOptions(u32),
    #[error("write payload of {0} bytes is too large to skip")]
    OversizeWrite(u32),
    #[error("the reply writer stopped: {0}")]
    Writer(String),
}

/// Reads at most this long run on the connection's runtime worker instead of the blocking
/// pool, on a device whose reads are quick ([`BlockDevice::quick_reads`]).
const INLINE_READ_BYTES_MAX: u32 = 64 * 1024;

/// Serves `device` over NBD on `listener` until `shutdown` resolves.
///
/// Then it stops accepting, lets every connection finish the requests it has in flight and
/// send their replies, closes the connections and returns what it did. Fails only for
/// options it cannot serve with.
pub async fn serve(
    listener: TcpListener,
    device: Arc<dyn BlockDevice>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<ServerStats> {
    options.check()?;
    let limits = ExportLimits {
        size_bytes: device.size_bytes(),
        request_bytes_max: options.max_request_bytes,
        read_only: options.read_only,
    };
    let shared = Arc::new(Shared {
        device,
        options,
        limits,
        counters: Counters::default(),
    });
    let (stop_sender, stop) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    info!(address = ?listener.local_addr().ok(), size_bytes = limits.size_bytes, "NBD server listening");
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(finished) = connections.join_next(), if !connections.is_empty() => {
                log_task_end(finished);
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    accept_connection(&shared, &mut connections, &stop, stream, peer);
                }
                Err(error) => {
                    // Per-connection failures (aborted handshakes, descriptor limits) must
                    // not end the server; back off a little and accept again.
                    warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    info!(connections = connections.len(), "NBD server shutting down");
    // Every receiver is held by a connection task; send fails only when there are none.
    let _ = stop_sender.send(true);
    while let Some(finished) = connections.join_next().await {
        log_task_end(finished);
    }
    let stats = shared.counters.snapshot();
    info!(?stats, "NBD server stopped");
    Ok(stats)
}

fn accept_connection(
    shared: &Arc<Shared>,
    connections: &mut JoinSet<()>,
    stop: &watch::Receiver<bool>,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let connections_max = usize::try_from(shared.options.connections_max).unwrap_or(usize::MAX);
    if connections.len() >= connections_max {
        shared
            .counters
            .connections_refused
            .fetch_add(1, Ordering::Relaxed);
        warn!(%peer, connections_max, "connection refused: too many connections");
        return;
    }
    shared.counters.connections.fetch_add(1, Ordering::Relaxed);
    connections.spawn(run_connection(
        stream,
        peer,
        Arc::clone(shared),
        stop.clone(),
    ));
}

fn log_task_end(finished: Result<(), tokio::task::JoinError>) {
    if let Err(error) = finished {
        warn!(%error, "connection task failed");
    }
}

async fn run_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    info!(%peer, "connection opened");
    if let Err(error) = stream.set_nodelay(true) {
        debug!(%peer, %error, "could not set TCP_NODELAY");
    }
    match connection(stream, &shared, stop).await {
        Ok(reason) => info!(%peer, ?reason, "connection closed"),
        Err(ConnectionError::Io(error)) => {
            info!(%peer, %error, "connection closed on a socket error")
        }
        Err(error) => {
            shared
                .counters
                .protocol_errors
                .fetch_add(1, Ordering::Relaxed);
            warn!(%peer, %error, "connection closed: protocol error");
        }
    }
}

async fn connection(
    mut stream: TcpStream,
    shared: &Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Result<Closed, ConnectionError> {
    let timeout = shared.options.handshake_timeout;
    let negotiated = tokio::select! {
        biased;
        _ = stop.wait_for(|stopping| *stopping) => return Ok(Closed::Shutdown),
        outcome = tokio::time::timeout(timeout, handshake(&mut stream, shared)) => {
            outcome.map_err(|_| ConnectionError::HandshakeTimeout(timeout))??
        }
    };
    match negotiated {
        Negotiated::Transmission { structured } => {
            transmission(stream, shared, structured, stop).await
        }
        Negotiated::Closed(reason) => Ok(reason),
    }
}

enum Negotiated {
    Transmission { structured: bool },
    Closed(Closed),
}

/// Fixed newstyle handshake: greeting, client flags, then options until one moves us into
/// transmission (`GO`, `EXPORT_NAME`) or ends the session (`ABORT`).
async fn handshake(stream: &mut TcpStream, shared: &Shared) -> Result<Negotiated, ConnectionError> {
    stream.write_all(&wire::encode_greeting()).await?;
    let mut flag_bytes = [0u8; 4];
    if !read_or_end(stream, &mut flag_bytes).await? {
        return Ok(Negotiated::Closed(Closed::EndOfStream));
    }
    let client_flags = wire::parse_client_flags(&flag_bytes)?;
    let mut structured = false;
    for _ in 0..shared.options.options_max {
        let mut header_bytes = [0u8; wire::OPTION_HEADER_BYTES];
        if !read_or_end(stream, &mut header_bytes).await? {
            return Ok(Negotiated::Closed(Closed::EndOfStream));
        }
        let header = wire::OptionHeader::parse(&header_bytes)?;
        if header.data_bytes > wire::OPTION_DATA_BYTES_MAX {
            if header.option == wire::OPT_EXPORT_NAME {
                // No error reply exists for EXPORT_NAME: closing is the only answer.
                return Err(ConnectionError::ExportNameTooLong(header.data_bytes));
            }
            discard(stream, header.data_bytes).await?;
            let reply = wire::encode_option_reply(
                header.option,
                wire::REP_ERR_TOO_BIG,
                b"option data too long",
            );
            stream.write_all(&reply).await?;
            continue;
        }
        let data_bytes = usize::try_from(header.data_bytes).expect("bounded by 64 KiB");
        let mut data = vec![0u8; data_bytes];
        stream.read_exact(&mut data).await?;
        let option = match wire::parse_option(header.option, &data) {
            Ok(option) => option,
            Err(error) => {
                debug!(%error, "option refused");
                let message = error.to_string();
                let reply = wire::encode_option_reply(
                    header.option,
                    error.reply_type(),
                    message.as_bytes(),
                );
                stream.write_all(&reply).await?;
                continue;
            }
        };
        let outcome = match option {
            ClientOption::ExportName { name } => {
                export_name(stream, shared, &name, client_flags, structured).await?
            }
            other => answer_option(stream, shared, other, &mut structured).await?,
        };
        if let Some(outcome) = outcome {
            return Ok(outcome);
        }
    }
    Err(ConnectionError::TooManyOptions(shared.options.options_max))
}

/// `NBD_OPT_EXPORT_NAME`: the size and flags, then transmission; an unknown name closes,
/// as this option has no error reply.
async fn export_name(
    stream: &mut TcpStream,
    shared: &Shared,
    name: &[u8],
    client_flags: wire::ClientFlags,
    structured: bool,
) -> Result<Option<Negotiated>, ConnectionError> {
    if !shared.options.names_export(name) {
        return Err(ConnectionError::UnknownExport(
            String::from_utf8_lossy(name).into_owned(),
        ));
    }
    let reply = wire::encode_export_name_reply(
        shared.limits.size_bytes,
        shared.options.transmission_flags(),
        !client_flags.no_zeroes,
    );
    stream.write_all(&reply).await?;
    Ok(Some(Negotiated::Transmission { structured }))
}

/// Answers one parsed option other than `EXPORT_NAME`; `Some` when the handshake is over.
async fn answer_option(
    stream: &mut TcpStream,
    shared: &Shared,
    option: ClientOption,
    structured: &mut bool,
) -> Result<Option<Negotiated>, ConnectionError> {
    let options = &shared.options;
    match option {
        ClientOption::ExportName { .. } => unreachable!("answered by export_name"),
        ClientOption::Abort => {
            let reply = wire::encode_option_reply(wire::OPT_ABORT, wire::REP_ACK, &[]);
            // The client may already have gone; ABORT ends the session either way.
            let _ = stream.write_all(&reply).await;
            Ok(Some(Negotiated::Closed(Closed::Abort)))
        }
        ClientOption::List => {
            let entry = wire::encode_server_entry(&options.export_name, &options.description);
            let mut reply = wire::encode_option_reply(wire::OPT_LIST, wire::REP_SERVER, &entry);
            reply.extend(wire::encode_option_reply(
                wire::OPT_LIST,
                wire::REP_ACK,
                &[],
            ));
            stream.write_all(&reply).await?;
            Ok(None)
        }
        ClientOption::StructuredReply => {
            *structured = true;
            let reply = wire::encode_option_reply(wire::OPT_STRUCTURED_REPLY, wire::REP_ACK, &[]);
            stream.write_all(&reply).await?;
            Ok(None)
        }
        ClientOption::Info { go, name, requests } => {
            let option = if go { wire::OPT_GO } else { wire::OPT_INFO };
            if !options.names_export(name.as_bytes()) {
                let reply =
                    wire::encode_option_reply(option, wire::REP_ERR_UNKNOWN, b"no such export");
                stream.write_all(&reply).await?;
                return Ok(None);
            }
            stream
                .write_all(&info_replies(shared, option, &requests))
                .await?;
            Ok(go.then_some(Negotiated::Transmission {
                structured: *structured,
            }))
        }
    }
}

/// `NBD_REP_INFO` replies for `INFO`/`GO`, then the `ACK`. `EXPORT` and `BLOCK_SIZE` are
/// always sent (the protocol asks a server with size constraints to advertise them); `NAME`
/// and `DESCRIPTION` when asked for.
fn info_replies(shared: &Shared, option: u32, requests: &[u16]) -> Vec<u8> {
    let options = &shared.options;
    let mut infos = vec![
        wire::encode_info_export(shared.limits.size_bytes, options.transmission_flags()),
        wire::encode_info_block_size(options.max_request_bytes),
    ];
    if requests.contains(&wire::INFO_NAME) {
        infos.push(wire::encode_info_text(
            wire::INFO_NAME,
            &options.export_name,
        ));
    }
    if requests.contains(&wire::INFO_DESCRIPTION) && !options.description.is_empty() {
        infos.push(wire::encode_info_text(
            wire::INFO_DESCRIPTION,
            &options.description,
        ));
    }
    let mut out = Vec::new();
    for info in infos {
        out.extend(wire::encode_option_reply(option, wire::REP_INFO, &info));
    }
    out.extend(wire::encode_option_reply(option, wire::REP_ACK, &[]));
    out
}

/// Reads exactly `buffer.len()` bytes; `false` if the stream ended before the first byte.
async fn read_or_end<R: AsyncRead + Unpin>(reader: &mut R, buffer: &mut [u8]) -> io::Result<bool> {
    let first = reader.read(buffer).await?;
    if first == 0 && !buffer.is_empty() {
        return Ok(false);
    }
    reader.read_exact(&mut buffer[first..]).await?;
    Ok(true)
}

/// Reads and throws away `length` bytes.
/// Reads a write's `length` bytes of payload into `data` (empty, with the capacity), without
/// zero-filling it first: at a megabyte a write, the fill cost as much as the copy.
async fn read_payload<R: AsyncRead + Unpin>(
    reader: &mut R,
    length: u32,
    data: &mut Vec<u8>,
) -> io::Result<()> {
    let mut limited = reader.take(u64::from(length));
    // `read_buf` fills the spare capacity; stopping at `length` never makes it grow.
    while data.len() < length as usize {
        if limited.read_buf(data).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("write payload ended after {} of {length} bytes", data.len()),
            ));
        }
    }
    Ok(())
}

async fn discard<R: AsyncRead + Unpin>(reader: &mut R, length: u32) -> io::Result<()> {
    let copied =
        tokio::io::copy(&mut reader.take(u64::from(length)), &mut tokio::io::sink()).await?;
    if copied != u64::from(length) {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// What the reader hands each request task.
struct Flight {
    shared: Arc<Shared>,
    replies: mpsc::Sender<Vec<u8>>,
    structured: bool,
}

/// The transmission phase: read requests, run them, reply; on the way out wait for every
/// request in flight and send its reply before closing.
async fn transmission(
    stream: TcpStream,
    shared: &Arc<Shared>,
    structured: bool,
    stop: watch::Receiver<bool>,
) -> Result<Closed, ConnectionError> {
    let (read_half, write_half) = stream.into_split();
    let requests_in_flight_max = shared.options.requests_in_flight_max;
    let reply_queue_max = usize::try_from(requests_in_flight_max)
        .unwrap_or(usize::MAX)
        .max(1)
        + 1;
    let (replies, reply_queue) = mpsc::channel(reply_queue_max);
    let (writer_alive, writer_gone) = oneshot::channel::<()>();
    let mut writer = tokio::spawn(write_replies(write_half, reply_queue, writer_alive));
    let mut reader = RequestReader {
        reader: BufReader::with_capacity(64 * 1024, read_half),
        stop,
        writer_gone,
        requests: Arc::new(Semaphore::new(
            usize::try_from(requests_in_flight_max).unwrap_or(1),
        )),
        bytes: Arc::new(Semaphore::new(
            usize::try_from(shared.options.bytes_in_flight_max).unwrap_or(1),
        )),
        flight: Flight {
            shared: Arc::clone(shared),
            replies,
            structured,
        },
        tasks: JoinSet::new(),
    };
    let outcome = reader.run().await;
    let RequestReader {
        flight, mut tasks, ..
    } = reader;
    drop(flight);
    // A client that stops reading replies would hold its tasks (and a shutdown) forever:
    // the drain is bounded, after which what is left is dropped with the connection.
    let drain_timeout = shared.options.drain_timeout;
    let drained = tokio::time::timeout(drain_timeout, async {
        while let Some(finished) = tasks.join_next().await {
            if let Err(error) = finished {
                warn!(%error, "request task failed");
            }
        }
        (&mut writer).await
    })
    .await;
    let written = match drained {
        Ok(written) => written.map_err(|error| ConnectionError::Writer(error.to_string()))?,
        Err(_) => {
            warn!(
                ?drain_timeout,
                "requests in flight not answered in time; dropping them"
            );
            tasks.abort_all();
            writer.abort();
            return Err(ConnectionError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                "replies not taken within the drain timeout",
            )));
        }
    };
    match (outcome, written) {
        (Err(error), _) => Err(error),
        (Ok(reason), Err(error)) if reason != Closed::Shutdown => Err(ConnectionError::Io(error)),
        (Ok(reason), _) => Ok(reason),
    }
}

struct RequestReader {
    reader: BufReader<OwnedReadHalf>,
    stop: watch::Receiver<bool>,
    writer_gone: oneshot::Receiver<()>,
    requests: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    flight: Flight,
    tasks: JoinSet<()>,
}

/// Something that ends the read loop before the awaited read does.
enum Interrupted {
    Stop,
    WriterGone,
}

impl RequestReader {
    async fn run(&mut self) -> Result<Closed, ConnectionError> {
        loop {
            while let Some(finished) = self.tasks.try_join_next() {
                if let Err(error) = finished {
                    warn!(%error, "request task failed");
                }
            }
            match self.next_request().await {
                Ok(None) => continue,
                Ok(Some(closed)) => return Ok(closed),
                Err(error) => return Err(error),
            }
        }
    }

    /// Races `future` against shutdown and the writer's death.
    async fn interruptible<T>(
        &mut self,
        future: impl Future<Output = T>,
    ) -> Result<T, Interrupted> {
        tokio::select! {
            biased;
            _ = self.stop.wait_for(|stopping| *stopping) => Err(Interrupted::Stop),
            _ = &mut self.writer_gone => Err(Interrupted::WriterGone),
            value = future => Ok(value),
        }
    }

    /// Reads and dispatches one request; `Some` when the connection should close.
    async fn next_request(&mut self) -> Result<Option<Closed>, ConnectionError> {
        let requests = Arc::clone(&self.requests);
        let permit = match self.interruptible(requests.acquire_owned()).await {
            Ok(permit) => permit.expect("the semaphore is never closed"),
            Err(interrupted) => return interrupted_outcome(interrupted),
        };
        let mut header_bytes = [0u8; wire::REQUEST_BYTES];
        let got_header = tokio::select! {
            biased;
            _ = self.stop.wait_for(|stopping| *stopping) => return Ok(Some(Closed::Shutdown)),
            _ = &mut self.writer_gone => return interrupted_outcome(Interrupted::WriterGone),
            read = read_or_end(&mut self.reader, &mut header_bytes) => read?,
        };
        if !got_header {
            return Ok(Some(Closed::EndOfStream));
        }
        let header = wire::RequestHeader::parse(&header_bytes)?;
        self.flight
            .shared
            .counters
            .requests
            .fetch_add(1, Ordering::Relaxed);
        match wire::validate_request(&header, &self.flight.shared.limits) {
            Ok(Command::Disconnect) => Ok(Some(Closed::Disconnect)),
            Ok(command) => self.start(header.cookie, command, permit).await,
            Err(refusal) => self.refuse(&header, refusal).await,
        }
    }

    /// Answers a refused request, after skipping its payload or before closing.
    async fn refuse(
        &mut self,
        header: &wire::RequestHeader,
        refusal: wire::Refusal,
    ) -> Result<Option<Closed>, ConnectionError> {
        debug!(
            command = %wire::command_name(header.command),
            offset = header.offset,
            length = header.length,
            errno = refusal.errno,
            reason = refusal.reason,
            "request refused"
        );
        if let Payload::Discard(length) = refusal.payload {
            discard(&mut self.reader, length).await?;
        }
        let reply = error_reply(
            header.cookie,
            refusal.errno,
            refusal.reason,
            self.flight.structured,
        );
        // A send fails only when the writer has gone, which the next read notices.
        let _ = self.flight.replies.send(reply).await;
        if refusal.payload == Payload::Disconnect {
            return Err(ConnectionError::OversizeWrite(header.length));
        }
        Ok(None)
    }

    /// Reads a write's payload if any, then runs the command on its own task.
    async fn start(
        &mut self,
        cookie: u64,
        command: Command,
        permit: OwnedSemaphorePermit,
    ) -> Result<Option<Closed>, ConnectionError> {
        let received = std::time::Instant::now();
        let payload_bytes = match command {
            Command::Read { length, .. } | Command::Write { length, .. } => length,
            _ => 0,
        };
        let bytes = Arc::clone(&self.bytes);
        // A request larger than the whole budget takes all of it and so runs alone.
        let wanted = payload_bytes.clamp(1, self.flight.shared.options.bytes_in_flight_max);
        let byte_permit = match self.interruptible(bytes.acquire_many_owned(wanted)).await {
            Ok(permit) => permit.expect("the semaphore is never closed"),
            Err(interrupted) => return interrupted_outcome(interrupted),
        };
        let mut data = Vec::new();
        if let Command::Write { length, .. } = command {
            data = Vec::with_capacity(length as usize);
            tokio::select! {
                biased;
                _ = self.stop.wait_for(|stopping| *stopping) => return Ok(Some(Closed::Shutdown)),
                read = read_payload(&mut self.reader, length, &mut data) => { read?; }
            }
        }
        let shared = Arc::clone(&self.flight.shared);
        let replies = self.flight.replies.clone();
        let structured = self.flight.structured;
        let observed = shared
            .options
            .observer
            .clone()
            .zip(RequestKind::of(&command));
        if let Some((observer, (kind, _))) = &observed {
            observer.started(*kind);
        }
        let small_read = shared.device.quick_reads()
            && matches!(command, Command::Read { length, .. } if length <= INLINE_READ_BYTES_MAX);
        self.tasks.spawn(async move {
            let device = Arc::clone(&shared.device);
            let run = move || execute(device.as_ref(), command, cookie, structured, data);
            // A small read is a copy from the page cache, shorter than the hand-off to the
            // blocking pool (two thread wake-ups): this worker runs it in place.
            let ran = if small_read {
                std::panic::catch_unwind(AssertUnwindSafe(run)).map_err(|_| "a panic".to_owned())
            } else {
                tokio::task::spawn_blocking(run)
                    .await
                    .map_err(|error| error.to_string())
            };
            let (reply, ok) = ran.unwrap_or_else(|error| {
                warn!(%error, "device call panicked");
                let reply = error_reply(cookie, wire::EIO, "device call failed", structured);
                (reply, false)
            });
            if let Some((observer, (kind, bytes))) = observed {
                observer.finished(kind, bytes, received.elapsed(), ok);
            }
            // A send fails only when the writer has gone: nobody is left to answer.
            let _ = replies.send(reply).await;
            drop(byte_permit);
            drop(permit);
        });
        Ok(None)
    }
}

fn interrupted_outcome(interrupted: Interrupted) -> Result<Option<Closed>, ConnectionError> {
    match interrupted {
        Interrupted::Stop => Ok(Some(Closed::Shutdown)),
        Interrupted::WriterGone => Err(ConnectionError::Io(io::Error::new(
            io::ErrorKind::BrokenPipe,
            "the client stopped taking replies",
        ))),
    }
}

/// Sends replies in the order they arrive, each whole, flushing when the queue runs dry.
async fn write_replies(
    write_half: OwnedWriteHalf,
    mut replies: mpsc::Receiver<Vec<u8>>,
    alive: oneshot::Sender<()>,
) -> io::Result<()> {
    let mut writer = BufWriter::with_capacity(64 * 1024, write_half);
    let outcome = write_all_replies(&mut writer, &mut replies).await;
    // Dropping `alive` tells the reader; on success it has already finished.
    drop(alive);
    outcome?;
    writer.shutdown().await
}

async fn write_all_replies<W: AsyncWrite + Unpin>(
    writer: &mut W,
    replies: &mut mpsc::Receiver<Vec<u8>>,
) -> io::Result<()> {
    while let Some(reply) = replies.recv().await {
        writer.write_all(&reply).await?;
        if replies.is_empty() {
            writer.flush().await?;
        }
    }
    writer.flush().await
}

/// Runs one command against the device (on a blocking thread) and builds its whole reply;
/// true when the device did what was asked.
fn execute(
    device: &dyn BlockDevice,
    command: Command,
    cookie: u64,
    structured: bool,
    payload: Vec<u8>,
) -> (Vec<u8>, bool) {
    let outcome = match command {
        Command::Read { offset, length } => {
            return read_reply(device, offset, length, cookie, structured);
        }
        Command::Write { offset, fua, .. } => device.write(offset, &payload, fua),
        Command::Flush => device.flush(),
        Command::Trim {
            offset,
            length,
            fua,
        } => device
            .trim(offset, u64::from(length))
            .and_then(|()| if fua { device.flush() } else { Ok(()) }),
        Command::WriteZeroes {
            offset,
            length,
            fua,
        } => device.write_zeroes(offset, u64::from(length), fua),
        Command::Disconnect => unreachable!("DISC never reaches the device"),
    };
    match outcome {
        Ok(()) if structured => (wire::encode_structured_done(cookie).to_vec(), true),
        Ok(()) => (wire::encode_simple_reply(cookie, 0).to_vec(), true),
        Err(error) => (device_error_reply(cookie, &error, structured), false),
    }
}

/// A read's reply: the data is read straight into the reply buffer, behind its header, so
/// that the header is only written once the data is known good.
fn read_reply(
    device: &dyn BlockDevice,
    offset: u64,
    length: u32,
    cookie: u64,
    structured: bool,
) -> (Vec<u8>, bool) {
    if structured && length == 0 {
        return (wire::encode_structured_done(cookie).to_vec(), true);
    }
    let prefix_bytes = if structured {
        wire::OFFSET_DATA_PREFIX_BYTES
    } else {
        wire::SIMPLE_REPLY_BYTES
    };
    let data_bytes = usize::try_from(length).expect("bounded by the maximum payload");
    let mut reply = vec![0u8; prefix_bytes + data_bytes];
    if let Err(error) = device.read(offset, &mut reply[prefix_bytes..]) {
        return (device_error_reply(cookie, &error, structured), false);
    }
    if structured {
        wire::write_offset_data_prefix(&mut reply, cookie, offset, length);
    } else {
        wire::write_simple_reply(&mut reply, cookie, 0);
    }
    (reply, true)
}

fn device_error_reply(cookie: u64, error: &BlockError, structured: bool) -> Vec<u8> {
    warn!(%error, "device refused a request");
    error_reply(cookie, error.nbd_errno(), &error.to_string(), structured)
}

fn error_reply(cookie: u64, errno: u32, message: &str, structured: bool) -> Vec<u8> {
    assert_ne!(errno, 0, "an error reply carries an errno");
    if structured {
        wire::encode_structured_error(cookie, errno, message)
    } else {
        wire::encode_simple_reply(cookie, errno).to_vec()
    }
}
