//! An in-memory array driven only through the plans, against a plain `Vec<u8>` oracle of
//! the volume, with members failing (and being rebuilt) along the way.

mod common;

use std::collections::HashMap;

use amf_raid::WriteMode;
use common::{Array, Rng, pick_alive, random_geometry, random_request};

const RUNS: u64 = 64;
const STEPS: u64 = 40;

fn fail_one(array: &mut Array, rng: &mut Rng) {
    let member = pick_alive(&array.geometry, array.failed, rng);
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
