//! A stripe's view of the failed members: which roles are lost.

use crate::geometry::{Geometry, Level, Role};
use crate::member_set::MemberSet;

/// Why a plan cannot be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("failed member {member} is not one of the set's {members} members")]
    UnknownMember { member: u32, members: u32 },
    #[error("{failed} members failed, {level} survives at most {parity_count}")]
    Unavailable {
        failed: u32,
        level: Level,
        parity_count: u32,
    },
}

/// The failed members of one stripe, by role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StripeFaults {
    /// Bit `i` set: data chunk `i`'s member failed.
    pub data_failed: u32,
    pub p_failed: bool,
    /// Always false on RAID-5, where Q does not exist.
    pub q_failed: bool,
    level: Level,
}

impl StripeFaults {
    pub fn of(
        geometry: &Geometry,
        stripe: u64,
        failed: MemberSet,
    ) -> Result<StripeFaults, PlanError> {
        if let Some(member) = failed.iter().find(|&m| m >= geometry.members()) {
            return Err(PlanError::UnknownMember {
                member,
                members: geometry.members(),
            });
        }
        if failed.count() > geometry.parity_count() {
            return Err(PlanError::Unavailable {
                failed: failed.count(),
                level: geometry.level(),
                parity_count: geometry.parity_count(),
            });
        }
        let mut faults = StripeFaults {
            data_failed: 0,
            p_failed: false,
            q_failed: false,
            level: geometry.level(),
        };
        for member in failed.iter() {
            match geometry.role(stripe, member) {
                Role::Data(index) => faults.data_failed |= 1 << index,
                Role::P => faults.p_failed = true,
                Role::Q => faults.q_failed = true,
            }
        }
        assert_eq!(faults.lost_count(), failed.count());
        Ok(faults)
    }

    pub fn lost_count(&self) -> u32 {
        self.data_failed.count_ones() + u32::from(self.p_failed) + u32::from(self.q_failed)
    }

    pub fn data_alive(&self, index: u32) -> bool {
        assert!(index < u32::BITS);
        self.data_failed & (1 << index) == 0
    }

    /// Whether `role`'s member can be read and written; Q on RAID-5 is never alive.
    pub fn alive(&self, role: Role) -> bool {
        match role {
            Role::Data(index) => self.data_alive(index),
            Role::P => !self.p_failed,
            Role::Q => self.level == Level::Raid6 && !self.q_failed,
        }
    }

    /// The surviving parity roles, P first.
    pub fn parity_alive(&self) -> impl Iterator<Item = Role> + '_ {
        [Role::P, Role::Q]
            .into_iter()
            .filter(|&role| self.alive(role))
    }
}
