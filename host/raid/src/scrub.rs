//! Scrub: does a stripe's parity match its data, and setting it right. The parity is
//! computed by the caller's [`ParityEngine`], the host's or the card's.

use amf_parity::ParityEngine;
use shared_regs::limits::DATA_CHUNKS_MAX;

use crate::geometry::Geometry;
use crate::io::{BufferError, ComputeError, check_length};

/// Which parity chunks disagree with the data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ParityCheck {
    pub p_mismatch: bool,
    /// Always false on RAID-5.
    pub q_mismatch: bool,
}

impl ParityCheck {
    pub fn is_consistent(&self) -> bool {
        !self.p_mismatch && !self.q_mismatch
    }
}

/// Members by role for one stripe: data members in index order, then P and Q.
struct Roles {
    data: [usize; DATA_CHUNKS_MAX as usize],
    p: usize,
    q: Option<usize>,
}

impl Geometry {
    fn roles(&self, stripe: u64) -> Roles {
        let mut roles = Roles {
            data: [0; DATA_CHUNKS_MAX as usize],
            p: self.p_member(stripe) as usize,
            q: self.q_member(stripe).map(|q| q as usize),
        };
        for index in 0..self.data_chunks() {
            roles.data[index as usize] = self.data_member(stripe, index) as usize;
        }
        roles
    }

    /// One buffer per member, in member order, all of one non-zero length; returns it.
    fn check_members(
        &self,
        lengths: impl ExactSizeIterator<Item = usize>,
    ) -> Result<usize, BufferError> {
        let members = self.members() as usize;
        if lengths.len() != members {
            return Err(BufferError::Count {
                what: "member",
                expected: members,
                actual: lengths.len(),
            });
        }
        let mut expected = None;
        for (index, length) in lengths.enumerate() {
            let first = *expected.get_or_insert(length.max(1));
            check_length("member", index, first, length)?;
        }
        Ok(expected.expect("at least one member"))
    }

    /// P (and Q) of `stripe` computed afresh from the data in `members` by `engine`.
    fn fresh_parity(
        &self,
        engine: &mut dyn ParityEngine,
        stripe: u64,
        members: &[&[u8]],
    ) -> Result<FreshParity, ComputeError> {
        let length = self.check_members(members.iter().map(|buffer| buffer.len()))?;
        let roles = self.roles(stripe);
        let data_chunks = self.data_chunks() as usize;
        let mut data: [&[u8]; DATA_CHUNKS_MAX as usize] = [&[]; DATA_CHUNKS_MAX as usize];
        for (source, &member) in data.iter_mut().zip(&roles.data[..data_chunks]) {
            *source = members[member];
        }
        let mut p = vec![0u8; length];
        let mut q = roles.q.map(|_| vec![0u8; length]);
        engine.compute(&data[..data_chunks], &mut p, q.as_deref_mut())?;
        Ok(FreshParity { roles, p, q })
    }

    /// Compares P (and Q) of `stripe` with its data. `members[m]` is member `m`'s chunk, or
    /// the same column range of every member's chunk.
    ///
    /// `engine` computes the parity over the whole range in one call, into two buffers
    /// allocated here: a card then gets one job that it splits and keeps its ring full
    /// with, not one round trip per 4 KiB block, and a scrub can afford the allocation.
    pub fn check_parity(
        &self,
        engine: &mut dyn ParityEngine,
        stripe: u64,
        members: &[&[u8]],
    ) -> Result<ParityCheck, ComputeError> {
        let fresh = self.fresh_parity(engine, stripe, members)?;
        Ok(fresh.compare(|member| members[member]))
    }

    /// Recomputes P (and Q) of `stripe` from its data with `engine` (as for
    /// [`Geometry::check_parity`]) and, where they differ, writes them into `members`;
    /// returns what was wrong before. On an engine error `members` is unchanged.
    pub fn repair_parity(
        &self,
        engine: &mut dyn ParityEngine,
        stripe: u64,
        members: &mut [&mut [u8]],
    ) -> Result<ParityCheck, ComputeError> {
        let fresh = {
            let view: Vec<&[u8]> = members.iter().map(|buffer| &**buffer).collect();
            self.fresh_parity(engine, stripe, &view)?
        };
        let before = fresh.compare(|member| &*members[member]);
        if before.p_mismatch {
            members[fresh.roles.p].copy_from_slice(&fresh.p);
        }
        if let (true, Some(member), Some(q)) = (before.q_mismatch, fresh.roles.q, &fresh.q) {
            members[member].copy_from_slice(q);
        }
        assert!(fresh.compare(|member| &*members[member]).is_consistent());
        Ok(before)
    }
}

/// Parity computed from a stripe's data, to compare with (or replace) what the members hold.
struct FreshParity {
    roles: Roles,
    p: Vec<u8>,
    /// Present exactly on RAID-6.
    q: Option<Vec<u8>>,
}

impl FreshParity {
    /// Which parity differs from the members' (`member(m)` is member `m`'s buffer).
    fn compare<'m>(&self, member: impl Fn(usize) -> &'m [u8]) -> ParityCheck {
        assert_eq!(self.roles.q.is_some(), self.q.is_some());
        let q_mismatch = match (self.roles.q, &self.q) {
            (Some(q_member), Some(q)) => *q != member(q_member),
            _ => false,
        };
        ParityCheck {
            p_mismatch: *self.p != *member(self.roles.p),
            q_mismatch,
        }
    }
}
