//! The redundancy group's members, in memory, driven through the RAID core's plans.
//!
//! A stripe write becomes a list of member writes computed from the members as they are
//! when it starts (the writer holds the stripe exclusively, so nobody changes them under
//! it); the simulator applies them one step at a time, so an AMF can die between the
//! member writes of one stripe.

use amf_parity::HostParity;
use amf_raid::{Columns, Geometry, Level, MemberIo, MemberSet, MemberWrite, StripeExtent};
use shared_regs::limits::BLOCK_BYTES;

#[derive(Debug)]
pub struct Members {
    pub geometry: Geometry,
    pub data: Vec<Vec<u8>>,
    /// Members that died: never read, never written; plans run degraded around them.
    pub failed: MemberSet,
    /// Members whose every read and write fails with an I/O error until the AMFs treat
    /// them as failed (a plan degraded around them never touches them).
    pub erroring: MemberSet,
    /// Per AMF port: members whose I/O fails for that AMF only (a path failure), while
    /// the others still reach them.
    pub unreachable: Vec<MemberSet>,
    /// The failed member whose slot holds a fresh replacement under an online rebuild:
    /// still failed (lost) until every AMF has it back in service, but read and written
    /// by every plan whose failed members leave it out.
    pub replacing: Option<u32>,
    /// Members rebuilt online and back in service: each chunk of theirs must equal what
    /// reconstruction from the other members gives.
    pub rebuilt: MemberSet,
}

impl Members {
    pub fn new(level: Level, members: u32, chunk_bytes: u32, stripes: u64, ports: u8) -> Members {
        let geometry = Geometry::new(
            level,
            members,
            chunk_bytes,
            stripes * u64::from(chunk_bytes),
        )
        .expect("the simulator's geometry is valid");
        assert_eq!(geometry.stripe_count(), stripes);
        let bytes = geometry.member_used_bytes() as usize;
        Members {
            geometry,
            data: vec![vec![0; bytes]; members as usize],
            failed: MemberSet::new(),
            erroring: MemberSet::new(),
            unreachable: vec![MemberSet::new(); usize::from(ports)],
            replacing: None,
            rebuilt: MemberSet::new(),
        }
    }

    /// Members failed, erroring, or unreachable from some AMF: what the level must
    /// survive (an unreachable member is written by nobody once its failure is ordered,
    /// so its contents go stale).
    pub fn lost(&self) -> MemberSet {
        let unreachable = self.unreachable.iter().flat_map(|set| set.iter());
        self.failed
            .iter()
            .chain(self.erroring.iter())
            .chain(unreachable)
            .collect()
    }

    /// The members whose I/O fails for AMF `port`.
    fn erroring_for(&self, port: u8) -> MemberSet {
        let unreachable = self.unreachable[usize::from(port)];
        self.erroring.iter().chain(unreachable.iter()).collect()
    }

    /// `member` stops answering AMF `port` only (its path fails); its contents stay.
    pub fn start_unreachable(&mut self, member: u32, port: u8) {
        assert!(self.lost().count() < self.geometry.level().parity_count());
        self.unreachable[usize::from(port)].insert(member);
    }

    /// `member` starts failing every I/O: its contents can no longer be read.
    pub fn start_erroring(&mut self, member: u32) {
        assert!(self.lost().count() < self.geometry.level().parity_count());
        self.erroring.insert(member);
        self.data[member as usize].fill(0xEE);
    }

    /// The members a plan runs degraded around: the dead ones (but a replacement) and
    /// those `known` failed.
    fn degraded(&self, known: u32) -> MemberSet {
        self.failed
            .iter()
            .filter(|&member| Some(member) != self.replacing)
            .chain(MemberSet::from_bits(known).iter())
            .collect()
    }

    /// `bytes` of `stripe`'s data from block `first_block`.
    fn block_extent(&self, stripe: u64, first_block: u32, bytes: u64) -> StripeExtent {
        let offset = u64::from(first_block) * u64::from(BLOCK_BYTES);
        self.geometry
            .stripe_extent(stripe, offset, bytes)
            .expect("inside the stripe")
    }

    /// The bytes of `reads` by AMF `port`, or the first member among them erroring for
    /// it (nothing read then).
    fn gather(&self, reads: &[MemberIo], port: u8) -> Result<Vec<&[u8]>, u32> {
        let erroring_for = self.erroring_for(port);
        let erroring = reads
            .iter()
            .map(|io| io.member)
            .find(|&m| erroring_for.contains(m));
        match erroring {
            Some(member) => Err(member),
            None => Ok(reads.iter().map(|io| self.read_io(io)).collect()),
        }
    }

    pub fn stripe_data_blocks(&self) -> u32 {
        (self.geometry.stripe_data_bytes() / u64::from(BLOCK_BYTES)) as u32
    }

    /// `member` dies: its contents are gone.
    pub fn fail(&mut self, member: u32) {
        assert!(self.lost().count() < self.geometry.level().parity_count());
        self.failed.insert(member);
        self.data[member as usize].fill(0xEE);
    }

    /// Failed `member` (dead or failing I/O) gets a fresh replacement, which holds
    /// garbage until it is rebuilt or written (also in place of one whose rebuild
    /// stopped).
    pub fn start_replacement(&mut self, member: u32) {
        assert!(self.replacing.is_none_or(|replacing| replacing == member));
        self.erroring.remove(member);
        for set in &mut self.unreachable {
            set.remove(member);
        }
        self.failed.insert(member);
        self.data[member as usize].fill(0xEE);
        self.replacing = Some(member);
    }

    /// The replacement under way is back in service at every AMF.
    pub fn replacement_in_service(&mut self) {
        let member = self.replacing.take().expect("a replacement");
        self.failed.remove(member);
        self.rebuilt.insert(member);
    }

    /// The write that puts `member`'s chunk of `stripe`, reconstructed by AMF `port`
    /// from the other members (degraded around `known` too), on its replacement;
    /// `Err(member)` if a read met a member erroring for `port`.
    pub fn plan_rebuild(
        &self,
        stripe: u64,
        member: u32,
        known: u32,
        port: u8,
    ) -> Result<MemberWrite, u32> {
        let chunk = self.geometry.chunk_bytes();
        let plan = self
            .geometry
            .plan_rebuild(stripe, member, Columns::new(0, chunk), self.degraded(known))
            .expect("within what the level survives");
        let buffers = self.gather(plan.reads(), port)?;
        let mut bytes = vec![0; chunk as usize];
        plan.execute(&buffers, &mut bytes)
            .expect("buffers fit the plan");
        let io = plan.write();
        assert_eq!(io.member, member);
        Ok(MemberWrite { io, bytes })
    }

    /// Replacements for the failed members, rebuilt stripe by stripe from the others.
    pub fn rebuild(&mut self) {
        // Erroring members are replaced like dead ones.
        self.failed = self.lost();
        self.replacing = None;
        for member in self.failed.iter() {
            for stripe in 0..self.geometry.stripe_count() {
                let write = self
                    .plan_rebuild(stripe, member, 0, 0)
                    .expect("failed members are not read");
                self.write_io(&write);
            }
        }
        // Rebuild each from the survivors only, then let them all serve again.
        self.failed = MemberSet::new();
        self.erroring = MemberSet::new();
        self.unreachable.fill(MemberSet::new());
    }

    /// Stripes where a member rebuilt online (and not lost since) holds other than what
    /// reconstruction from the other members gives, as (member, stripe); none is checked
    /// where the lost members leave nothing to reconstruct it from.
    pub fn stale_rebuilt_chunks(&self) -> Vec<(u32, u64)> {
        let lost = self.lost();
        if lost.count() >= self.geometry.level().parity_count() {
            return Vec::new();
        }
        let mut stale = Vec::new();
        for member in self.rebuilt.iter().filter(|&member| !lost.contains(member)) {
            for stripe in 0..self.geometry.stripe_count() {
                let write = self
                    .plan_rebuild(stripe, member, lost.bits(), 0)
                    .expect("lost members are not read");
                if self.read_io(&write.io) != write.bytes.as_slice() {
                    stale.push((member, stripe));
                }
            }
        }
        stale
    }

    /// Whether `stripe`'s parity matches its data as AMF `port` reads it, planning
    /// around `known`: `Ok(None)` if a member is planned around (nothing to check it
    /// against), `Err(member)` if a read met a member erroring for `port`.
    pub fn scrub(&self, stripe: u64, known: u32, port: u8) -> Result<Option<bool>, u32> {
        if !self.degraded(known).is_empty() {
            return Ok(None);
        }
        let offset = self.geometry.stripe_member_offset(stripe);
        let length = self.geometry.chunk_bytes();
        let reads: Vec<MemberIo> = (0..self.geometry.members())
            .map(|member| MemberIo {
                member,
                role: self.geometry.role(stripe, member),
                member_offset: offset,
                length,
            })
            .collect();
        let buffers = self.gather(&reads, port)?;
        Ok(Some(self.consistent(stripe, &buffers)))
    }

    fn read_io(&self, io: &MemberIo) -> &[u8] {
        let start = io.member_offset as usize;
        &self.data[io.member as usize][start..start + io.length as usize]
    }

    /// Applies one member write by AMF `port`; one to a member that died since the plan
    /// was made is lost with the member, and the plan's other writes keep the stripe
    /// consistent. One to a member erroring for `port` fails: returns that member (the
    /// caller goes on with the plan's other writes, which keep the stripe consistent the
    /// same way).
    pub fn apply(&mut self, write: &MemberWrite, port: u8) -> Option<u32> {
        if self.erroring_for(port).contains(write.io.member) {
            return Some(write.io.member);
        }
        if self.failed.contains(write.io.member) && self.replacing != Some(write.io.member) {
            return None;
        }
        self.write_io(write);
        None
    }

    fn write_io(&mut self, write: &MemberWrite) {
        let start = write.io.member_offset as usize;
        self.data[write.io.member as usize][start..start + write.bytes.len()]
            .copy_from_slice(&write.bytes);
    }

    /// Blocks `first_block ..` of `stripe`'s data, with no member erroring.
    pub fn read(&self, stripe: u64, first_block: u32, block_count: u32) -> Vec<u8> {
        assert!(self.erroring.is_empty());
        assert!(self.unreachable.iter().all(|set| set.is_empty()));
        self.read_degraded(stripe, first_block, block_count, 0, 0)
            .expect("no member errors")
    }

    /// Blocks `first_block ..` of `stripe`'s data read by AMF `port`, degraded around the
    /// dead members and those `known` failed; `Err(member)` if the plan touched a member
    /// erroring for `port`.
    pub fn read_degraded(
        &self,
        stripe: u64,
        first_block: u32,
        block_count: u32,
        known: u32,
        port: u8,
    ) -> Result<Vec<u8>, u32> {
        let extent = self.block_extent(
            stripe,
            first_block,
            u64::from(block_count) * u64::from(BLOCK_BYTES),
        );
        let plan = self
            .geometry
            .plan_read(&extent, self.degraded(known))
            .expect("within what the level survives");
        let buffers = self.gather(plan.reads(), port)?;
        let mut out = vec![0; extent.length() as usize];
        plan.execute(&buffers, &mut out)
            .expect("buffers fit the plan");
        Ok(out)
    }

    /// The member writes that put `data` at `first_block` of `stripe` with parity, for
    /// AMF `port`. `Err(member)` if its reads touched a member erroring for `port`
    /// (nothing written then).
    pub fn plan_write(
        &self,
        stripe: u64,
        first_block: u32,
        data: &[u8],
        known: u32,
        port: u8,
    ) -> Result<Vec<MemberWrite>, u32> {
        let extent = self.block_extent(stripe, first_block, data.len() as u64);
        let plan = self
            .geometry
            .plan_write(&extent, self.degraded(known))
            .expect("within what the level survives");
        let buffers = self.gather(plan.reads(), port)?;
        Ok(plan
            .execute_to_vec(&mut HostParity, &buffers, data)
            .expect("buffers fit the plan"))
    }

    /// Full-stripe reconstruct-write: the stripe's data with `data` laid over it at
    /// `first_block`, and fresh parity. Empty `data` rewrites parity only.
    pub fn plan_replay(
        &self,
        stripe: u64,
        first_block: u32,
        data: &[u8],
        known: u32,
        port: u8,
    ) -> Result<Vec<MemberWrite>, u32> {
        let blocks = self.stripe_data_blocks();
        let mut whole = self.read_degraded(stripe, 0, blocks, known, port)?;
        let start = first_block as usize * BLOCK_BYTES as usize;
        whole[start..start + data.len()].copy_from_slice(data);
        self.plan_write(stripe, 0, &whole, known, port)
    }

    /// Whether every stripe's parity matches its data.
    pub fn inconsistent_stripes(&self) -> Vec<u64> {
        let mut bad = Vec::new();
        for stripe in 0..self.geometry.stripe_count() {
            let offset = self.geometry.stripe_member_offset(stripe) as usize;
            let chunk = self.geometry.chunk_bytes() as usize;
            let buffers: Vec<&[u8]> = self
                .data
                .iter()
                .map(|member| &member[offset..offset + chunk])
                .collect();
            if !self.consistent(stripe, &buffers) {
                bad.push(stripe);
            }
        }
        bad
    }

    /// Whether `buffers` (every member's chunk of `stripe`) hold parity matching data.
    fn consistent(&self, stripe: u64, buffers: &[&[u8]]) -> bool {
        self.geometry
            .check_parity(&mut HostParity, stripe, buffers)
            .expect("buffers fit")
            .is_consistent()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(value: u8) -> Vec<u8> {
        vec![value; BLOCK_BYTES as usize]
    }

    fn write(members: &mut Members, stripe: u64, first_block: u32, data: &[u8]) {
        for write in members.plan_write(stripe, first_block, data, 0, 0).unwrap() {
            assert_eq!(members.apply(&write, 0), None);
        }
    }

    #[test]
    fn degraded_writes_read_back_and_rebuild() {
        for (level, count, failed) in [
            (Level::Raid5, 3, vec![1]),
            (Level::Raid6, 4, vec![1]),
            (Level::Raid6, 4, vec![1, 2]),
            (Level::Raid6, 5, vec![0, 3]),
        ] {
            let mut members = Members::new(level, count, 2 * BLOCK_BYTES, 4, 1);
            let blocks = members.stripe_data_blocks();
            write(&mut members, 0, 0, &block(1).repeat(blocks as usize));
            for member in &failed {
                members.fail(*member);
            }
            for first in 0..blocks {
                write(&mut members, 0, first, &block(10 + first as u8));
                assert_eq!(
                    members.read(0, first, 1),
                    block(10 + first as u8),
                    "{level:?} {failed:?} block {first}"
                );
            }
            members.rebuild();
            assert!(members.inconsistent_stripes().is_empty());
            for first in 0..blocks {
                assert_eq!(members.read(0, first, 1), block(10 + first as u8));
            }
        }
    }
}
