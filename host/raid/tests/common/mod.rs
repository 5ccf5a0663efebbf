//! Test support: a seeded PRNG and an in-memory array driven only through the plans.
#![allow(dead_code)]

use std::collections::HashMap;

use amf_raid::{Columns, Geometry, Level, MemberIo, MemberSet, Role, WriteMode};

/// splitmix64: small, seeded, good enough to pick test cases.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5eed_0fa4_f11e_4c00)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound`.
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0);
        self.next_u64() % bound
    }

    /// Uniform in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn fill(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }

    pub fn bytes(&mut self, length: usize) -> Vec<u8> {
        let mut bytes = vec![0; length];
        self.fill(&mut bytes);
        bytes
    }
}

/// Members as plain byte vectors; failed members hold junk and must never be touched.
pub struct Array {
    pub geometry: Geometry,
    pub members: Vec<Vec<u8>>,
    pub failed: MemberSet,
    pub modes: HashMap<WriteMode, u64>,
}

impl Array {
    /// Random data with parity set right by the crate's scrub repair (and checked by
    /// [`Array::check_consistent`], which does not use it).
    pub fn new(geometry: Geometry, rng: &mut Rng) -> Array {
        let size = geometry.member_used_bytes() as usize;
        let members = (0..geometry.members()).map(|_| rng.bytes(size)).collect();
        let mut array = Array {
            geometry,
            members,
            failed: MemberSet::new(),
            modes: HashMap::new(),
        };
        for stripe in 0..geometry.stripe_count() {
            let chunk = geometry.chunk_bytes() as usize;
            let start = geometry.stripe_member_offset(stripe) as usize;
            let mut views: Vec<&mut [u8]> = array
                .members
                .iter_mut()
                .map(|member| &mut member[start..start + chunk])
                .collect();
            let before = geometry.repair_parity(stripe, &mut views).unwrap();
            assert!(!before.is_consistent(), "random parity matched by chance");
            let views: Vec<&[u8]> = views.iter().map(|view| &**view).collect();
            assert!(
                geometry
                    .check_parity(stripe, &views)
                    .unwrap()
                    .is_consistent()
            );
        }
        array
    }

    /// The volume as the array holds it, read without the crate: data chunks in order.
    pub fn volume_from_members(&self) -> Vec<u8> {
        assert!(self.failed.is_empty());
        let geometry = &self.geometry;
        let chunk = geometry.chunk_bytes() as usize;
        let mut volume = Vec::with_capacity(geometry.volume_bytes() as usize);
        for stripe in 0..geometry.stripe_count() {
            let start = geometry.stripe_member_offset(stripe) as usize;
            for index in 0..geometry.data_chunks() {
                let member = geometry.data_member(stripe, index) as usize;
                volume.extend_from_slice(&self.members[member][start..start + chunk]);
            }
        }
        volume
    }

    pub fn fail(&mut self, member: u32, rng: &mut Rng) {
        assert!(!self.failed.contains(member));
        self.failed.insert(member);
        // A lost member returns junk if anyone wrongly reads it.
        rng.fill(&mut self.members[member as usize]);
    }

    /// The bytes of every read, refusing failed members.
    pub fn serve(&self, reads: &[MemberIo]) -> Vec<&[u8]> {
        reads
            .iter()
            .map(|io| {
                assert!(
                    !self.failed.contains(io.member),
                    "read of failed member {io:?}"
                );
                let start = io.member_offset as usize;
                &self.members[io.member as usize][start..start + io.length as usize]
            })
            .collect()
    }

    fn put(&mut self, io: &MemberIo, bytes: &[u8]) {
        assert!(
            !self.failed.contains(io.member),
            "write to failed member {io:?}"
        );
        assert_eq!(bytes.len(), io.length as usize);
        assert!(io.member_offset + u64::from(io.length) <= self.geometry.member_used_bytes());
        let start = io.member_offset as usize;
        self.members[io.member as usize][start..start + bytes.len()].copy_from_slice(bytes);
    }

    /// Writes `data` at `offset` through the write plans.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        let geometry = self.geometry;
        for extent in geometry.split(offset, data.len() as u64).unwrap() {
            let plan = geometry.plan_write(&extent, self.failed).unwrap();
            for (_, mode) in plan.segments() {
                *self.modes.entry(mode).or_default() += 1;
            }
            let start = extent.request_offset() as usize;
            let new_data = &data[start..start + extent.length() as usize];
            let writes = plan
                .execute_to_vec(&self.serve(plan.reads()), new_data)
                .unwrap();
            assert_eq!(writes.len(), plan.writes().len());
            for write in &writes {
                self.put(&write.io, &write.bytes);
            }
        }
    }

    /// Reads `length` bytes at `offset` through the read plans.
    pub fn read(&self, offset: u64, length: u64) -> Vec<u8> {
        let mut out = vec![0; length as usize];
        for extent in self.geometry.split(offset, length).unwrap() {
            let plan = self.geometry.plan_read(&extent, self.failed).unwrap();
            let start = extent.request_offset() as usize;
            let target = &mut out[start..start + extent.length() as usize];
            let reads = self.serve(plan.reads());
            if plan.is_direct() {
                assert!(self.failed.iter().all(|member| {
                    self.geometry
                        .pieces(&extent)
                        .all(|piece| piece.member != member)
                }));
                let direct: Vec<u8> = reads.concat();
                target.copy_from_slice(&direct);
            } else {
                plan.execute(&reads, target).unwrap();
            }
        }
        out
    }

    /// Rebuilds every failed member in two random column ranges per stripe, then brings
    /// it back.
    pub fn rebuild(&mut self, rng: &mut Rng) {
        let geometry = self.geometry;
        let chunk = geometry.chunk_bytes();
        let failed = self.failed;
        self.failed = MemberSet::new();
        for member in failed.iter() {
            for stripe in 0..geometry.stripe_count() {
                let cut = rng.between(1, u64::from(chunk) - 1) as u32;
                for columns in [Columns::new(0, cut), Columns::new(cut, chunk)] {
                    let plan = geometry
                        .plan_rebuild(stripe, member, columns, failed)
                        .unwrap();
                    let mut out = vec![0; columns.length() as usize];
                    let reads: Vec<Vec<u8>> = plan
                        .reads()
                        .iter()
                        .map(|io| {
                            assert!(!failed.contains(io.member));
                            self.serve(&[*io])[0].to_vec()
                        })
                        .collect();
                    let reads: Vec<&[u8]> = reads.iter().map(Vec::as_slice).collect();
                    plan.execute(&reads, &mut out).unwrap();
                    self.put(&plan.write(), &out);
                }
            }
        }
    }

    /// Every stripe's chunks in `amf_parity` order (data, P, Q), the failed ones rebuilt
    /// with `amf_parity::recover` directly; then parity recomputed from the data must equal
    /// the parity held, and the data the oracle.
    pub fn check_consistent(&self, oracle: &[u8]) {
        let geometry = &self.geometry;
        let chunk = geometry.chunk_bytes() as usize;
        let data_chunks = geometry.data_chunks() as usize;
        for stripe in 0..geometry.stripe_count() {
            let start = geometry.stripe_member_offset(stripe) as usize;
            let mut chunks = vec![vec![0u8; chunk]; geometry.members() as usize];
            let mut lost = Vec::new();
            for member in 0..geometry.members() {
                let slot = match geometry.role(stripe, member) {
                    Role::Data(index) => index as usize,
                    Role::P => data_chunks,
                    Role::Q => data_chunks + 1,
                };
                if self.failed.contains(member) {
                    lost.push(slot);
                    chunks[slot].fill(0xa5);
                } else {
                    chunks[slot]
                        .copy_from_slice(&self.members[member as usize][start..start + chunk]);
                }
            }
            let mut views: Vec<&mut [u8]> = chunks.iter_mut().map(Vec::as_mut_slice).collect();
            amf_parity::recover(&mut views, geometry.parity_count() as usize, &lost).unwrap();
            let data: Vec<&[u8]> = chunks[..data_chunks].iter().map(Vec::as_slice).collect();
            let (mut p, mut q) = (vec![0; chunk], vec![0; chunk]);
            match geometry.level() {
                Level::Raid5 => amf_parity::gen_p(&data, &mut p),
                Level::Raid6 => amf_parity::gen_pq(&data, &mut p, &mut q),
            }
            assert!(
                p == chunks[data_chunks],
                "stripe {stripe}: P disagrees (failed {:?})",
                self.failed
            );
            if geometry.level() == Level::Raid6 {
                assert!(
                    q == chunks[data_chunks + 1],
                    "stripe {stripe}: Q disagrees (failed {:?})",
                    self.failed
                );
            }
            let volume_start = stripe as usize * data_chunks * chunk;
            let expected = &oracle[volume_start..volume_start + data_chunks * chunk];
            assert!(
                data.concat() == expected,
                "stripe {stripe}: data differs from the oracle"
            );
        }
    }
}
