//! Online rebuild: a replacement device takes a failed member's slot while the volume
//! serves, and the lost chunks are reconstructed onto it stripe by stripe.
//!
//! The replacement is marked *rebuilding* in every superblock with a checkpoint, the first
//! stripe not yet rebuilt. Below the checkpoint it is a member like any other (reads use
//! it, writes and journal replays write it); from the checkpoint on it is failed. A batch
//! of stripes is rebuilt with all of their stripe locks held, the replacement synced, and
//! only then the checkpoint moved past the batch in the superblocks, so a crash at any
//! moment leaves a checkpoint that claims only chunks that are on the device, and no write
//! ever sees the replacement half in service. `amf serve` resumes from the checkpoint.

use super::{BlockError, Membership, RebuildMark, Step, Volume};
use crate::array::{ArrayError, Member, write_superblock};
use amf_raid::{Columns, MemberSet};
use std::fs::OpenOptions;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a rebuild did not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// No such member slot.
    #[error("member {member}: the array has members 0..{members}")]
    UnknownMember { member: u32, members: u32 },
    /// The member is in service: there is nothing to rebuild.
    #[error("member {member} is active: only a failed or missing member can be rebuilt")]
    InService { member: u32 },
    /// Another rebuild runs.
    #[error("member {running} is being rebuilt already: one rebuild at a time")]
    Busy { running: u32 },
    /// The replacement is another member of this array.
    #[error("replacement {path} is member {member} of this array")]
    InUse { path: PathBuf, member: u32 },
    /// The replacement could not be prepared.
    #[error("replacement: {0}")]
    Replacement(#[from] ArrayError),
    /// The cluster would not begin the rebuild, or this AMF left it.
    #[error("{0}")]
    Cluster(String),
    /// No rebuild is under way.
    #[error("no rebuild is under way")]
    NotRunning,
    /// The rebuild stopped: the replacement or too many other members failed.
    #[error("rebuild of member {member} stopped: {cause}")]
    Stopped { member: u32, cause: String },
}

/// Where a rebuild stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RebuildProgress {
    /// The member slot being rebuilt.
    pub member: u32,
    /// Stripes below this are rebuilt (and recorded so in the superblocks).
    pub next_stripe: u64,
    /// Stripes in the array.
    pub stripes: u64,
}

impl RebuildProgress {
    /// True once every stripe is rebuilt.
    pub fn is_done(&self) -> bool {
        self.next_stripe >= self.stripes
    }
}

impl Volume {
    /// The rebuild under way, if any (one the superblocks recorded is resumed from its
    /// checkpoint).
    pub fn rebuild_progress(&self) -> Option<RebuildProgress> {
        let mark = self.membership().rebuild?;
        Some(self.progress_of(mark))
    }

    fn progress_of(&self, mark: RebuildMark) -> RebuildProgress {
        RebuildProgress {
            member: mark.member,
            next_stripe: mark.next_stripe,
            stripes: self.geometry.stripe_count(),
        }
    }

    /// Puts `replacement` (created or grown to the member size when it is a regular
    /// file) in the slot of failed member `member`, marked rebuilding from stripe 0.
    pub fn begin_rebuild(
        &self,
        member: u32,
        replacement: &Path,
    ) -> Result<RebuildProgress, RebuildError> {
        let mut membership = self.membership_mut();
        self.check_rebuildable(&membership, member)?;
        self.check_not_in_use(member, replacement)?;
        let generation = membership.generation + 1;
        let opened = self.prepare_replacement(member, replacement, &membership, generation)?;
        self.members_mut()[member as usize] = Some(Arc::new(opened));
        let mark = RebuildMark {
            member,
            next_stripe: 0,
        };
        membership.rebuild = Some(mark);
        membership.generation = generation;
        self.commit_membership(&mut membership);
        if membership.rebuild != Some(mark) {
            return Err(RebuildError::Stopped {
                member,
                cause: "its superblock could not be written".to_owned(),
            });
        }
        tracing::info!(member, replacement = %replacement.display(), "rebuild started");
        Ok(self.progress_of(mark))
    }

    pub(super) fn check_rebuildable(
        &self,
        membership: &Membership,
        member: u32,
    ) -> Result<(), RebuildError> {
        let members = self.geometry.members();
        if member >= members {
            return Err(RebuildError::UnknownMember { member, members });
        }
        if let Some(running) = membership.rebuild {
            return Err(RebuildError::Busy {
                running: running.member,
            });
        }
        if !membership.failed.contains(member) {
            return Err(RebuildError::InService { member });
        }
        Ok(())
    }

    /// Refuses a replacement that is the device of another member slot (the failed
    /// member's own device may be rebuilt onto, as after a transient fault).
    pub(super) fn check_not_in_use(
        &self,
        member: u32,
        replacement: &Path,
    ) -> Result<(), RebuildError> {
        let Ok(wanted) = std::fs::metadata(replacement) else {
            return Ok(());
        };
        for index in (0..self.geometry.members()).filter(|&index| index != member) {
            let Some(other) = self.member(index) else {
                continue;
            };
            if other.identity().ok() == Some((wanted.dev(), wanted.ino())) {
                return Err(RebuildError::InUse {
                    path: replacement.to_path_buf(),
                    member: index,
                });
            }
        }
        Ok(())
    }

    /// Sizes the replacement, writes its superblock for slot `member` (the states of
    /// `membership`, under which it is still failed, at `generation`), and opens it.
    pub(super) fn prepare_replacement(
        &self,
        member: u32,
        path: &Path,
        membership: &Membership,
        generation: u64,
    ) -> Result<Member, ArrayError> {
        let context = |source| ArrayError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(context)?;
        let reference = &self.array.superblock;
        let wanted_bytes = reference.data_offset + reference.data_bytes;
        let metadata = file.metadata().map_err(context)?;
        if metadata.is_file() && metadata.len() < wanted_bytes {
            file.set_len(wanted_bytes).map_err(context)?;
        }
        let mut superblock = reference.clone();
        superblock.member_index = member;
        superblock.member_uuid = *uuid::Uuid::new_v4().as_bytes();
        superblock.generation = generation;
        superblock.member_states = self.persisted_states(membership);
        superblock.rebuild_next_stripe = 0;
        write_superblock(&file, path, &superblock)?;
        drop(file);
        Member::open_with(path, true, self.array.caching)
    }

    /// Rebuilds up to `stripes` stripes from the checkpoint, syncs the replacement and
    /// moves the checkpoint; the last batch puts the member back in service.
    pub fn rebuild_batch(&self, stripes: u64) -> Result<RebuildProgress, RebuildError> {
        let mark = self.membership().rebuild.ok_or(RebuildError::NotRunning)?;
        let first = mark.next_stripe;
        let end = first
            .saturating_add(stripes.max(1))
            .min(self.geometry.stripe_count());
        let _guards: Vec<_> = (first..end).map(|stripe| self.locks.lock(stripe)).collect();
        for stripe in first..end {
            self.rebuild_stripe(mark.member, stripe)?;
        }
        self.sync_members([mark.member].into_iter().collect())
            .map_err(|error| stopped(mark.member, &error))?;
        self.advance_rebuild(mark, end)
    }

    /// Reconstructs `member`'s chunk of `stripe` from the others and writes it; the
    /// caller holds the stripe.
    pub(super) fn rebuild_stripe(&self, member: u32, stripe: u64) -> Result<(), RebuildError> {
        let whole = Columns::new(0, self.geometry.chunk_bytes());
        for _ in 0..=self.geometry.members() {
            let (failed, _) = self.snapshot_for(stripe);
            self.check_failed(failed)
                .map_err(|error| stopped(member, &error))?;
            if !self.membership().in_service(member) {
                return Err(RebuildError::Stopped {
                    member,
                    cause: "the replacement failed".to_owned(),
                });
            }
            let plan = self
                .geometry
                .plan_rebuild(stripe, member, whole, failed)
                .map_err(|error| RebuildError::Stopped {
                    member,
                    cause: error.to_string(),
                })?;
            let reads = match self.read_members(plan.reads()) {
                Ok(reads) => reads,
                Err(Step::Retry) => continue,
                Err(Step::Fail(error)) => return Err(stopped(member, &error)),
            };
            let views: Vec<&[u8]> = reads.iter().map(Vec::as_slice).collect();
            let mut chunk = vec![0u8; whole.length() as usize];
            plan.execute(&views, &mut chunk)
                .unwrap_or_else(|error| panic!("buffers sized from the plan: {error}"));
            let mut touched = MemberSet::new();
            self.write_member(&plan.write(), &chunk, &mut touched);
            if !touched.contains(member) {
                return Err(RebuildError::Stopped {
                    member,
                    cause: "writing the replacement failed".to_owned(),
                });
            }
            return Ok(());
        }
        Err(RebuildError::Stopped {
            member,
            cause: "members kept failing under the rebuild".to_owned(),
        })
    }

    /// Records the checkpoint `next_stripe` (and, at the end, the member back in service).
    pub(super) fn advance_rebuild(
        &self,
        mark: RebuildMark,
        next_stripe: u64,
    ) -> Result<RebuildProgress, RebuildError> {
        let mut membership = self.membership_mut();
        if membership.rebuild != Some(mark) {
            return Err(RebuildError::Stopped {
                member: mark.member,
                cause: "the replacement failed".to_owned(),
            });
        }
        let progress = RebuildProgress {
            member: mark.member,
            next_stripe,
            stripes: self.geometry.stripe_count(),
        };
        if progress.is_done() {
            membership.rebuild = None;
            membership.failed.remove(mark.member);
            membership.generation += 1;
            tracing::info!(member = mark.member, "rebuild complete: member in service");
        } else {
            membership.rebuild = Some(RebuildMark {
                member: mark.member,
                next_stripe,
            });
        }
        self.commit_membership(&mut membership);
        if membership.failed.contains(mark.member) && membership.rebuild.is_none() {
            return Err(RebuildError::Stopped {
                member: mark.member,
                cause: "its superblock could not be written".to_owned(),
            });
        }
        Ok(progress)
    }
}

pub(super) fn stopped(member: u32, error: &BlockError) -> RebuildError {
    RebuildError::Stopped {
        member,
        cause: error.to_string(),
    }
}
