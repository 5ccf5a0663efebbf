//! The shape of plans for hand-picked cases: which mode, which member reads and writes.

mod common;

use amf_parity::HostParity;
use amf_raid::{
    BufferError, Columns, ComputeError, Geometry, Level, MemberIo, MemberSet, PlanError, Role,
    StripeExtent, WriteMode,
};
use common::{Array, Rng};
use shared_regs::limits::CHUNK_BYTES_DEFAULT;

const CHUNK: u32 = CHUNK_BYTES_DEFAULT;
const KIB: u32 = 1024;

fn geometry(level: Level, members: u32) -> Geometry {
    Geometry::new(level, members, CHUNK, 16 * u64::from(CHUNK)).unwrap()
}

/// The single extent of a request that stays inside one stripe.
fn extent(geometry: &Geometry, offset: u64, length: u64) -> StripeExtent {
    let mut extents = geometry.split(offset, length).unwrap();
    let extent = extents.next().unwrap();
    assert!(extents.next().is_none());
    extent
}

fn io(geometry: &Geometry, stripe: u64, role: Role, start: u32, length: u32) -> MemberIo {
    MemberIo {
        member: geometry.member_of(stripe, role).unwrap(),
        role,
        member_offset: stripe * u64::from(CHUNK) + u64::from(start),
        length,
    }
}

fn modes(plan: &amf_raid::WritePlan) -> Vec<(Columns, WriteMode)> {
    plan.segments().collect()
}

#[test]
fn small_write_touches_only_its_columns_with_read_modify_write() {
    let geometry = geometry(Level::Raid6, 8);
    let stripe = 3;
    let offset = stripe * geometry.stripe_data_bytes() + 2 * u64::from(CHUNK) + u64::from(8 * KIB);
    let plan = geometry
        .plan_write(&extent(&geometry, offset, 4096), MemberSet::new())
        .unwrap();
    assert_eq!(
        modes(&plan),
        [(Columns::new(8 * KIB, 12 * KIB), WriteMode::ReadModifyWrite)]
    );
    let expected: Vec<MemberIo> = [Role::Data(2), Role::P, Role::Q]
        .into_iter()
        .map(|role| io(&geometry, stripe, role, 8 * KIB, 4 * KIB))
        .collect();
    assert_eq!(plan.reads(), expected);
    assert_eq!(plan.writes(), expected);
}

#[test]
fn tie_between_modes_goes_to_reconstruct_write() {
    // RAID-5 over 4: one chunk written costs 2 reads either way.
    let geometry = geometry(Level::Raid5, 4);
    let plan = geometry
        .plan_write(&extent(&geometry, 0, 4096), MemberSet::new())
        .unwrap();
    assert_eq!(
        modes(&plan),
        [(Columns::new(0, 4 * KIB), WriteMode::ReconstructWrite)]
    );
    let roles: Vec<Role> = plan.reads().iter().map(|io| io.role).collect();
    assert_eq!(roles, [Role::Data(1), Role::Data(2)]);
    // Two chunks out of three: reconstruct-write reads 1, read-modify-write 3.
    let plan = geometry
        .plan_write(
            &extent(&geometry, 0, 2 * u64::from(CHUNK)),
            MemberSet::new(),
        )
        .unwrap();
    assert_eq!(
        modes(&plan),
        [(Columns::new(0, CHUNK), WriteMode::ReconstructWrite)]
    );
    assert_eq!(plan.reads(), [io(&geometry, 0, Role::Data(2), 0, CHUNK)]);
}

#[test]
fn full_stripe_write_reads_nothing() {
    let geometry = geometry(Level::Raid6, 6);
    let stripe = 5;
    let plan = geometry
        .plan_write(&geometry.whole_stripe(stripe), MemberSet::new())
        .unwrap();
    assert_eq!(
        modes(&plan),
        [(Columns::new(0, CHUNK), WriteMode::FullStripe)]
    );
    assert!(plan.reads().is_empty());
    let mut members: Vec<u32> = plan.writes().iter().map(|io| io.member).collect();
    members.sort_unstable();
    assert_eq!(members, (0..6).collect::<Vec<_>>());
    assert!(plan.writes().iter().all(|io| io.length == CHUNK));
}

#[test]
fn write_across_a_chunk_boundary_has_two_column_segments() {
    let geometry = geometry(Level::Raid6, 8);
    let offset = u64::from(CHUNK) - 2048;
    let plan = geometry
        .plan_write(&extent(&geometry, offset, 4096), MemberSet::new())
        .unwrap();
    assert_eq!(
        modes(&plan),
        [
            (Columns::new(0, 2 * KIB), WriteMode::ReadModifyWrite),
            (
                Columns::new(CHUNK - 2 * KIB, CHUNK),
                WriteMode::ReadModifyWrite
            ),
        ]
    );
    assert_eq!(plan.reads().len(), 6);
    assert!(plan.reads().iter().all(|io| io.length == 2 * KIB));
    assert_eq!(plan.writes().len(), 6);
}

#[test]
fn parity_writes_merge_across_segments() {
    // From column 48K of D0 to column 16K of D2 on RAID-5 over 5: three segments, one P write.
    let geometry = geometry(Level::Raid5, 5);
    let length = u64::from(CHUNK) + u64::from(32 * KIB);
    let plan = geometry
        .plan_write(
            &extent(&geometry, u64::from(48 * KIB), length),
            MemberSet::new(),
        )
        .unwrap();
    let columns: Vec<Columns> = plan.segments().map(|(columns, _)| columns).collect();
    assert_eq!(
        columns,
        [
            Columns::new(0, 16 * KIB),
            Columns::new(16 * KIB, 48 * KIB),
            Columns::new(48 * KIB, CHUNK)
        ]
    );
    let parity: Vec<&MemberIo> = plan
        .writes()
        .iter()
        .filter(|io| io.role == Role::P)
        .collect();
    assert_eq!(parity, [&io(&geometry, 0, Role::P, 0, CHUNK)]);
}

#[test]
fn degraded_writes_skip_failed_members() {
    let geometry = geometry(Level::Raid5, 4);
    let stripe = 0;
    // RAID-5 without P: just the data.
    let failed: MemberSet = [geometry.p_member(stripe)].into_iter().collect();
    let plan = geometry
        .plan_write(&extent(&geometry, 0, 4096), failed)
        .unwrap();
    assert_eq!(
        modes(&plan),
        [(Columns::new(0, 4 * KIB), WriteMode::DataOnly)]
    );
    assert!(plan.reads().is_empty());
    assert_eq!(
        plan.writes(),
        [io(&geometry, stripe, Role::Data(0), 0, 4 * KIB)]
    );
    // The written chunk's member failed: read-modify-write cannot read the old data.
    let failed: MemberSet = [geometry.data_member(stripe, 0)].into_iter().collect();
    let plan = geometry
        .plan_write(&extent(&geometry, 0, 4096), failed)
        .unwrap();
    assert_eq!(modes(&plan)[0].1, WriteMode::ReconstructWrite);
    assert_eq!(plan.writes(), [io(&geometry, stripe, Role::P, 0, 4 * KIB)]);
    // A chunk not written failed: reconstruct-write cannot read it.
    let failed: MemberSet = [geometry.data_member(stripe, 1)].into_iter().collect();
    let plan = geometry
        .plan_write(&extent(&geometry, 0, 4096), failed)
        .unwrap();
    assert_eq!(modes(&plan)[0].1, WriteMode::ReadModifyWrite);
}

#[test]
fn raid6_with_a_written_and_an_unwritten_chunk_lost_reads_every_survivor() {
    let geometry = geometry(Level::Raid6, 6);
    let failed: MemberSet = [geometry.data_member(0, 0), geometry.data_member(0, 3)]
        .into_iter()
        .collect();
    let plan = geometry
        .plan_write(&extent(&geometry, 0, 4096), failed)
        .unwrap();
    assert_eq!(modes(&plan)[0].1, WriteMode::DegradedReconstruct);
    let roles: Vec<Role> = plan.reads().iter().map(|io| io.role).collect();
    assert_eq!(roles, [Role::Data(1), Role::Data(2), Role::P, Role::Q]);
    let roles: Vec<Role> = plan.writes().iter().map(|io| io.role).collect();
    assert_eq!(roles, [Role::P, Role::Q]);
}

#[test]
fn too_many_failures_are_unavailable() {
    let raid5 = geometry(Level::Raid5, 4);
    let raid6 = geometry(Level::Raid6, 6);
    let two: MemberSet = [0, 1].into_iter().collect();
    let three: MemberSet = [0, 1, 5].into_iter().collect();
    let whole = raid5.whole_stripe(0);
    assert_eq!(
        raid5.plan_write(&whole, two).unwrap_err(),
        PlanError::Unavailable {
            failed: 2,
            level: Level::Raid5,
            parity_count: 1
        }
    );
    assert!(matches!(
        raid5.plan_read(&whole, two),
        Err(PlanError::Unavailable { .. })
    ));
    assert!(matches!(
        raid6.plan_read(&raid6.whole_stripe(0), three),
        Err(PlanError::Unavailable { .. })
    ));
    assert!(matches!(
        raid6.plan_rebuild(0, 2, Columns::new(0, CHUNK), two),
        Err(PlanError::Unavailable { .. })
    ));
    let beyond: MemberSet = [4].into_iter().collect();
    assert_eq!(
        raid5.plan_write(&whole, beyond).unwrap_err(),
        PlanError::UnknownMember {
            member: 4,
            members: 4
        }
    );
}

#[test]
fn degraded_read_reads_each_survivor_once() {
    let geometry = geometry(Level::Raid5, 4);
    let failed: MemberSet = [geometry.data_member(0, 1)].into_iter().collect();
    let plan = geometry
        .plan_read(&geometry.whole_stripe(0), failed)
        .unwrap();
    assert!(!plan.is_direct());
    let roles: Vec<Role> = plan.reads().iter().map(|io| io.role).collect();
    assert_eq!(roles, [Role::Data(0), Role::Data(2), Role::P]);
    assert!(plan.reads().iter().all(|io| io.length == CHUNK));
    // Healthy: the pieces themselves.
    let plan = geometry
        .plan_read(&extent(&geometry, 4096, 4096), failed)
        .unwrap();
    assert!(plan.is_direct());
    assert_eq!(
        plan.reads(),
        [io(&geometry, 0, Role::Data(0), 4 * KIB, 4 * KIB)]
    );
    // A piece far from the lost columns is read apart from them.
    let offset = u64::from(CHUNK) - 4096;
    let plan = geometry
        .plan_read(&extent(&geometry, offset, 8192), failed)
        .unwrap();
    let reads: Vec<(Role, u64, u32)> = plan
        .reads()
        .iter()
        .map(|io| (io.role, io.member_offset, io.length))
        .collect();
    let top = u64::from(CHUNK - 4 * KIB);
    assert_eq!(
        reads,
        [
            (Role::Data(0), 0, 4 * KIB),
            (Role::Data(0), top, 4 * KIB),
            (Role::Data(2), 0, 4 * KIB),
            (Role::P, 0, 4 * KIB)
        ]
    );
}

#[test]
fn buffers_of_the_wrong_shape_are_refused() {
    let geometry = geometry(Level::Raid6, 8);
    let plan = geometry
        .plan_write(&extent(&geometry, 0, 4096), MemberSet::new())
        .unwrap();
    let read = vec![0u8; 4096];
    let reads = [read.as_slice(); 3];
    let new_data = vec![1u8; 4096];
    let engine = &mut HostParity;
    assert!(plan.execute_to_vec(engine, &reads, &new_data).is_ok());
    assert!(matches!(
        plan.execute_to_vec(engine, &reads[..2], &new_data),
        Err(ComputeError::Buffer(BufferError::Count { .. }))
    ));
    let short = [read.as_slice(), read.as_slice(), &read[..100]];
    assert!(matches!(
        plan.execute_to_vec(engine, &short, &new_data),
        Err(ComputeError::Buffer(BufferError::Length { index: 2, .. }))
    ));
    assert!(matches!(
        plan.execute_to_vec(engine, &reads, &new_data[1..]),
        Err(ComputeError::Buffer(BufferError::Length { .. }))
    ));
    let read_plan = geometry
        .plan_read(&extent(&geometry, 0, 4096), MemberSet::new())
        .unwrap();
    let mut out = vec![0u8; 4095];
    assert!(read_plan.execute(&reads[..1], &mut out).is_err());
}

#[test]
fn scrub_finds_and_repairs_each_parity() {
    let mut rng = Rng::new(7);
    let engine = &mut HostParity;
    for level in [Level::Raid5, Level::Raid6] {
        let geometry = Geometry::new(level, 6, CHUNK, 8 * u64::from(CHUNK)).unwrap();
        let mut array = Array::new(geometry, &mut rng);
        let stripe = 3;
        let parity = [Some(geometry.p_member(stripe)), geometry.q_member(stripe)];
        for (which, member) in parity.into_iter().enumerate() {
            let Some(member) = member else { continue };
            let column = rng.below(u64::from(CHUNK)) as usize;
            let start = (stripe * u64::from(CHUNK)) as usize;
            array.members[member as usize][start + column] ^= 0x40;
            let mut views: Vec<&mut [u8]> = array
                .members
                .iter_mut()
                .map(|m| &mut m[start..start + CHUNK as usize])
                .collect();
            let check = {
                let shared: Vec<&[u8]> = views.iter().map(|v| &**v).collect();
                // The same columns alone tell too; columns elsewhere do not.
                let around: Vec<&[u8]> = shared.iter().map(|v| &v[column..column + 1]).collect();
                assert!(
                    !geometry
                        .check_parity(engine, stripe, &around)
                        .unwrap()
                        .is_consistent()
                );
                let other = (column + 4096) % CHUNK as usize;
                let away: Vec<&[u8]> = shared.iter().map(|v| &v[other..other + 1]).collect();
                assert!(
                    geometry
                        .check_parity(engine, stripe, &away)
                        .unwrap()
                        .is_consistent()
                );
                geometry.check_parity(engine, stripe, &shared).unwrap()
            };
            assert_eq!(
                (check.p_mismatch, check.q_mismatch),
                (which == 0, which == 1)
            );
            assert_eq!(
                geometry.repair_parity(engine, stripe, &mut views).unwrap(),
                check
            );
            let shared: Vec<&[u8]> = views.iter().map(|v| &**v).collect();
            assert!(
                geometry
                    .check_parity(engine, stripe, &shared)
                    .unwrap()
                    .is_consistent()
            );
        }
        // A corrupt data byte shows as a mismatch of every parity.
        let start = (stripe * u64::from(CHUNK)) as usize;
        array.members[geometry.data_member(stripe, 1) as usize][start + 5] ^= 1;
        let views: Vec<&[u8]> = array
            .members
            .iter()
            .map(|m| &m[start..start + CHUNK as usize])
            .collect();
        let check = geometry.check_parity(engine, stripe, &views).unwrap();
        assert_eq!(
            (check.p_mismatch, check.q_mismatch),
            (true, level == Level::Raid6)
        );
        assert!(matches!(
            geometry.check_parity(engine, stripe, &views[1..]),
            Err(ComputeError::Buffer(BufferError::Count { .. }))
        ));
    }
}
