//! A cluster AMF's volume follows the rebuild its coherency core orders: the fabric's
//! order says when the replacement takes the slot, how far the chunks are rebuilt (the
//! member is in service below that checkpoint, failed from it on) and when it is back in
//! service. The shell mirrors each of those points here before it runs any member I/O the
//! core hands out after it, so the volume plans every stripe as the core does.
//!
//! Nothing of a cluster rebuild is recorded in the superblocks until its end: the member
//! stays *failed* there while it runs (see `Volume::persisted_states`). The stripes
//! below the checkpoint are written by every AMF, but only the fabric's order says where
//! the checkpoint is; a checkpoint on disk could be trusted by a later `amf serve` after
//! the cluster moved the rebuild back (a join restarts it from stripe 0). A whole-cluster
//! restart mid-rebuild therefore leaves the member failed, to be rebuilt again.

use super::{RebuildError, RebuildMark, Volume};
use crate::array::Member;
use std::path::Path;
use std::sync::Arc;

impl Volume {
    /// Checks that `member` can be rebuilt onto `replacement` from here and prepares the
    /// replacement (sized, its superblock written for the slot); every AMF opens it when
    /// the fabric orders the rebuild's start ([`Volume::follow_rebuild`]).
    pub fn prepare_cluster_rebuild(
        &self,
        member: u32,
        replacement: &Path,
    ) -> Result<(), RebuildError> {
        let membership = self.membership();
        self.check_rebuildable(&membership, member)?;
        self.check_not_in_use(member, replacement)?;
        // The generation the other members record: the replacement agrees with them
        // (failed in its own slot) until the rebuild's end moves every member on. A newer
        // one would make it the reference, and every other member stale.
        self.prepare_replacement(member, replacement, &membership, membership.generation)?;
        Ok(())
    }

    /// The fabric ordered the rebuild of `member` onto `replacement`: it takes the slot,
    /// in service below the checkpoint (stripe 0: nowhere yet).
    pub fn follow_rebuild(&self, member: u32, replacement: &Path) -> Result<(), RebuildError> {
        let opened = Member::open_with(replacement, true, self.array.caching)?;
        let mut membership = self.membership_mut();
        if !membership.failed.contains(member) {
            return Err(RebuildError::InService { member });
        }
        self.members_mut()[member as usize] = Some(Arc::new(opened));
        membership.rebuild = Some(RebuildMark {
            member,
            next_stripe: 0,
        });
        tracing::info!(member, replacement = %replacement.display(), "cluster rebuild started");
        Ok(())
    }

    /// The fabric ordered `member` rebuilt below `next_stripe`. At the stripe count the
    /// member is back in service: what this AMF wrote to it is synced, then the
    /// superblocks say so.
    pub fn follow_rebuild_progress(
        &self,
        member: u32,
        next_stripe: u64,
    ) -> Result<(), RebuildError> {
        let Some(mark) = self
            .membership()
            .rebuild
            .filter(|mark| mark.member == member)
        else {
            return Err(RebuildError::Stopped {
                member,
                cause: "the replacement failed at this AMF".to_owned(),
            });
        };
        if next_stripe < self.geometry.stripe_count() {
            self.membership_mut().rebuild = Some(RebuildMark {
                member,
                next_stripe,
            });
            return Ok(());
        }
        self.sync_members([member].into_iter().collect())
            .map_err(|error| super::rebuild::stopped(member, &error))?;
        self.advance_rebuild(mark, next_stripe).map(drop)
    }

    /// The fabric ordered the rebuild of `member` stopped: it stays failed.
    pub fn stop_followed_rebuild(&self, member: u32) {
        let mut membership = self.membership_mut();
        if membership.rebuild.is_some_and(|mark| mark.member == member) {
            membership.rebuild = None;
            tracing::warn!(member, "cluster rebuild stopped: the member stays failed");
        }
    }

    /// Rebuilds `member`'s chunk of `stripe` (the core holds the stripe exclusively).
    pub fn rebuild_cluster_stripe(&self, member: u32, stripe: u64) -> Result<(), RebuildError> {
        let _guard = self.locks.lock(stripe);
        self.rebuild_stripe(member, stripe)
    }

    /// Whether `member` is the one being rebuilt onto here.
    pub fn is_rebuilding(&self, member: u32) -> bool {
        self.membership()
            .rebuild
            .is_some_and(|mark| mark.member == member)
    }
}
