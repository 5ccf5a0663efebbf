//! The redundancy group's members, in memory, driven through the RAID core's plans.
//!
//! A stripe write becomes a list of member writes computed from the members as they are
//! when it starts (the writer holds the stripe exclusively, so nobody changes them under
//! it); the simulator applies them one step at a time, so an AMF can die between the
//! member writes of one stripe.

use amf_parity::HostParity;
use amf_raid::{Geometry, Level, MemberIo, MemberSet, MemberWrite};
use shared_regs::limits::BLOCK_BYTES;

#[derive(Debug)]
pub struct Members {
    pub geometry: Geometry,
    pub data: Vec<Vec<u8>>,
}

impl Members {
    pub fn new(level: Level, members: u32, chunk_bytes: u32, stripes: u64) -> Members {
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
        }
    }

    pub fn stripe_data_blocks(&self) -> u32 {
        (self.geometry.stripe_data_bytes() / u64::from(BLOCK_BYTES)) as u32
    }

    fn read_io(&self, io: &MemberIo) -> &[u8] {
        let start = io.member_offset as usize;
        &self.data[io.member as usize][start..start + io.length as usize]
    }

    pub fn apply(&mut self, write: &MemberWrite) {
        let start = write.io.member_offset as usize;
        self.data[write.io.member as usize][start..start + write.bytes.len()]
            .copy_from_slice(&write.bytes);
    }

    /// Blocks `first_block ..` of `stripe`'s data.
    pub fn read(&self, stripe: u64, first_block: u32, block_count: u32) -> Vec<u8> {
        let extent = self
            .geometry
            .stripe_extent(
                stripe,
                u64::from(first_block) * u64::from(BLOCK_BYTES),
                u64::from(block_count) * u64::from(BLOCK_BYTES),
            )
            .expect("read inside the stripe");
        let plan = self
            .geometry
            .plan_read(&extent, MemberSet::new())
            .expect("healthy read");
        let buffers: Vec<&[u8]> = plan.reads().iter().map(|io| self.read_io(io)).collect();
        let mut out = vec![0; extent.length() as usize];
        plan.execute(&buffers, &mut out)
            .expect("buffers fit the plan");
        out
    }

    /// The member writes that put `data` at `first_block` of `stripe` with parity.
    pub fn plan_write(&self, stripe: u64, first_block: u32, data: &[u8]) -> Vec<MemberWrite> {
        let extent = self
            .geometry
            .stripe_extent(
                stripe,
                u64::from(first_block) * u64::from(BLOCK_BYTES),
                data.len() as u64,
            )
            .expect("write inside the stripe");
        let plan = self
            .geometry
            .plan_write(&extent, MemberSet::new())
            .expect("healthy write");
        let buffers: Vec<&[u8]> = plan.reads().iter().map(|io| self.read_io(io)).collect();
        plan.execute_to_vec(&mut HostParity, &buffers, data)
            .expect("buffers fit the plan")
    }

    /// Full-stripe reconstruct-write: the stripe's data with `data` laid over it at
    /// `first_block`, and fresh parity. Empty `data` rewrites parity only.
    pub fn plan_replay(&self, stripe: u64, first_block: u32, data: &[u8]) -> Vec<MemberWrite> {
        let blocks = self.stripe_data_blocks();
        let mut whole = self.read(stripe, 0, blocks);
        let start = first_block as usize * BLOCK_BYTES as usize;
        whole[start..start + data.len()].copy_from_slice(data);
        self.plan_write(stripe, 0, &whole)
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
            let check = self
                .geometry
                .check_parity(&mut HostParity, stripe, &buffers)
                .expect("buffers fit");
            if !check.is_consistent() {
                bad.push(stripe);
            }
        }
        bad
    }
}
