//! Long jobs of a serving AMF: a rebuild and a scrub, each on a thread of its own beside
//! the NBD clients, with progress (stripes, rate, ETA) for `amf status`, the CLI's
//! progress bar and the metrics.
//!
//! At most one rebuild and one scrub run at a time. A standalone AMF's rebuild progress
//! lives in the superblocks (see [`crate::volume`]); a cluster rebuild's lives in the
//! fabric's order, and this AMF's job follows it. A scrub's progress lives nowhere: a
//! scrub cut short by a restart is started again by the operator.

use crate::scrub::{self, Mode, ScrubError, ScrubReport};
use crate::volume::{RebuildError, RebuildProgress, Volume};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Stripes a rebuild takes (and locks) at once, between checkpoints.
const REBUILD_BATCH_STRIPES: u64 = 32;

/// What runs a serving AMF's jobs: the volume alone (`amf serve`), or a cluster AMF,
/// whose coherency core orders the rebuild and each stripe's scrub among the AMFs.
pub trait JobRunner: std::fmt::Debug + Send + Sync {
    /// The volume served.
    fn volume(&self) -> &Volume;
    /// Starts rebuilding failed `member` onto `replacement`; with `max_rate_bytes_per_second`
    /// the job throttles itself.
    fn begin_rebuild(
        &self,
        member: u32,
        replacement: &Path,
        max_rate_bytes_per_second: Option<u64>,
    ) -> Result<RebuildProgress, RebuildError>;
    /// Goes on with the rebuild of `member` (about `stripes` stripes, or until it moves)
    /// and says where it stands.
    fn continue_rebuild(&self, member: u32, stripes: u64) -> Result<RebuildProgress, RebuildError>;
    /// What becomes of a rebuild at `progress` when this AMF stops.
    fn after_stop(&self, progress: &RebuildProgress) -> String;
    /// Scrubs stripe `stripe`, adding what it finds to `report`.
    fn scrub_stripe(
        &self,
        stripe: u64,
        mode: Mode,
        report: &mut ScrubReport,
    ) -> Result<(), ScrubError>;
}

impl JobRunner for Volume {
    fn volume(&self) -> &Volume {
        self
    }

    fn begin_rebuild(
        &self,
        member: u32,
        replacement: &Path,
        _max_rate_bytes_per_second: Option<u64>,
    ) -> Result<RebuildProgress, RebuildError> {
        Volume::begin_rebuild(self, member, replacement)
    }

    fn continue_rebuild(
        &self,
        _member: u32,
        stripes: u64,
    ) -> Result<RebuildProgress, RebuildError> {
        self.rebuild_batch(stripes)
    }

    fn after_stop(&self, progress: &RebuildProgress) -> String {
        format!(
            "resumes from stripe {} at the next start",
            progress.next_stripe
        )
    }

    fn scrub_stripe(
        &self,
        stripe: u64,
        mode: Mode,
        report: &mut ScrubReport,
    ) -> Result<(), ScrubError> {
        Volume::scrub_stripe(self, stripe, mode, report)
    }
}

/// Which job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// Reconstructing a member onto a replacement.
    Rebuild,
    /// Checking parity (and with repair, rewriting it).
    Scrub,
}

/// Where a job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Still going.
    Running,
    /// Finished.
    Done,
    /// Stopped by an error.
    Failed,
}

/// A job's progress as `amf status --json` and the control socket show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskReport {
    /// Which job.
    pub kind: TaskKind,
    /// The member being rebuilt.
    pub member: Option<u32>,
    /// Where it stands.
    pub state: TaskState,
    /// Stripes behind the job (for a resumed rebuild, from stripe 0).
    pub stripes_done: u64,
    /// Stripes in the array.
    pub stripes_total: u64,
    /// `stripes_done` out of `stripes_total`, in percent.
    pub percent: f64,
    /// Member bytes per second since the job started (written to the replacement, or read
    /// from each member).
    pub rate_bytes_per_second: f64,
    /// Seconds left at that rate, while running.
    pub eta_seconds: Option<f64>,
    /// Seconds since the job started.
    pub elapsed_seconds: f64,
    /// Why it failed.
    pub error: Option<String>,
    /// A scrub's findings, when done.
    pub scrub: Option<ScrubReport>,
}

#[derive(Debug)]
struct Task {
    kind: TaskKind,
    member: Option<u32>,
    stripes_total: u64,
    first_stripe: u64,
    chunk_bytes: u64,
    stripes_done: AtomicU64,
    started: Instant,
    outcome: Mutex<Option<Result<Option<ScrubReport>, String>>>,
}

impl Task {
    fn new(kind: TaskKind, member: Option<u32>, volume: &Volume, first_stripe: u64) -> Task {
        Task {
            kind,
            member,
            stripes_total: volume.geometry().stripe_count(),
            first_stripe,
            chunk_bytes: volume.geometry().chunk_bytes().into(),
            stripes_done: AtomicU64::new(first_stripe),
            started: Instant::now(),
            outcome: Mutex::new(None),
        }
    }

    fn outcome(&self) -> std::sync::MutexGuard<'_, Option<Result<Option<ScrubReport>, String>>> {
        self.outcome
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn is_running(&self) -> bool {
        self.outcome().is_none()
    }

    fn finish(&self, outcome: Result<Option<ScrubReport>, String>) {
        *self.outcome() = Some(outcome);
    }

    /// Member bytes this run has processed.
    fn bytes_done(&self) -> u64 {
        (self.stripes_done.load(Ordering::Relaxed) - self.first_stripe) * self.chunk_bytes
    }

    /// Sleeps as long as it takes to keep the run at or under `limit` bytes per second.
    fn throttle(&self, limit: Option<u64>) {
        let Some(limit) = limit.filter(|&limit| limit > 0) else {
            return;
        };
        let due = Duration::from_secs_f64(self.bytes_done() as f64 / limit as f64);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(wait);
        }
    }

    fn report(&self) -> TaskReport {
        let done = self.stripes_done.load(Ordering::Relaxed);
        let elapsed = self.started.elapsed().as_secs_f64();
        let rate = if elapsed > 0.0 {
            self.bytes_done() as f64 / elapsed
        } else {
            0.0
        };
        let outcome = self.outcome().clone();
        let remaining_bytes =
            (self.stripes_total - done.min(self.stripes_total)) * self.chunk_bytes;
        let (state, error, scrub) = match outcome {
            None => (TaskState::Running, None, None),
            Some(Ok(scrub)) => (TaskState::Done, None, scrub),
            Some(Err(error)) => (TaskState::Failed, Some(error), None),
        };
        TaskReport {
            kind: self.kind,
            member: self.member,
            state,
            stripes_done: done,
            stripes_total: self.stripes_total,
            percent: percent(done, self.stripes_total),
            rate_bytes_per_second: rate,
            eta_seconds: (state == TaskState::Running && rate > 0.0)
                .then(|| remaining_bytes as f64 / rate),
            elapsed_seconds: elapsed,
            error,
            scrub,
        }
    }
}

fn percent(done: u64, total: u64) -> f64 {
    if total == 0 {
        100.0
    } else {
        done as f64 * 100.0 / total as f64
    }
}

/// The jobs of one serving volume.
#[derive(Debug)]
pub struct Tasks {
    runner: Arc<dyn JobRunner>,
    rebuild: Mutex<Option<Arc<Task>>>,
    scrub: Mutex<Option<Arc<Task>>>,
    stopping: Arc<AtomicBool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Tasks {
    /// No jobs yet.
    pub fn new(runner: Arc<dyn JobRunner>) -> Tasks {
        Tasks {
            runner,
            rebuild: Mutex::new(None),
            scrub: Mutex::new(None),
            stopping: Arc::new(AtomicBool::new(false)),
            threads: Mutex::new(Vec::new()),
        }
    }

    /// Stops the jobs after their current batch (a rebuild at its last checkpoint) and
    /// waits for them.
    pub fn shutdown(&self) {
        self.stopping.store(true, Ordering::Release);
        let threads = std::mem::take(&mut *lock(&self.threads));
        for thread in threads {
            let _ = thread.join();
        }
    }

    /// Runs `job` on a thread of its own; its outcome goes to `task`.
    fn spawn(
        &self,
        task: &Arc<Task>,
        job: impl FnOnce(&dyn JobRunner, &Task, &AtomicBool) -> Result<Option<ScrubReport>, String>
        + Send
        + 'static,
    ) {
        let runner = Arc::clone(&self.runner);
        let task = Arc::clone(task);
        let stopping = Arc::clone(&self.stopping);
        let thread = std::thread::spawn(move || {
            let outcome = job(runner.as_ref(), &task, &stopping);
            if let Err(error) = &outcome {
                tracing::error!(kind = ?task.kind, %error, "job stopped");
            }
            task.finish(outcome);
        });
        lock(&self.threads).push(thread);
    }

    /// Starts rebuilding failed member `member` onto `replacement`, at most
    /// `max_rate_bytes_per_second` written per second.
    pub fn start_rebuild(
        &self,
        member: u32,
        replacement: PathBuf,
        max_rate_bytes_per_second: Option<u64>,
    ) -> Result<TaskReport, RebuildError> {
        let mut slot = lock(&self.rebuild);
        let progress =
            self.runner
                .begin_rebuild(member, &replacement, max_rate_bytes_per_second)?;
        let task = Arc::new(Task::new(
            TaskKind::Rebuild,
            Some(member),
            self.runner.volume(),
            progress.next_stripe,
        ));
        self.spawn(&task, move |runner, task, stopping| {
            run_rebuild(runner, task, stopping, max_rate_bytes_per_second)
        });
        *slot = Some(Arc::clone(&task));
        Ok(task.report())
    }

    /// Goes on with the rebuild the superblocks record as under way, if any.
    pub fn resume_rebuild(&self) -> Option<TaskReport> {
        let progress = self.runner.volume().rebuild_progress()?;
        tracing::info!(
            member = progress.member,
            next_stripe = progress.next_stripe,
            stripes = progress.stripes,
            "resuming the rebuild from its checkpoint"
        );
        let task = Arc::new(Task::new(
            TaskKind::Rebuild,
            Some(progress.member),
            self.runner.volume(),
            progress.next_stripe,
        ));
        self.spawn(&task, |runner, task, stopping| {
            run_rebuild(runner, task, stopping, None)
        });
        *lock(&self.rebuild) = Some(Arc::clone(&task));
        Some(task.report())
    }

    /// Starts a scrub of every stripe, unless one runs.
    pub fn start_scrub(
        &self,
        mode: Mode,
        max_rate_bytes_per_second: Option<u64>,
    ) -> Result<TaskReport, String> {
        let mut slot = lock(&self.scrub);
        if slot.as_ref().is_some_and(|task| task.is_running()) {
            return Err("a scrub is running already: one at a time".to_owned());
        }
        let task = Arc::new(Task::new(TaskKind::Scrub, None, self.runner.volume(), 0));
        self.spawn(&task, move |runner, task, stopping| {
            run_scrub(runner, task, stopping, mode, max_rate_bytes_per_second)
        });
        *slot = Some(Arc::clone(&task));
        Ok(task.report())
    }

    /// Every job started since the volume opened, the rebuild first.
    pub fn reports(&self) -> Vec<TaskReport> {
        [&self.rebuild, &self.scrub]
            .into_iter()
            .filter_map(|slot| lock(slot).as_ref().map(|task| task.report()))
            .collect()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Why a job ended early when `amf serve` stops.
const STOPPED: &str = "stopped: amf serve is shutting down";

fn run_rebuild(
    runner: &dyn JobRunner,
    task: &Task,
    stopping: &AtomicBool,
    max_rate_bytes_per_second: Option<u64>,
) -> Result<Option<ScrubReport>, String> {
    let member = task.member.expect("a rebuild names its member");
    loop {
        let progress = runner
            .continue_rebuild(member, REBUILD_BATCH_STRIPES)
            .map_err(|error| error.to_string())?;
        task.stripes_done
            .store(progress.next_stripe, Ordering::Relaxed);
        if progress.is_done() {
            return Ok(None);
        }
        if stopping.load(Ordering::Acquire) {
            return Err(format!("{STOPPED} ({})", runner.after_stop(&progress)));
        }
        task.throttle(max_rate_bytes_per_second);
    }
}

fn run_scrub(
    runner: &dyn JobRunner,
    task: &Task,
    stopping: &AtomicBool,
    mode: Mode,
    max_rate_bytes_per_second: Option<u64>,
) -> Result<Option<ScrubReport>, String> {
    let volume = runner.volume();
    let mut report = scrub::new_report(volume, volume.parity_engine());
    for stripe in 0..task.stripes_total {
        if stopping.load(Ordering::Acquire) {
            return Err(STOPPED.to_owned());
        }
        runner
            .scrub_stripe(stripe, mode, &mut report)
            .map_err(|error| error.to_string())?;
        task.stripes_done.store(stripe + 1, Ordering::Relaxed);
        task.throttle(max_rate_bytes_per_second);
    }
    tracing::info!(
        checked = report.stripes_checked,
        mismatches = report.mismatches.len(),
        repaired = report.repaired,
        "scrub finished"
    );
    Ok(Some(report))
}
