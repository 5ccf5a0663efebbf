//! `amf serve`: one AMF exporting the RAID volume over NBD.
//!
//! Start-up opens the members, checks their superblocks against each other, opens the
//! parity engine `--card` names (by default a sim card whose SRAM is `card.sram` beside
//! the members), replays the intents a crash left in the journal, and then serves the
//! volume with [`crate::nbd::serve`]. SIGTERM or Ctrl-C stops taking connections and
//! requests, lets those in flight finish, flushes every member, closes the card, and
//! returns success.

use crate::array::member_paths;
use crate::block::BlockDevice;
use crate::nbd::{ServerOptions, ServerStats};
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

/// Runs `amf serve` until SIGTERM or Ctrl-C; `on_listening` is told the bound address.
pub fn run(
    config: &ServeConfig,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<ServerStats, ServeError> {
    let (volume, recovery) = open_volume(config)?;
    log_start(&volume, &recovery);
    let volume = Arc::new(volume);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("amf-serve")
        .build()?;
    let served = runtime.block_on(serve_until_signal(
        Arc::clone(&volume),
        config,
        on_listening,
    ));
    drop(runtime);
    let closed = match Arc::try_unwrap(volume) {
        Ok(volume) => volume.close(),
        Err(volume) => volume.flush().map_err(ServeError::from),
    };
    let stats = served?;
    closed?;
    tracing::info!(?stats, "stopped: requests finished, members flushed");
    Ok(stats)
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
    volume: Arc<Volume>,
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
    tracing::info!(%address, "serving NBD");
    on_listening(address);
    let status = config
        .status_line
        .then(|| tokio::spawn(status_line(Arc::clone(&volume))));
    let device: Arc<dyn BlockDevice> = volume;
    let options = ServerOptions::default();
    let stats = crate::nbd::serve(listener, device, options, shutdown).await;
    if let Some(status) = status {
        status.abort();
        eprintln!();
    }
    Ok(stats?)
}

/// Registers SIGTERM and SIGINT now; the future resolves on the first of them.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send> {
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
async fn status_line(volume: Arc<Volume>) {
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
        if terminal {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K{line}");
            let _ = stderr.flush();
        }
        last = now;
    }
}
