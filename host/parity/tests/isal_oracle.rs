//! ISA-L as the outside oracle: for random stripes (lengths multiples of 32 up to 64 KiB;
//! RAID-5 of 3..=32 members, RAID-6 of 4..=32), every kernel's P and Q equal ISA-L's
//! `xor_gen`/`pq_gen` bit for bit. ISA-L must be linked: these tests fail, not skip, when
//! it is absent.

mod common;

use amf_parity::kernels;
use common::{Buffer, Noise, data_buffers, views};
use proptest::prelude::*;

fn require_isal() {
    assert!(
        isal::available(),
        "ISA-L is not linked (pkg-config libisal not found at build time): install libisal-dev"
    );
}

/// Buffers 32-byte aligned (ISA-L's rule), at 0 or 32 past a 64-byte boundary.
fn skews() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(prop_oneof![Just(0usize), Just(32usize)], 1..6)
}

fn lengths() -> impl Strategy<Value = usize> {
    prop_oneof![
        (0usize..=64).prop_map(|n| n * 32),
        (65usize..=2048).prop_map(|n| n * 32)
    ]
}

fn check_raid5(members: usize, length: usize, skews: &[usize], seed: u64) {
    let mut noise = Noise::new(seed);
    let data = data_buffers(members - 1, length, skews, &mut noise);
    let mut oracle = Buffer::new(length, skews[0]);
    isal::xor_gen(&views(&data), oracle.bytes_mut()).expect("ISA-L xor_gen");
    for kernel in kernels() {
        let mut p = Buffer::noisy(length, skews[0], &mut noise);
        kernel.gen_p(&views(&data), p.bytes_mut());
        assert!(
            p.bytes() == oracle.bytes(),
            "{} P differs from ISA-L: {members} members x {length}",
            kernel.name()
        );
    }
}

fn check_raid6(members: usize, length: usize, skews: &[usize], seed: u64) {
    let mut noise = Noise::new(seed);
    let data = data_buffers(members - 2, length, skews, &mut noise);
    let mut oracle_p = Buffer::new(length, skews[0]);
    let mut oracle_q = Buffer::new(length, skews[skews.len() - 1]);
    isal::pq_gen(&views(&data), oracle_p.bytes_mut(), oracle_q.bytes_mut()).expect("ISA-L pq_gen");
    for kernel in kernels() {
        let mut p = Buffer::noisy(length, skews[0], &mut noise);
        let mut q = Buffer::noisy(length, skews[skews.len() - 1], &mut noise);
        kernel.gen_pq(&views(&data), p.bytes_mut(), q.bytes_mut());
        let name = kernel.name();
        assert!(
            p.bytes() == oracle_p.bytes(),
            "{name} P differs from ISA-L: {members} x {length}"
        );
        assert!(
            q.bytes() == oracle_q.bytes(),
            "{name} Q differs from ISA-L: {members} x {length}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn raid5_p_equals_isal(
        members in 3usize..=32, length in lengths(), skews in skews(), seed in any::<u64>()
    ) {
        require_isal();
        check_raid5(members, length, &skews, seed);
    }

    #[test]
    fn raid6_p_and_q_equal_isal(
        members in 4usize..=32, length in lengths(), skews in skews(), seed in any::<u64>()
    ) {
        require_isal();
        check_raid6(members, length, &skews, seed);
    }
}

/// Every member count at a few fixed lengths, including the full 64 KiB chunk.
#[test]
fn every_width_equals_isal() {
    require_isal();
    for members in 3..=32 {
        for length in [32, 4096 + 96, 65536] {
            check_raid5(members, length, &[0, 32], members as u64);
            if members >= 4 {
                check_raid6(members, length, &[32, 0], members as u64 + 100);
            }
        }
    }
}
