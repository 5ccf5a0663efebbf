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
//!
//! Offsets are relative to each member's data area: stripe `s` occupies member bytes
//! `[s * chunk, (s + 1) * chunk)` on every member; the shell adds the superblock's
//! `data_offset`. Inside a chunk, parity is column-wise: byte `c` of P and Q depends only on
//! byte `c` of each data chunk, so plans work on [`Columns`], byte ranges inside the chunk.
#![forbid(unsafe_code)]

mod geometry;
mod mapping;
mod member_set;

pub use geometry::{Geometry, GeometryError, Level, Role};
pub use mapping::{ChunkPiece, Columns, Extents, Location, Pieces, RangeError, StripeExtent};
pub use member_set::MemberSet;
