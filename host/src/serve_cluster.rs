//! `amf serve --id N --fabric ADDR`: one AMF of an active-active cluster.
//!
//! It opens the members (no local journal: see `Volume::open_in_cluster`), joins the
//! fabric with its sim card (`card-N.sram` beside the members, or `--card sim:PATH`), runs
//! the coherency core ([`crate::active::ClusterVolume`]) and exports the whole volume over
//! NBD, as every other AMF of the cluster does. Every half second it writes its place in
//! the cluster to `amf-N.status.json` beside the members, which `amf status` shows; the
//! file goes when the AMF stops cleanly. Its control socket, `amf-N.control` beside the
//! members, takes `amf rebuild` and `amf scrub` (run through the whole cluster). SIGTERM
//! or Ctrl-C: requests in flight finish, the card leaves the fabric (its peers see it
//! go), members are flushed.

use crate::active::{ClusterConfig, ClusterStatus, ClusterVolume};
use crate::array::{MemberCaching, member_paths};
use crate::block::BlockDevice;
use crate::control;
use crate::metrics::Metrics;
use crate::nbd::{ServerOptions, ServerStats};
use crate::serve::{RemoveOnDrop, ServeError, shutdown_signal, start_metrics};
use crate::tasks::{JobRunner, Tasks};
use crate::volume::{Volume, default_sidecar};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How often the status file is rewritten.
const STATUS_PERIOD_MS: u64 = 500;

/// What a cluster AMF runs.
#[derive(Clone, Debug)]
pub struct ClusterServeConfig {
    /// DIR|FILE arguments naming the members.
    pub members: Vec<PathBuf>,
    /// NBD address (port 0: any free port, printed).
    pub address: String,
    /// `--id`: the fabric port.
    pub port: u8,
    /// `--fabric`.
    pub fabric: amf_fabric::Address,
    /// The sim card's SRAM file; `None`: `card-N.sram` beside the members.
    pub sram_path: Option<PathBuf>,
    /// `--metrics`: address to serve Prometheus metrics on.
    pub metrics: Option<String>,
    /// `--cache-size`: bytes of blocks the AMF caches at most.
    pub cache_bytes_max: u64,
    /// `--control`; `None` means `amf-N.control` beside the members.
    pub control: Option<PathBuf>,
    /// `--member-io`: whether member I/O goes around the page cache.
    pub caching: MemberCaching,
}

/// The control socket of AMF `port` for the members `members`.
pub fn control_path(members: &[PathBuf], port: u8) -> PathBuf {
    default_sidecar(members, &format!("amf-{port}.control"))
}

/// The status file of AMF `port` for the members `members`.
pub fn status_path(members: &[PathBuf], port: u8) -> PathBuf {
    default_sidecar(members, &format!("amf-{port}.status.json"))
}

/// One AMF's status file: its place in the cluster and whether it still runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AmfReport {
    /// The process.
    pub pid: u32,
    /// Its NBD address.
    pub nbd: String,
    /// When the file was written (ms since the Unix epoch).
    pub updated_unix_ms: u64,
    /// The core's view.
    pub cluster: ClusterStatus,
    /// Its control socket (`amf rebuild`, `amf scrub`).
    #[serde(default)]
    pub control: Option<PathBuf>,
}

/// Runs one cluster AMF until SIGTERM or Ctrl-C; `on_listening` is told the NBD address.
pub fn run(
    config: &ClusterServeConfig,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<ServerStats, ServeError> {
    let runtime = crate::serve::runtime()?;
    let paths = member_paths(&config.members)?;
    // The control socket first: a second AMF with this port on these members stops here.
    let control_socket = config
        .control
        .clone()
        .unwrap_or_else(|| control_path(&config.members, config.port));
    let control = {
        let _context = runtime.enter();
        control::bind(&control_socket)?
    };
    let _remove_socket = RemoveOnDrop(control_socket.clone());
    let volume = Volume::open_in_cluster(&paths, config.caching)?;
    tracing::info!(member_io = ?config.caching, "members opened");
    let sram_path = config
        .sram_path
        .clone()
        .unwrap_or_else(|| default_sidecar(&config.members, &format!("card-{}.sram", config.port)));
    let cluster = Arc::new(ClusterVolume::start(
        &ClusterConfig {
            port: config.port,
            fabric: config.fabric.clone(),
            sram_path,
            cache_bytes_max: config.cache_bytes_max,
        },
        volume,
    )?);
    let tasks = Arc::new(Tasks::new(Arc::clone(&cluster) as Arc<dyn JobRunner>));
    let status_file = StatusFile {
        path: status_path(&config.members, config.port),
        control: control_socket,
    };
    let served = runtime.block_on(serve_until_signal(
        Served {
            cluster: Arc::clone(&cluster),
            tasks: Arc::clone(&tasks),
            control,
        },
        config,
        &status_file,
        on_listening,
    ));
    drop(runtime);
    // A scrub's next stripe or a rebuild's next look still go through the core.
    tasks.shutdown();
    drop(tasks);
    let _ = std::fs::remove_file(&status_file.path);
    let closed = cluster.close();
    let stats = served?;
    closed?;
    tracing::info!(?stats, status = ?cluster.status(), "stopped: requests finished, members flushed");
    Ok(stats)
}

/// What a cluster AMF serves besides NBD.
struct Served {
    cluster: Arc<ClusterVolume>,
    tasks: Arc<Tasks>,
    control: tokio::net::UnixListener,
}

/// Where the status file goes, and the control socket it names.
struct StatusFile {
    path: PathBuf,
    control: PathBuf,
}

async fn serve_until_signal(
    served: Served,
    config: &ClusterServeConfig,
    status_file: &StatusFile,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<ServerStats, ServeError> {
    let Served {
        cluster,
        tasks,
        control,
    } = served;
    let listener = tokio::net::TcpListener::bind(&config.address)
        .await
        .map_err(|error| format!("--nbd {}: {error}", config.address))?;
    let address = listener.local_addr()?;
    let shutdown = shutdown_signal()?;
    tracing::info!(%address, port = config.port, "serving NBD as a cluster AMF");
    let mut options = ServerOptions::default();
    let metrics = match &config.metrics {
        Some(metrics_address) => {
            let metrics = Metrics::new(Arc::clone(cluster.volume()), Arc::clone(&tasks))
                .with_cluster(Arc::clone(&cluster));
            let (task, observer) = start_metrics(metrics_address, metrics).await?;
            options.observer = Some(observer);
            Some(task)
        }
        None => None,
    };
    write_status(&cluster, address, status_file)?;
    on_listening(address);
    let control = tokio::spawn(control::serve(control, tasks, Arc::clone(cluster.volume())));
    let reporter = tokio::spawn(report_status(
        Arc::clone(&cluster),
        address,
        StatusFile {
            path: status_file.path.clone(),
            control: status_file.control.clone(),
        },
    ));
    let device: Arc<dyn BlockDevice> = cluster;
    let stats = crate::nbd::serve(listener, device, options, shutdown).await;
    reporter.abort();
    control.abort();
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    Ok(stats?)
}

async fn report_status(cluster: Arc<ClusterVolume>, address: SocketAddr, file: StatusFile) {
    loop {
        tokio::time::sleep(Duration::from_millis(STATUS_PERIOD_MS)).await;
        if let Err(error) = write_status(&cluster, address, &file) {
            tracing::warn!(path = %file.path.display(), %error, "could not write the status file");
        }
    }
}

/// Writes the status file whole (a temporary file renamed over it).
fn write_status(
    cluster: &ClusterVolume,
    address: SocketAddr,
    file: &StatusFile,
) -> std::io::Result<()> {
    let report = AmfReport {
        pid: std::process::id(),
        nbd: address.to_string(),
        updated_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as u64),
        cluster: cluster.status(),
        control: Some(file.control.clone()),
    };
    let text = serde_json::to_vec_pretty(&report).map_err(std::io::Error::other)?;
    let temporary = file.path.with_extension("json.tmp");
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, &file.path)
}

/// How recent a status file must be for its AMF to count as running (it is rewritten
/// every [`STATUS_PERIOD_MS`]).
pub const STATUS_FRESH_MS: u64 = 3_000;

/// The cluster AMFs that serve `members` now: a fresh status file, not down, and its
/// process alive. Offline tools that write the members refuse while there is one.
pub fn running_amfs(members: &[PathBuf]) -> Vec<AmfReport> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64);
    read_reports(members)
        .into_iter()
        .filter(|report| {
            now_ms.saturating_sub(report.updated_unix_ms) <= STATUS_FRESH_MS
                && report.cluster.down.is_none()
                && Path::new(&format!("/proc/{}", report.pid)).exists()
        })
        .collect()
}

/// The status files beside `members`, by port: what the cluster's AMFs last said.
pub fn read_reports(members: &[PathBuf]) -> Vec<AmfReport> {
    (0..shared_regs::limits::FABRIC_PORTS_MAX as u8)
        .filter_map(|port| std::fs::read(status_path(members, port)).ok())
        .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
        .collect()
}
