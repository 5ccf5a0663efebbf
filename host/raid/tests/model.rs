//! An in-memory array driven only through the plans, against a plain `Vec<u8>` oracle of
//! the volume, with members failing (and being rebuilt) along the way.

mod common;

use std::collections::HashMap;

use amf_raid::{Geometry, Level, WriteMode};
use common::{Array, Rng};
use shared_regs::limits::{BLOCK_BYTES, CHUNK_BYTES_MIN};

const RUNS: u64 = 64;
const STEPS: u64 = 40;

fn random_geometry(rng: &mut Rng) -> Geometry {
    let level = if rng.chance(50) {
        Level::Raid5
    } else {
        Level::Raid6
    };
    let min = u64::from(level.members_min());
    let members = rng.between(min, min + 4);
    let chunk = u64::from(CHUNK_BYTES_MIN) << rng.below(2);
    // At least one stripe per rotation, and a ragged tail the geometry must drop.
    let stripes = members + rng.below(3);
    let size = stripes * chunk + rng.below(chunk);
    Geometry::new(level, members as u32, chunk as u32, size).unwrap()
}

/// A request of a random kind: sub-block, aligned block, across chunks, across stripes,
/// whole stripes, or anything.
fn random_request(rng: &mut Rng, geometry: &Geometry) -> (u64, u64) {
    let volume = geometry.volume_bytes();
    let chunk = u64::from(geometry.chunk_bytes());
    let stripe = geometry.stripe_data_bytes();
    let block = u64::from(BLOCK_BYTES);
    let near = |rng: &mut Rng, unit: u64| {
        let boundary = rng.below(volume / unit) * unit;
        boundary.saturating_sub(rng.below(block / 2))
    };
    let (offset, length) = match rng.below(6) {
        0 => (rng.below(volume), rng.between(1, block)),
        1 => (rng.below(volume / block) * block, block),
        2 => (near(rng, chunk), rng.between(1, 2 * block)),
        3 => (near(rng, stripe), rng.between(1, 2 * stripe)),
        4 => {
            let first = rng.below(geometry.stripe_count());
            (first * stripe, rng.between(1, 2) * stripe)
        }
        _ => (rng.below(volume), rng.between(1, 3 * stripe)),
    };
    let offset = offset.min(volume - 1);
    (offset, length.min(volume - offset))
}

fn fail_one(array: &mut Array, rng: &mut Rng) {
    let alive: Vec<u32> = (0..array.geometry.members())
        .filter(|&member| !array.failed.contains(member))
        .collect();
    let member = alive[rng.below(alive.len() as u64) as usize];
    array.fail(member, rng);
}

fn run(seed: u64, modes: &mut HashMap<WriteMode, u64>) {
    let mut rng = Rng::new(seed);
    let geometry = random_geometry(&mut rng);
    let mut array = Array::new(geometry, &mut rng);
    let mut oracle = array.volume_from_members();
    array.check_consistent(&oracle);
    for step in 0..STEPS {
        if rng.chance(20) && array.failed.count() < geometry.parity_count() {
            fail_one(&mut array, &mut rng);
        } else if rng.chance(4) && !array.failed.is_empty() {
            array.rebuild(&mut rng);
        }
        let (offset, length) = random_request(&mut rng, &geometry);
        let data = rng.bytes(length as usize);
        array.write(offset, &data);
        oracle[offset as usize..(offset + length) as usize].copy_from_slice(&data);
        array.check_consistent(&oracle);
        let (offset, length) = random_request(&mut rng, &geometry);
        let read = array.read(offset, length);
        let expected = &oracle[offset as usize..(offset + length) as usize];
        assert!(
            read == expected,
            "step {step}: read {offset}+{length} differs"
        );
    }
    assert!(
        array.read(0, geometry.volume_bytes()) == oracle,
        "whole-volume read differs"
    );
    array.rebuild(&mut rng);
    array.check_consistent(&oracle);
    assert!(
        array.volume_from_members() == oracle,
        "rebuilt members differ"
    );
    for (mode, count) in array.modes {
        *modes.entry(mode).or_default() += count;
    }
}

#[test]
fn plans_keep_parity_consistent_and_reads_match_the_oracle() {
    let mut modes = HashMap::new();
    for seed in 0..RUNS {
        eprintln!("seed {seed}");
        run(seed, &mut modes);
    }
    eprintln!("modes chosen: {modes:?}");
    for mode in [
        WriteMode::ReadModifyWrite,
        WriteMode::ReconstructWrite,
        WriteMode::FullStripe,
        WriteMode::DataOnly,
        WriteMode::DegradedReconstruct,
    ] {
        assert!(
            modes.get(&mode).copied().unwrap_or(0) > 0,
            "{mode:?} never chosen"
        );
    }
}
