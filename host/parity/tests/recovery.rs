//! Recovery, lib/raid6/test/test.c style: for RAID-5 and RAID-6 stripes of 3..=32 members,
//! lose every single chunk and (RAID-6) every pair, fill the lost buffers with junk first,
//! recover, and compare with the original stripe. Plus the typed refusals.

mod common;

use amf_parity::{RecoverError, recover};
use common::Noise;
use proptest::prelude::*;

/// A consistent stripe: `data_count` noisy chunks, then P (and Q when `parity_count == 2`).
fn stripe(data_count: usize, parity_count: usize, length: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut noise = Noise::new(seed);
    let mut chunks: Vec<Vec<u8>> = (0..data_count + parity_count)
        .map(|_| vec![0u8; length])
        .collect();
    for chunk in &mut chunks[..data_count] {
        noise.fill(chunk);
    }
    let (data, parity) = chunks.split_at_mut(data_count);
    let data: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
    match parity {
        [p] => amf_parity::reference::gen_p(&data, p),
        [p, q] => amf_parity::reference::gen_pq(&data, p, q),
        _ => unreachable!("one or two parity chunks"),
    }
    chunks
}

/// Loses `lost` (junk-filled), recovers, and checks every chunk against `original`.
fn lose_and_recover(original: &[Vec<u8>], parity_count: usize, lost: &[usize], junk: u64) {
    let mut chunks = original.to_vec();
    let mut noise = Noise::new(junk);
    for &index in lost {
        noise.fill(&mut chunks[index]);
    }
    let mut views: Vec<&mut [u8]> = chunks.iter_mut().map(Vec::as_mut_slice).collect();
    recover(&mut views, parity_count, lost).expect("recoverable");
    for (index, (got, want)) in chunks.iter().zip(original).enumerate() {
        assert!(
            got == want,
            "chunk {index} wrong after losing {lost:?} of {} (parity {parity_count})",
            original.len()
        );
    }
}

#[test]
fn raid5_every_single_loss_at_every_width() {
    for members in 3..=32 {
        let original = stripe(members - 1, 1, 131, members as u64);
        for lost in 0..members {
            lose_and_recover(&original, 1, &[lost], lost as u64);
        }
        lose_and_recover(&original, 1, &[], 0);
    }
}

#[test]
fn raid6_every_single_and_pair_loss_at_every_width() {
    for members in 4..=32 {
        let original = stripe(members - 2, 2, 131, 1000 + members as u64);
        for first in 0..members {
            lose_and_recover(&original, 2, &[first], first as u64);
            for second in first + 1..members {
                // Both orders of the lost list must work.
                lose_and_recover(&original, 2, &[first, second], second as u64);
                lose_and_recover(&original, 2, &[second, first], first as u64);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_losses_recover_at_random_lengths(
        members in 4usize..=32,
        raid6 in any::<bool>(),
        length in prop_oneof![0usize..200, 200usize..5000],
        picks in (any::<usize>(), any::<usize>()),
        seed in any::<u64>(),
    ) {
        let parity_count = if raid6 { 2 } else { 1 };
        let original = stripe(members - parity_count, parity_count, length, seed);
        let first = picks.0 % members;
        let second = (first + 1 + picks.1 % (members - 1)) % members;
        let lost: Vec<usize> = if raid6 { vec![first, second] } else { vec![first] };
        lose_and_recover(&original, parity_count, &lost, seed ^ 0x5555);
    }
}

#[test]
fn refusals_are_typed() {
    let mut chunks = stripe(3, 2, 16, 9);
    let mut views: Vec<&mut [u8]> = chunks.iter_mut().map(Vec::as_mut_slice).collect();
    assert_eq!(
        recover(&mut views, 2, &[0, 1, 2]),
        Err(RecoverError::TooManyLost { lost: 3, parity: 2 })
    );
    assert_eq!(
        recover(&mut views, 1, &[0, 1]),
        Err(RecoverError::TooManyLost { lost: 2, parity: 1 })
    );
    assert_eq!(recover(&mut views, 2, &[5]), Err(RecoverError::BadIndex(5)));
    assert_eq!(
        recover(&mut views, 2, &[1, 1]),
        Err(RecoverError::BadIndex(1))
    );
    assert_eq!(
        recover(&mut views, 3, &[0]),
        Err(RecoverError::BadShape {
            chunks: 5,
            parity: 3
        })
    );
    assert_eq!(
        recover(&mut views, 0, &[]),
        Err(RecoverError::BadShape {
            chunks: 5,
            parity: 0
        })
    );
    assert_eq!(
        recover(&mut views[..3], 2, &[0]),
        Err(RecoverError::BadShape {
            chunks: 3,
            parity: 2
        })
    );
}

/// A recovery that ignored the lost list would leave junk; this must notice.
#[test]
fn junk_left_in_place_is_detected() {
    let original = stripe(4, 2, 64, 11);
    let mut chunks = original.clone();
    chunks[1].fill(0xee);
    assert_ne!(
        chunks, original,
        "junk must differ from the data for the test to bite"
    );
}
