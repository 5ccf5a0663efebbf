//! Member reads and writes a plan asks for, and the checks on the buffers a caller hands
//! back.

use amf_parity::EngineError;

use crate::geometry::{Geometry, Role};
use crate::mapping::Columns;

/// One member read or write: `length` bytes at `member_offset` of `member`'s data area.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemberIo {
    pub member: u32,
    /// What the member's chunk holds in this stripe.
    pub role: Role,
    pub member_offset: u64,
    pub length: u32,
}

impl MemberIo {
    fn end(&self) -> u64 {
        self.member_offset + u64::from(self.length)
    }
}

/// A member write with its bytes, as [`crate::WritePlan::execute_to_vec`] returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberWrite {
    pub io: MemberIo,
    pub bytes: Vec<u8>,
}

/// The caller's buffers do not match the plan.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BufferError {
    #[error("{what}: {actual} buffers given, the plan has {expected}")]
    Count {
        what: &'static str,
        expected: usize,
        actual: usize,
    },
    #[error("{what} buffer {index}: {actual} bytes, the plan needs {expected}")]
    Length {
        what: &'static str,
        index: usize,
        expected: usize,
        actual: usize,
    },
}

/// Why a plan's `execute` or a scrub over one stripe produced nothing usable.
#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    /// The caller's buffers do not match the plan (or the stripe).
    #[error(transparent)]
    Buffer(#[from] BufferError),
    /// The parity engine failed (a card's device error, or a shape the RAID core got
    /// wrong); the output buffers hold unspecified bytes.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Checks one buffer per I/O, each of the I/O's length.
pub(crate) fn check_buffers(
    what: &'static str,
    ios: &[MemberIo],
    lengths: impl ExactSizeIterator<Item = usize>,
) -> Result<(), BufferError> {
    if lengths.len() != ios.len() {
        return Err(BufferError::Count {
            what,
            expected: ios.len(),
            actual: lengths.len(),
        });
    }
    for (index, (io, actual)) in ios.iter().zip(lengths).enumerate() {
        check_length(what, index, io.length as usize, actual)?;
    }
    Ok(())
}

pub(crate) fn check_length(
    what: &'static str,
    index: usize,
    expected: usize,
    actual: usize,
) -> Result<(), BufferError> {
    if actual == expected {
        return Ok(());
    }
    Err(BufferError::Length {
        what,
        index,
        expected,
        actual,
    })
}

/// The I/Os of one stripe, each member's column ranges kept disjoint, adjacent ranges
/// merged into one I/O.
#[derive(Clone, Debug)]
pub(crate) struct IoList {
    geometry: Geometry,
    stripe: u64,
    ios: Vec<MemberIo>,
}

impl IoList {
    pub fn new(geometry: &Geometry, stripe: u64) -> IoList {
        geometry.assert_stripe(stripe);
        IoList {
            geometry: *geometry,
            stripe,
            ios: Vec::new(),
        }
    }

    pub fn as_slice(&self) -> &[MemberIo] {
        &self.ios
    }

    /// Adds `columns` of `role`'s chunk, extending an I/O of that member it follows.
    pub fn push(&mut self, role: Role, columns: Columns) {
        assert!(columns.end <= self.geometry.chunk_bytes());
        let member = self
            .geometry
            .member_of(self.stripe, role)
            .expect("role exists");
        let start = self.geometry.stripe_member_offset(self.stripe) + u64::from(columns.start);
        let end = start + u64::from(columns.length());
        let same_member = |io: &&mut MemberIo| io.member == member;
        assert!(
            !self
                .ios
                .iter_mut()
                .filter(same_member)
                .any(|io| io.member_offset < end && start < io.end()),
            "overlapping I/O on member {member}"
        );
        if let Some(io) = self
            .ios
            .iter_mut()
            .filter(same_member)
            .find(|io| io.end() == start)
        {
            io.length += columns.length();
            assert!(io.length <= self.geometry.chunk_bytes());
            return;
        }
        self.ios.push(MemberIo {
            member,
            role,
            member_offset: start,
            length: columns.length(),
        });
    }

    /// The I/O covering `columns` of `role`'s chunk and where they start inside it.
    ///
    /// # Panics
    /// If no I/O covers them: the plan that built this list is inconsistent.
    pub fn find(&self, role: Role, columns: Columns) -> (usize, usize) {
        let start = self.geometry.stripe_member_offset(self.stripe) + u64::from(columns.start);
        let end = start + u64::from(columns.length());
        let index = self
            .ios
            .iter()
            .position(|io| io.role == role && io.member_offset <= start && end <= io.end())
            .unwrap_or_else(|| panic!("no I/O covers {role:?} {columns:?}"));
        let offset = crate::to_usize(start - self.ios[index].member_offset);
        (index, offset)
    }

    /// The bytes of `buffers` (one per I/O) that hold `columns` of `role`'s chunk.
    pub fn slice<'b>(&self, buffers: &[&'b [u8]], role: Role, columns: Columns) -> &'b [u8] {
        let (index, offset) = self.find(role, columns);
        &buffers[index][offset..offset + columns.length() as usize]
    }
}
