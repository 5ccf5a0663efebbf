//! A cluster AMF's rebuild and scrub jobs ([`JobRunner`]): both go through the coherency
//! core, so that every AMF takes them at one point of the fabric's order.
//!
//! * a rebuild is begun here (the replacement prepared, `RebuildBegin` broadcast) and
//!   then driven by the core of the AMF that began it, or of the oldest survivor if that
//!   one dies; the job here follows its progress in the order;
//! * a scrub asks the core for each stripe in turn (shared ownership for a check,
//!   exclusive for a repair), so no AMF writes the stripe while its parity is checked.

use super::cluster::{ClusterRebuildState, ClusterVolume, Input};
use super::member_io::lock;
use crate::scrub::{self, Mode, ScrubError, ScrubReport};
use crate::tasks::JobRunner;
use crate::volume::{RebuildError, RebuildProgress, Volume};
use amf_coherency::Request;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// How often a rebuild job looks at the rebuild's progress in the order.
const REBUILD_POLL: Duration = Duration::from_millis(100);
/// How long a rebuild stopped by a join may take to begin again before the job gives up
/// (the driver begins it again at once, unless it died).
const RESTART_WAIT: Duration = Duration::from_secs(10);

impl JobRunner for ClusterVolume {
    fn volume(&self) -> &Volume {
        self.volume()
    }

    fn begin_rebuild(
        &self,
        member: u32,
        replacement: &Path,
        max_rate_bytes_per_second: Option<u64>,
    ) -> Result<RebuildProgress, RebuildError> {
        if max_rate_bytes_per_second.is_some() {
            return Err(RebuildError::Cluster(
                "--max-rate: a cluster rebuild runs at its driver's pace (no rate limit yet)"
                    .to_owned(),
            ));
        }
        self.volume().prepare_cluster_rebuild(member, replacement)?;
        let (answer, answered) = mpsc::sync_channel(1);
        let left = || RebuildError::Cluster(self.stopped().to_string());
        self.send(Input::Rebuild {
            member,
            replacement: replacement.to_path_buf(),
            answer,
        })
        .map_err(|_| left())?;
        answered
            .recv()
            .map_err(|_| left())?
            .map_err(|reason| RebuildError::Cluster(format!("the cluster refused: {reason}")))?;
        Ok(self.progress(member, 0))
    }

    fn continue_rebuild(
        &self,
        member: u32,
        _stripes: u64,
    ) -> Result<RebuildProgress, RebuildError> {
        std::thread::sleep(REBUILD_POLL);
        let status = self.status();
        let stopped = |cause: String| RebuildError::Stopped { member, cause };
        if let Some(down) = status.down {
            return Err(stopped(format!("this AMF left the cluster: {down}")));
        }
        let Some(rebuild) = status.rebuild.filter(|rebuild| rebuild.member == member) else {
            return Err(stopped("the cluster runs no rebuild of it".to_owned()));
        };
        match rebuild.state {
            ClusterRebuildState::Running => Ok(self.progress(member, rebuild.next_stripe)),
            ClusterRebuildState::Done => Ok(self.progress(member, rebuild.stripes)),
            ClusterRebuildState::Stopped {
                restarting: true, ..
            } if rebuild
                .changed
                .is_some_and(|changed| changed.elapsed() < RESTART_WAIT) =>
            {
                Ok(self.progress(member, 0))
            }
            ClusterRebuildState::Stopped { reason, .. } => Err(stopped(reason)),
        }
    }

    fn after_stop(&self, _progress: &RebuildProgress) -> String {
        "the other AMFs of the cluster carry it on; with none left, it is to be run again"
            .to_owned()
    }

    fn scrub_stripe(
        &self,
        stripe: u64,
        mode: Mode,
        report: &mut ScrubReport,
    ) -> Result<(), ScrubError> {
        let repair = mode == Mode::Repair;
        self.submit(Request::Scrub { stripe, repair })
            .map_err(|error| ScrubError::Volume(error.to_string()))?;
        let found = lock(self.findings())
            .remove(&stripe)
            .ok_or_else(|| ScrubError::Volume(format!("stripe {stripe}: the scrub found nothing")))?
            .map_err(ScrubError::Volume)?;
        scrub::merge(report, found);
        Ok(())
    }
}

impl ClusterVolume {
    fn progress(&self, member: u32, next_stripe: u64) -> RebuildProgress {
        RebuildProgress {
            member,
            next_stripe,
            stripes: self.volume().geometry().stripe_count(),
        }
    }
}
