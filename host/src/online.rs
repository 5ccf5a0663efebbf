//! The CLI side of the jobs a serving AMF runs: `amf rebuild` and `amf scrub` against a
//! running `amf serve`, through its control socket, with an `indicatif` bar fed from the
//! server's own progress (stripes, member bytes per second, ETA).

use crate::control::{self, ControlError, Request, ServeStatus};
use crate::tasks::{TaskKind, TaskReport, TaskState};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::Path;
use std::time::Duration;

/// How often the CLI asks the server how a job stands.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Sends `request` (which starts a job of `kind`) and follows the job to its end, drawing
/// a bar on a terminal unless `quiet`. Returns the job's last report.
pub fn start_and_follow(
    socket: &Path,
    request: &Request,
    kind: TaskKind,
    quiet: bool,
) -> Result<TaskReport, ControlError> {
    let started = control::call(socket, request)?;
    let bar = progress_bar(kind, quiet);
    let mut status = started;
    loop {
        let Some(task) = job(&status, kind) else {
            return Err(ControlError::Refused(format!(
                "amf serve reports no {kind:?} job"
            )));
        };
        draw(&bar, &task);
        if task.state != TaskState::Running {
            bar.finish_and_clear();
            return Ok(task);
        }
        std::thread::sleep(POLL_INTERVAL);
        status = control::call(socket, &Request::Status {})?;
    }
}

fn job(status: &ServeStatus, kind: TaskKind) -> Option<TaskReport> {
    status.tasks.iter().find(|task| task.kind == kind).cloned()
}

fn progress_bar(kind: TaskKind, quiet: bool) -> ProgressBar {
    let target = if quiet {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(None, target);
    let style =
        ProgressStyle::with_template("{prefix} [{bar:40}] {percent:>3}% {pos}/{len} stripes {msg}")
            .map(|style| style.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(format!("{kind:?}").to_lowercase());
    bar
}

fn draw(bar: &ProgressBar, task: &TaskReport) {
    bar.set_length(task.stripes_total);
    bar.set_position(task.stripes_done);
    let rate = crate::status::human_bytes(task.rate_bytes_per_second as u64);
    let eta = task
        .eta_seconds
        .map_or_else(String::new, |seconds| format!(" eta {seconds:.0}s"));
    bar.set_message(format!("{rate}/s{eta}"));
}

/// One line for a finished job.
pub fn summary(task: &TaskReport) -> String {
    let kind = format!("{:?}", task.kind).to_lowercase();
    let member = task
        .member
        .map_or_else(String::new, |member| format!(" of member {member}"));
    let rate = crate::status::human_bytes(task.rate_bytes_per_second as u64);
    match (&task.state, &task.error) {
        (TaskState::Failed, Some(error)) => format!("{kind}{member} failed: {error}\n"),
        _ => format!(
            "{kind}{member}: {} of {} stripes in {:.1}s ({rate}/s per member)\n",
            task.stripes_done, task.stripes_total, task.elapsed_seconds
        ),
    }
}
