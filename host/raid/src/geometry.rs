//! The shape of a redundancy group and Linux md's left-symmetric placement.

use core::fmt;

use amf_parity::PARITY_SOURCES_MIN;
use shared_regs::limits::{
    CHUNK_BYTES_MAX, CHUNK_BYTES_MIN, DATA_CHUNKS_MAX, MEMBERS_MAX, PARITY_SOURCES_MAX,
    RAID5_MEMBERS_MIN, RAID6_MEMBERS_MIN,
};

/// RAID level: how many parity chunks each stripe carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Level {
    /// One parity chunk, P (XOR).
    Raid5,
    /// Two parity chunks, P and Q (GF(2^8), as Linux md and ISA-L).
    Raid6,
}

impl Level {
    /// Parity chunks per stripe: 1 (P) or 2 (P and Q); also how many members may fail.
    pub const fn parity_count(self) -> u32 {
        match self {
            Level::Raid5 => 1,
            Level::Raid6 => 2,
        }
    }

    /// Most members a set of this level may have, [`MEMBERS_MAX`] for both levels (a
    /// 32-member RAID-5 has `DATA_CHUNKS_MAX` = 31 data chunks, what the card's parity
    /// engine takes).
    pub const fn members_max(self) -> u32 {
        MEMBERS_MAX
    }

    /// Fewest members a set of this level may have.
    pub const fn members_min(self) -> u32 {
        match self {
            Level::Raid5 => RAID5_MEMBERS_MIN,
            Level::Raid6 => RAID6_MEMBERS_MIN,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Level::Raid5 => "RAID-5",
            Level::Raid6 => "RAID-6",
        })
    }
}

const _: () = {
    // Failed-member sets and touched-chunk sets are u32 bitmaps.
    assert!(MEMBERS_MAX <= u32::BITS);
    assert!(DATA_CHUNKS_MAX <= u32::BITS);
    // The smallest set of each level keeps two data chunks: amf_parity::recover needs them.
    assert!(Level::Raid5.members_min() >= Level::Raid5.parity_count() + 2);
    assert!(Level::Raid6.members_min() >= Level::Raid6.parity_count() + 2);
    assert!(Level::Raid5.members_min() <= Level::Raid5.members_max());
    assert!(Level::Raid6.members_min() <= Level::Raid6.members_max());
    // The widest RAID-5 stripe is within what the parity engine takes.
    assert!(MEMBERS_MAX - Level::Raid5.parity_count() <= DATA_CHUNKS_MAX);
    // Every stripe's data chunks are a source count any ParityEngine takes, so a shape
    // error from an engine is a bug of this crate, never the caller's.
    assert!(DATA_CHUNKS_MAX <= PARITY_SOURCES_MAX);
    assert!(Level::Raid5.members_min() - Level::Raid5.parity_count() >= PARITY_SOURCES_MIN);
    assert!(Level::Raid6.members_min() - Level::Raid6.parity_count() >= PARITY_SOURCES_MIN);
};

/// What a member's chunk holds in one stripe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Data chunk with this index in the stripe (`0..data_chunks`); also its Q coefficient's
    /// exponent.
    Data(u32),
    /// The XOR parity.
    P,
    /// The GF(2^8) parity (RAID-6 only).
    Q,
}

/// Why a geometry was refused; each variant names the field at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GeometryError {
    #[error("members: {members} is outside {min}..={max} for {level}")]
    MembersOutOfRange {
        level: Level,
        members: u32,
        min: u32,
        max: u32,
    },
    #[error("chunk_bytes: {chunk_bytes} is not a power of two")]
    ChunkNotPowerOfTwo { chunk_bytes: u32 },
    #[error("chunk_bytes: {chunk_bytes} is outside {min}..={max}")]
    ChunkOutOfRange {
        chunk_bytes: u32,
        min: u32,
        max: u32,
    },
    #[error("member_data_bytes: {member_data_bytes} holds no whole chunk of {chunk_bytes} bytes")]
    NoWholeStripe {
        member_data_bytes: u64,
        chunk_bytes: u32,
    },
    #[error("member_data_bytes: {member_data_bytes} over {members} members overflows a u64 volume")]
    VolumeTooLarge {
        member_data_bytes: u64,
        members: u32,
    },
}

/// A validated redundancy-group shape.
///
/// Each member contributes whole stripes only: `stripe_count = member_data_bytes / chunk`,
/// rounded down; the tail of a member's data area beyond [`Geometry::member_used_bytes`]
/// is never touched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Geometry {
    level: Level,
    members: u32,
    chunk_bytes: u32,
    stripe_count: u64,
}

impl Geometry {
    /// Checks the fields against `shared_regs::limits` and derives the stripe count.
    pub fn new(
        level: Level,
        members: u32,
        chunk_bytes: u32,
        member_data_bytes: u64,
    ) -> Result<Geometry, GeometryError> {
        let (min, max) = (level.members_min(), level.members_max());
        if !(min..=max).contains(&members) {
            return Err(GeometryError::MembersOutOfRange {
                level,
                members,
                min,
                max,
            });
        }
        if !chunk_bytes.is_power_of_two() {
            return Err(GeometryError::ChunkNotPowerOfTwo { chunk_bytes });
        }
        if !(CHUNK_BYTES_MIN..=CHUNK_BYTES_MAX).contains(&chunk_bytes) {
            return Err(GeometryError::ChunkOutOfRange {
                chunk_bytes,
                min: CHUNK_BYTES_MIN,
                max: CHUNK_BYTES_MAX,
            });
        }
        let stripe_count = member_data_bytes / u64::from(chunk_bytes);
        if stripe_count == 0 {
            return Err(GeometryError::NoWholeStripe {
                member_data_bytes,
                chunk_bytes,
            });
        }
        let data_chunks = members - level.parity_count();
        let stripe_data_bytes = u64::from(data_chunks) * u64::from(chunk_bytes);
        if stripe_count.checked_mul(stripe_data_bytes).is_none() {
            return Err(GeometryError::VolumeTooLarge {
                member_data_bytes,
                members,
            });
        }
        let geometry = Geometry {
            level,
            members,
            chunk_bytes,
            stripe_count,
        };
        assert!(geometry.member_used_bytes() <= member_data_bytes);
        assert!(member_data_bytes - geometry.member_used_bytes() < u64::from(chunk_bytes));
        assert!(geometry.data_chunks() >= 2);
        assert!(geometry.data_chunks() <= DATA_CHUNKS_MAX);
        Ok(geometry)
    }

    pub fn level(&self) -> Level {
        self.level
    }

    /// Members in the set, data and parity.
    pub fn members(&self) -> u32 {
        self.members
    }

    pub fn chunk_bytes(&self) -> u32 {
        self.chunk_bytes
    }

    /// Parity chunks per stripe (1 or 2).
    pub fn parity_count(&self) -> u32 {
        self.level.parity_count()
    }

    /// Data chunks per stripe: members minus parity.
    pub fn data_chunks(&self) -> u32 {
        self.members - self.parity_count()
    }

    pub fn stripe_count(&self) -> u64 {
        self.stripe_count
    }

    /// Volume bytes one stripe carries.
    pub fn stripe_data_bytes(&self) -> u64 {
        u64::from(self.data_chunks()) * u64::from(self.chunk_bytes)
    }

    /// The exported volume: every stripe's data, in stripe order.
    pub fn volume_bytes(&self) -> u64 {
        self.stripe_count * self.stripe_data_bytes()
    }

    /// Bytes of each member's data area the stripes occupy (whole chunks only).
    pub fn member_used_bytes(&self) -> u64 {
        self.stripe_count * u64::from(self.chunk_bytes)
    }

    /// Member offset where stripe `stripe` starts, on every member.
    pub fn stripe_member_offset(&self, stripe: u64) -> u64 {
        self.assert_stripe(stripe);
        stripe * u64::from(self.chunk_bytes)
    }

    /// The member holding P: `members - 1 - (stripe mod members)`.
    ///
    /// # Panics
    /// If `stripe` is not below [`Geometry::stripe_count`].
    pub fn p_member(&self, stripe: u64) -> u32 {
        self.assert_stripe(stripe);
        let rotation = u32::try_from(stripe % u64::from(self.members)).expect("below members");
        let p = self.members - 1 - rotation;
        assert!(p < self.members);
        p
    }

    /// The member holding Q, the one after P (wrapping); `None` on RAID-5.
    pub fn q_member(&self, stripe: u64) -> Option<u32> {
        let p = self.p_member(stripe);
        match self.level {
            Level::Raid5 => None,
            Level::Raid6 => Some((p + 1) % self.members),
        }
    }

    /// The member holding data chunk `data_index`: the parity chunks come first, then the
    /// data chunks in index order, wrapping.
    ///
    /// # Panics
    /// If `data_index` is not below [`Geometry::data_chunks`] or `stripe` is out of range.
    pub fn data_member(&self, stripe: u64, data_index: u32) -> u32 {
        assert!(
            data_index < self.data_chunks(),
            "data index {data_index} out of range"
        );
        let p = self.p_member(stripe);
        (p + self.parity_count() + data_index) % self.members
    }

    /// What `member`'s chunk holds in `stripe`.
    ///
    /// # Panics
    /// If `member` or `stripe` is out of range.
    pub fn role(&self, stripe: u64, member: u32) -> Role {
        assert!(member < self.members, "member {member} out of range");
        let p = self.p_member(stripe);
        let after_p = (member + self.members - p) % self.members;
        let role = match (after_p, self.level) {
            (0, _) => Role::P,
            (1, Level::Raid6) => Role::Q,
            _ => Role::Data(after_p - self.parity_count()),
        };
        debug_assert_eq!(self.member_of(stripe, role), Some(member));
        role
    }

    /// The member playing `role` in `stripe`; `None` for Q on RAID-5.
    pub fn member_of(&self, stripe: u64, role: Role) -> Option<u32> {
        match role {
            Role::Data(index) => Some(self.data_member(stripe, index)),
            Role::P => Some(self.p_member(stripe)),
            Role::Q => self.q_member(stripe),
        }
    }

    /// The role's position in `amf_parity`'s chunk order: data `0..k`, then P, then Q.
    pub(crate) fn slot(&self, role: Role) -> usize {
        let k = self.data_chunks() as usize;
        match role {
            Role::Data(index) => {
                assert!(index < self.data_chunks());
                index as usize
            }
            Role::P => k,
            Role::Q => {
                assert_eq!(self.level, Level::Raid6, "Q exists on RAID-6 only");
                k + 1
            }
        }
    }

    /// The inverse of [`Geometry::slot`].
    pub(crate) fn role_of_slot(&self, slot: usize) -> Role {
        let k = self.data_chunks() as usize;
        assert!(slot < self.members as usize);
        match slot.checked_sub(k) {
            None => Role::Data(u32::try_from(slot).expect("below data_chunks")),
            Some(0) => Role::P,
            Some(_) => Role::Q,
        }
    }

    pub(crate) fn assert_stripe(&self, stripe: u64) {
        assert!(
            stripe < self.stripe_count,
            "stripe {stripe} beyond the set's {} stripes",
            self.stripe_count
        );
    }
}
