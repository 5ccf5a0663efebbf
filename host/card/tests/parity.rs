//! Parity through the card gives the same bytes as the host: every width, RAID-5 and
//! RAID-6, lengths below, at and above one descriptor, on both sim executions; and the
//! rings wrap (slots and the 2^32 index space) without losing or reordering work.

mod common;

use amf_card::{CardConfig, CardError, CardParity, Execution, SimCard};
use amf_parity::{EngineError, HostParity, ParityEngine};
use common::{EXECUTIONS, RawJob, card, pattern, raw_job};
use shared_regs::limits::{PARITY_SOURCE_BYTES_MAX, PARITY_SOURCES_MAX};
use shared_regs::ring::CompletionStatus;

/// P and Q from the scalar reference model.
fn reference(data: &[Vec<u8>]) -> (Vec<u8>, Vec<u8>) {
    let sources: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
    let mut p = vec![0u8; data[0].len()];
    let mut q = vec![0u8; data[0].len()];
    amf_parity::reference::gen_pq(&sources, &mut p, &mut q);
    (p, q)
}

/// Runs `engine` on `count` sources of `length` bytes, RAID-5 and RAID-6, and compares
/// with the reference. P and Q start as junk so that an engine writing nothing fails.
fn check_engine(engine: &mut dyn ParityEngine, count: usize, length: usize, seed: u64) {
    let data: Vec<Vec<u8>> = (0..count)
        .map(|index| pattern(seed * 64 + index as u64, length))
        .collect();
    let sources: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
    let (p_expected, q_expected) = reference(&data);
    let mut p = vec![0xA5u8; length];
    let mut q = vec![0x5Au8; length];
    engine.compute(&sources, &mut p, Some(&mut q)).unwrap();
    assert!(
        p == p_expected,
        "{}: P of {count} x {length}",
        engine.name()
    );
    assert!(
        q == q_expected,
        "{}: Q of {count} x {length}",
        engine.name()
    );
    let mut p = vec![0xA5u8; length];
    engine.compute(&sources, &mut p, None).unwrap();
    assert!(
        p == p_expected,
        "{}: RAID-5 P of {count} x {length}",
        engine.name()
    );
}

fn card_parity(
    execution: Execution,
    config: CardConfig,
) -> (CardParity<SimCard>, tempfile::TempDir) {
    let (card, dir) = card(execution, config);
    (CardParity::new(card).unwrap(), dir)
}

#[test]
fn card_and_host_give_the_same_bytes_for_every_width() {
    for execution in EXECUTIONS {
        let (mut engine, _dir) = card_parity(execution, CardConfig::default());
        for count in 2..=PARITY_SOURCES_MAX as usize {
            for length in [64, 100, 4096, 4096 + 64 + 3] {
                let seed = (count * 10_000 + length) as u64;
                check_engine(&mut engine, count, length, seed);
                check_engine(&mut HostParity, count, length, seed);
            }
        }
    }
}

#[test]
fn work_longer_than_one_descriptor_is_split() {
    let max = PARITY_SOURCE_BYTES_MAX as usize;
    for execution in EXECUTIONS {
        let (mut engine, _dir) = card_parity(execution, CardConfig::default());
        for (count, length) in [
            (2, max),
            (3, max + 64),
            (7, 2 * max + 100),
            (PARITY_SOURCES_MAX as usize, max + 4096),
        ] {
            check_engine(&mut engine, count, length, length as u64);
        }
    }
}

#[test]
fn more_descriptors_than_ring_entries_in_one_job() {
    // Nine descriptors through a four-entry ring, starting just below the index wrap.
    let config = CardConfig {
        parity_ring_entries: 4,
        ring_index_start: u32::MAX - 2,
        ..CardConfig::default()
    };
    for execution in EXECUTIONS {
        let (mut engine, _dir) = card_parity(execution, config);
        let length = 8 * PARITY_SOURCE_BYTES_MAX as usize + 640;
        check_engine(&mut engine, 2, length, 9);
        assert_eq!(engine.card().parity_in_flight(), 0);
    }
}

#[test]
fn rings_wrap_over_many_rounds_and_the_index_space() {
    use amf_card::CardBackend;
    let start = u32::MAX - 9;
    let config = CardConfig {
        parity_ring_entries: 4,
        ring_index_start: start,
        ..CardConfig::default()
    };
    for execution in EXECUTIONS {
        let (mut card, _dir) = card(execution, config);
        let mut next_index = start;
        for round in 0..8u32 {
            let jobs: Vec<RawJob> = (0..4)
                .map(|slot| raw_job(&mut card, round * 4 + slot))
                .collect();
            for job in &jobs {
                assert_eq!(card.submit_parity(&job.descriptor).unwrap(), next_index);
                next_index = next_index.wrapping_add(1);
            }
            assert!(matches!(
                card.submit_parity(&jobs[0].descriptor),
                Err(CardError::RingFull { entries: 4 })
            ));
            let mut seen = Vec::new();
            for _ in 0..4 {
                let completion = card.wait_completion(5_000).unwrap();
                assert_eq!(completion.status, CompletionStatus::Ok);
                seen.push((completion.tag, completion.submission_index));
            }
            seen.sort();
            let expected: Vec<(u32, u32)> = (0..4)
                .map(|slot| (round * 4 + slot, next_index.wrapping_sub(4 - slot)))
                .collect();
            assert_eq!(seen, expected, "round {round}");
            for job in jobs {
                let mut p = vec![0u8; job.expected_p.len()];
                card.backend_mut().dma_read(&job.p, 0, &mut p).unwrap();
                assert!(
                    p == job.expected_p,
                    "round {round} tag {}",
                    job.descriptor.tag
                );
            }
        }
        assert!(next_index < start, "the indices crossed 2^32");
        assert!(matches!(
            card.wait_completion(10),
            Err(CardError::NothingInFlight)
        ));
        card.check_error().unwrap();
    }
}

#[test]
fn completions_can_be_polled_without_waiting() {
    use amf_card::CardBackend;
    let (mut card, _dir) = card(Execution::Stepped, CardConfig::default());
    let job = raw_job(&mut card, 77);
    card.submit_parity(&job.descriptor).unwrap();
    // Stepped: nothing runs until time passes, so the first poll finds nothing.
    assert_eq!(card.poll_completion().unwrap(), None);
    card.backend_mut().advance().unwrap();
    let completion = card.poll_completion().unwrap().expect("one step ran it");
    assert_eq!(
        (completion.tag, completion.status),
        (77, CompletionStatus::Ok)
    );
    assert_eq!(card.poll_completion().unwrap(), None);
}

#[test]
fn engines_refuse_bad_shapes_alike() {
    let (mut card_engine, _dir) = card_parity(Execution::Stepped, CardConfig::default());
    let engines: [&mut dyn ParityEngine; 2] = [&mut HostParity, &mut card_engine];
    for engine in engines {
        let a = vec![1u8; 128];
        let short = vec![1u8; 64];
        let mut p = vec![0u8; 128];
        let mut q = vec![0u8; 64];
        let err = engine.compute(&[&a], &mut p, None).unwrap_err();
        assert!(
            matches!(err, EngineError::SourceCount { count: 1, .. }),
            "{err}"
        );
        let too_many = PARITY_SOURCES_MAX as usize + 1;
        let many: Vec<&[u8]> = vec![&a; too_many];
        let err = engine.compute(&many, &mut p, None).unwrap_err();
        assert!(
            matches!(err, EngineError::SourceCount { count, .. } if count == too_many),
            "{err}"
        );
        let err = engine.compute(&[&a, &short], &mut p, None).unwrap_err();
        assert!(
            matches!(err, EngineError::LengthMismatch { found: 64, .. }),
            "{err}"
        );
        let err = engine.compute(&[&a, &a], &mut p, Some(&mut q)).unwrap_err();
        assert!(
            matches!(err, EngineError::LengthMismatch { found: 64, .. }),
            "{err}"
        );
        engine.compute(&[&[], &[]], &mut [], None).unwrap();
    }
}

#[test]
fn card_failures_reach_the_caller_as_device_errors() {
    use amf_card::{CardParityError, SimConfig};
    use std::error::Error as _;
    // Room for the rings but not for staging a 64 KiB stripe.
    let dir = tempfile::tempdir().unwrap();
    let config = SimConfig {
        dma_bytes_max: 64 * 1024,
        ..SimConfig::new(common::SRAM_BYTES).stepped()
    };
    let sim = SimCard::open(&dir.path().join("sram"), config).unwrap();
    let card = amf_card::Card::open(sim, CardConfig::default()).unwrap();
    let mut engine = CardParity::new(card).unwrap();
    let (a, b) = (vec![1u8; 65_536], vec![2u8; 65_536]);
    let mut p = vec![0u8; 65_536];
    let err = engine.compute(&[&a, &b], &mut p, None).unwrap_err();
    let EngineError::Device { engine: name, .. } = &err else {
        panic!("not a device error: {err}");
    };
    assert_eq!(*name, "card:sim");
    let cause = err.source().expect("the card's error is the source");
    assert!(
        matches!(
            cause.downcast_ref::<CardParityError>(),
            Some(CardParityError::Card(CardError::Backend { .. }))
        ),
        "{cause}"
    );
    // Shape errors still come first, as on the host.
    let err = engine.compute(&[&a], &mut p, None).unwrap_err();
    assert!(
        matches!(err, EngineError::SourceCount { count: 1, .. }),
        "{err}"
    );
    engine.into_card().unwrap().close().unwrap();
}
