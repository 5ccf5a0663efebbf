//! Riding through the loss of the fabric link (the fabric process died or restarts, or
//! the link broke): the AMF does not leave the cluster for good. It fences itself (no
//! member write from the incarnation that lost the link), lets its member workers end,
//! holds the requests it had and those that come, and tries the fabric again, backing
//! off up to [`RETRY_MAX_MS`]. Back on a fabric it joins as a new incarnation, exactly
//! as a restarted process would: its core starts at the welcome and resyncs the stripes
//! its own records in the card's SRAM name (writes that may be torn), the fence is
//! lifted, and the held requests go to the new core. None of them was acknowledged, so
//! doing them again is a write that takes effect late, which linearizability allows.
//!
//! If the fabric did not die but declared this AMF dead, it fenced the AMF first (with the
//! default agent the process is killed, so this code never runs); a survivor completes
//! its writes, and the fabric holds the new incarnation's join until it is done.
//!
//! Requests held longer than [`OUTAGE_HOLD_MS`] fail with an I/O error naming the
//! outage; the AMF keeps trying to rejoin, and serves again once it has.

use super::{ClusterRebuildState, Driver, DriverError, FabricOutage, Input, join_fabric, lock};
use std::time::{Duration, Instant};

/// How long requests wait for the fabric to come back before they fail.
const OUTAGE_HOLD_MS: u64 = 30_000;
/// The first wait between attempts to reach the fabric; each next one doubles.
const RETRY_FIRST_MS: u64 = 20;
/// The longest wait between attempts.
const RETRY_MAX_MS: u64 = 500;

impl Driver {
    /// The fabric link is lost: fence, hold, rejoin as a new incarnation; see the
    /// [module docs](self). False when told to stop before the fabric came back.
    pub(super) fn rejoin(&mut self) -> Result<bool, DriverError> {
        let reason = self
            .card
            .as_ref()
            .and_then(|card| card.backend().fabric_link_error().ok().flatten())
            .unwrap_or_else(|| "the fabric link went down".to_owned());
        self.volume.fence(&format!(
            "{reason}: rejoining the fabric as a new incarnation"
        ));
        tracing::warn!(port = self.config.port, %reason, "fabric link lost: holding requests, rejoining");
        let lost = Instant::now();
        lock(&self.status).outage = Some(FabricOutage {
            since_unix_ms: unix_ms(),
            reason: reason.clone(),
            attempts: 0,
        });
        // No completion of the old incarnation's member I/O may reach the new core.
        self.workers.restart();
        // Its member writes have ended: the card may go (and free its SRAM file).
        self.card = None;
        self.forget_rebuild(&reason);
        let mut wait_ms = RETRY_FIRST_MS;
        let mut attempts = 0u64;
        let joined = loop {
            if !self.hold_inputs(lost, &reason) {
                return Ok(false);
            }
            attempts += 1;
            match join_fabric(&self.config, &self.volume) {
                Ok(joined) => break joined,
                Err(error) => {
                    tracing::debug!(attempts, %error, "the fabric is not back yet");
                    if let Some(outage) = lock(&self.status).outage.as_mut() {
                        outage.attempts = attempts;
                    }
                    std::thread::sleep(Duration::from_millis(wait_ms));
                    wait_ms = (wait_ms * 2).min(RETRY_MAX_MS);
                }
            }
        };
        let (card, node) = joined;
        (self.card, self.node) = (Some(card), node);
        self.volume.unfence();
        lock(&self.status).outage = None;
        tracing::info!(
            port = self.config.port,
            outage_ms = lost.elapsed().as_millis() as u64,
            attempts,
            held = self.waiting.len() + self.backlog.len(),
            "rejoined the fabric: serving again"
        );
        self.resubmit();
        Ok(true)
    }

    /// Takes what came in while away: requests wait (or, once the outage is longer than
    /// [`OUTAGE_HOLD_MS`], fail with everything held); false on `Stop`.
    fn hold_inputs(&mut self, lost: Instant, reason: &str) -> bool {
        for input in self.inputs.try_iter().collect::<Vec<_>>() {
            match input {
                Input::Request { request, answer } => self.backlog.push_back((request, answer)),
                Input::Rebuild { answer, .. } => {
                    let _ = answer.send(Err(format!("no fabric: {reason}")));
                }
                // The workers were restarted before the old core was dropped: nothing
                // completes for it any more.
                Input::Completed { .. } => {}
                Input::Stop => {
                    self.stopping = true;
                    return false;
                }
            }
        }
        if lost.elapsed() >= Duration::from_millis(OUTAGE_HOLD_MS) {
            self.fail_held(&format!(
                "no fabric for {} s ({reason}): this AMF is rejoining",
                lost.elapsed().as_secs()
            ));
        }
        true
    }

    /// The old incarnation's rebuild is over here: the new core follows none, and the
    /// volume writes the replacement no more.
    fn forget_rebuild(&mut self, reason: &str) {
        let mut status = lock(&self.status);
        let Some(rebuild) = status.rebuild.as_mut() else {
            return;
        };
        if rebuild.state == ClusterRebuildState::Running {
            self.volume.stop_followed_rebuild(rebuild.member);
            rebuild.state = ClusterRebuildState::Stopped {
                reason: format!("the fabric link was lost: {reason}"),
                restarting: false,
            };
            rebuild.changed = Some(Instant::now());
        }
        drop(status);
        if let Some((_, answer)) = self.rebuild_answer.take() {
            let _ = answer.send(Err(format!("the fabric link was lost: {reason}")));
        }
    }

    /// Gives the held requests, oldest first, to the new incarnation's core.
    fn resubmit(&mut self) {
        let now = self.now_ms();
        let waiting = std::mem::take(&mut self.waiting).into_values();
        let backlog = std::mem::take(&mut self.backlog);
        for (request, answer) in waiting.chain(backlog).collect::<Vec<_>>() {
            self.admit(now, request, answer);
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}
