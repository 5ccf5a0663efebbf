//! The member I/O threads of a cluster AMF: they run the core's stripe operations on the
//! [`Volume`] (reads, writes, replays of a dead peer's writes, the rebuild of a stripe's
//! chunk onto a replacement, the scrub of a stripe) and hand each outcome to the driver.
//!
//! Each operation plans around the members the fabric's order has failed for its stripe,
//! as the core does; a member the volume failed itself (its own I/O error, or its
//! superblocks at start) that the core does not know yet is reported as the op's
//! failure, so the core broadcasts `MemberFailed` and every AMF plans around it from one
//! point of the order (and this op is redone degraded then: idempotent).

use super::cluster::Input;
use crate::block::{BlockDevice, BlockError};
use crate::scrub::{Mode, ScrubReport};
use crate::volume::Volume;
use amf_coherency::{MemberOutcome, MemberRequest};
use amf_raid::MemberSet;
use shared_regs::limits::BLOCK_BYTES;
use std::collections::BTreeMap;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// Member I/O run at once (stripe reads, writes, replays).
const MEMBER_WORKERS: usize = 8;
const BLOCK: u64 = BLOCK_BYTES as u64;

/// What the scrub of each stripe found, until the caller that asked for it takes it.
pub(super) type ScrubFindings = Mutex<BTreeMap<u64, Result<ScrubReport, String>>>;

/// The member I/O threads.
pub(super) struct Workers {
    pub(super) jobs: Sender<MemberRequest>,
    threads: Vec<JoinHandle<()>>,
    /// What a restart starts the next threads with.
    volume: Arc<Volume>,
    findings: Arc<ScrubFindings>,
    inputs: Sender<Input>,
}

impl Workers {
    pub(super) fn start(
        volume: Arc<Volume>,
        findings: Arc<ScrubFindings>,
        inputs: Sender<Input>,
    ) -> Self {
        let threads = Self::spawn(&volume, &findings, &inputs);
        let (jobs, threads) = threads;
        Self {
            jobs,
            threads,
            volume,
            findings,
            inputs,
        }
    }

    /// Ends the threads once their current job is done (queued jobs are dropped), then
    /// starts new ones: no completion of a job given before reaches the driver after.
    pub(super) fn restart(&mut self) {
        let (jobs, threads) = Self::spawn(&self.volume, &self.findings, &self.inputs);
        drop(std::mem::replace(&mut self.jobs, jobs));
        for thread in std::mem::replace(&mut self.threads, threads) {
            // A worker that panicked has nothing left to stop.
            let _ = thread.join();
        }
    }

    fn spawn(
        volume: &Arc<Volume>,
        findings: &Arc<ScrubFindings>,
        inputs: &Sender<Input>,
    ) -> (Sender<MemberRequest>, Vec<JoinHandle<()>>) {
        let (jobs, queue) = mpsc::channel::<MemberRequest>();
        let queue = Arc::new(Mutex::new(queue));
        let mut threads = Vec::with_capacity(MEMBER_WORKERS);
        for index in 0..MEMBER_WORKERS {
            let (volume, findings, inputs, queue) = (
                Arc::clone(volume),
                Arc::clone(findings),
                inputs.clone(),
                Arc::clone(&queue),
            );
            let thread = std::thread::Builder::new()
                .name(format!("amf-member-io-{index}"))
                .spawn(move || {
                    loop {
                        // Ends when the driver drops the job sender.
                        let next = lock(&queue).recv();
                        let Ok(job) = next else { break };
                        let (io, outcome) = execute(&volume, &findings, job);
                        if inputs.send(Input::Completed { io, outcome }).is_err() {
                            break;
                        }
                    }
                })
                .expect("a member I/O thread starts");
            threads.push(thread);
        }
        (jobs, threads)
    }

    /// Ends every worker once its current job is done (queued jobs are dropped).
    pub(super) fn stop(self) {
        drop(self.jobs);
        for thread in self.threads {
            // A worker that panicked has nothing left to stop.
            let _ = thread.join();
        }
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Byte offset in the volume of block `first_block` of `stripe`'s data.
fn volume_offset(volume: &Volume, stripe: u64, first_block: u32) -> u64 {
    stripe * volume.geometry().stripe_data_bytes() + u64::from(first_block) * BLOCK
}

/// Runs one stripe operation of the core on the members; see the [module docs](self).
fn execute(volume: &Volume, findings: &ScrubFindings, job: MemberRequest) -> (u64, MemberOutcome) {
    let known = MemberSet::from_bits(job.failed_members());
    let stripe = job.stripe();
    volume.adopt_failed(known);
    let (io, outcome) = perform(volume, findings, job);
    if matches!(outcome, MemberOutcome::Failed { .. }) {
        return (io, outcome);
    }
    match volume
        .failed_for_stripe(stripe)
        .iter()
        .find(|&member| !known.contains(member))
    {
        Some(member) => (io, MemberOutcome::Failed { member }),
        None => (io, outcome),
    }
}

/// Runs one stripe operation on the volume as it is.
fn perform(volume: &Volume, findings: &ScrubFindings, job: MemberRequest) -> (u64, MemberOutcome) {
    match job {
        MemberRequest::Read {
            io,
            stripe,
            first_block,
            block_count,
            failed_members,
        } => {
            let mut buffer = vec![0u8; block_count as usize * BLOCK as usize];
            let offset = volume_offset(volume, stripe, first_block);
            let outcome = match volume.read(offset, &mut buffer) {
                Ok(()) => MemberOutcome::Read(buffer),
                Err(error) => failure(volume, stripe, failed_members, &error),
            };
            (io, outcome)
        }
        MemberRequest::Write {
            io,
            stripe,
            first_block,
            data,
            failed_members,
        } => {
            let offset = volume_offset(volume, stripe, first_block);
            let outcome = match volume.write(offset, &data, false) {
                Ok(()) => MemberOutcome::Written,
                Err(error) => failure(volume, stripe, failed_members, &error),
            };
            (io, outcome)
        }
        MemberRequest::Replay {
            io,
            stripe,
            first_block,
            data,
            failed_members,
        } => (
            io,
            replay(volume, stripe, first_block, &data, failed_members),
        ),
        MemberRequest::Rebuild {
            io,
            stripe,
            member,
            failed_members,
        } => (io, rebuild(volume, stripe, member, failed_members)),
        MemberRequest::Scrub {
            io, stripe, repair, ..
        } => (io, scrub(volume, findings, stripe, repair)),
    }
}

/// Completes a dead owner's write: the stripe's data as the members hold it, the record's
/// blocks laid over it, written back whole so that parity comes from the data alone.
fn replay(
    volume: &Volume,
    stripe: u64,
    first_block: u32,
    data: &[u8],
    failed_members: u32,
) -> MemberOutcome {
    let start = volume_offset(volume, stripe, 0);
    let mut whole = vec![0u8; volume.geometry().stripe_data_bytes() as usize];
    if let Err(error) = volume.read(start, &mut whole) {
        return failure(volume, stripe, failed_members, &error);
    }
    let at = first_block as usize * BLOCK as usize;
    whole[at..at + data.len()].copy_from_slice(data);
    match volume.write(start, &whole, false) {
        Ok(()) => MemberOutcome::Written,
        Err(error) => failure(volume, stripe, failed_members, &error),
    }
}

/// Reconstructs `member`'s chunk of `stripe` onto its replacement. The replacement
/// failing is the member's failure (the core stops the rebuild at every AMF).
fn rebuild(volume: &Volume, stripe: u64, member: u32, failed_members: u32) -> MemberOutcome {
    match volume.rebuild_cluster_stripe(member, stripe) {
        Ok(()) => MemberOutcome::Written,
        Err(error) if !volume.is_rebuilding(member) => {
            tracing::warn!(member, stripe, %error, "the replacement failed under its rebuild");
            MemberOutcome::Failed { member }
        }
        Err(error) => failure(
            volume,
            stripe,
            failed_members,
            &BlockError::Io(error.to_string()),
        ),
    }
}

/// Checks (with `repair`, rewrites) the parity of `stripe`, keeping what it found for
/// the caller of the core's scrub. A member failing under it is reported by `execute`,
/// and the core's redo scrubs the stripe again degraded.
fn scrub(volume: &Volume, findings: &ScrubFindings, stripe: u64, repair: bool) -> MemberOutcome {
    let mode = if repair { Mode::Repair } else { Mode::Check };
    let mut report = crate::scrub::new_report(volume, volume.parity_engine());
    let found = volume
        .scrub_stripe(stripe, mode, &mut report)
        .map(|()| report)
        .map_err(|error| error.to_string());
    lock(findings).insert(stripe, found);
    MemberOutcome::Written
}

/// The volume could not work around a member error: blame a member the core does not yet
/// know as failed on `stripe` (one the volume marked, else the lowest), so the core's
/// redo either works degraded or fails the request once more members are out than the
/// parity covers.
fn failure(volume: &Volume, stripe: u64, known_failed: u32, error: &BlockError) -> MemberOutcome {
    let known = MemberSet::from_bits(known_failed);
    let members = volume.geometry().members();
    let member = volume
        .failed_for_stripe(stripe)
        .iter()
        .find(|&member| !known.contains(member))
        .or_else(|| (0..members).find(|&member| !known.contains(member)))
        .unwrap_or(0);
    tracing::warn!(member, %error, "member I/O failed");
    MemberOutcome::Failed { member }
}
