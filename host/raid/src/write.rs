//! Write planning for one stripe: which member reads, then the data and parity writes.
//!
//! The extent's chunk pieces cut the chunk's columns into segments; in each segment the
//! set of touched data chunks is fixed, and the segment gets its own [`WriteMode`]. For a
//! contiguous extent there are at most three segments.
//!
//! Parity is generated (full-stripe, reconstruct-write, degraded reconstruct) by the
//! [`ParityEngine`] the caller passes: the host's or the card's. Read-modify-write's delta
//! update (`amf_parity::update`) and the recovery of lost chunks (`amf_parity::recover`)
//! always run on the host: the card's register map 1.0 has opcodes for generating P and
//! P+Q only, none for an update or a recovery.

use amf_parity::ParityEngine;
use shared_regs::limits::DATA_CHUNKS_MAX;

use crate::faults::{PlanError, StripeFaults};
use crate::geometry::{Geometry, Level, Role};
use crate::io::{ComputeError, IoList, MemberIo, MemberWrite, check_buffers, check_length};
use crate::mapping::{ChunkPiece, Columns, StripeExtent};
use crate::member_set::MemberSet;
use crate::reconstruct;

/// How a column segment's parity is brought up to date.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WriteMode {
    /// No parity survives (RAID-5 without P, RAID-6 without P and Q): write the data only.
    DataOnly,
    /// Every data chunk is written: parity from the new data, nothing read.
    FullStripe,
    /// Read the old data being replaced and the old parity, fold the difference in.
    ReadModifyWrite,
    /// Read the data chunks not being written, compute parity afresh.
    ReconstructWrite,
    /// Neither works (RAID-6, one written and one unwritten data chunk lost): read every
    /// survivor, rebuild the lost data, then compute parity afresh.
    DegradedReconstruct,
}

#[derive(Clone, Copy, Debug)]
struct Segment {
    columns: Columns,
    /// Bit `i`: data chunk `i` is written over these columns.
    touched: u32,
    mode: WriteMode,
}

/// The reads and writes that bring one stripe extent to disk; see [`Geometry::plan_write`].
#[derive(Clone, Debug)]
pub struct WritePlan {
    geometry: Geometry,
    extent: StripeExtent,
    faults: StripeFaults,
    segments: Vec<Segment>,
    reads: IoList,
    writes: IoList,
}

impl Geometry {
    /// Plans writing `extent` while the members in `failed` are gone.
    ///
    /// Per column segment, the mode needing fewer member reads wins; on a tie,
    /// reconstruct-write, which does not trust the old parity. Failed members are never
    /// read nor written; their new contents live on in the parity.
    pub fn plan_write(
        &self,
        extent: &StripeExtent,
        failed: MemberSet,
    ) -> Result<WritePlan, PlanError> {
        let faults = StripeFaults::of(self, extent.stripe(), failed)?;
        let pieces: Vec<ChunkPiece> = self.pieces(extent).collect();
        let mut plan = WritePlan {
            geometry: *self,
            extent: *extent,
            faults,
            segments: Vec::new(),
            reads: IoList::new(self, extent.stripe()),
            writes: IoList::new(self, extent.stripe()),
        };
        for piece in pieces
            .iter()
            .filter(|piece| faults.data_alive(piece.data_index))
        {
            plan.writes
                .push(Role::Data(piece.data_index), piece.columns);
        }
        for (columns, touched) in segments(self.chunk_bytes(), &pieces) {
            let mode = choose_mode(self.data_chunks(), &faults, touched);
            plan.add_segment(Segment {
                columns,
                touched,
                mode,
            });
        }
        assert!(!plan.segments.is_empty());
        assert!(
            plan.writes
                .as_slice()
                .iter()
                .all(|io| !failed.contains(io.member))
        );
        Ok(plan)
    }
}

/// The column segments of `pieces` where some chunk is written, each with the set of data
/// chunks written there, in column order.
fn segments(chunk_bytes: u32, pieces: &[ChunkPiece]) -> Vec<(Columns, u32)> {
    let mut cuts: Vec<u32> = Vec::with_capacity(2 * pieces.len() + 2);
    cuts.extend([0, chunk_bytes]);
    for piece in pieces {
        cuts.extend([piece.columns.start, piece.columns.end]);
    }
    cuts.sort_unstable();
    cuts.dedup();
    let mut segments = Vec::with_capacity(cuts.len() - 1);
    for cut in cuts.windows(2) {
        let columns = Columns::new(cut[0], cut[1]);
        let touched = pieces
            .iter()
            .filter(|piece| piece.columns.contains(columns))
            .fold(0u32, |touched, piece| touched | 1 << piece.data_index);
        if touched != 0 {
            segments.push((columns, touched));
        }
    }
    segments
}

/// Picks the mode with fewest member reads among those the failures allow.
fn choose_mode(data_chunks: u32, faults: &StripeFaults, touched: u32) -> WriteMode {
    let all = u32::MAX >> (u32::BITS - data_chunks);
    assert!(touched != 0);
    assert_eq!(touched & !all, 0, "touched chunk beyond data_chunks");
    let parity_alive = faults.parity_alive().count() as u32;
    if parity_alive == 0 {
        assert_eq!(faults.data_failed, 0, "more failed than parity");
        return WriteMode::DataOnly;
    }
    if touched == all {
        return WriteMode::FullStripe;
    }
    let untouched = all & !touched;
    let modify_reads =
        (touched & faults.data_failed == 0).then(|| touched.count_ones() + parity_alive);
    let reconstruct_reads = (untouched & faults.data_failed == 0).then(|| untouched.count_ones());
    match (modify_reads, reconstruct_reads) {
        (Some(modify), Some(reconstruct)) if modify < reconstruct => WriteMode::ReadModifyWrite,
        (_, Some(_)) => WriteMode::ReconstructWrite,
        (Some(_), None) => WriteMode::ReadModifyWrite,
        (None, None) => WriteMode::DegradedReconstruct,
    }
}

impl WritePlan {
    fn add_segment(&mut self, segment: Segment) {
        let (columns, touched) = (segment.columns, segment.touched);
        let data = (0..self.geometry.data_chunks()).map(Role::Data);
        match segment.mode {
            WriteMode::DataOnly | WriteMode::FullStripe => {}
            WriteMode::ReadModifyWrite => {
                for role in data.filter(|&role| is_touched(touched, role)) {
                    self.reads.push(role, columns);
                }
                for role in self.faults.parity_alive() {
                    self.reads.push(role, columns);
                }
            }
            WriteMode::ReconstructWrite => {
                for role in data.filter(|&role| !is_touched(touched, role)) {
                    self.reads.push(role, columns);
                }
            }
            WriteMode::DegradedReconstruct => {
                reconstruct::push_sources(&self.geometry, &self.faults, columns, &mut self.reads);
            }
        }
        for role in self.faults.parity_alive() {
            self.writes.push(role, columns);
        }
        self.segments.push(segment);
    }

    pub fn extent(&self) -> &StripeExtent {
        &self.extent
    }

    /// The member reads to perform before [`WritePlan::execute`], in the order it wants
    /// their buffers. Never a failed member.
    pub fn reads(&self) -> &[MemberIo] {
        self.reads.as_slice()
    }

    /// The member writes [`WritePlan::execute`] fills, data first, then parity; known
    /// before any read (e.g. for an intent record). Never a failed member.
    pub fn writes(&self) -> &[MemberIo] {
        self.writes.as_slice()
    }

    /// Each column segment and the mode chosen for it, in column order.
    pub fn segments(&self) -> impl Iterator<Item = (Columns, WriteMode)> + '_ {
        self.segments
            .iter()
            .map(|segment| (segment.columns, segment.mode))
    }

    /// Fills `writes` (one buffer per [`WritePlan::writes`] entry, of its length) from the
    /// read buffers (one per [`WritePlan::reads`] entry) and the extent's new bytes, with
    /// `engine` generating parity where the plan computes it afresh. Read-modify-write's
    /// update and the recovery of lost chunks run on the host whatever the engine: the
    /// card's register map 1.0 has no opcode for them.
    ///
    /// On an engine error the write buffers hold unspecified bytes: write none of them.
    pub fn execute(
        &self,
        engine: &mut dyn ParityEngine,
        reads: &[&[u8]],
        new_data: &[u8],
        writes: &mut [&mut [u8]],
    ) -> Result<(), ComputeError> {
        check_buffers(
            "read",
            self.reads(),
            reads.iter().map(|buffer| buffer.len()),
        )?;
        check_buffers(
            "write",
            self.writes(),
            writes.iter().map(|buffer| buffer.len()),
        )?;
        check_length(
            "new data",
            0,
            crate::to_usize(self.extent.length()),
            new_data.len(),
        )?;
        for (io, target) in self.writes().iter().zip(writes.iter_mut()) {
            if let Role::Data(index) = io.role {
                let columns = self.columns_of(io);
                target.copy_from_slice(self.new_bytes(new_data, index, columns));
            }
        }
        let mut scratch = Vec::new();
        for segment in &self.segments {
            self.update_parity(engine, segment, reads, new_data, writes, &mut scratch)?;
        }
        Ok(())
    }

    /// [`WritePlan::execute`] into freshly allocated buffers.
    pub fn execute_to_vec(
        &self,
        engine: &mut dyn ParityEngine,
        reads: &[&[u8]],
        new_data: &[u8],
    ) -> Result<Vec<MemberWrite>, ComputeError> {
        let mut buffers: Vec<Vec<u8>> = self
            .writes()
            .iter()
            .map(|io| vec![0; io.length as usize])
            .collect();
        let mut targets: Vec<&mut [u8]> = buffers.iter_mut().map(Vec::as_mut_slice).collect();
        self.execute(engine, reads, new_data, &mut targets)?;
        let writes = self.writes().iter().zip(buffers);
        Ok(writes
            .map(|(&io, bytes)| MemberWrite { io, bytes })
            .collect())
    }

    fn columns_of(&self, io: &MemberIo) -> Columns {
        let base = self.geometry.stripe_member_offset(self.extent.stripe());
        let start = u32::try_from(io.member_offset - base).expect("inside the chunk");
        Columns::new(start, start + io.length)
    }

    /// The new bytes of data chunk `index` over `columns`.
    fn new_bytes<'n>(&self, new_data: &'n [u8], index: u32, columns: Columns) -> &'n [u8] {
        let chunk = u64::from(self.geometry.chunk_bytes());
        let in_stripe = u64::from(index) * chunk + u64::from(columns.start);
        assert!(in_stripe >= self.extent.stripe_offset());
        let start = crate::to_usize(in_stripe - self.extent.stripe_offset());
        &new_data[start..start + columns.length() as usize]
    }

    /// Data chunk `index` over the segment's columns as it will be: new if touched, else
    /// as read.
    fn data_after<'b>(
        &self,
        segment: &Segment,
        index: u32,
        reads: &[&'b [u8]],
        new_data: &'b [u8],
    ) -> &'b [u8] {
        if is_touched(segment.touched, Role::Data(index)) {
            self.new_bytes(new_data, index, segment.columns)
        } else {
            self.reads.slice(reads, Role::Data(index), segment.columns)
        }
    }
}

fn is_touched(touched: u32, role: Role) -> bool {
    matches!(role, Role::Data(index) if touched & (1 << index) != 0)
}

impl WritePlan {
    fn update_parity(
        &self,
        engine: &mut dyn ParityEngine,
        segment: &Segment,
        reads: &[&[u8]],
        new_data: &[u8],
        writes: &mut [&mut [u8]],
        scratch: &mut Vec<u8>,
    ) -> Result<(), ComputeError> {
        if segment.mode == WriteMode::DataOnly {
            return Ok(());
        }
        let (p_write, q_write) = self.parity_targets(segment.columns, writes);
        let q_wanted = self.geometry.level() == Level::Raid6;
        assert!(q_wanted || q_write.is_none());
        let length = segment.columns.length() as usize;
        // A failed P still has to be computed alongside a surviving Q.
        let p = p_write.unwrap_or_else(|| {
            scratch.clear();
            scratch.resize(length, 0);
            scratch.as_mut_slice()
        });
        match segment.mode {
            WriteMode::ReadModifyWrite => self.modify(segment, reads, new_data, p, q_write),
            WriteMode::DegradedReconstruct => {
                let chunks = self.rebuilt_after(segment, reads, new_data);
                let data: Vec<&[u8]> = chunks.chunks_exact(length).collect();
                let data = &data[..self.geometry.data_chunks() as usize];
                engine.compute(data, p, q_write)?;
            }
            WriteMode::FullStripe | WriteMode::ReconstructWrite => {
                let mut data: [&[u8]; DATA_CHUNKS_MAX as usize] = [&[]; DATA_CHUNKS_MAX as usize];
                let data_chunks = self.geometry.data_chunks();
                for (index, source) in (0..data_chunks).zip(data.iter_mut()) {
                    *source = self.data_after(segment, index, reads, new_data);
                }
                engine.compute(&data[..data_chunks as usize], p, q_write)?;
            }
            WriteMode::DataOnly => unreachable!("returned above"),
        }
        Ok(())
    }

    /// The write buffers of surviving P and Q over `columns`.
    fn parity_targets<'w>(
        &self,
        columns: Columns,
        writes: &'w mut [&mut [u8]],
    ) -> (Option<&'w mut [u8]>, Option<&'w mut [u8]>) {
        let locate = |role| {
            self.faults
                .alive(role)
                .then(|| self.writes.find(role, columns))
        };
        let (p_at, q_at) = (locate(Role::P), locate(Role::Q));
        let length = columns.length() as usize;
        let (mut p, mut q) = (None, None);
        for (index, buffer) in writes.iter_mut().enumerate() {
            match (p_at, q_at) {
                (Some((at, offset)), _) if at == index => p = Some(&mut buffer[offset..][..length]),
                (_, Some((at, offset))) if at == index => q = Some(&mut buffer[offset..][..length]),
                _ => {}
            }
        }
        assert_eq!(p.is_some(), p_at.is_some());
        assert_eq!(q.is_some(), q_at.is_some());
        (p, q)
    }

    /// Read-modify-write: old parity, then each written chunk's old-to-new difference.
    fn modify(
        &self,
        segment: &Segment,
        reads: &[&[u8]],
        new_data: &[u8],
        p: &mut [u8],
        mut q: Option<&mut [u8]>,
    ) {
        let columns = segment.columns;
        if self.faults.alive(Role::P) {
            p.copy_from_slice(self.reads.slice(reads, Role::P, columns));
        }
        if let Some(q) = q.as_deref_mut() {
            q.copy_from_slice(self.reads.slice(reads, Role::Q, columns));
        }
        for index in 0..self.geometry.data_chunks() {
            if is_touched(segment.touched, Role::Data(index)) {
                let old = self.reads.slice(reads, Role::Data(index), columns);
                let new = self.new_bytes(new_data, index, columns);
                amf_parity::update(index as usize, old, new, p, q.as_deref_mut());
            }
        }
    }

    /// Every chunk over the segment's columns with the lost ones rebuilt and the written
    /// ones replaced by their new bytes, in slot order.
    fn rebuilt_after(&self, segment: &Segment, reads: &[&[u8]], new_data: &[u8]) -> Vec<u8> {
        let columns = segment.columns;
        let length = columns.length() as usize;
        let mut chunks =
            reconstruct::recover_columns(&self.geometry, &self.faults, columns, &self.reads, reads);
        for (index, chunk) in (0..self.geometry.data_chunks()).zip(chunks.chunks_exact_mut(length))
        {
            if is_touched(segment.touched, Role::Data(index)) {
                chunk.copy_from_slice(self.new_bytes(new_data, index, columns));
            }
        }
        chunks
    }
}
