//! Parity on the host or through the card gives the same bytes: the random-write model of
//! `model.rs` runs twice on the same seed, once with [`HostParity`] and once with a sim
//! card's [`CardParity`], and the members must be byte-identical after every step; then
//! scrub through the card must find exactly the mismatches the host finds, and repair them
//! into the same bytes.

mod common;

use std::collections::HashMap;

use amf_card::{CardParity, SimCard};
use amf_parity::{HostParity, ParityEngine};
use amf_raid::{Geometry, Level, ParityCheck, WriteMode};
use common::{Array, Rng, pick_alive, random_geometry, random_request};

const RUNS: u64 = 64;
const STEPS: u64 = 40;
/// The sim card's SRAM: unused here, so the smallest a card takes (one window).
const SRAM_BYTES: u64 = 64 * 1024;

type CardArray = Array<CardParity<SimCard>>;

/// Every member of both arrays, failed ones included (their junk comes from the same
/// seed too), must hold the same bytes.
fn assert_same(host: &Array, card: &CardArray, context: &str) {
    assert_eq!(host.failed, card.failed);
    for (member, (on_host, on_card)) in host.members.iter().zip(&card.members).enumerate() {
        assert!(on_host == on_card, "{context}: member {member} differs");
    }
}

/// One seed of the model on both arrays; hands the card back for the next seed.
fn run(
    seed: u64,
    engine: CardParity<SimCard>,
    modes: &mut HashMap<WriteMode, u64>,
) -> CardParity<SimCard> {
    let mut rng = Rng::new(seed);
    let geometry = random_geometry(&mut rng);
    let mut fork = rng.clone();
    let mut host = Array::new(geometry, &mut rng);
    let mut card = Array::with_engine(geometry, &mut fork, engine);
    assert_same(&host, &card, "initial parity");
    let mut oracle = host.volume_from_members();
    for step in 0..STEPS {
        if rng.chance(20) && host.failed.count() < geometry.parity_count() {
            let member = pick_alive(&geometry, host.failed, &mut rng);
            let mut fork = rng.clone();
            host.fail(member, &mut rng);
            card.fail(member, &mut fork);
        } else if rng.chance(4) && !host.failed.is_empty() {
            let mut fork = rng.clone();
            host.rebuild(&mut rng);
            card.rebuild(&mut fork);
        }
        let (offset, length) = random_request(&mut rng, &geometry);
        let data = rng.bytes(length as usize);
        host.write(offset, &data);
        card.write(offset, &data);
        oracle[offset as usize..(offset + length) as usize].copy_from_slice(&data);
        assert_same(&host, &card, &format!("seed {seed} step {step}"));
        card.check_consistent(&oracle);
    }
    let mut fork = rng.clone();
    host.rebuild(&mut rng);
    card.rebuild(&mut fork);
    assert_same(&host, &card, &format!("seed {seed} final rebuild"));
    scrub_agrees(&mut host, &mut card, &mut rng);
    for (mode, count) in card.modes {
        *modes.entry(mode).or_default() += count;
    }
    card.engine
}

/// Corrupts P of one stripe, Q (RAID-6) of another and a data byte of a third, the same on
/// both arrays; every stripe's check, whole and over a few columns, agrees between the
/// engines; repair gives the same members, which then check clean.
fn scrub_agrees(host: &mut Array, card: &mut CardArray, rng: &mut Rng) {
    let geometry = host.geometry;
    let chunk = geometry.chunk_bytes() as usize;
    let stripes = geometry.stripe_count();
    let mut expected = vec![ParityCheck::default(); stripes as usize];
    let corrupt_p = rng.below(stripes);
    let corrupt_data = (corrupt_p + 1) % stripes;
    let corrupt_q = (corrupt_p + 2) % stripes;
    let mut targets = vec![(corrupt_p, geometry.p_member(corrupt_p))];
    expected[corrupt_p as usize].p_mismatch = true;
    targets.push((corrupt_data, geometry.data_member(corrupt_data, 0)));
    expected[corrupt_data as usize].p_mismatch = true;
    expected[corrupt_data as usize].q_mismatch = geometry.level() == Level::Raid6;
    if let Some(q_member) = geometry.q_member(corrupt_q) {
        targets.push((corrupt_q, q_member));
        expected[corrupt_q as usize].q_mismatch = true;
    }
    for (stripe, member) in targets {
        let at = geometry.stripe_member_offset(stripe) as usize + rng.below(chunk as u64) as usize;
        host.members[member as usize][at] ^= 0x81;
        card.members[member as usize][at] ^= 0x81;
    }
    for stripe in 0..stripes {
        let start = geometry.stripe_member_offset(stripe) as usize;
        let column = rng.below(chunk as u64) as usize;
        let length = rng.between(1, (chunk - column) as u64) as usize;
        for range in [
            start..start + chunk,
            start + column..start + column + length,
        ] {
            let on_host = check(
                &geometry,
                &mut host.engine,
                stripe,
                &host.members,
                range.clone(),
            );
            let on_card = check(
                &geometry,
                &mut card.engine,
                stripe,
                &card.members,
                range.clone(),
            );
            assert_eq!(on_host, on_card, "stripe {stripe} columns {range:?}");
            if range.len() == chunk {
                assert_eq!(on_card, expected[stripe as usize], "stripe {stripe}");
            }
        }
        let before_host = repair(&geometry, &mut host.engine, stripe, &mut host.members);
        let before_card = repair(&geometry, &mut card.engine, stripe, &mut card.members);
        assert_eq!(before_host, before_card, "stripe {stripe} before repair");
        let range = start..start + chunk;
        assert!(check(&geometry, &mut card.engine, stripe, &card.members, range).is_consistent());
    }
    assert_same(host, card, "after repair");
}

fn check(
    geometry: &Geometry,
    engine: &mut dyn ParityEngine,
    stripe: u64,
    members: &[Vec<u8>],
    range: std::ops::Range<usize>,
) -> ParityCheck {
    let views: Vec<&[u8]> = members
        .iter()
        .map(|member| &member[range.clone()])
        .collect();
    geometry.check_parity(engine, stripe, &views).unwrap()
}

fn repair(
    geometry: &Geometry,
    engine: &mut dyn ParityEngine,
    stripe: u64,
    members: &mut [Vec<u8>],
) -> ParityCheck {
    let start = geometry.stripe_member_offset(stripe) as usize;
    let chunk = geometry.chunk_bytes() as usize;
    let mut views: Vec<&mut [u8]> = members
        .iter_mut()
        .map(|member| &mut member[start..start + chunk])
        .collect();
    geometry.repair_parity(engine, stripe, &mut views).unwrap()
}

#[test]
fn card_and_host_engines_write_and_scrub_the_same_bytes() {
    let directory = tempfile::tempdir().unwrap();
    let mut engine = amf_card::open_sim(&directory.path().join("card.sram"), SRAM_BYTES).unwrap();
    assert_eq!((engine.name(), HostParity.name()), ("card:sim", "host"));
    let mut modes = HashMap::new();
    for seed in 0..RUNS {
        eprintln!("seed {seed}");
        engine = run(seed, engine, &mut modes);
    }
    eprintln!("modes chosen on the card: {modes:?}");
    // Every mode that generates parity went through the card at least once.
    for mode in [
        WriteMode::FullStripe,
        WriteMode::ReconstructWrite,
        WriteMode::DegradedReconstruct,
        WriteMode::ReadModifyWrite,
    ] {
        assert!(
            modes.get(&mode).copied().unwrap_or(0) > 0,
            "{mode:?} never chosen"
        );
    }
    let card = engine.into_card().unwrap();
    assert_eq!(card.parity_in_flight(), 0);
    card.close().unwrap();
}
