//! Member I/O and what a failing member does to the volume: it is marked failed, the
//! surviving members' superblocks are rewritten with a bumped generation, and the request
//! starts over (before its member writes) or goes on without it (during them).

use super::{Membership, Step, Store, Volume};
use crate::array::write_superblock;
use crate::block::BlockError;
use crate::format::MemberState;
use amf_raid::{MemberIo, MemberSet};
use std::fs::OpenOptions;
use std::sync::atomic::Ordering;

/// An error and its causes on one line, each said once.
pub(crate) use amf_fabric::error_chain as chain;

impl Volume {
    /// Self-fencing: from now on this AMF changes no member (no data, parity or
    /// superblock write), so a cluster AMF whose fabric link died — a survivor may be
    /// completing its writes already — cannot write old data over newer. Writes in
    /// progress stop before their next member write and fail. Only a new incarnation on
    /// the fabric writes again ([`Volume::unfence`]).
    pub fn fence(&self, why: &str) {
        if !self.fenced.swap(true, Ordering::AcqRel) {
            tracing::error!(why, "fenced: no more member writes from this incarnation");
        }
    }

    /// Lifts the fence for a new incarnation of this AMF on the fabric: the incarnation
    /// that was fenced has no member I/O left (its workers ended), and the new one starts
    /// by resyncing the stripes its unfinished writes name.
    pub fn unfence(&self) {
        if self.fenced.swap(false, Ordering::AcqRel) {
            tracing::info!("fence lifted: a new incarnation writes the members");
        }
    }

    /// Whether [`Volume::fence`] was called (and not lifted since).
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    pub(super) fn check_fenced(&self) -> Result<(), BlockError> {
        if self.is_fenced() {
            return Err(BlockError::Io(
                "this AMF is fenced: it may no longer change a member".into(),
            ));
        }
        Ok(())
    }

    /// Fails every member of `members` not failed here yet: another AMF failed them, and
    /// the fabric's order says so (a cluster AMF's `MemberFailed`); their superblocks
    /// and the generation follow, as for a failure met here.
    pub fn adopt_failed(&self, members: MemberSet) {
        let failed = self.failed_members();
        for member in members.iter().filter(|&member| !failed.contains(member)) {
            self.fail_member(
                member,
                "failed by another AMF (MemberFailed in the fabric's order)",
            );
        }
    }

    /// Reads one member I/O; a failure marks the member failed and asks for a retry.
    pub(super) fn read_member(&self, io: &MemberIo, buffer: &mut [u8]) -> Result<(), Step> {
        let Some(member) = self.member(io.member) else {
            self.fail_member(io.member, "not present");
            return Err(Step::Retry);
        };
        match member.read_data(io.member_offset, buffer) {
            Ok(()) => Ok(()),
            Err(error) => {
                self.fail_member(io.member, &chain(&error));
                Err(Step::Retry)
            }
        }
    }

    /// Writes one member I/O; a failure marks the member failed (its new contents live on
    /// in the parity written beside it).
    pub(super) fn write_member(&self, io: &MemberIo, bytes: &[u8], touched: &mut MemberSet) {
        if self.is_fenced() {
            // Not the member's fault: the caller fails the write with `check_fenced`.
            return;
        }
        let result = match self.member(io.member) {
            Some(member) => member
                .write_data(io.member_offset, bytes)
                .map_err(|error| chain(&error)),
            None => Err("not present".to_owned()),
        };
        match result {
            Ok(()) => {
                self.unsynced[io.member as usize].store(true, Ordering::Release);
                touched.insert(io.member);
            }
            Err(cause) => self.fail_member(io.member, &cause),
        }
    }

    /// `fdatasync` of every member in service, whether or not this process wrote it: a
    /// cluster AMF's FLUSH must cover the writes its peers completed on the shared
    /// members (one page cache per member file on one host).
    pub fn sync_every_member(&self) -> Result<(), BlockError> {
        for unsynced in &self.unsynced {
            unsynced.store(true, Ordering::Release);
        }
        let all: MemberSet = (0..self.geometry.members()).collect();
        self.sync_members(all)
    }

    /// `fdatasync` of the members in `members` that have unsynced writes.
    pub(super) fn sync_members(&self, members: MemberSet) -> Result<(), BlockError> {
        for index in members.iter() {
            if !self.unsynced[index as usize].swap(false, Ordering::AcqRel) {
                continue;
            }
            if !self.membership().in_service(index) {
                continue;
            }
            let Some(member) = self.member(index) else {
                continue;
            };
            if let Err(error) = member.sync() {
                self.fail_member(index, &chain(&error));
            }
        }
        let (failed, _) = self.snapshot();
        self.check_failed(failed)
    }

    /// Marks `index` failed, bumps the generation and rewrites the superblocks of the
    /// members still in service; a member whose superblock cannot be written fails too.
    pub(super) fn fail_member(&self, index: u32, cause: &str) {
        if self.is_fenced() {
            return;
        }
        let mut membership = self.membership_mut();
        if !membership.in_service(index) {
            return;
        }
        if membership.rebuild.is_some_and(|mark| mark.member == index) {
            tracing::error!(member = index, %cause, "the member being rebuilt failed: rebuild stopped");
            membership.rebuild = None;
        } else {
            tracing::error!(member = index, %cause, "member failed; the volume goes on degraded");
        }
        membership.failed.insert(index);
        membership.generation += 1;
        self.commit_membership(&mut membership);
        let failed = membership.failed;
        if failed.count() > self.geometry.parity_count() {
            tracing::error!(
                failed = failed.count(),
                "more members failed than parity covers: the volume refuses I/O"
            );
        }
    }

    /// Records `membership` in the superblocks of the members in service; a member that
    /// refuses fails too (and the generation moves on again).
    pub(super) fn commit_membership(&self, membership: &mut Membership) {
        while let Some(also) = self.rewrite_superblocks(membership) {
            tracing::error!(
                member = also,
                "member failed: its superblock could not be rewritten"
            );
            if membership.rebuild.is_some_and(|mark| mark.member == also) {
                membership.rebuild = None;
            }
            membership.failed.insert(also);
            membership.generation += 1;
        }
    }

    /// Every member's state as the superblocks record it. A cluster's rebuild is
    /// recorded as the member failed: only the fabric's order knows its checkpoint (see
    /// `follow`).
    pub(super) fn persisted_states(&self, membership: &Membership) -> Vec<MemberState> {
        (0..self.geometry.members())
            .map(|index| match membership.rebuild {
                Some(mark) if mark.member == index && !matches!(self.store, Store::Peers) => {
                    MemberState::Rebuilding
                }
                _ if membership.failed.contains(index) => MemberState::Failed,
                _ => MemberState::Active,
            })
            .collect()
    }

    /// Writes the generation, member states and rebuild checkpoint to every member in
    /// service; returns the first member that refused.
    fn rewrite_superblocks(&self, membership: &Membership) -> Option<u32> {
        let states = self.persisted_states(membership);
        let checkpoint = match self.store {
            Store::Peers => 0,
            _ => membership.rebuild.map_or(0, |mark| mark.next_stripe),
        };
        for index in 0..self.geometry.members() {
            if !membership.in_service(index) {
                continue;
            }
            let Some(member) = self.member(index) else {
                return Some(index);
            };
            let mut superblock = member.superblock.clone();
            superblock.generation = membership.generation;
            superblock.member_states = states.clone();
            superblock.rebuild_next_stripe = checkpoint;
            let written = OpenOptions::new()
                .write(true)
                .open(&member.path)
                .map_err(|error| error.to_string())
                .and_then(|file| {
                    write_superblock(&file, &member.path, &superblock).map_err(|e| chain(&e))
                });
            if let Err(cause) = written {
                tracing::error!(member = index, %cause, "rewriting the superblock failed");
                return Some(index);
            }
        }
        None
    }
}
