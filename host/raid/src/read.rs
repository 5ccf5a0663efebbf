//! Read planning, healthy and degraded, and rebuilding one member's chunk.

use crate::faults::{PlanError, StripeFaults};
use crate::geometry::{Geometry, Role};
use crate::io::{BufferError, IoList, MemberIo, check_buffers, check_length};
use crate::mapping::{Columns, Pieces, StripeExtent};
use crate::member_set::MemberSet;
use crate::reconstruct;

/// The member reads that return one stripe extent; see [`Geometry::plan_read`].
#[derive(Clone, Debug)]
pub struct ReadPlan {
    geometry: Geometry,
    extent: StripeExtent,
    faults: StripeFaults,
    /// The columns rebuilt for the pieces on failed members: the hull of their columns.
    rebuilt: Option<Columns>,
    reads: IoList,
}

impl Geometry {
    /// Plans reading `extent` while the members in `failed` are gone.
    ///
    /// Pieces on surviving members are read as they are. If a piece sits on a failed
    /// member, the hull of the lost pieces' columns is rebuilt: every surviving data chunk
    /// and enough parity are read over it too (merged with the pieces' own reads).
    pub fn plan_read(
        &self,
        extent: &StripeExtent,
        failed: MemberSet,
    ) -> Result<ReadPlan, PlanError> {
        let faults = StripeFaults::of(self, extent.stripe(), failed)?;
        let pieces = self.pieces(extent);
        let rebuilt = pieces
            .clone()
            .filter(|piece| !faults.data_alive(piece.data_index))
            .map(|piece| piece.columns)
            .reduce(Columns::hull);
        let mut reads = IoList::new(self, extent.stripe());
        match rebuilt {
            None => {
                for piece in pieces {
                    reads.push(Role::Data(piece.data_index), piece.columns);
                }
                assert!(reads.as_slice().len() as u32 <= self.data_chunks());
            }
            Some(rebuilt) => push_degraded_reads(self, &faults, pieces, rebuilt, &mut reads),
        }
        assert!(
            reads
                .as_slice()
                .iter()
                .all(|io| !failed.contains(io.member))
        );
        Ok(ReadPlan {
            geometry: *self,
            extent: *extent,
            faults,
            rebuilt,
            reads,
        })
    }
}

/// Reads for a degraded extent: each surviving data chunk over its wanted piece and the
/// `rebuilt` columns (one read when they meet), and the parity the rebuild needs.
fn push_degraded_reads(
    geometry: &Geometry,
    faults: &StripeFaults,
    pieces: Pieces,
    rebuilt: Columns,
    reads: &mut IoList,
) {
    for slot in 0..geometry.members() as usize {
        let role = geometry.role_of_slot(slot);
        if !reconstruct::is_source(geometry, faults, role) {
            continue;
        }
        let wanted = match role {
            Role::Data(index) => pieces.clone().find(|piece| piece.data_index == index),
            Role::P | Role::Q => None,
        };
        for columns in union(wanted.map(|piece| piece.columns), Some(rebuilt)) {
            reads.push(role, columns);
        }
    }
}

/// The union of two optional column ranges, as at most two disjoint, non-adjacent
/// ranges in column order.
fn union(first: Option<Columns>, second: Option<Columns>) -> impl Iterator<Item = Columns> {
    let merged = match (first, second) {
        (Some(a), Some(b)) if a.start <= b.end && b.start <= a.end => [Some(a.hull(b)), None],
        (Some(a), Some(b)) if a.start < b.start => [Some(a), Some(b)],
        (Some(a), Some(b)) => [Some(b), Some(a)],
        (a, b) => [a.or(b), None],
    };
    merged.into_iter().flatten()
}

impl ReadPlan {
    pub fn extent(&self) -> &StripeExtent {
        &self.extent
    }

    /// The member reads to perform, in the order [`ReadPlan::execute`] wants their
    /// buffers. Never a failed member.
    pub fn reads(&self) -> &[MemberIo] {
        self.reads.as_slice()
    }

    /// True when no member is rebuilt: then the reads are the extent's pieces in order,
    /// and reading them straight into consecutive parts of the output buffer is the
    /// whole read (no need to call [`ReadPlan::execute`]).
    pub fn is_direct(&self) -> bool {
        self.rebuilt.is_none()
    }

    /// Fills `out` (the extent's length) from the read buffers, one per
    /// [`ReadPlan::reads`] entry.
    pub fn execute(&self, reads: &[&[u8]], out: &mut [u8]) -> Result<(), BufferError> {
        check_buffers(
            "read",
            self.reads(),
            reads.iter().map(|buffer| buffer.len()),
        )?;
        check_length(
            "output",
            0,
            crate::to_usize(self.extent.length()),
            out.len(),
        )?;
        let recovered = self.rebuilt.map(|columns| {
            let chunks = reconstruct::recover_columns(
                &self.geometry,
                &self.faults,
                columns,
                &self.reads,
                reads,
            );
            (columns, chunks)
        });
        for piece in self.geometry.pieces(&self.extent) {
            let length = piece.columns.length() as usize;
            let start = crate::to_usize(piece.extent_offset);
            let target = &mut out[start..start + length];
            let role = Role::Data(piece.data_index);
            if self.faults.alive(role) {
                target.copy_from_slice(self.reads.slice(reads, role, piece.columns));
                continue;
            }
            let (columns, chunks) = recovered.as_ref().expect("a lost piece is rebuilt");
            assert!(columns.contains(piece.columns));
            let chunk_length = columns.length() as usize;
            let chunk = &chunks[piece.data_index as usize * chunk_length..][..chunk_length];
            let offset = (piece.columns.start - columns.start) as usize;
            target.copy_from_slice(&chunk[offset..offset + length]);
        }
        Ok(())
    }
}

/// The reads that rebuild one member's chunk over some columns; see
/// [`Geometry::plan_rebuild`].
#[derive(Clone, Debug)]
pub struct RebuildPlan {
    geometry: Geometry,
    faults: StripeFaults,
    role: Role,
    columns: Columns,
    target: MemberIo,
    reads: IoList,
}

impl Geometry {
    /// Plans rebuilding `columns` of `member`'s chunk in `stripe`, e.g. onto a replacement.
    /// `member` counts as failed whether or not `failed` holds it.
    ///
    /// # Panics
    /// If `stripe` is out of range or `columns` extend beyond the chunk.
    pub fn plan_rebuild(
        &self,
        stripe: u64,
        member: u32,
        columns: Columns,
        failed: MemberSet,
    ) -> Result<RebuildPlan, PlanError> {
        assert!(
            columns.end <= self.chunk_bytes(),
            "columns beyond the chunk"
        );
        if member >= self.members() {
            return Err(PlanError::UnknownMember {
                member,
                members: self.members(),
            });
        }
        let mut failed = failed;
        failed.insert(member);
        let faults = StripeFaults::of(self, stripe, failed)?;
        let role = self.role(stripe, member);
        let mut reads = IoList::new(self, stripe);
        reconstruct::push_sources(self, &faults, columns, &mut reads);
        assert!(
            reads
                .as_slice()
                .iter()
                .all(|io| !failed.contains(io.member))
        );
        let target = MemberIo {
            member,
            role,
            member_offset: self.stripe_member_offset(stripe) + u64::from(columns.start),
            length: columns.length(),
        };
        Ok(RebuildPlan {
            geometry: *self,
            faults,
            role,
            columns,
            target,
            reads,
        })
    }
}

impl RebuildPlan {
    /// The member reads to perform, in the order [`RebuildPlan::execute`] wants them.
    pub fn reads(&self) -> &[MemberIo] {
        self.reads.as_slice()
    }

    /// The write that puts the rebuilt bytes on the member.
    pub fn write(&self) -> MemberIo {
        self.target
    }

    /// Fills `out` (the target's length) from the read buffers.
    pub fn execute(&self, reads: &[&[u8]], out: &mut [u8]) -> Result<(), BufferError> {
        check_buffers(
            "read",
            self.reads(),
            reads.iter().map(|buffer| buffer.len()),
        )?;
        check_length("output", 0, self.target.length as usize, out.len())?;
        let chunks = reconstruct::recover_columns(
            &self.geometry,
            &self.faults,
            self.columns,
            &self.reads,
            reads,
        );
        let length = self.columns.length() as usize;
        let slot = self.geometry.slot(self.role);
        out.copy_from_slice(&chunks[slot * length..][..length]);
        Ok(())
    }
}
