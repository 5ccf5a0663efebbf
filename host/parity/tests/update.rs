//! The read-modify-write update equals regenerating the parity from the new data.

mod common;

use common::{Noise, data_buffers, views};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn update_equals_regenerating(
        count in 1usize..=30,
        length in prop_oneof![0usize..200, 200usize..3000],
        index_seed in any::<usize>(),
        raid6 in any::<bool>(),
        skews in proptest::collection::vec(0usize..64, 1..6),
        seed in any::<u64>(),
    ) {
        let mut noise = Noise::new(seed);
        let mut data = data_buffers(count, length, &skews, &mut noise);
        let index = index_seed % count;
        let (mut p, mut q) = (vec![0u8; length], vec![0u8; length]);
        amf_parity::gen_pq(&views(&data), &mut p, &mut q);
        let old = data[index].bytes().to_vec();
        noise.fill(data[index].bytes_mut());
        let new = data[index].bytes().to_vec();
        amf_parity::update(index, &old, &new, &mut p, raid6.then_some(&mut q[..]));
        let (mut fresh_p, mut fresh_q) = (vec![0u8; length], vec![0u8; length]);
        amf_parity::reference::gen_pq(&views(&data), &mut fresh_p, &mut fresh_q);
        prop_assert!(p == fresh_p, "P after update of chunk {index}");
        if raid6 {
            prop_assert!(q == fresh_q, "Q after update of chunk {index}");
        }
    }
}

#[test]
fn update_of_unchanged_data_changes_nothing() {
    let mut noise = Noise::new(3);
    let data = data_buffers(4, 100, &[0], &mut noise);
    let (mut p, mut q) = (vec![0u8; 100], vec![0u8; 100]);
    amf_parity::gen_pq(&views(&data), &mut p, &mut q);
    let (before_p, before_q) = (p.clone(), q.clone());
    let same = data[2].bytes().to_vec();
    amf_parity::update(2, &same, &same, &mut p, Some(&mut q));
    assert_eq!((p, q), (before_p, before_q));
}
