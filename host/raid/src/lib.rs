//! amflink's RAID core, free of I/O.
//!
//! Pure functions and plans that a caller (the I/O shell, the coherency core, the
//! simulator) drives: no files, clocks, threads or randomness in here.
//!
//! * [`Geometry`]: level, members, chunk size and stripe count, and Linux md's default
//!   left-symmetric placement ([`Geometry::p_member`], [`Geometry::role`], ...).
//! * Mapping: [`Geometry::locate`] and its inverse [`Geometry::volume_offset`];
//!   [`Geometry::split`] breaks a request into per-stripe [`StripeExtent`]s and
//!   [`Geometry::pieces`] an extent into per-chunk [`ChunkPiece`]s.
//! * Plans, one stripe each: [`Geometry::plan_write`] (read-modify-write or
//!   reconstruct-write per column range, degraded writes), [`Geometry::plan_read`]
//!   (degraded reads rebuild lost columns) and [`Geometry::plan_rebuild`] (one member's
//!   chunk for a replacement). A plan lists the member reads the caller performs
//!   ([`MemberIo`]); its `execute` turns the read buffers into the output, with no I/O.
//! * Scrub: [`Geometry::check_parity`] and [`Geometry::repair_parity`] over one stripe's
//!   member buffers.
//!
//! Parity generation goes through the caller's `&mut dyn` [`amf_parity::ParityEngine`]
//! (the host's [`amf_parity::HostParity`] or a card's), so the same plan gives the same
//! bytes wherever P and Q are computed; the engine is passed in like any other input and
//! this crate still does no I/O. Read-modify-write's update and the recovery of lost
//! chunks run on the host (`amf_parity::update`, `amf_parity::recover`): the card's
//! register map 1.0 has no opcode for either.
//!
//! Offsets are relative to each member's data area: stripe `s` occupies member bytes
//! `[s * chunk, (s + 1) * chunk)` on every member; the shell adds the superblock's
//! `data_offset`. Inside a chunk, parity is column-wise: byte `c` of P and Q depends only on
//! byte `c` of each data chunk. Plans therefore work on [`Columns`], byte ranges inside the
//! chunk, and a 4 KiB write touches 4 KiB of each member it reads or writes.
#![forbid(unsafe_code)]

mod faults;
mod geometry;
mod io;
mod mapping;
mod member_set;
mod read;
mod reconstruct;
mod scrub;
mod write;

pub use faults::PlanError;
pub use geometry::{Geometry, GeometryError, Level, Role};
pub use io::{BufferError, ComputeError, MemberIo, MemberWrite};
pub use mapping::{ChunkPiece, Columns, Extents, Location, Pieces, RangeError, StripeExtent};
pub use member_set::MemberSet;
pub use read::{ReadPlan, RebuildPlan};
pub use scrub::ParityCheck;
pub use write::{WriteMode, WritePlan};

/// A byte offset or length inside one stripe's buffers, as a slice index.
///
/// Everything inside a stripe is below `DATA_CHUNKS_MAX * CHUNK_BYTES_MAX` (30 MiB), so the
/// conversion cannot fail on the 32- and 64-bit targets amflink supports.
fn to_usize(value: u64) -> usize {
    usize::try_from(value).expect("a stripe-local offset fits in usize")
}
