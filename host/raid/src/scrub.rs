//! Scrub: does a stripe's parity match its data, and setting it right.

use shared_regs::limits::{BLOCK_BYTES, DATA_CHUNKS_MAX};

use crate::geometry::{Geometry, Role};
use crate::io::{BufferError, check_length};

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

    /// Compares P (and Q) of `stripe` with its data. `members[m]` is member `m`'s chunk, or
    /// the same column range of every member's chunk. Works block by block on the stack:
    /// no allocation.
    pub fn check_parity(&self, stripe: u64, members: &[&[u8]]) -> Result<ParityCheck, BufferError> {
        let length = self.check_members(members.iter().map(|buffer| buffer.len()))?;
        let roles = self.roles(stripe);
        let data_chunks = self.data_chunks() as usize;
        let mut p = [0u8; BLOCK_BYTES as usize];
        let mut q = [0u8; BLOCK_BYTES as usize];
        let mut data: [&[u8]; DATA_CHUNKS_MAX as usize] = [&[]; DATA_CHUNKS_MAX as usize];
        let mut check = ParityCheck::default();
        for start in (0..length).step_by(BLOCK_BYTES as usize) {
            let end = length.min(start + BLOCK_BYTES as usize);
            let block = end - start;
            for (source, &member) in data.iter_mut().zip(&roles.data[..data_chunks]) {
                *source = &members[member][start..end];
            }
            let data = &data[..data_chunks];
            let p = &mut p[..block];
            let q = &mut q[..block];
            match roles.q {
                Some(q_member) => {
                    amf_parity::gen_pq(data, p, q);
                    check.q_mismatch |= *q != members[q_member][start..end];
                }
                None => amf_parity::gen_p(data, p),
            }
            check.p_mismatch |= *p != members[roles.p][start..end];
        }
        assert!(roles.q.is_some() || !check.q_mismatch);
        Ok(check)
    }

    /// Recomputes P (and Q) of `stripe` from its data, in place in `members` (as for
    /// [`Geometry::check_parity`]); returns what was wrong before.
    pub fn repair_parity(
        &self,
        stripe: u64,
        members: &mut [&mut [u8]],
    ) -> Result<ParityCheck, BufferError> {
        let before = {
            let view: Vec<&[u8]> = members.iter().map(|buffer| &**buffer).collect();
            self.check_parity(stripe, &view)?
        };
        if before.is_consistent() {
            return Ok(before);
        }
        let mut data: [&[u8]; DATA_CHUNKS_MAX as usize] = [&[]; DATA_CHUNKS_MAX as usize];
        let (mut p, mut q) = (None, None);
        for (member, buffer) in members.iter_mut().enumerate() {
            let member = u32::try_from(member).expect("members fit in u32");
            match self.role(stripe, member) {
                Role::Data(index) => data[index as usize] = &**buffer,
                Role::P => p = Some(&mut **buffer),
                Role::Q => q = Some(&mut **buffer),
            }
        }
        let data = &data[..self.data_chunks() as usize];
        let p = p.expect("every stripe has P");
        match q {
            Some(q) => amf_parity::gen_pq(data, p, q),
            None => amf_parity::gen_p(data, p),
        }
        Ok(before)
    }
}
