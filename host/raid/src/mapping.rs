//! Volume offsets to member offsets and back, and requests broken into stripes and chunks.

use crate::geometry::{Geometry, Role};

/// A byte range `[start, end)` inside a chunk, the same on every member of a stripe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Columns {
    pub start: u32,
    pub end: u32,
}

impl Columns {
    /// # Panics
    /// If the range is empty or reversed.
    pub fn new(start: u32, end: u32) -> Columns {
        assert!(start < end, "columns {start}..{end} empty or reversed");
        Columns { start, end }
    }

    pub fn length(self) -> u32 {
        assert!(self.start < self.end);
        self.end - self.start
    }

    /// Whether `inner` lies wholly inside `self`.
    pub fn contains(self, inner: Columns) -> bool {
        self.start <= inner.start && inner.end <= self.end
    }

    /// The smallest range covering both.
    pub fn hull(self, other: Columns) -> Columns {
        Columns::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// Where a volume byte lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    pub stripe: u64,
    pub data_index: u32,
    pub member: u32,
    pub offset_in_chunk: u32,
    /// Offset in the member's data area: `stripe * chunk + offset_in_chunk`.
    pub member_offset: u64,
}

/// A request outside the volume.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("offset {offset} is beyond the volume's {volume_bytes} bytes")]
    OffsetBeyondEnd { offset: u64, volume_bytes: u64 },
    #[error("request of {length} bytes at {offset} ends beyond the volume's {volume_bytes} bytes")]
    RequestBeyondEnd {
        offset: u64,
        length: u64,
        volume_bytes: u64,
    },
    #[error("stripe range {stripe_offset}+{length} is empty or beyond stripe {stripe}'s data")]
    BadStripeRange {
        stripe: u64,
        stripe_offset: u64,
        length: u64,
    },
}

/// A non-empty, contiguous part of a request that falls inside one stripe.
///
/// Made only by [`Geometry::split`], [`Geometry::stripe_extent`] and
/// [`Geometry::whole_stripe`], so its fields are always in range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StripeExtent {
    stripe: u64,
    stripe_offset: u64,
    length: u64,
    request_offset: u64,
}

impl StripeExtent {
    pub fn stripe(&self) -> u64 {
        self.stripe
    }

    /// Offset inside the stripe's data (`data_index * chunk + offset_in_chunk`).
    pub fn stripe_offset(&self) -> u64 {
        self.stripe_offset
    }

    pub fn length(&self) -> u64 {
        self.length
    }

    /// Offset of this extent's first byte from the start of the request it came from: where
    /// its bytes sit in the request's buffer.
    pub fn request_offset(&self) -> u64 {
        self.request_offset
    }
}

/// One chunk's part of a [`StripeExtent`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChunkPiece {
    pub data_index: u32,
    pub member: u32,
    pub columns: Columns,
    /// Offset in the member's data area.
    pub member_offset: u64,
    /// Offset of the piece's first byte from the extent's first byte.
    pub extent_offset: u64,
}

impl Geometry {
    /// Where volume byte `volume_offset` lives.
    pub fn locate(&self, volume_offset: u64) -> Result<Location, RangeError> {
        if volume_offset >= self.volume_bytes() {
            return Err(RangeError::OffsetBeyondEnd {
                offset: volume_offset,
                volume_bytes: self.volume_bytes(),
            });
        }
        let chunk = u64::from(self.chunk_bytes());
        let stripe = volume_offset / self.stripe_data_bytes();
        let in_stripe = volume_offset % self.stripe_data_bytes();
        let data_index = u32::try_from(in_stripe / chunk).expect("below data_chunks");
        let offset_in_chunk = u32::try_from(in_stripe % chunk).expect("below chunk_bytes");
        let member = self.data_member(stripe, data_index);
        let member_offset = self.stripe_member_offset(stripe) + u64::from(offset_in_chunk);
        assert!(member_offset < self.member_used_bytes());
        Ok(Location {
            stripe,
            data_index,
            member,
            offset_in_chunk,
            member_offset,
        })
    }

    /// The volume offset of byte `offset_in_chunk` of `member`'s chunk in `stripe`; `None`
    /// when that chunk is parity.
    ///
    /// # Panics
    /// If `stripe`, `member` or `offset_in_chunk` is out of range.
    pub fn volume_offset(&self, stripe: u64, member: u32, offset_in_chunk: u32) -> Option<u64> {
        assert!(
            offset_in_chunk < self.chunk_bytes(),
            "offset beyond the chunk"
        );
        let Role::Data(index) = self.role(stripe, member) else {
            return None;
        };
        let chunk = u64::from(self.chunk_bytes());
        let offset = stripe * self.stripe_data_bytes()
            + u64::from(index) * chunk
            + u64::from(offset_in_chunk);
        assert!(offset < self.volume_bytes());
        Some(offset)
    }

    /// Breaks `[volume_offset, volume_offset + length)` into per-stripe extents, in order.
    /// A zero length yields no extent.
    pub fn split(&self, volume_offset: u64, length: u64) -> Result<Extents, RangeError> {
        let end = volume_offset
            .checked_add(length)
            .filter(|&end| end <= self.volume_bytes())
            .ok_or(RangeError::RequestBeyondEnd {
                offset: volume_offset,
                length,
                volume_bytes: self.volume_bytes(),
            })?;
        Ok(Extents {
            geometry: *self,
            start: volume_offset,
            next: volume_offset,
            end,
        })
    }

    /// The extent of `length` bytes at `stripe_offset` inside `stripe`'s data, as a
    /// request of its own (`request_offset` 0).
    pub fn stripe_extent(
        &self,
        stripe: u64,
        stripe_offset: u64,
        length: u64,
    ) -> Result<StripeExtent, RangeError> {
        let fits = stripe_offset
            .checked_add(length)
            .is_some_and(|end| end <= self.stripe_data_bytes());
        if stripe >= self.stripe_count() || length == 0 || !fits {
            return Err(RangeError::BadStripeRange {
                stripe,
                stripe_offset,
                length,
            });
        }
        Ok(StripeExtent {
            stripe,
            stripe_offset,
            length,
            request_offset: 0,
        })
    }

    /// All of `stripe`'s data.
    ///
    /// # Panics
    /// If `stripe` is out of range.
    pub fn whole_stripe(&self, stripe: u64) -> StripeExtent {
        self.stripe_extent(stripe, 0, self.stripe_data_bytes())
            .expect("stripe in range")
    }

    /// The extent's per-chunk pieces, in data index order.
    pub fn pieces(&self, extent: &StripeExtent) -> Pieces {
        self.assert_stripe(extent.stripe);
        assert!(extent.length > 0);
        assert!(extent.stripe_offset + extent.length <= self.stripe_data_bytes());
        Pieces {
            geometry: *self,
            extent: *extent,
            done: 0,
        }
    }
}

/// The per-stripe extents of a request; see [`Geometry::split`].
#[derive(Clone, Debug)]
pub struct Extents {
    geometry: Geometry,
    start: u64,
    next: u64,
    end: u64,
}

impl Iterator for Extents {
    type Item = StripeExtent;

    fn next(&mut self) -> Option<StripeExtent> {
        if self.next == self.end {
            return None;
        }
        assert!(self.next < self.end);
        let stripe_data_bytes = self.geometry.stripe_data_bytes();
        let stripe = self.next / stripe_data_bytes;
        let stripe_offset = self.next % stripe_data_bytes;
        let length = (self.end - self.next).min(stripe_data_bytes - stripe_offset);
        let extent = StripeExtent {
            stripe,
            stripe_offset,
            length,
            request_offset: self.next - self.start,
        };
        self.next += length;
        assert!(self.next <= self.end);
        Some(extent)
    }
}

/// The per-chunk pieces of an extent; see [`Geometry::pieces`].
#[derive(Clone, Debug)]
pub struct Pieces {
    geometry: Geometry,
    extent: StripeExtent,
    done: u64,
}

impl Iterator for Pieces {
    type Item = ChunkPiece;

    fn next(&mut self) -> Option<ChunkPiece> {
        if self.done == self.extent.length {
            return None;
        }
        let chunk = u64::from(self.geometry.chunk_bytes());
        let in_stripe = self.extent.stripe_offset + self.done;
        let data_index = u32::try_from(in_stripe / chunk).expect("below data_chunks");
        let start = in_stripe % chunk;
        let length = (self.extent.length - self.done).min(chunk - start);
        let start = u32::try_from(start).expect("below chunk_bytes");
        let length = u32::try_from(length).expect("at most chunk_bytes");
        let piece = ChunkPiece {
            data_index,
            member: self.geometry.data_member(self.extent.stripe, data_index),
            columns: Columns::new(start, start + length),
            member_offset: self.geometry.stripe_member_offset(self.extent.stripe)
                + u64::from(start),
            extent_offset: self.done,
        };
        self.done += u64::from(length);
        assert!(self.done <= self.extent.length);
        Some(piece)
    }
}
