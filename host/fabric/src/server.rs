//! The tokio shell around the [`Arbiter`]: listening, one reader and one writer task per
//! link, the heartbeat tick, shutdown.
//!
//! Every reader sends what it decodes to the one task that owns the arbiter, over one
//! bounded channel, so the arbiter sees each link's frames in the order they were sent
//! and a link's end after its last frame; a full channel stops the readers (back-pressure
//! into the sockets) rather than buffering without bound. Each link's outgoing frames
//! wait in a queue of at most [`ServerConfig::link_queue_frames_max`]; a link whose queue
//! overflows is too slow for the fabric and is dropped (its port goes down), so one stuck
//! port never holds the others back.
//!
//! Each link's peer is identified at accept ([`crate::fence`]); a peer the configured
//! agent cannot fence is refused at its `Join`. When the arbiter asks for a fence, a task
//! runs the agent and reports back through the same event queue; the arbiter announces the
//! port down only then.

use crate::address::Address;
use crate::arbiter::{Arbiter, ArbiterConfig, LinkId, Output};
use crate::codec::{FrameDecoder, OwnedFrame};
use crate::fence::{self, FenceAgent, Peer};
use crate::replica::{self, Delivery, Input, Member, Replica, ReplicaOutput};
use shared_regs::fabric::{FrameError, MessageKind, PORT_BROADCAST};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Bytes one read of a link's socket takes at most.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Events from readers waiting for the arbiter at most.
const EVENTS_MAX: usize = 1024;
/// Links (joined or not) open at once at most; more are closed at accept.
pub const LINKS_MAX: usize = 64;
/// How long shutdown waits for links to take their last frames.
const DRAIN_TIMEOUT_MS: u64 = 2_000;

/// How the server runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// The arbiter's rules.
    pub arbiter: ArbiterConfig,
    /// Frames queued for one link at most before it is dropped as too slow.
    pub link_queue_frames_max: usize,
    /// How the peer of a dead link is fenced before its port is announced down.
    pub fence: FenceAgent,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            arbiter: ArbiterConfig::default(),
            link_queue_frames_max: 4096,
            fence: FenceAgent::default(),
        }
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding the address failed.
    #[error("cannot listen on {address}")]
    Bind {
        /// The address.
        address: Address,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Reading the bound address back failed.
    #[error("cannot read the bound address")]
    LocalAddress(#[source] std::io::Error),
}

/// A bound listening socket.
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// A Unix socket, removed again when the listener is dropped.
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds `address` (a stale Unix socket file at the path is replaced). Needs a tokio
    /// runtime.
    pub async fn bind(address: &Address) -> Result<Self, ServerError> {
        let bind_error = |source| ServerError::Bind {
            address: address.clone(),
            source,
        };
        match address {
            Address::Tcp(host_port) => Ok(Self::Tcp(
                TcpListener::bind(host_port.as_str())
                    .await
                    .map_err(bind_error)?,
            )),
            Address::Unix(path) => {
                remove_stale_socket(path);
                let listener = UnixListener::bind(path).map_err(bind_error)?;
                Ok(Self::Unix(listener, path.clone()))
            }
        }
    }

    /// The address ports connect to (a TCP port 0 resolved).
    pub fn local_address(&self) -> Result<Address, ServerError> {
        match self {
            Self::Tcp(listener) => {
                let bound = listener.local_addr().map_err(ServerError::LocalAddress)?;
                Ok(Address::Tcp(bound.to_string()))
            }
            Self::Unix(_, path) => Ok(Address::Unix(path.clone())),
        }
    }

    /// The next link, and its peer, identified now: the process that connected is the one
    /// to fence if the link dies.
    async fn accept(&self) -> std::io::Result<(LinkReader, LinkWriter, Peer)> {
        match self {
            Self::Tcp(listener) => {
                let (stream, _) = listener.accept().await?;
                // Frames are small and latency matters more than segment count.
                stream.set_nodelay(true)?;
                // Reads /proc: a few milliseconds, once per link.
                let peer = fence::identify_tcp(&stream);
                let (reader, writer) = stream.into_split();
                Ok((Box::new(reader), Box::new(writer), peer))
            }
            Self::Unix(listener, _) => {
                let (stream, _) = listener.accept().await?;
                let peer = fence::identify_unix(&stream);
                let (reader, writer) = stream.into_split();
                Ok((Box::new(reader), Box::new(writer), peer))
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Self::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Removes a socket file left by a fabric that died; anything else is left for bind to
/// refuse.
fn remove_stale_socket(path: &std::path::Path) {
    use std::os::unix::fs::FileTypeExt;
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_socket());
    if is_socket && std::os::unix::net::UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
}

type LinkReader = Box<dyn AsyncRead + Unpin + Send>;
type LinkWriter = Box<dyn AsyncWrite + Unpin + Send>;

/// What a reader tells the arbiter.
#[derive(Debug)]
enum Event {
    Frame(LinkId, OwnedFrame),
    Malformed(LinkId, FrameError),
    Closed(LinkId),
    /// A fence attempt for `port` ended: `Err` says why it failed.
    Fenced(u8, Result<(), String>),
}

/// The server's side of one link.
#[derive(Debug)]
struct LinkTasks {
    queue: mpsc::Sender<Arc<[u8]>>,
    reader: JoinHandle<()>,
    peer: Arc<Peer>,
}

/// Runs the fabric on `listener` until `shutdown` resolves; then refuses every link
/// (`ShuttingDown`) and waits briefly for them to take their last frames.
pub async fn serve(listener: Listener, config: ServerConfig, shutdown: impl Future<Output = ()>) {
    serve_ordered(listener, config, None, shutdown).await;
}

/// A group-communication system a replicated fabric multicasts through (corosync's CPG in
/// `amf-corosync`): agreed-order delivery to every member, the sender included, and
/// membership changes in the same order ([`replica`]).
pub trait Group: Send + Sync + std::fmt::Debug {
    /// Queues `bytes` for multicast in agreed order, without blocking (the fabric's loop
    /// must go on beating its links while the group re-forms). `epoch` is the one of the
    /// [`GroupEvent::Joined`] the proposal belongs to: what is still queued from an
    /// earlier membership is dropped, never sent into a later one.
    fn multicast(&self, epoch: u64, bytes: Vec<u8>);
}

/// What the group tells the fabric.
#[derive(Debug)]
pub enum GroupEvent {
    /// This process is in the group (quorate) as `me`, for the `epoch`-th time;
    /// deliveries follow.
    Joined { me: Member, epoch: u64 },
    /// A delivery, in the group's order.
    Delivered(Delivery),
    /// This process is out of the group (quorum lost, the group daemon gone): every local
    /// link is closed, so that its AMF fences itself, until the next `Joined`.
    Detached(String),
}

/// The group a replicated fabric runs on, and how long a machine that left it takes at
/// most to cut its AMFs off.
#[derive(Debug)]
pub struct GroupLink {
    /// Multicasts.
    pub group: Arc<dyn Group>,
    /// What the group delivers.
    pub events: mpsc::Receiver<GroupEvent>,
    /// The self-fence bound: how long the leader waits before it declares a departed
    /// machine's ports fenced.
    pub self_fence_ms: u64,
}

/// Runs the fabric on `listener`, replicated over `group` when one is given (see
/// [`replica`]), else alone, until `shutdown` resolves.
pub async fn serve_ordered(
    listener: Listener,
    config: ServerConfig,
    group: Option<GroupLink>,
    shutdown: impl Future<Output = ()>,
) {
    let interval = Duration::from_millis(u64::from(config.arbiter.heartbeat_interval_ms));
    let (mut group_events, core) = match group {
        None => (None, Core::Local(Box::new(Arbiter::new(config.arbiter)))),
        Some(link) => (
            Some(link.events),
            Core::Replicated(Box::new(Replicated {
                replica: None,
                epoch: 0,
                group: link.group,
                self_fence_ms: link.self_fence_ms,
                remote_fences: BTreeMap::new(),
            })),
        ),
    };
    let mut shell = Shell::new(config, core);
    let started = Instant::now();
    let now_ms = || started.elapsed().as_millis() as u64;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut events = shell.take_events();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((reader, writer, peer)) => shell.accept(now_ms(), reader, writer, peer),
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(interval).await;
                }
            },
            Some(event) = events.recv() => shell.apply(now_ms(), event),
            Some(event) = next_group_event(&mut group_events) => shell.group_event(event),
            _ = tick.tick() => shell.tick(now_ms()),
        }
        shell.run_outputs(now_ms());
    }
    shell.shutdown();
    shell.run_outputs(now_ms());
    shell.drain().await;
}

async fn next_group_event(events: &mut Option<mpsc::Receiver<GroupEvent>>) -> Option<GroupEvent> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

/// Who orders the arbiter's inputs: this process alone, or the group.
#[derive(Debug)]
enum Core {
    Local(Box<Arbiter>),
    Replicated(Box<Replicated>),
}

#[derive(Debug)]
struct Replicated {
    /// `None` while out of the group.
    replica: Option<Replica>,
    group: Arc<dyn Group>,
    /// The membership `replica` belongs to.
    epoch: u64,
    self_fence_ms: u64,
    /// Ports of departed machines the leader declares fenced at the deadline.
    remote_fences: BTreeMap<u8, Instant>,
}

impl Core {
    fn arbiter(&self) -> Option<&Arbiter> {
        match self {
            Self::Local(arbiter) => Some(arbiter),
            Self::Replicated(replicated) => replicated.replica.as_ref()?.arbiter(),
        }
    }
}

/// The arbiter (or its replica) and the links' tasks.
#[derive(Debug)]
struct Shell {
    config: ServerConfig,
    core: Core,
    links: BTreeMap<LinkId, LinkTasks>,
    /// Peers of links that ended since the arbiter's outputs were last run: those it
    /// asks to fence move to `fencing`, the others are forgotten.
    ended: BTreeMap<LinkId, Arc<Peer>>,
    /// Peers being fenced, by link, until the arbiter is told they are.
    fencing: BTreeMap<LinkId, Arc<Peer>>,
    fence: Arc<FenceAgent>,
    writers: Vec<JoinHandle<()>>,
    next_link: LinkId,
    events_sender: mpsc::Sender<Event>,
    events: Option<mpsc::Receiver<Event>>,
}

impl Shell {
    fn new(config: ServerConfig, core: Core) -> Self {
        let (events_sender, events) = mpsc::channel(EVENTS_MAX);
        Self {
            core,
            fence: Arc::new(config.fence.clone()),
            config,
            links: BTreeMap::new(),
            ended: BTreeMap::new(),
            fencing: BTreeMap::new(),
            writers: Vec::new(),
            next_link: 1,
            events_sender,
            events: Some(events),
        }
    }

    fn take_events(&mut self) -> mpsc::Receiver<Event> {
        self.events.take().expect("taken once")
    }

    fn accept(&mut self, now_ms: u64, reader: LinkReader, writer: LinkWriter, peer: Peer) {
        self.writers.retain(|writer| !writer.is_finished());
        if self.links.len() >= LINKS_MAX {
            tracing::warn!(
                links = self.links.len(),
                "too many links: connection closed"
            );
            return;
        }
        let counter = self.next_link;
        self.next_link += 1;
        let link = match &self.core {
            Core::Local(_) => counter,
            Core::Replicated(replicated)
                if replicated.replica.as_ref().is_some_and(Replica::is_synced) =>
            {
                let me = replicated.replica.as_ref().expect("checked").me();
                replica::link_id(me, counter)
            }
            Core::Replicated(_) => {
                tracing::info!(%peer, "connection closed: this fabric is not in its group (yet)");
                return;
            }
        };
        let (queue, outgoing) = mpsc::channel(self.config.link_queue_frames_max);
        self.writers
            .push(tokio::spawn(write_link(link, writer, outgoing)));
        let reader = tokio::spawn(read_link(link, reader, self.events_sender.clone()));
        let unfenceable = self.fence.check(&peer).err();
        self.input(now_ms, Input::Connect { link, unfenceable });
        tracing::debug!(link, %peer, "link accepted");
        let peer = Arc::new(peer);
        self.links.insert(
            link,
            LinkTasks {
                queue,
                reader,
                peer,
            },
        );
    }

    /// Forgets `link`'s tasks, keeping its peer in case the arbiter asks for a fence.
    fn end_link(&mut self, link: LinkId) {
        if let Some(tasks) = self.links.remove(&link) {
            // Dropping the queue lets the writer send what is queued, then close; the
            // reader stops at once.
            tasks.reader.abort();
            self.ended.insert(link, tasks.peer);
        }
    }

    /// Runs the fence agent for `port`, once the peer of its ended `link`, on a task of
    /// its own; the outcome comes back as an event.
    fn start_fence(&mut self, port: u8, link: LinkId, attempt: u32) {
        if let Some(peer) = self.ended.remove(&link) {
            self.fencing.insert(link, peer);
        }
        let Some(peer) = self.fencing.get(&link).cloned() else {
            // Cannot happen: every ended link's peer is kept until it is fenced.
            tracing::error!(port, link, "no peer recorded for the link to fence");
            let events = self.events_sender.clone();
            tokio::spawn(async move {
                let outcome = Err("no peer recorded for its link".to_string());
                let _ = events.send(Event::Fenced(port, outcome)).await;
            });
            return;
        };
        tracing::warn!(port, link, attempt, %peer, "fencing the port's peer");
        let (agent, events) = (Arc::clone(&self.fence), self.events_sender.clone());
        tokio::spawn(async move {
            let outcome = agent
                .fence(port, &peer)
                .await
                .map_err(|error| error_chain(&error));
            let _ = events.send(Event::Fenced(port, outcome)).await;
        });
    }

    /// Drops the peers of links the arbiter no longer knows or fences.
    fn forget_fenced(&mut self) {
        let Some(arbiter) = self.core.arbiter() else {
            return;
        };
        let fencing = arbiter.fencing_links();
        self.fencing.retain(|link, _| fencing.contains(link));
        self.ended.retain(|&link, _| arbiter.knows_link(link));
    }

    /// Applies what happened on a link at once, or proposes it to the group.
    fn input(&mut self, now_ms: u64, input: Input) {
        match &mut self.core {
            Core::Local(arbiter) => replica::apply_input(arbiter, now_ms, input),
            // Out of the group, every link was closed: what is left of them is moot.
            Core::Replicated(replicated) => {
                if let Some(replica) = replicated.replica.as_mut() {
                    replica.propose(input);
                }
            }
        }
    }

    fn apply(&mut self, now_ms: u64, event: Event) {
        match (event, &mut self.core) {
            // The common case, without re-encoding the frame.
            (Event::Frame(link, frame), Core::Local(arbiter)) => {
                arbiter.handle_frame(now_ms, link, frame);
            }
            (Event::Frame(link, frame), _) => {
                let bytes = frame.encode();
                self.input(now_ms, Input::Frame { link, bytes });
            }
            (Event::Malformed(link, error), _) => {
                let error = error.to_string();
                self.input(now_ms, Input::Malformed { link, error });
            }
            (Event::Closed(link), _) => {
                self.end_link(link);
                self.input(now_ms, Input::Closed { link });
            }
            (Event::Fenced(port, outcome), _) => {
                let error = outcome.err();
                self.input(now_ms, Input::Fenced { port, error });
            }
        }
    }

    fn tick(&mut self, now_ms: u64) {
        match &mut self.core {
            Core::Local(arbiter) => arbiter.handle_tick(now_ms),
            Core::Replicated(replicated) => {
                let Some(replica) = replicated.replica.as_mut() else {
                    return;
                };
                replica.tick();
                // The group stops delivering while it re-forms (a partition, a machine
                // lost: seconds), and with it the arbiter's beats; this machine's AMFs
                // must not take that for this fabric's death.
                if let Some(arbiter) = replica.arbiter() {
                    for (&link, tasks) in &self.links {
                        if let Some(port) = arbiter.port_of(link) {
                            let beat = OwnedFrame::new(
                                MessageKind::Heartbeat,
                                port,
                                PORT_BROADCAST,
                                0,
                                vec![],
                            );
                            let _ = tasks.queue.try_send(beat.encode().into());
                        }
                    }
                }
                if !replica.is_leader() {
                    return;
                }
                let now = Instant::now();
                let due: Vec<u8> = replicated
                    .remote_fences
                    .iter()
                    .filter(|(_, deadline)| **deadline <= now)
                    .map(|(&port, _)| port)
                    .collect();
                for port in due {
                    replicated.remote_fences.remove(&port);
                    tracing::warn!(
                        port,
                        "the port's machine left the group and the self-fence bound passed: fenced"
                    );
                    replica.propose(Input::Fenced { port, error: None });
                }
            }
        }
    }

    fn group_event(&mut self, event: GroupEvent) {
        let Core::Replicated(replicated) = &mut self.core else {
            return;
        };
        match event {
            GroupEvent::Joined { me, epoch } => match Replica::new(me, self.config.arbiter) {
                Ok(replica) => {
                    tracing::info!(%me, epoch, "in the fabric's group: waiting for its state");
                    replicated.replica = Some(replica);
                    replicated.epoch = epoch;
                }
                Err(error) => tracing::error!(%error, "cannot serve in the group"),
            },
            GroupEvent::Delivered(delivery) => {
                if let Some(replica) = replicated.replica.as_mut() {
                    replica.deliver(delivery);
                }
            }
            GroupEvent::Detached(reason) => {
                tracing::warn!(%reason, links = self.links.len(), "out of the fabric's group: closing every link here");
                replicated.replica = None;
                replicated.remote_fences.clear();
                let links: Vec<LinkId> = self.links.keys().copied().collect();
                for link in links {
                    self.end_link(link);
                }
                self.ended.clear();
                self.fencing.clear();
            }
        }
    }

    fn shutdown(&mut self) {
        match &mut self.core {
            Core::Local(arbiter) => arbiter.shutdown(),
            Core::Replicated(_) => {
                self.group_event(GroupEvent::Detached("the fabric is shutting down".into()))
            }
        }
    }

    fn run_outputs(&mut self, now_ms: u64) {
        loop {
            let output = match &mut self.core {
                Core::Local(arbiter) => arbiter.poll_output(),
                Core::Replicated(replicated) => {
                    let Some(output) = replicated.replica.as_mut().and_then(Replica::poll_output)
                    else {
                        break;
                    };
                    match output {
                        ReplicaOutput::Arbiter(output) => Some(output),
                        ReplicaOutput::Multicast(bytes) => {
                            replicated.group.multicast(replicated.epoch, bytes);
                            continue;
                        }
                        ReplicaOutput::RemoteFence { port, link } => {
                            let deadline =
                                Instant::now() + Duration::from_millis(replicated.self_fence_ms);
                            if !replicated.remote_fences.contains_key(&port) {
                                tracing::warn!(
                                    port,
                                    link,
                                    wait_ms = replicated.self_fence_ms,
                                    "the port's machine left the group: waiting out its self-fence bound"
                                );
                            }
                            replicated.remote_fences.entry(port).or_insert(deadline);
                            continue;
                        }
                        ReplicaOutput::Synced => {
                            tracing::info!("holding the fabric's state: taking links");
                            continue;
                        }
                    }
                }
            };
            let Some(output) = output else { break };
            self.perform(now_ms, output);
        }
        self.forget_fenced();
    }

    fn perform(&mut self, now_ms: u64, output: Output) {
        match output {
            Output::Send { link, bytes } => self.send(now_ms, link, bytes),
            Output::Close {
                link,
                reason,
                detail,
            } => {
                tracing::warn!(link, ?reason, %detail, "link closed");
                self.end_link(link);
            }
            Output::Fence {
                port,
                link,
                attempt,
            } => self.start_fence(port, link, attempt),
            Output::Left { link, port } => {
                tracing::info!(link, port, "port left cleanly: not fenced");
                self.end_link(link);
            }
        }
    }

    fn send(&mut self, now_ms: u64, link: LinkId, bytes: Arc<[u8]>) {
        let Some(tasks) = self.links.get(&link) else {
            return;
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = tasks.queue.try_send(bytes) {
            self.input(now_ms, Input::Overloaded { link });
        }
        // A closed queue: the writer met an error; the reader reports the end.
    }

    async fn drain(mut self) {
        for (_, tasks) in std::mem::take(&mut self.links) {
            tasks.reader.abort();
        }
        let writers = std::mem::take(&mut self.writers);
        let all = async {
            for writer in writers {
                let _ = writer.await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_millis(DRAIN_TIMEOUT_MS), all).await;
    }
}

/// `error` and its sources, for one log line. A source whose text the line already ends
/// with (an error that prints its source itself) is not said twice.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.ends_with(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

async fn read_link(link: LinkId, mut reader: LinkReader, events: mpsc::Sender<Event>) {
    let mut decoder = FrameDecoder::new();
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    loop {
        let read = match reader.read(&mut chunk).await {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) => {
                tracing::debug!(link, %error, "link read failed");
                break;
            }
        };
        decoder.push(&chunk[..read]);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    if events.send(Event::Frame(link, frame)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    let _ = events.send(Event::Malformed(link, error)).await;
                    return;
                }
            }
        }
    }
    if !decoder.is_at_boundary() {
        tracing::debug!(
            link,
            bytes = decoder.buffered_bytes(),
            "link ended inside a frame"
        );
    }
    let _ = events.send(Event::Closed(link)).await;
}

async fn write_link(link: LinkId, mut writer: LinkWriter, mut outgoing: mpsc::Receiver<Arc<[u8]>>) {
    while let Some(bytes) = outgoing.recv().await {
        if let Err(error) = writer.write_all(&bytes).await {
            tracing::debug!(link, %error, "link write failed");
            return;
        }
    }
    let _ = writer.shutdown().await;
}

/// A fabric served on a thread of its own (with its own runtime), for programs and tests
/// that have no runtime; dropping it stops the fabric and joins the thread.
#[derive(Debug)]
pub struct BackgroundFabric {
    address: Address,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BackgroundFabric {
    /// Binds `address` and serves it with `config` until dropped.
    pub fn start(address: &Address, config: ServerConfig) -> Result<Self, ServerError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| ServerError::Bind {
                address: address.clone(),
                source,
            })?;
        let listener = runtime.block_on(Listener::bind(address))?;
        let bound = listener.local_address()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("amf-fabric".into())
            .spawn(move || {
                runtime.block_on(serve(listener, config, async {
                    let _ = stopped.await;
                }));
            })
            .map_err(|source| ServerError::Bind {
                address: address.clone(),
                source,
            })?;
        Ok(Self {
            address: bound,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Where ports connect.
    pub fn address(&self) -> &Address {
        &self.address
    }
}

impl Drop for BackgroundFabric {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        /// Prints its source itself, and names it as the source too.
        #[error("card: {0}")]
        Prints(#[source] Inner),
        /// Leaves its source to the chain.
        #[error("opening the card")]
        Leaves(#[source] Inner),
    }

    #[derive(Debug, thiserror::Error)]
    #[error("the fabric link is down")]
    struct Inner;

    #[test]
    fn a_chain_says_each_cause_once() {
        assert_eq!(
            error_chain(&Outer::Prints(Inner)),
            "card: the fabric link is down"
        );
        assert_eq!(
            error_chain(&Outer::Leaves(Inner)),
            "opening the card: the fabric link is down"
        );
    }
}
