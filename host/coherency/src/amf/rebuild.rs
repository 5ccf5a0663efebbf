//! Online rebuild through the cluster, and what it asks of every grant.
//!
//! A rebuild is a fact of the fabric's total order, like a member failure. The AMF that
//! begins it broadcasts `RebuildBegin`; from that point every AMF writes the replacement
//! on the stripes below the rebuild's checkpoint and treats it as failed from the
//! checkpoint on. The AMF that began it (the *driver*) rebuilds a batch of stripes, each
//! under exclusive ownership, keeps them held until its `RebuildProgress` naming the new
//! checkpoint is ordered, and only then answers the acquires it owes on them: whoever
//! takes one of those stripes next sees the checkpoint past it, from the driver's
//! `Reply`, and waits until it has taken that `RebuildProgress` too (already in the
//! order, so it comes). No AMF writes a rebuilt stripe degraded, and none writes a stripe
//! the driver has not rebuilt yet onto the replacement: the replacement holds exactly
//! what the checkpoint claims.
//!
//! The rebuild ends at the last stripe (the member is back in service at every AMF at
//! that point of the order), or when the replacement fails (`MemberFailed` of the
//! member), or when a port joins: a joiner never saw the `RebuildBegin`, so it would
//! write the stripes below the checkpoint degraded. The driver begins again from stripe
//! 0 after a join, with the joiner in. If the driver dies, the oldest live AMF goes on
//! from the checkpoint everyone shares (the dead driver's announced progress is
//! delivered to every survivor before its death).

use super::{Amf, Mutation, OpKind, OpState};
use crate::message::{Message, RebuildId, RebuildView};
use std::collections::BTreeSet;

/// Stripes the driver rebuilds (and holds) at once, between two `RebuildProgress`.
pub const REBUILD_BATCH_STRIPES: u64 = 8;

/// A rebuild this AMF follows.
#[derive(Clone, Debug)]
pub(super) struct Rebuild {
    pub(super) id: RebuildId,
    pub(super) member: u32,
    pub(super) replacement: Vec<u8>,
    /// Stripes below this are rebuilt, as of this point of the order.
    pub(super) next_stripe: u64,
    /// The AMF rebuilding the stripes.
    pub(super) driver: u8,
    /// The driver's batch: rebuild ops still to finish before its `RebuildProgress`.
    pub(super) batch_left: u32,
    /// The driver's batch ends here (its `RebuildProgress` names it).
    pub(super) batch_end: u64,
    /// Counts the driver's batches: ops of an abandoned batch are dropped.
    pub(super) batch: u64,
}

/// A change of the members' states at this point of the fabric's order, which the shell
/// mirrors on its volume before it runs any member I/O the core hands out after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipEvent {
    /// A rebuild of `member` onto `replacement` (a path, as bytes) began; nothing is
    /// rebuilt yet. `driving`: this AMF rebuilds the stripes (and records the checkpoint).
    RebuildBegun {
        member: u32,
        replacement: Vec<u8>,
        driving: bool,
    },
    /// Stripes below `next_stripe` of `member` are rebuilt: in service there. At the
    /// volume's stripe count, the member is back in service.
    RebuildProgress {
        member: u32,
        next_stripe: u64,
        driving: bool,
    },
    /// The rebuild of `member` ended before its end: the member stays failed.
    /// `restarting`: a port joined, and the driver begins the rebuild again from stripe 0
    /// (a `RebuildBegun` follows in the order, unless the driver dies first).
    RebuildStopped {
        member: u32,
        reason: String,
        restarting: bool,
    },
    /// This AMF's `RebuildBegin` was not taken where the order placed it.
    RebuildRefused { member: u32, reason: String },
}

/// Why [`Amf::start_rebuild`] refused at once.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RebuildRefusal {
    #[error("member {0} is not failed: only a failed member is rebuilt")]
    NotFailed(u32),
    #[error("member {0} is being rebuilt already: one rebuild at a time")]
    Busy(u32),
    #[error("replacement path of {0} bytes is empty or too long")]
    BadPath(usize),
}

/// What a grant waits for after a `Reply` that had taken a rebuild's progress on the
/// stripe which this AMF has not: (rebuild, member).
pub(super) type AwaitedRebuild = (RebuildId, u32);

impl Amf {
    /// The members not to be used on `stripe` (bit `m` for member `m`): the failed ones,
    /// less the member being rebuilt where its rebuild has passed.
    pub(super) fn failed_for(&self, stripe: u64) -> u32 {
        match &self.rebuild {
            Some(rebuild) if stripe < rebuild.next_stripe => {
                self.failed_members & !(1 << rebuild.member)
            }
            _ => self.failed_members,
        }
    }

    /// What a `Reply` tells of this AMF's rebuilds.
    pub(super) fn rebuild_view(&self) -> RebuildView {
        RebuildView {
            rebuilding: self
                .rebuild
                .as_ref()
                .map(|rebuild| (rebuild.id, rebuild.member, rebuild.next_stripe)),
            restored: self.last_restored,
        }
    }

    /// The rebuild under way as this AMF knows it: (member, first stripe not rebuilt).
    pub fn rebuild_progress(&self) -> Option<(u32, u64)> {
        self.rebuild
            .as_ref()
            .map(|rebuild| (rebuild.member, rebuild.next_stripe))
    }

    /// Begins an online rebuild of failed `member` onto `replacement` (a path every AMF
    /// opens): broadcasts `RebuildBegin`; [`MembershipEvent::RebuildBegun`] or
    /// [`MembershipEvent::RebuildRefused`] tells where the order took it.
    pub fn start_rebuild(
        &mut self,
        now: u64,
        member: u32,
        replacement: Vec<u8>,
    ) -> Result<(), RebuildRefusal> {
        self.tick(now);
        if replacement.is_empty() || replacement.len() > crate::REPLACEMENT_PATH_BYTES_MAX {
            return Err(RebuildRefusal::BadPath(replacement.len()));
        }
        if member >= 32 || self.failed_members & (1 << member) == 0 {
            return Err(RebuildRefusal::NotFailed(member));
        }
        if let Some(rebuild) = &self.rebuild {
            return Err(RebuildRefusal::Busy(rebuild.member));
        }
        let op_id = self.next_op_id;
        self.next_op_id += 1;
        self.broadcast(&Message::RebuildBegin {
            op_id,
            member,
            replacement,
        });
        Ok(())
    }

    /// `RebuildBegin` from `from` is ordered.
    pub(super) fn rebuild_begun(
        &mut self,
        from: u8,
        op_id: u64,
        member: u32,
        replacement: Vec<u8>,
    ) {
        let own = from == self.config.port;
        let refusal = if member >= 32 || self.failed_members & (1 << member) == 0 {
            Some(format!("member {member} is not failed"))
        } else {
            self.rebuild
                .as_ref()
                .map(|rebuild| format!("member {} is being rebuilt", rebuild.member))
        };
        if let Some(reason) = refusal {
            // Never followed here, as good as over: a `Reply` naming it is not waited
            // for (this AMF did not know the member failed, or follows another rebuild).
            self.rebuilds_over.insert(RebuildId { port: from, op_id });
            if own {
                self.membership_event(MembershipEvent::RebuildRefused { member, reason });
            }
            return;
        }
        self.membership_event(MembershipEvent::RebuildBegun {
            member,
            replacement: replacement.clone(),
            driving: own,
        });
        self.rebuild = Some(Rebuild {
            id: RebuildId { port: from, op_id },
            member,
            replacement,
            next_stripe: 0,
            driver: from,
            batch_left: 0,
            batch_end: 0,
            batch: 0,
        });
        self.resume_rebuild();
    }

    /// `RebuildProgress` is ordered: stripes below `next_stripe` are rebuilt.
    pub(super) fn rebuild_progressed(
        &mut self,
        rebuild_id: RebuildId,
        member: u32,
        next_stripe: u64,
    ) {
        let Some(rebuild) = self
            .rebuild
            .as_mut()
            .filter(|rebuild| rebuild.id == rebuild_id)
        else {
            // The end of a rebuild this AMF did not follow, having the member in service
            // already (it did not know it failed): the member is in service everywhere
            // now, and a `Reply` still naming it failed under that rebuild is lagging
            // (relaying its failure would fail the rebuilt member again).
            if next_stripe >= self.config.stripe_count
                && member < 32
                && self.failed_members & (1 << member) == 0
                && self.rebuilds_over.contains(&rebuild_id)
            {
                self.last_restored = Some((rebuild_id, member));
            }
            return;
        };
        if next_stripe <= rebuild.next_stripe {
            return;
        }
        rebuild.next_stripe = next_stripe.min(self.config.stripe_count);
        let (member, next_stripe, driving) = (
            rebuild.member,
            rebuild.next_stripe,
            rebuild.driver == self.config.port,
        );
        self.membership_event(MembershipEvent::RebuildProgress {
            member,
            next_stripe,
            driving,
        });
        if next_stripe >= self.config.stripe_count {
            self.failed_members &= !(1 << member);
            self.last_restored = Some((rebuild_id, member));
            self.end_rebuild();
        }
        if driving {
            self.release_rebuilt(next_stripe);
            self.resume_rebuild();
        }
        self.recheck_grants();
    }

    /// The rebuild under way stops where the order is (the replacement failed, or a port
    /// joined): the member stays failed at every AMF.
    pub(super) fn stop_rebuild(&mut self, reason: &str) {
        let Some(rebuild) = &self.rebuild else {
            return;
        };
        let member = rebuild.member;
        let restart = (rebuild.driver == self.config.port && reason == JOINED)
            .then(|| rebuild.replacement.clone());
        self.membership_event(MembershipEvent::RebuildStopped {
            member,
            reason: reason.to_owned(),
            restarting: reason == JOINED,
        });
        self.end_rebuild();
        self.release_rebuilt(u64::MAX);
        if let Some(replacement) = restart {
            self.start_rebuild(self.now, member, replacement)
                .expect("the member is failed and no rebuild runs");
        }
        self.recheck_grants();
    }

    fn end_rebuild(&mut self) {
        let rebuild = self.rebuild.take().expect("a rebuild to end");
        self.rebuilds_over.insert(rebuild.id);
    }

    /// The driver died: the oldest live AMF goes on from the checkpoint.
    pub(super) fn rebuild_driver_lost(&mut self, port: u8) {
        let me = self.config.port;
        let oldest = self.live[0];
        let Some(rebuild) = self
            .rebuild
            .as_mut()
            .filter(|rebuild| rebuild.driver == port)
        else {
            return;
        };
        rebuild.driver = oldest;
        if oldest != me {
            return;
        }
        let (member, next_stripe) = (rebuild.member, rebuild.next_stripe);
        self.membership_event(MembershipEvent::RebuildProgress {
            member,
            next_stripe,
            driving: true,
        });
        self.resume_rebuild();
    }

    /// A peer died and its writes are to be completed (the fence): the replays may need
    /// the stripes of the driver's batch, whose last ops wait for the fence to end. A
    /// batch whose `RebuildProgress` is not sent yet is given up (its stripes answer what
    /// they owe with the old checkpoint) and queued again once the fence is over; one
    /// whose `RebuildProgress` is on its way keeps its stripes until that is ordered.
    pub(super) fn abandon_rebuild_batch(&mut self) {
        let me = self.config.port;
        let Some(rebuild) = self.rebuild.as_mut().filter(|rebuild| rebuild.driver == me) else {
            return;
        };
        if rebuild.batch_left == 0 {
            return;
        }
        rebuild.batch_left = 0;
        rebuild.batch_end = rebuild.next_stripe;
        // Its ops still queued or under way are dropped as they come up.
        rebuild.batch += 1;
        self.release_rebuilt(u64::MAX);
    }

    /// The driver queues its next batch, unless one runs, its progress is on its way, or
    /// a fence holds every stripe.
    pub(super) fn resume_rebuild(&mut self) {
        let me = self.config.port;
        let idle = self.dead.is_empty()
            && self.rebuild.as_ref().is_some_and(|rebuild| {
                rebuild.driver == me
                    && rebuild.batch_left == 0
                    && rebuild.batch_end <= rebuild.next_stripe
            });
        if idle {
            self.queue_rebuild_batch();
        }
    }

    /// The driver queues its next batch of stripes, each rebuilt under exclusive ownership.
    fn queue_rebuild_batch(&mut self) {
        let blocks = self.config.stripe_data_blocks;
        let rebuild = self.rebuild.as_mut().expect("a rebuild to drive");
        rebuild.batch += 1;
        let first = rebuild.next_stripe;
        let end = first
            .saturating_add(REBUILD_BATCH_STRIPES)
            .min(self.config.stripe_count);
        rebuild.batch_end = end;
        rebuild.batch_left = (end - first) as u32;
        let kind = OpKind::Rebuild {
            rebuild: rebuild.id,
            member: rebuild.member,
            batch: rebuild.batch,
        };
        for stripe in first..end {
            self.enqueue(stripe, None, 0, 0, blocks, kind.clone(), false);
        }
        for stripe in first..end {
            self.advance(stripe);
        }
    }

    /// Whether a rebuild op of `rebuild_id`'s batch `batch` still belongs to the batch
    /// under way.
    pub(super) fn rebuild_current(&self, rebuild_id: RebuildId, batch: u64) -> bool {
        self.rebuild
            .as_ref()
            .is_some_and(|rebuild| rebuild.id == rebuild_id && rebuild.batch == batch)
    }

    /// Rebuild op `key` wrote its stripe's chunk: it keeps the stripe until the batch's
    /// `RebuildProgress` is ordered; the batch's last one broadcasts it.
    pub(super) fn stripe_rebuilt(&mut self, key: u64) {
        let OpKind::Rebuild { rebuild, batch, .. } = self.ops[&key].kind else {
            unreachable!("a rebuild op");
        };
        if !self.rebuild_current(rebuild, batch) {
            self.finish_op(key);
            return;
        }
        self.ops.get_mut(&key).expect("op").state = OpState::Rebuilt;
        let rebuild = self.rebuild.as_mut().expect("current");
        rebuild.batch_left -= 1;
        if rebuild.batch_left == 0 {
            let message = Message::RebuildProgress {
                rebuild: rebuild.id,
                member: rebuild.member,
                next_stripe: rebuild.batch_end,
            };
            self.broadcast(&message);
        }
        if self.config.mutation == Mutation::ReleaseRebuiltBeforeProgress {
            self.finish_op(key);
        }
    }

    /// Ends the rebuilt ops below `next_stripe`: their stripes answer what they owe.
    fn release_rebuilt(&mut self, next_stripe: u64) {
        let done: Vec<u64> = self
            .ops
            .iter()
            .filter(|(_, op)| op.state == OpState::Rebuilt && op.stripe < next_stripe)
            .map(|(&key, _)| key)
            .collect();
        for key in done {
            self.finish_op(key);
        }
    }

    /// The rebuilds of a `Reply`'s sender that this AMF's grant of `stripe` must wait for:
    /// the sender used the member on the stripe (the checkpoint had passed it, or the
    /// rebuild was over) where this AMF still plans around it. The sender took that in
    /// the order before it answered, so this AMF takes it too, soon.
    pub(super) fn rebuilds_to_await(&self, stripe: u64, view: RebuildView) -> Vec<AwaitedRebuild> {
        if self.config.mutation == Mutation::GrantIgnoresRebuildProgress {
            return Vec::new();
        }
        let mine = self.failed_for(stripe);
        let mut awaited = Vec::new();
        if let Some((rebuild, member, next_stripe)) = view.rebuilding
            && stripe < next_stripe
        {
            awaited.push((rebuild, member));
        }
        if let Some(restored) = view.restored {
            awaited.push(restored);
        }
        awaited.retain(|&(_, member)| member < 32);
        awaited.retain(|awaited| awaits(mine, &self.rebuilds_over, std::slice::from_ref(awaited)));
        awaited
    }

    /// A `Reply`'s failed members that a grant need not wait for: one this AMF saw
    /// rebuilt by the very rebuild the sender still follows (the sender lags behind the
    /// `RebuildProgress` that ended it).
    pub(super) fn lagging_rebuild_member(&self, view: RebuildView) -> u32 {
        match (view.rebuilding, self.last_restored) {
            (Some((rebuild, member, _)), Some(restored)) if restored == (rebuild, member) => {
                1 << member
            }
            _ => 0,
        }
    }

    /// Grants may have waited for what just changed.
    pub(super) fn recheck_grants(&mut self) {
        let granting: Vec<u64> = self
            .stripes
            .iter()
            .filter(|(_, state)| state.acquiring.is_some())
            .map(|(&stripe, _)| stripe)
            .collect();
        for stripe in granting {
            self.check_granted(stripe);
        }
    }

    fn membership_event(&mut self, event: MembershipEvent) {
        self.events.push_back(super::Event::Membership(event));
    }
}

/// Whether a grant still waits for one of `awaited`, on a stripe where this AMF plans
/// around `failed_here`.
pub(super) fn awaits(
    failed_here: u32,
    rebuilds_over: &RebuildsOver,
    awaited: &[AwaitedRebuild],
) -> bool {
    awaited.iter().any(|&(rebuild, member)| {
        failed_here & (1 << member) != 0 && !rebuilds_over.contains(&rebuild)
    })
}

/// Why a rebuild stops at a join.
pub(super) const JOINED: &str = "a port joined the fabric (the rebuild begins again with it)";

/// Rebuilds that ended at this AMF (completed or stopped): a `Reply` naming one is not
/// waited for.
pub(super) type RebuildsOver = BTreeSet<RebuildId>;
