//! A set of member indices, one bit each (the superblock's and the fabric's bitmaps are
//! u32 too).

use shared_regs::limits::MEMBERS_MAX;

/// A set of members, e.g. the failed ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MemberSet {
    bits: u32,
}

impl MemberSet {
    /// The empty set.
    pub const fn new() -> MemberSet {
        MemberSet { bits: 0 }
    }

    /// The set whose bit `m` marks member `m`.
    pub const fn from_bits(bits: u32) -> MemberSet {
        MemberSet { bits }
    }

    pub const fn bits(self) -> u32 {
        self.bits
    }

    /// # Panics
    /// If `member` is not below `MEMBERS_MAX`.
    pub fn insert(&mut self, member: u32) {
        assert!(member < MEMBERS_MAX, "member {member} beyond {MEMBERS_MAX}");
        self.bits |= 1 << member;
        assert!(self.contains(member));
    }

    pub fn remove(&mut self, member: u32) {
        assert!(member < MEMBERS_MAX, "member {member} beyond {MEMBERS_MAX}");
        self.bits &= !(1 << member);
    }

    pub fn contains(self, member: u32) -> bool {
        member < MEMBERS_MAX && self.bits & (1 << member) != 0
    }

    pub fn count(self) -> u32 {
        self.bits.count_ones()
    }

    pub fn is_empty(self) -> bool {
        self.bits == 0
    }

    /// Members in increasing order.
    pub fn iter(self) -> impl Iterator<Item = u32> {
        (0..MEMBERS_MAX).filter(move |&member| self.contains(member))
    }
}

impl FromIterator<u32> for MemberSet {
    fn from_iter<I: IntoIterator<Item = u32>>(members: I) -> MemberSet {
        let mut set = MemberSet::new();
        for member in members {
            set.insert(member);
        }
        set
    }
}
