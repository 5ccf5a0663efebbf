//! Every failure single and pair, over every stripe rotation, through the degraded read
//! path and the rebuild path, as Linux lib/raid6's test runs every failed-disk pair.

mod common;

use std::collections::HashSet;

use amf_raid::{Columns, Geometry, Level, MemberSet, Role};
use common::{Array, Rng};
use shared_regs::limits::CHUNK_BYTES_MIN;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Class {
    Data,
    P,
    Q,
    DataData,
    DataP,
    DataQ,
    PQ,
}

fn class(roles: &[Role]) -> Class {
    let data = roles
        .iter()
        .filter(|role| matches!(role, Role::Data(_)))
        .count();
    let p = roles.contains(&Role::P);
    let q = roles.contains(&Role::Q);
    match (data, p, q) {
        (1, false, false) => Class::Data,
        (0, true, false) => Class::P,
        (0, false, true) => Class::Q,
        (2, _, _) => Class::DataData,
        (1, true, _) => Class::DataP,
        (1, _, true) => Class::DataQ,
        (0, true, true) => Class::PQ,
        _ => unreachable!("{roles:?}"),
    }
}

/// Requests inside `stripe`: all of it, one byte, across a chunk boundary, an unaligned run.
fn requests(geometry: &Geometry, stripe: u64) -> [(u64, u64); 4] {
    let start = stripe * geometry.stripe_data_bytes();
    let chunk = u64::from(geometry.chunk_bytes());
    [
        (start, geometry.stripe_data_bytes()),
        (start + chunk + 17, 1),
        (start + chunk - 100, 300),
        (start + 5, geometry.stripe_data_bytes() - 1000),
    ]
}

fn exercise(level: Level, members: u32, classes: &mut HashSet<Class>) {
    let mut rng = Rng::new(u64::from(members));
    let chunk = CHUNK_BYTES_MIN;
    let geometry =
        Geometry::new(level, members, chunk, u64::from(members) * u64::from(chunk)).unwrap();
    let pristine = Array::new(geometry, &mut rng);
    let oracle = pristine.volume_from_members();
    let mut failures: Vec<Vec<u32>> = (0..members).map(|a| vec![a]).collect();
    if level == Level::Raid6 {
        for a in 0..members {
            failures.extend((a + 1..members).map(|b| vec![a, b]));
        }
    }
    for failed_members in failures {
        let mut array = Array::new(geometry, &mut Rng::new(0));
        array.members.clone_from(&pristine.members);
        for &member in &failed_members {
            array.fail(member, &mut rng);
        }
        for stripe in 0..geometry.stripe_count() {
            let roles: Vec<Role> = failed_members
                .iter()
                .map(|&m| geometry.role(stripe, m))
                .collect();
            classes.insert(class(&roles));
            for (offset, length) in requests(&geometry, stripe) {
                let read = array.read(offset, length);
                let expected = &oracle[offset as usize..(offset + length) as usize];
                assert!(
                    read == expected,
                    "{level} failed {failed_members:?} stripe {stripe}: {offset}+{length}"
                );
            }
        }
        check_rebuild(&array, &pristine, failed_members.iter().copied().collect());
    }
}

/// Rebuilds each failed member's chunk in every stripe and compares with what it held.
fn check_rebuild(array: &Array, pristine: &Array, failed: MemberSet) {
    let geometry = array.geometry;
    let chunk = geometry.chunk_bytes();
    for member in failed.iter() {
        for stripe in 0..geometry.stripe_count() {
            let columns = Columns::new(100, chunk - 3);
            let plan = geometry
                .plan_rebuild(stripe, member, columns, failed)
                .unwrap();
            let mut out = vec![0xee; columns.length() as usize];
            plan.execute(&array.serve(plan.reads()), &mut out).unwrap();
            let write = plan.write();
            assert_eq!(write.member, member);
            let start = write.member_offset as usize;
            let expected = &pristine.members[member as usize][start..start + out.len()];
            assert!(
                out == expected,
                "rebuild of member {member} (failed {failed:?}) stripe {stripe}"
            );
        }
    }
}

#[test]
fn raid6_every_failure_pair_reads_back() {
    let mut classes = HashSet::new();
    for members in [4, 5, 7] {
        exercise(Level::Raid6, members, &mut classes);
    }
    let all = [
        Class::Data,
        Class::P,
        Class::Q,
        Class::DataData,
        Class::DataP,
        Class::DataQ,
        Class::PQ,
    ];
    for class in all {
        assert!(classes.contains(&class), "{class:?} never exercised");
    }
}

#[test]
fn raid5_every_failure_reads_back() {
    let mut classes = HashSet::new();
    for members in [3, 4, 6] {
        exercise(Level::Raid5, members, &mut classes);
    }
    assert_eq!(classes, HashSet::from([Class::Data, Class::P]));
}
