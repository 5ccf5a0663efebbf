//! One AMF of a cluster as a [`BlockDevice`]: the coherency core on the sim card's fabric
//! port, the members behind it (`amf serve --id N --fabric ADDR`).
//!
//! Three kinds of thread meet here:
//!
//! * the NBD server's blocking threads call [`ClusterVolume`]'s `read`/`write`; each call
//!   becomes a core [`Request`] sent to the driver, and waits for its [`Event`];
//! * the **driver** thread owns the core ([`ActiveNode`]) and the card: it feeds the core
//!   host requests, frames the card received and member I/O completions, sends what the
//!   core transmits, hands member I/O to the workers and answers the waiting callers;
//! * the **member workers** run the core's stripe reads, writes and replays on the
//!   [`Volume`] (parity on the host, no local journal: the core replicates each write's
//!   intent record into the peers' card SRAM before the member writes).
//!
//! The clock (`now`, milliseconds since start) is read here, in the shell; the core only
//! orders it. When the card's fabric link dies the AMF can no longer keep its cache
//! coherent: every request from then on fails with an I/O error naming why.

mod rejoin;

use super::member_io::{ScrubFindings, Workers, lock};
use super::{ActiveError, ActiveNode, CardSram};
use crate::block::{BlockDevice, BlockError, check_range};
use crate::volume::Volume;
use amf_card::{Card, CardConfig, CardError, SimCard, SimConfig, SimFabric};
use amf_coherency::{
    Config as CoreConfig, Counters, Event, INCARNATIONS_MAX, MemberOutcome, MembershipEvent,
    Request, RequestError,
};
use amf_raid::MemberSet;
use serde::{Deserialize, Serialize};
use shared_regs::limits::{BLOCK_BYTES, FABRIC_PORTS_MAX, SRAM_BYTES_DEFAULT};
use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Most intent slots an AMF uses in each peer's SRAM: writes in flight at once.
const INTENT_SLOTS_MAX: u32 = 32;
/// How long the card may take to be welcomed by the fabric.
const WELCOME_TIMEOUT_MS: u32 = 10_000;
/// How long a clean stop waits for the core's operations in flight to end before the
/// AMF fences itself and leaves (the survivors complete what is left from the records).
const STOP_DRAIN_MS: u64 = 5_000;
/// Longest the driver sleeps when idle before it polls the card again.
const IDLE_POLL_US_MAX: u64 = 1_000;
/// How often the status walks the node's stripes and records (stripes held, records).
const STATUS_WALK_PERIOD: Duration = Duration::from_millis(100);
const BLOCK: u64 = BLOCK_BYTES as u64;

/// What one AMF of a cluster is.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// This AMF's fabric port (`--id`).
    pub port: u8,
    /// The fabric to join (`--fabric`).
    pub fabric: amf_fabric::Address,
    /// This AMF's card SRAM file (peers' intent records land there).
    pub sram_path: PathBuf,
    /// Bytes of blocks the coherency core caches at most (`--cache-size`).
    pub cache_bytes_max: u64,
}

/// `--cache-size`'s default: 256 MiB of cached blocks per AMF.
pub const CACHE_BYTES_DEFAULT: u64 = 256 << 20;

/// Why the cluster AMF could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterOpenError {
    /// The sim card would not open or join the fabric.
    #[error("card {path}: could not join the fabric as port {port}")]
    Card {
        path: PathBuf,
        port: u8,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The fabric never welcomed the card.
    #[error("port {port}: the fabric sent no welcome within {WELCOME_TIMEOUT_MS} ms")]
    NoWelcome { port: u8 },
    /// The welcome was not for this port.
    #[error(transparent)]
    Welcome(#[from] ActiveError),
    /// The card's SRAM is too small for the core's intent slots.
    #[error("card SRAM of {sram_bytes} bytes holds no intent slot for {FABRIC_PORTS_MAX} ports")]
    SramTooSmall { sram_bytes: u64 },
    /// The incarnation counter beside the card's SRAM could not be read or advanced.
    #[error("incarnation counter {path}")]
    Incarnation {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The driver thread could not start.
    #[error("could not start the cluster driver thread")]
    Spawn(#[source] std::io::Error),
}

/// What `amf status` and the log say about this AMF in the cluster.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// This AMF's port.
    pub port: u8,
    /// Live ports in join order, as the core knows them.
    pub live_ports: Vec<u8>,
    /// Stripes this AMF holds (shared or exclusive).
    pub stripes_held: u64,
    /// Intent records sent to peers and not yet acknowledged.
    pub intent_writes_outstanding: u64,
    /// Dead peers' records this AMF holds and has not seen retired.
    pub dead_records: u64,
    /// Why the AMF stopped serving, once it did.
    pub down: Option<String>,
    /// While the fabric link is lost: since when (ms since the Unix epoch) and why. The
    /// AMF holds requests and rejoins as a new incarnation when the fabric is back.
    #[serde(default)]
    pub outage: Option<FabricOutage>,
    /// Acquire broadcasts sent.
    pub broadcasts: u64,
    /// Stripe operations started without a broadcast (ownership already held).
    pub broadcasts_avoided: u64,
    /// Ownership changes granted to this AMF.
    pub grants: u64,
    /// Read misses served by a peer's forwarded blocks.
    pub forwards: u64,
    /// Cached copies dropped on a peer's exclusive acquire.
    pub invalidations: u64,
    /// Dead peers' writes completed from their records.
    pub replays: u64,
    /// Dead peers' records refused by their checksum.
    pub records_corrupt: u64,
    /// Stripe writes and reads performed.
    pub stripe_writes: u64,
    pub stripe_reads: u64,
    /// Member I/O errors met.
    pub member_errors: u64,
    /// Members failed in the fabric's order (`MemberFailed`): every AMF plans around them.
    pub failed_members: Vec<u32>,
    /// Frames this AMF's card sent on the fabric (broadcasts, unicasts, intent records).
    pub frames_sent: u64,
    /// The last rebuild this AMF followed in the fabric's order.
    #[serde(default)]
    pub rebuild: Option<ClusterRebuild>,
}

/// A lost fabric link, while the AMF tries to rejoin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FabricOutage {
    /// When the link was lost (ms since the Unix epoch).
    pub since_unix_ms: u64,
    /// Why.
    pub reason: String,
    /// Attempts to reach the fabric so far.
    pub attempts: u64,
}

/// A rebuild as one AMF follows it in the fabric's order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterRebuild {
    /// The member being rebuilt.
    pub member: u32,
    /// Stripes below this are rebuilt (in service at every AMF).
    pub next_stripe: u64,
    /// Stripes in the array.
    pub stripes: u64,
    /// This AMF rebuilds the stripes (the one that began it, or the oldest survivor).
    pub driving: bool,
    /// Where it stands.
    pub state: ClusterRebuildState,
    /// When the state last changed, in this process.
    #[serde(skip)]
    pub changed: Option<Instant>,
}

/// Where a cluster rebuild stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterRebuildState {
    /// Going on.
    Running,
    /// Every stripe rebuilt: the member is in service at every AMF.
    Done,
    /// Ended early; with `restarting`, the driver begins it again from stripe 0 (a port
    /// joined).
    Stopped { reason: String, restarting: bool },
}

impl ClusterStatus {
    /// Copies the node's counters; with `walk`, also what takes a walk over every stripe
    /// and record the node holds (too slow for every turn of the driver's loop).
    fn update(&mut self, node: &ActiveNode, walk: bool) {
        let amf = node.amf();
        let counters: Counters = amf.counters();
        if walk {
            self.stripes_held = amf.stripes_held() as u64;
            self.dead_records = amf.dead_records().len() as u64;
        }
        self.live_ports.clear();
        self.live_ports.extend_from_slice(amf.live_ports());
        self.intent_writes_outstanding = node.writes_outstanding() as u64;
        self.broadcasts = counters.broadcasts;
        self.broadcasts_avoided = counters.broadcasts_avoided;
        self.grants = counters.grants;
        self.forwards = counters.forwards;
        self.invalidations = counters.invalidations;
        self.replays = counters.replays;
        self.records_corrupt = counters.records_corrupt;
        self.stripe_writes = counters.writes;
        self.stripe_reads = counters.reads;
        self.member_errors = counters.member_errors;
        self.failed_members = MemberSet::from_bits(amf.failed_members()).iter().collect();
    }
}

/// A caller's answer: the blocks read, or nothing for a write.
type Answer = Result<Option<Vec<u8>>, BlockError>;

/// What the driver thread is told.
pub(super) enum Input {
    Request {
        request: Request,
        answer: SyncSender<Answer>,
    },
    Completed {
        io: u64,
        outcome: MemberOutcome,
    },
    /// Begin rebuilding failed `member` onto `replacement` (prepared already): answered
    /// where the fabric's order takes the start, or refuses it.
    Rebuild {
        member: u32,
        replacement: PathBuf,
        answer: SyncSender<Result<(), String>>,
    },
    Stop,
}

/// One AMF of a cluster; see the [module docs](self).
#[derive(Debug)]
pub struct ClusterVolume {
    volume: Arc<Volume>,
    inputs: Mutex<Sender<Input>>,
    status: Arc<Mutex<ClusterStatus>>,
    /// What the member workers' scrubs found, by stripe.
    findings: Arc<ScrubFindings>,
    driver: Mutex<Option<JoinHandle<()>>>,
}

impl ClusterVolume {
    /// Opens this AMF's card on the fabric, waits for the fabric's welcome and starts the
    /// core and its threads over `volume` (opened with [`Volume::open_in_cluster`]).
    pub fn start(config: &ClusterConfig, volume: Volume) -> Result<Self, ClusterOpenError> {
        let volume = Arc::new(volume);
        let (card, node) = join_fabric(config, &volume)?;
        let (inputs, received) = mpsc::channel();
        let status = Arc::new(Mutex::new(ClusterStatus {
            port: config.port,
            ..ClusterStatus::default()
        }));
        let findings = Arc::new(ScrubFindings::default());
        let workers = Workers::start(Arc::clone(&volume), Arc::clone(&findings), inputs.clone());
        let driver = Driver {
            config: config.clone(),
            volume: Arc::clone(&volume),
            card: Some(card),
            node,
            inputs: received,
            workers,
            waiting: BTreeMap::new(),
            backlog: VecDeque::new(),
            rebuild_answer: None,
            stopping: false,
            next_id: 0,
            frames_sent: 0,
            started: Instant::now(),
            status_walked: Instant::now(),
            status: Arc::clone(&status),
        };
        let handle = std::thread::Builder::new()
            .name(format!("amf-cluster-{}", config.port))
            .spawn(move || driver.run())
            .map_err(ClusterOpenError::Spawn)?;
        Ok(Self {
            volume,
            inputs: Mutex::new(inputs),
            status,
            findings,
            driver: Mutex::new(Some(handle)),
        })
    }

    /// The volume under the core (geometry, member state, flush).
    pub fn volume(&self) -> &Arc<Volume> {
        &self.volume
    }

    /// This AMF's place in the cluster now.
    pub fn status(&self) -> ClusterStatus {
        lock(&self.status).clone()
    }

    /// Stops the driver (the card leaves the fabric) and flushes the members.
    pub fn close(&self) -> Result<(), BlockError> {
        // The driver may already be gone (link down); then there is nobody to tell.
        let _ = lock(&self.inputs).send(Input::Stop);
        if let Some(handle) = lock(&self.driver).take() {
            handle
                .join()
                .map_err(|_| BlockError::Io("the cluster driver thread panicked".into()))?;
        }
        self.volume.flush()
    }

    /// Tells the driver `input`; fails when the driver is gone.
    pub(super) fn send(&self, input: Input) -> Result<(), mpsc::SendError<Input>> {
        lock(&self.inputs).send(input)
    }

    /// What the member workers' scrubs found, by stripe.
    pub(super) fn findings(&self) -> &ScrubFindings {
        &self.findings
    }

    /// Runs `request` through the core and waits for its answer.
    pub(super) fn submit(&self, request: Request) -> Answer {
        self.submit_all(vec![request])
            .pop()
            .expect("one answer per request")
    }

    /// Runs `requests` through the core at once and waits for every answer, in order.
    fn submit_all(&self, requests: Vec<Request>) -> Vec<Answer> {
        let receivers: Vec<_> = requests
            .into_iter()
            .map(|request| {
                let (answer, received) = mpsc::sync_channel(1);
                let sent = lock(&self.inputs).send(Input::Request { request, answer });
                sent.ok().map(|()| received)
            })
            .collect();
        receivers
            .into_iter()
            .map(|received| match received {
                Some(received) => received.recv().unwrap_or_else(|_| Err(self.stopped())),
                None => Err(self.stopped()),
            })
            .collect()
    }

    pub(super) fn stopped(&self) -> BlockError {
        let why = lock(&self.status).down.clone();
        BlockError::Io(format!(
            "this AMF left the cluster: {}",
            why.as_deref().unwrap_or("stopping")
        ))
    }

    /// Reads whole blocks `first_block..first_block + block_count` through the core.
    fn read_blocks(&self, first_block: u64, block_count: u64) -> Result<Vec<u8>, BlockError> {
        let block_count = u32::try_from(block_count)
            .map_err(|_| BlockError::Invalid(format!("{block_count} blocks in one read")))?;
        let answer = self.submit(Request::Read {
            first_block,
            block_count,
        })?;
        let data = answer.ok_or_else(|| BlockError::Io("a read completed without data".into()))?;
        assert_eq!(data.len() as u64, u64::from(block_count) * BLOCK);
        Ok(data)
    }
}

impl Drop for ClusterVolume {
    fn drop(&mut self) {
        let _ = lock(&self.inputs).send(Input::Stop);
    }
}

impl BlockDevice for ClusterVolume {
    fn size_bytes(&self) -> u64 {
        self.volume.size_bytes()
    }

    fn read(&self, offset: u64, buffer: &mut [u8]) -> Result<(), BlockError> {
        let length = buffer.len() as u64;
        check_range(offset, length, self.size_bytes())?;
        if length == 0 {
            return Ok(());
        }
        let (first_block, end_block) = (offset / BLOCK, (offset + length).div_ceil(BLOCK));
        let data = self.read_blocks(first_block, end_block - first_block)?;
        let start = (offset - first_block * BLOCK) as usize;
        buffer.copy_from_slice(&data[start..start + buffer.len()]);
        Ok(())
    }

    /// Whole blocks go to the core as one write; a partial first or last block goes as a
    /// patch, which the core lays over the block under exclusive ownership of its stripe,
    /// so sub-block writes of one block through any AMFs never lose one another.
    fn write(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), BlockError> {
        let length = data.len() as u64;
        check_range(offset, length, self.size_bytes())?;
        if length == 0 {
            return Ok(());
        }
        for answer in self.submit_all(write_requests(offset, data)) {
            answer?;
        }
        if fua {
            self.volume.flush()?;
        }
        Ok(())
    }

    fn trim(&self, offset: u64, length: u64) -> Result<(), BlockError> {
        // NBD lets a trim do nothing; the data stays as it was, parity with it.
        check_range(offset, length, self.size_bytes())
    }

    /// Every write completed by any AMF is in the shared member files; syncing every one
    /// of them here (not only those this AMF wrote) makes them all durable.
    fn flush(&self) -> Result<(), BlockError> {
        self.volume.sync_every_member()
    }
}

/// A write of `data` at byte `offset` as core requests: a patch for a partial first
/// block, one write for the whole blocks, a patch for a partial last block.
fn write_requests(offset: u64, data: &[u8]) -> Vec<Request> {
    let mut requests = Vec::with_capacity(3);
    let end = offset + data.len() as u64;
    let whole_start = offset.next_multiple_of(BLOCK).min(end);
    let whole_end = (end / BLOCK * BLOCK).max(whole_start);
    let patch = |from: u64, to: u64| Request::Patch {
        block: from / BLOCK,
        offset: (from % BLOCK) as u32,
        data: data[(from - offset) as usize..(to - offset) as usize].to_vec(),
    };
    if whole_start > offset {
        requests.push(patch(offset, whole_start));
    }
    if whole_end > whole_start {
        requests.push(Request::Write {
            first_block: whole_start / BLOCK,
            data: data[(whole_start - offset) as usize..(whole_end - offset) as usize].to_vec(),
        });
    }
    if end > whole_end {
        requests.push(patch(whole_end, end));
    }
    requests
}

fn card_error(
    config: &ClusterConfig,
    source: Box<dyn std::error::Error + Send + Sync>,
) -> ClusterOpenError {
    ClusterOpenError::Card {
        path: config.sram_path.clone(),
        port: config.port,
        source,
    }
}

/// Joins the fabric: the card opened on it, a new incarnation, and the core started at
/// the fabric's welcome (its records resynced from the card's SRAM).
fn join_fabric(
    config: &ClusterConfig,
    volume: &Volume,
) -> Result<(Card<SimCard>, ActiveNode), ClusterOpenError> {
    let mut card = open_card(config, volume)?;
    let incarnation = next_incarnation(&config.sram_path)?;
    let core_config = core_config(config, incarnation, volume, card.identity().sram_bytes)?;
    let welcome = card
        .fabric_recv(WELCOME_TIMEOUT_MS)
        .map_err(|source| card_error(config, source.into()))?
        .ok_or(ClusterOpenError::NoWelcome { port: config.port })?;
    let node = {
        let mut sram = CardSram::new(&mut card);
        let node = ActiveNode::from_welcome(core_config, welcome, &mut sram)?;
        sram.finish()
            .map_err(|source| card_error(config, source.into()))?;
        node
    };
    tracing::info!(port = config.port, incarnation, live_ports = ?node.amf().live_ports(), "joined the fabric");
    Ok((card, node))
}

/// The sim card on `config.sram_path`, joined to the fabric under the array's uuid.
fn open_card(config: &ClusterConfig, volume: &Volume) -> Result<Card<SimCard>, ClusterOpenError> {
    let sram_bytes = std::fs::metadata(&config.sram_path)
        .map(|metadata| metadata.len())
        .unwrap_or(SRAM_BYTES_DEFAULT);
    let sim_config = SimConfig {
        fabric_port_id: config.port,
        ..SimConfig::new(sram_bytes)
    };
    let fabric = SimFabric::new(config.fabric.clone(), volume.array().superblock.array_uuid);
    let sim = SimCard::open_with_fabric(&config.sram_path, sim_config, &fabric)
        .map_err(|source| card_error(config, source.into()))?;
    Card::open(sim, CardConfig::default()).map_err(|source| card_error(config, source.into()))
}

/// The core's configuration for this volume, with as many intent slots as the SRAM holds
/// for every port (at most [`INTENT_SLOTS_MAX`]).
fn core_config(
    cluster: &ClusterConfig,
    incarnation: u32,
    volume: &Volume,
    sram_bytes: u64,
) -> Result<CoreConfig, ClusterOpenError> {
    let port = cluster.port;
    let cache_blocks_max = (cluster.cache_bytes_max / BLOCK).max(1);
    let geometry = volume.geometry();
    let stripe_data_blocks = u32::try_from(geometry.stripe_data_bytes() / BLOCK)
        .expect("a stripe holds fewer than 2^32 blocks");
    let mut config = CoreConfig {
        port,
        incarnation,
        live_ports: vec![port],
        stripe_count: geometry.stripe_count(),
        stripe_data_blocks,
        array_generation: volume.array().superblock.generation,
        failed_members: volume.failed_members().bits(),
        intent_slots: 1,
        parity_count: geometry.parity_count(),
        cache_blocks_max,
        mutation: Default::default(),
    };
    let per_slot = u64::from(FABRIC_PORTS_MAX) * u64::from(config.slot_bytes());
    let slots = (sram_bytes / per_slot).min(u64::from(INTENT_SLOTS_MAX));
    if slots == 0 {
        return Err(ClusterOpenError::SramTooSmall { sram_bytes });
    }
    config.intent_slots = slots as u32;
    assert!(config.sram_bytes() <= sram_bytes);
    Ok(config)
}

/// This start's incarnation: one more than the last start's, kept in a file beside the
/// card's SRAM (`CARD.sram.incarnation`) and synced before the card joins, so that op and
/// acquire ids never repeat across restarts of this port.
fn next_incarnation(sram_path: &Path) -> Result<u32, ClusterOpenError> {
    let path = PathBuf::from(format!("{}.incarnation", sram_path.display()));
    let failed = |source: std::io::Error| ClusterOpenError::Incarnation {
        path: path.clone(),
        source,
    };
    let last = match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .map_err(|error| failed(std::io::Error::new(std::io::ErrorKind::InvalidData, error)))?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => 0,
        Err(error) => return Err(failed(error)),
    };
    let next = last + 1;
    if next >= INCARNATIONS_MAX {
        return Err(failed(std::io::Error::other(format!(
            "incarnation {next} is past the last one, {}",
            INCARNATIONS_MAX - 1
        ))));
    }
    write_durably(&path, format!("{next}\n").as_bytes()).map_err(failed)?;
    Ok(next as u32)
}

/// Replaces `path`'s contents so that a crash at any point leaves the old contents or the
/// new, never an empty or partial file: a synced temporary file renamed over it, then
/// the directory synced so the rename itself survives a power loss.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = PathBuf::from(format!("{}.tmp", path.display()));
    let mut file = std::fs::File::create(&temporary)?;
    std::io::Write::write_all(&mut file, bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    let directory = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty());
    std::fs::File::open(directory.unwrap_or(Path::new(".")))?.sync_all()
}

/// The driver thread's state; see the [module docs](self).
struct Driver {
    config: ClusterConfig,
    volume: Arc<Volume>,
    /// The card on the fabric; none while the link is lost (its SRAM file is free for
    /// the card that rejoins).
    card: Option<Card<SimCard>>,
    node: ActiveNode,
    inputs: Receiver<Input>,
    workers: Workers,
    /// Callers waiting for their request, by core request id, with the request (given
    /// again to the next incarnation's core if the fabric link dies first).
    waiting: BTreeMap<u64, (Request, SyncSender<Answer>)>,
    /// Requests the core refused as busy, retried as others complete.
    backlog: VecDeque<(Request, SyncSender<Answer>)>,
    /// The caller waiting for the fabric's order to take its rebuild's start: (member,
    /// answer).
    rebuild_answer: Option<(u32, SyncSender<Result<(), String>>)>,
    /// Told to stop: a link lost now is not rejoined.
    stopping: bool,
    next_id: u64,
    /// Frames sent on the fabric so far.
    frames_sent: u64,
    started: Instant,
    /// When the status last walked the node's stripes.
    status_walked: Instant,
    status: Arc<Mutex<ClusterStatus>>,
}

/// Why the driver stopped serving.
#[derive(Debug, thiserror::Error)]
enum DriverError {
    #[error("card: {0}")]
    Card(#[from] CardError),
    #[error(transparent)]
    Active(#[from] ActiveError),
}

impl Driver {
    fn run(mut self) {
        let outcome = loop {
            match self.serve() {
                Err(DriverError::Card(CardError::FabricLinkDown)) if !self.stopping => {
                    match self.rejoin() {
                        Ok(true) => continue,
                        Ok(false) => break Ok(()),
                        Err(error) => break Err(error),
                    }
                }
                outcome => break outcome,
            }
        };
        let why = match &outcome {
            Ok(()) => "stopped".to_owned(),
            Err(error) => crate::volume::faults::chain(error),
        };
        // Self-fencing: once out of the fabric (or about to leave it) this AMF writes no
        // member again, since a survivor completes its unfinished writes from their
        // records and then writes those stripes itself.
        self.volume.fence(&why);
        if outcome.is_err() {
            tracing::error!(port = self.node.amf().port(), why, "left the cluster");
        }
        lock(&self.status).down = Some(why.clone());
        self.fail_held(&format!("this AMF left the cluster: {why}"));
        // Every member write has ended before the card leaves: a clean leave promises
        // the fabric that this host writes no more.
        let Driver { workers, card, .. } = self;
        workers.stop();
        // Dropping the card closes its fabric link: the fabric tells the peers.
        drop(card);
    }

    /// Fails every request waiting for the core or for room in it with `why`.
    fn fail_held(&mut self, why: &str) {
        let waiting = std::mem::take(&mut self.waiting).into_values();
        for (_, answer) in waiting.chain(std::mem::take(&mut self.backlog)) {
            let _ = answer.send(Err(BlockError::Io(why.to_owned())));
        }
    }

    fn card(&mut self) -> &mut Card<SimCard> {
        self.card.as_mut().expect("a card while serving")
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The loop: inputs, then frames, then whatever the core wants done; sleeps only when
    /// nothing moved, a little longer each idle round, up to [`IDLE_POLL_US_MAX`].
    fn serve(&mut self) -> Result<(), DriverError> {
        let mut idle_us = 0;
        let mut stop_deadline_ms = None;
        loop {
            if let Some(deadline_ms) = stop_deadline_ms
                && (self.node.amf().is_quiet() || self.now_ms() >= deadline_ms)
            {
                return Ok(());
            }
            let first = match self.inputs.recv_timeout(Duration::from_micros(idle_us)) {
                Ok(input) => Some(input),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            };
            let mut moved = false;
            for input in first
                .into_iter()
                .chain(self.inputs.try_iter().collect::<Vec<_>>())
            {
                moved = true;
                if !self.take(input) {
                    stop_deadline_ms.get_or_insert(self.now_ms() + STOP_DRAIN_MS);
                }
            }
            moved |= self.receive()?;
            self.adopt_ordered_failures();
            moved |= self.drain()?;
            if !self.card().fabric_link_up()? {
                return Err(CardError::FabricLinkDown.into());
            }
            self.publish();
            idle_us = if moved {
                0
            } else {
                (idle_us * 2).clamp(50, IDLE_POLL_US_MAX)
            };
        }
    }

    /// Gives the core every frame the card holds; true when there was one.
    fn receive(&mut self) -> Result<bool, DriverError> {
        let mut received = false;
        while let Some(frame) = self.card().fabric_poll()? {
            received = true;
            let now = self.now_ms();
            let card = self.card.as_mut().expect("a card while serving");
            let mut sram = CardSram::new(card);
            let delivered = self.node.deliver(now, frame, &mut sram);
            sram.finish()?;
            delivered?;
        }
        Ok(received)
    }

    /// Fails in the volume (and its superblocks) the members the fabric's order failed,
    /// at once rather than at this AMF's next stripe operation: an operator who sees the
    /// member failed may rebuild it through this AMF straight away.
    fn adopt_ordered_failures(&mut self) {
        let ordered = MemberSet::from_bits(self.node.amf().failed_members());
        if ordered
            .iter()
            .any(|member| !self.volume.failed_members().contains(member))
        {
            self.volume.adopt_failed(ordered);
        }
    }

    /// Updates the shared status, and logs what an operator should see: the fabric's
    /// membership changing, and a dead peer's writes completed from this card's SRAM.
    fn publish(&mut self) {
        let walk = self.status_walked.elapsed() >= STATUS_WALK_PERIOD;
        if walk {
            self.status_walked = Instant::now();
        }
        let mut status = lock(&self.status);
        let (ports_before, replays_before) = (status.live_ports.clone(), status.replays);
        status.update(&self.node, walk);
        status.frames_sent = self.frames_sent;
        if status.live_ports != ports_before {
            tracing::info!(live_ports = ?status.live_ports, "fabric membership changed");
        }
        if status.replays > replays_before {
            tracing::warn!(
                completed = status.replays - replays_before,
                replays_total = status.replays,
                "completed a dead AMF's writes from the intent records in this card's SRAM"
            );
        }
    }

    /// Takes one input; false on `Stop`.
    fn take(&mut self, input: Input) -> bool {
        let now = self.now_ms();
        match input {
            Input::Request { request, answer } => self.admit(now, request, answer),
            Input::Completed { io, outcome } => self
                .node
                .amf_mut()
                .handle_member_completion(now, io, outcome),
            Input::Rebuild {
                member,
                replacement,
                answer,
            } => {
                let path = replacement.into_os_string().into_vec();
                match self.node.amf_mut().start_rebuild(now, member, path) {
                    Ok(()) => {
                        if let Some((_, earlier)) = self.rebuild_answer.replace((member, answer)) {
                            let _ = earlier.send(Err("another rebuild was asked for".into()));
                        }
                    }
                    Err(refusal) => {
                        let _ = answer.send(Err(refusal.to_string()));
                    }
                }
            }
            Input::Stop => {
                self.stopping = true;
                return false;
            }
        }
        true
    }

    /// Gives `request` to the core, or keeps it for later when the core is busy.
    fn admit(&mut self, now: u64, request: Request, answer: SyncSender<Answer>) {
        let id = self.next_id;
        match self.node.amf_mut().handle_request(now, id, request.clone()) {
            Ok(()) => {
                self.next_id += 1;
                self.waiting.insert(id, (request, answer));
            }
            Err(RequestError::Busy) => self.backlog.push_back((request, answer)),
            Err(error) => {
                let _ = answer.send(Err(BlockError::Invalid(error.to_string())));
            }
        }
    }

    /// Sends the core's transmits, answers its completions, mirrors its membership
    /// changes on the volume, starts its member I/O and retries the backlog; true when
    /// anything moved. The events come before the member I/O: an I/O the core hands out
    /// after a membership change is planned with it, and the volume must know it first.
    fn drain(&mut self) -> Result<bool, DriverError> {
        let mut moved = self.send()? > 0;
        let mut completed = false;
        while let Some(event) = self.node.amf_mut().poll_event() {
            moved = true;
            let (id, answer) = match event {
                Event::Completed { id, data } => (id, Ok(data)),
                Event::Failed { id } => (
                    id,
                    Err(BlockError::Unavailable(
                        "more members failed than the parity covers".into(),
                    )),
                ),
                Event::Membership(change) => {
                    self.follow_membership(change);
                    continue;
                }
            };
            completed = true;
            if let Some((_, waiting)) = self.waiting.remove(&id) {
                // The caller may have given up (its connection closed): nothing to tell.
                let _ = waiting.send(answer);
            }
        }
        while let Some(job) = self.node.amf_mut().poll_member_io() {
            moved = true;
            self.workers
                .jobs
                .send(job)
                .expect("member I/O threads outlive the driver");
        }
        if completed && !self.backlog.is_empty() {
            let now = self.now_ms();
            let backlog = std::mem::take(&mut self.backlog);
            for (request, answer) in backlog {
                self.admit(now, request, answer);
            }
            moved |= self.send()? > 0;
        }
        Ok(moved)
    }

    /// Mirrors a rebuild's step in the fabric's order on the volume and in the status,
    /// and answers the caller that began it.
    fn follow_membership(&mut self, change: MembershipEvent) {
        let stripes = self.volume.geometry().stripe_count();
        let previous = lock(&self.status).rebuild.clone();
        let (member, next_stripe, driving, state) = match change {
            MembershipEvent::RebuildBegun {
                member,
                replacement,
                driving,
            } => {
                let path = PathBuf::from(OsString::from_vec(replacement));
                if let Err(error) = self.volume.follow_rebuild(member, &path) {
                    // The member stays failed here: the first I/O of this AMF on a rebuilt
                    // stripe reports it, and the cluster fails it again.
                    tracing::error!(member, replacement = %path.display(), %error, "cannot open the replacement");
                }
                if driving {
                    self.answer_rebuild(member, Ok(()));
                }
                (member, 0, driving, ClusterRebuildState::Running)
            }
            MembershipEvent::RebuildProgress {
                member,
                next_stripe,
                driving,
            } => {
                if let Err(error) = self.volume.follow_rebuild_progress(member, next_stripe) {
                    tracing::error!(member, next_stripe, %error, "cannot follow the rebuild");
                }
                let state = if next_stripe >= stripes {
                    tracing::info!(
                        member,
                        "rebuild complete: the member is in service at every AMF"
                    );
                    ClusterRebuildState::Done
                } else {
                    ClusterRebuildState::Running
                };
                (member, next_stripe, driving, state)
            }
            MembershipEvent::RebuildStopped {
                member,
                reason,
                restarting,
            } => {
                self.volume.stop_followed_rebuild(member);
                tracing::warn!(member, %reason, restarting, "rebuild stopped");
                self.answer_rebuild(member, Err(reason.clone()));
                let next_stripe = previous.as_ref().map_or(0, |rebuild| rebuild.next_stripe);
                let driving = previous.as_ref().is_some_and(|rebuild| rebuild.driving);
                let state = ClusterRebuildState::Stopped { reason, restarting };
                (member, next_stripe, driving, state)
            }
            MembershipEvent::RebuildRefused { member, reason } => {
                self.answer_rebuild(member, Err(reason));
                return;
            }
        };
        lock(&self.status).rebuild = Some(ClusterRebuild {
            member,
            next_stripe,
            stripes,
            driving,
            state,
            changed: Some(Instant::now()),
        });
    }

    /// Tells the caller waiting to rebuild `member` how its start went.
    fn answer_rebuild(&mut self, member: u32, outcome: Result<(), String>) {
        if self
            .rebuild_answer
            .as_ref()
            .is_some_and(|(waiting, _)| *waiting == member)
            && let Some((_, answer)) = self.rebuild_answer.take()
        {
            let _ = answer.send(outcome);
        }
    }

    /// Sends what the core transmits; how many frames went.
    fn send(&mut self) -> Result<usize, CardError> {
        let card = self.card.as_mut().expect("a card while serving");
        let sent = self.node.transmit(card)?;
        self.frames_sent += sent as u64;
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (kind, first block, byte offset, bytes) of each request `write_requests` makes.
    fn shapes(offset: u64, length: usize) -> Vec<(&'static str, u64, u32, usize)> {
        let data: Vec<u8> = (0..length).map(|index| index as u8).collect();
        let requests = write_requests(offset, &data);
        let mut covered = Vec::new();
        let shapes = requests
            .iter()
            .map(|request| match request {
                Request::Patch {
                    block,
                    offset,
                    data,
                } => {
                    covered.extend_from_slice(data);
                    ("patch", *block, *offset, data.len())
                }
                Request::Write { first_block, data } => {
                    covered.extend_from_slice(data);
                    ("write", *first_block, 0, data.len())
                }
                Request::Read { .. } | Request::Scrub { .. } => {
                    unreachable!("a write makes no read")
                }
            })
            .collect();
        assert_eq!(covered, data, "the requests carry the data once, in order");
        shapes
    }

    #[test]
    fn writes_split_into_patches_of_partial_blocks_and_one_write_of_whole_ones() {
        assert_eq!(shapes(0, 8192), vec![("write", 0, 0, 8192)]);
        assert_eq!(shapes(512, 512), vec![("patch", 0, 512, 512)]);
        assert_eq!(shapes(0, 512), vec![("patch", 0, 0, 512)]);
        assert_eq!(shapes(3584, 512), vec![("patch", 0, 3584, 512)]);
        assert_eq!(
            shapes(100, 4900),
            vec![("patch", 0, 100, 3996), ("patch", 1, 0, 904)]
        );
        assert_eq!(
            shapes(4096 + 7, 3 * 4096),
            vec![
                ("patch", 1, 7, 4089),
                ("write", 2, 0, 8192),
                ("patch", 4, 0, 7)
            ]
        );
    }

    #[test]
    fn incarnations_count_up_across_starts_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let sram = dir.path().join("card-0.sram");
        assert_eq!(next_incarnation(&sram).unwrap(), 1);
        assert_eq!(next_incarnation(&sram).unwrap(), 2);
        let counter = dir.path().join("card-0.sram.incarnation");
        assert_eq!(std::fs::read_to_string(&counter).unwrap(), "2\n");
        std::fs::write(&counter, "many").unwrap();
        let error = next_incarnation(&sram).unwrap_err();
        assert!(
            error.to_string().contains("card-0.sram.incarnation"),
            "{error}"
        );
        std::fs::write(&counter, format!("{}", INCARNATIONS_MAX - 1)).unwrap();
        assert!(matches!(
            next_incarnation(&sram),
            Err(ClusterOpenError::Incarnation { .. })
        ));
    }
}
