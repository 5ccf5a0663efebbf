//! Online scrub: the volume as a [`StripeSource`], each stripe checked (and repaired)
//! under its stripe lock while clients go on with the others.

use super::{Step, Volume};
use crate::scrub::{Mode, ScrubError, ScrubReport, StripeSource, scrub_stripe};
use amf_raid::{Geometry, MemberIo, MemberSet};

impl Volume {
    /// Scrubs stripe `stripe` under its lock, adding what it finds to `report`. A member
    /// failing under it leaves the stripe unchecked (the volume goes on degraded).
    pub fn scrub_stripe(
        &self,
        stripe: u64,
        mode: Mode,
        report: &mut ScrubReport,
    ) -> Result<(), ScrubError> {
        let _guard = self.locks.lock(stripe);
        let scrubbed = self.with_engine(|engine| scrub_stripe(self, engine, stripe, mode, report));
        match scrubbed {
            Err(ScrubError::MemberFailed { member }) => {
                tracing::warn!(
                    stripe,
                    member,
                    "scrub: member failed, stripe left unchecked"
                );
                Ok(())
            }
            other => other,
        }
    }

    /// A whole-chunk member I/O at `offset` of `member`'s data area.
    fn chunk_io(&self, member: u32, offset: u64, length: usize) -> MemberIo {
        let stripe = offset / u64::from(self.geometry.chunk_bytes());
        MemberIo {
            member,
            role: self.geometry.role(stripe, member),
            member_offset: offset,
            length: u32::try_from(length).expect("a chunk is below 4 GiB"),
        }
    }
}

impl StripeSource for Volume {
    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn unusable(&self, stripe: u64) -> MemberSet {
        self.snapshot_for(stripe).0
    }

    fn read_chunk(&self, member: u32, offset: u64, buffer: &mut [u8]) -> Result<(), ScrubError> {
        let io = self.chunk_io(member, offset, buffer.len());
        self.read_member(&io, buffer).map_err(|step| match step {
            Step::Retry => ScrubError::MemberFailed { member },
            Step::Fail(error) => ScrubError::Volume(error.to_string()),
        })
    }

    fn write_chunk(&self, member: u32, offset: u64, bytes: &[u8]) -> Result<(), ScrubError> {
        let io = self.chunk_io(member, offset, bytes.len());
        let mut touched = MemberSet::new();
        self.write_member(&io, bytes, &mut touched);
        if !touched.contains(member) {
            return Err(ScrubError::MemberFailed { member });
        }
        self.sync_members(touched)
            .map_err(|error| ScrubError::Volume(error.to_string()))
    }
}
