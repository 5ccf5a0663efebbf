//! `amf serve --metrics ADDR`: Prometheus (OpenMetrics text) at `http://ADDR/metrics`.
//!
//! NBD requests are counted as they finish ([`RequestObserver`]): requests and bytes by
//! type and outcome, latency histograms by type, requests on the device now. The volume's
//! own counters (stripe writes by mode, degraded reads, flushes), its failed members and
//! the rebuild and scrub progress are read from it at each scrape.
//!
//! The HTTP side answers `GET /metrics` (and `GET /`) with the text and anything else with
//! 404 or 405; it reads at most [`REQUEST_HEAD_BYTES_MAX`] of a request and gives a slow
//! client [`REQUEST_TIMEOUT`], so a bad scraper cannot hold the server.

use crate::active::{ClusterStatus, ClusterVolume};
use crate::nbd::server::{RequestKind, RequestObserver};
use crate::tasks::{TaskKind, TaskState, Tasks};
use crate::volume::Volume;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest request head (request line and headers) read from a scraper.
pub const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// Time a scraper has to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabel {
    mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabel {
    job: &'static str,
}

/// The NBD request metrics, fed by the server as requests run.
#[derive(Debug)]
pub struct NbdMetrics {
    requests: Family<RequestLabels, Counter>,
    bytes: Family<KindLabel, Counter>,
    latency_seconds: Family<KindLabel, Histogram>,
    in_flight: Gauge<i64, std::sync::atomic::AtomicI64>,
}

impl RequestObserver for NbdMetrics {
    fn started(&self, _kind: RequestKind) {
        self.in_flight.inc();
    }

    fn finished(&self, kind: RequestKind, bytes: u64, latency: Duration, ok: bool) {
        self.in_flight.dec();
        let kind = kind.name();
        let outcome = if ok { "ok" } else { "error" };
        self.requests
            .get_or_create(&RequestLabels { kind, outcome })
            .inc();
        if ok {
            self.bytes.get_or_create(&KindLabel { kind }).inc_by(bytes);
        }
        self.latency_seconds
            .get_or_create(&KindLabel { kind })
            .observe(latency.as_secs_f64());
    }
}

/// Everything `--metrics` exports: the registry and what each scrape reads.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    nbd: Arc<NbdMetrics>,
    volume: Arc<Volume>,
    tasks: Arc<Tasks>,
    mirrored: Mirrored,
    /// A cluster AMF's protocol, when this is one.
    cluster: Option<(Arc<ClusterVolume>, ClusterMirrored)>,
}

/// A cluster AMF's coherency protocol, copied from its status at each scrape.
#[derive(Debug, Default)]
struct ClusterMirrored {
    events: Family<EventLabel, Counter>,
    live_ports: Gauge,
    stripes_held: Gauge,
    intent_writes_outstanding: Gauge,
    dead_records: Gauge,
}

/// Metrics copied from the volume and its jobs at each scrape.
#[derive(Debug, Default)]
struct Mirrored {
    stripe_writes: Family<ModeLabel, Counter>,
    degraded_reads: Counter,
    flushes: Counter,
    failed_members: Gauge,
    generation: Gauge,
    job_stripes_done: Family<JobLabel, Gauge>,
    job_stripes_total: Family<JobLabel, Gauge>,
    job_running: Family<JobLabel, Gauge>,
    rebuild_member: Gauge,
}

impl Metrics {
    /// Metrics of `volume` served with `tasks`; give [`Metrics::observer`] to the NBD server.
    pub fn new(volume: Arc<Volume>, tasks: Arc<Tasks>) -> Metrics {
        let mut registry = Registry::with_prefix("amf");
        let nbd = Arc::new(NbdMetrics {
            requests: Family::default(),
            bytes: Family::default(),
            latency_seconds: Family::new_with_constructor(|| {
                // 10 µs .. ~42 s.
                Histogram::new(exponential_buckets(1e-5, 2.0, 22))
            }),
            in_flight: Gauge::default(),
        });
        registry.register(
            "nbd_requests",
            "NBD requests finished, by type and outcome",
            nbd.requests.clone(),
        );
        registry.register(
            "nbd_bytes",
            "Payload bytes of successful NBD requests, by type",
            nbd.bytes.clone(),
        );
        registry.register(
            "nbd_request_latency_seconds",
            "Time from an NBD request's header to its reply, by type",
            nbd.latency_seconds.clone(),
        );
        registry.register(
            "nbd_requests_in_flight",
            "NBD requests running on the volume now (the queue depth)",
            nbd.in_flight.clone(),
        );
        let mirrored = Mirrored::default();
        mirrored.register(&mut registry);
        Metrics {
            registry,
            nbd,
            volume,
            tasks,
            mirrored,
            cluster: None,
        }
    }

    /// Adds the coherency protocol of the cluster AMF `cluster` (fabric ports, stripes
    /// held, intent records, broadcast/forward/invalidation/replay counters).
    pub fn with_cluster(mut self, cluster: Arc<ClusterVolume>) -> Metrics {
        let mirrored = ClusterMirrored::default();
        mirrored.register(&mut self.registry);
        self.cluster = Some((cluster, mirrored));
        self
    }

    /// What the NBD server reports its requests to.
    pub fn observer(&self) -> Arc<dyn RequestObserver> {
        Arc::clone(&self.nbd) as Arc<dyn RequestObserver>
    }

    /// The OpenMetrics text of everything, as of now.
    pub fn render(&self) -> String {
        self.mirrored.update(&self.volume, &self.tasks);
        if let Some((cluster, mirrored)) = &self.cluster {
            mirrored.update(&cluster.status());
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        text
    }
}

impl Mirrored {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "stripe_writes",
            "Stripe writes by how parity was updated (a stripe write with two modes counts in both)",
            self.stripe_writes.clone(),
        );
        registry.register(
            "degraded_reads",
            "Stripe reads that reconstructed data from parity",
            self.degraded_reads.clone(),
        );
        registry.register("flushes", "Volume flushes done", self.flushes.clone());
        registry.register(
            "failed_members",
            "Members failed or missing",
            self.failed_members.clone(),
        );
        registry.register("generation", "Array generation", self.generation.clone());
        registry.register(
            "job_stripes_done",
            "Stripes behind the rebuild or scrub (rebuild: from stripe 0)",
            self.job_stripes_done.clone(),
        );
        registry.register(
            "job_stripes_total",
            "Stripes the rebuild or scrub covers",
            self.job_stripes_total.clone(),
        );
        registry.register(
            "job_running",
            "1 while the rebuild or scrub runs",
            self.job_running.clone(),
        );
        registry.register(
            "rebuild_member",
            "Member being rebuilt, -1 when none",
            self.rebuild_member.clone(),
        );
    }

    fn update(&self, volume: &Volume, tasks: &Tasks) {
        let stats = volume.stats();
        let writes = stats.stripe_writes;
        for (mode, total) in [
            ("full_stripe", writes.full_stripe),
            ("read_modify_write", writes.read_modify_write),
            ("reconstruct_write", writes.reconstruct_write),
            ("degraded_reconstruct", writes.degraded_reconstruct),
            ("data_only", writes.data_only),
        ] {
            catch_up(
                &self.stripe_writes.get_or_create(&ModeLabel { mode }),
                total,
            );
        }
        catch_up(&self.degraded_reads, stats.degraded_reads);
        catch_up(&self.flushes, stats.flushes);
        self.failed_members.set(stats.failed_members.into());
        self.generation.set(gauge_value(stats.generation));
        let rebuild = volume.rebuild_progress();
        self.rebuild_member
            .set(rebuild.map_or(-1, |progress| progress.member.into()));
        for task in tasks.reports() {
            let job = JobLabel {
                job: match task.kind {
                    TaskKind::Rebuild => "rebuild",
                    TaskKind::Scrub => "scrub",
                },
            };
            self.job_stripes_done
                .get_or_create(&job)
                .set(gauge_value(task.stripes_done));
            self.job_stripes_total
                .get_or_create(&job)
                .set(gauge_value(task.stripes_total));
            self.job_running
                .get_or_create(&job)
                .set((task.state == TaskState::Running).into());
        }
    }
}

impl ClusterMirrored {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "cluster_events",
            "Coherency protocol events of this AMF: broadcasts (acquires sent), \
             broadcasts_avoided (stripe operations on a stripe already held), grants, \
             forwards (read misses a peer served), invalidations, replays (dead peers' writes \
             completed), records_corrupt, stripe_writes, stripe_reads, member_errors, frames_sent",
            self.events.clone(),
        );
        registry.register(
            "cluster_live_ports",
            "Fabric ports live as this AMF knows them",
            self.live_ports.clone(),
        );
        registry.register(
            "cluster_stripes_held",
            "Stripes this AMF holds, shared or exclusive",
            self.stripes_held.clone(),
        );
        registry.register(
            "cluster_intent_writes_outstanding",
            "Intent records sent to peers' SRAM and not yet acknowledged",
            self.intent_writes_outstanding.clone(),
        );
        registry.register(
            "cluster_dead_records",
            "Dead peers' intent records this AMF holds and has not seen retired",
            self.dead_records.clone(),
        );
    }

    fn update(&self, status: &ClusterStatus) {
        for (event, total) in [
            ("broadcasts", status.broadcasts),
            ("broadcasts_avoided", status.broadcasts_avoided),
            ("grants", status.grants),
            ("forwards", status.forwards),
            ("invalidations", status.invalidations),
            ("replays", status.replays),
            ("records_corrupt", status.records_corrupt),
            ("stripe_writes", status.stripe_writes),
            ("stripe_reads", status.stripe_reads),
            ("member_errors", status.member_errors),
            ("frames_sent", status.frames_sent),
        ] {
            catch_up(&self.events.get_or_create(&EventLabel { event }), total);
        }
        self.live_ports.set(status.live_ports.len() as i64);
        self.stripes_held.set(gauge_value(status.stripes_held));
        self.intent_writes_outstanding
            .set(gauge_value(status.intent_writes_outstanding));
        self.dead_records.set(gauge_value(status.dead_records));
    }
}

/// Brings a counter mirroring a monotonic total up to it.
fn catch_up(counter: &Counter<u64, AtomicU64>, total: u64) {
    counter.inc_by(total.saturating_sub(counter.get()));
}

fn gauge_value(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Answers scrapes on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            if let Err(error) = answer(stream, &metrics).await {
                tracing::debug!(%error, "metrics connection closed");
            }
        });
    }
}

async fn answer(mut stream: tokio::net::TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let head = tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request too slow"))??;
    let (status, content_type, body) = match route(&head) {
        Route::Metrics => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.render(),
        ),
        Route::NotFound => ("404 Not Found", "text/plain", "try /metrics\n".to_owned()),
        Route::BadMethod => (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_owned(),
        ),
        Route::Malformed => ("400 Bad Request", "text/plain", "bad request\n".to_owned()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Reads up to the blank line that ends an HTTP request head (or the size limit).
async fn read_head(stream: &mut tokio::net::TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n")
        && head.len() < REQUEST_HEAD_BYTES_MAX
    {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..read]);
    }
    Ok(head)
}

/// Where a request goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /metrics` or `GET /`.
    Metrics,
    /// Another path.
    NotFound,
    /// Another method.
    BadMethod,
    /// Not an HTTP request line.
    Malformed,
}

/// Routes a request by its first line.
pub fn route(head: &[u8]) -> Route {
    let line = head.split(|&byte| byte == b'\n').next().unwrap_or_default();
    let mut words = line.trim_ascii().split(|&byte| byte == b' ');
    let (Some(method), Some(target), Some(version)) = (words.next(), words.next(), words.next())
    else {
        return Route::Malformed;
    };
    if !version.starts_with(b"HTTP/") || words.next().is_some() {
        return Route::Malformed;
    }
    if method != b"GET" {
        return Route::BadMethod;
    }
    let path = target
        .split(|&byte| byte == b'?')
        .next()
        .unwrap_or_default();
    match path {
        b"/metrics" | b"/" => Route::Metrics,
        _ => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_route_by_their_first_line() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics
        );
        assert_eq!(route(b"GET /?x=1 HTTP/1.0\r\n\r\n"), Route::Metrics);
        assert_eq!(route(b"GET /other HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"POST /metrics HTTP/1.1\r\n\r\n"), Route::BadMethod);
        for garbage in [
            &b""[..],
            b"\x00\xff",
            b"GET",
            b"GET /metrics",
            b"GET / FTP/1\r\n",
        ] {
            assert_eq!(route(garbage), Route::Malformed, "{garbage:?}");
        }
    }
}
