//! `amf serve`: one AMF exporting the RAID volume over NBD.
//!
//! Start-up opens the members, checks their superblocks against each other, opens the
//! parity engine `--card` names (by default a sim card whose SRAM is `card.sram` beside
//! the members), replays the intents a crash left in the journal, and then serves the
//! volume with [`crate::nbd::serve`], and answers `amf rebuild|scrub|status` on its
//! control socket ([`crate::control`]); a rebuild the superblocks record as under way is
//! resumed. SIGTERM or Ctrl-C stops taking connections and requests, lets those in flight
//! finish, stops the jobs at their next checkpoint, flushes every member, closes the card,
//! and returns success.

use crate::array::member_paths;
use crate::block::BlockDevice;
use crate::control::{self, CONTROL_SOCKET_FILE};
use crate::metrics::Metrics;
use crate::nbd::server::RequestObserver;
use crate::nbd::{ServerOptions, ServerStats};
use crate::tasks::{JobRunner, TaskState, Tasks};
use crate::volume::{
    CARD_SRAM_FILE, CardSpec, Engine, INTENT_FILE, Recovery, Volume, default_sidecar,
};
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Default NBD listening address.
pub const NBD_ADDRESS_DEFAULT: &str = "127.0.0.1:10809";

/// Boxed error with the cause chain kept.
pub type ServeError = Box<dyn std::error::Error + Send + Sync>;

/// What `amf serve` runs.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// DIR|FILE arguments naming the members.
    pub members: Vec<PathBuf>,
    /// Address to listen on (port 0: any free port, printed).
    pub address: String,
    /// `--card`; `None` means a sim card whose SRAM is `card.sram` beside the members.
    pub card: Option<CardSpec>,
    /// Draw a live one-line status on a terminal (`amf up`).
    pub status_line: bool,
    /// `--control`; `None` means `amf.control` beside the members.
    pub control: Option<PathBuf>,
    /// `--metrics`: address to serve Prometheus metrics on.
    pub metrics: Option<String>,
}

/// The control socket `--control` names, or the default beside the members.
pub fn control_path(members: &[PathBuf], control: Option<&PathBuf>) -> PathBuf {
    control
        .cloned()
        .unwrap_or_else(|| default_sidecar(members, CONTROL_SOCKET_FILE))
}

/// The card `--card` names, or the default sim card beside the members.
pub fn card_spec(config: &ServeConfig) -> CardSpec {
    config
        .card
        .clone()
        .unwrap_or_else(|| CardSpec::Sim(default_sidecar(&config.members, CARD_SRAM_FILE)))
}

/// Opens the volume (replaying the journal) as `amf serve` does.
pub fn open_volume(config: &ServeConfig) -> Result<(Volume, Recovery), ServeError> {
    let paths = member_paths(&config.members)?;
    let card = card_spec(config);
    let engine = Engine::open(&card)?;
    if let Some(summary) = engine.vfio_summary() {
        eprintln!("amf serve: {summary}");
    }
    let intent_file = default_sidecar(&config.members, INTENT_FILE);
    Ok(Volume::open(&paths, engine, &intent_file)?)
}

/// The runtime an `amf serve` process runs NBD (and its other sockets) on.
pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("amf-serve")
        .build()
}

/// Runs `amf serve` until SIGTERM or Ctrl-C; `on_listening` is told the bound address.
pub fn run(
    config: &ServeConfig,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<ServerStats, ServeError> {
    let runtime = runtime()?;
    // The control socket first: a second `amf serve` on the same members stops here,
    // before it touches the journal the first one is using.
    let control_socket = control_path(&config.members, config.control.as_ref());
    let control = {
        let _context = runtime.enter();
        control::bind(&control_socket)?
    };
    let _remove_socket = RemoveOnDrop(control_socket);
    let (volume, recovery) = open_volume(config)?;
    log_start(&volume, &recovery);
    let volume = Arc::new(volume);
    let tasks = Arc::new(Tasks::new(Arc::clone(&volume) as Arc<dyn JobRunner>));
    tasks.resume_rebuild();
    let served = runtime.block_on(serve_until_signal(
        Served {
            volume: Arc::clone(&volume),
            tasks: Arc::clone(&tasks),
        },
        control,
        config,
        on_listening,
    ));
    drop(runtime);
    tasks.shutdown();
    drop(tasks);
    let closed = match Arc::try_unwrap(volume) {
        Ok(volume) => volume.close(),
        Err(volume) => volume.flush().map_err(ServeError::from),
    };
    let stats = served?;
    closed?;
    tracing::info!(?stats, "stopped: requests finished, members flushed");
    Ok(stats)
}

/// What a running `amf serve` shares between NBD, the control socket and the status line.
#[derive(Clone, Debug)]
struct Served {
    volume: Arc<Volume>,
    tasks: Arc<Tasks>,
}

/// Removes the control socket when `amf serve` ends.
pub(crate) struct RemoveOnDrop(pub(crate) PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn log_start(volume: &Volume, recovery: &Recovery) {
    let geometry = volume.geometry();
    tracing::info!(
        level = %geometry.level(),
        members = geometry.members(),
        chunk_bytes = geometry.chunk_bytes(),
        volume_bytes = geometry.volume_bytes(),
        failed = ?volume.failed_members().iter().collect::<Vec<_>>(),
        parity_engine = volume.parity_engine(),
        journal_slots = volume.journal_layout().slot_count,
        "volume open"
    );
    if recovery.replayed + recovery.discarded > 0 {
        tracing::warn!(
            replayed = recovery.replayed,
            discarded = recovery.discarded,
            stripes = ?recovery.stripes,
            "journal held unfinished writes from a crash"
        );
    }
}

async fn serve_until_signal(
    served: Served,
    control: tokio::net::UnixListener,
    config: &ServeConfig,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<ServerStats, ServeError> {
    let listener = tokio::net::TcpListener::bind(&config.address)
        .await
        .map_err(|error| format!("--nbd {}: {error}", config.address))?;
    let address = listener.local_addr()?;
    // Watch the signals before anyone learns the address: a SIGTERM that comes before
    // the watch would kill the process instead of stopping it cleanly.
    let shutdown = shutdown_signal()?;
    // Metrics listen before the address is told, so that a scraper started then finds them.
    let mut options = ServerOptions::default();
    let metrics = match &config.metrics {
        Some(address) => {
            let metrics = Metrics::new(Arc::clone(&served.volume), Arc::clone(&served.tasks));
            let (task, observer) = start_metrics(address, metrics).await?;
            options.observer = Some(observer);
            Some(task)
        }
        None => None,
    };
    tracing::info!(%address, "serving NBD");
    on_listening(address);
    let control = tokio::spawn(control::serve(
        control,
        Arc::clone(&served.tasks),
        Arc::clone(&served.volume),
    ));
    let status = config
        .status_line
        .then(|| tokio::spawn(status_line(served.clone())));
    let device: Arc<dyn BlockDevice> = served.volume;
    let stats = crate::nbd::serve(listener, device, options, shutdown).await;
    control.abort();
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    if let Some(status) = status {
        status.abort();
        eprintln!();
    }
    Ok(stats?)
}

/// Serves `metrics` on `address`; returns the task and what the NBD server feeds.
pub(crate) async fn start_metrics(
    address: &str,
    metrics: Metrics,
) -> Result<(tokio::task::JoinHandle<()>, Arc<dyn RequestObserver>), ServeError> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|error| format!("--metrics {address}: {error}"))?;
    let bound = listener.local_addr()?;
    let metrics = Arc::new(metrics);
    let observer = metrics.observer();
    tracing::info!(address = %bound, "serving metrics at http://{bound}/metrics");
    Ok((
        tokio::spawn(crate::metrics::serve(listener, metrics)),
        observer,
    ))
}

/// Registers SIGTERM and SIGINT now; the future resolves on the first of them.
pub(crate) fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
            _ = interrupt.recv() => tracing::info!("SIGINT: stopping"),
        }
    })
}

/// Redraws one status line on stderr every second while stderr is a terminal.
async fn status_line(served: Served) {
    let volume = served.volume;
    let terminal = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut last = volume.stats();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = volume.stats();
        let line = format!(
            "up {}s | read {} ({}/s) | written {} ({}/s) | flushes {} | failed members {} | generation {}",
            started.elapsed().as_secs(),
            crate::status::human_bytes(now.read_bytes),
            crate::status::human_bytes(now.read_bytes - last.read_bytes),
            crate::status::human_bytes(now.written_bytes),
            crate::status::human_bytes(now.written_bytes - last.written_bytes),
            now.flushes,
            now.failed_members,
            now.generation,
        );
        let line = match served
            .tasks
            .reports()
            .into_iter()
            .find(|task| task.state == TaskState::Running)
        {
            Some(task) => format!("{line} | {:?} {:.1}%", task.kind, task.percent).to_lowercase(),
            None => line,
        };
        if terminal {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K{line}");
            let _ = stderr.flush();
        }
        last = now;
    }
}
