//! Every kernel valid on this CPU equals the scalar model, for any length (including the
//! short and ragged ones that take the scalar and overlapping-tail paths), any alignment
//! of every buffer, and 1..=30 data chunks; lengths past the streaming threshold with P
//! and Q equally aligned take the non-temporal path.

mod common;

use amf_parity::{Kernel, kernels, reference};
use common::{Buffer, Noise, data_buffers, views};
use proptest::prelude::*;

fn lengths() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => 0usize..200,
        2 => 200usize..5000,
        1 => 16_000usize..20_000,
    ]
}

fn skews() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(0usize..64, 1..8)
}

fn check_gen_p(kernel: &Kernel, count: usize, length: usize, skews: &[usize], seed: u64) {
    let mut noise = Noise::new(seed);
    let data = data_buffers(count, length, skews, &mut noise);
    let mut expected = vec![0u8; length];
    reference::gen_p(&views(&data), &mut expected);
    let mut p = Buffer::noisy(length, skews[0], &mut noise);
    kernel.gen_p(&views(&data), p.bytes_mut());
    assert!(
        p.bytes() == expected,
        "{} gen_p, {count} x {length}",
        kernel.name()
    );
}

fn check_gen_pq(kernel: &Kernel, count: usize, length: usize, skews: &[usize], seed: u64) {
    let mut noise = Noise::new(seed);
    let data = data_buffers(count, length, skews, &mut noise);
    let (mut expected_p, mut expected_q) = (vec![0u8; length], vec![0u8; length]);
    reference::gen_pq(&views(&data), &mut expected_p, &mut expected_q);
    let q_skew = skews[skews.len() - 1];
    let mut p = Buffer::noisy(length, skews[0], &mut noise);
    let mut q = Buffer::noisy(length, q_skew, &mut noise);
    kernel.gen_pq(&views(&data), p.bytes_mut(), q.bytes_mut());
    let name = kernel.name();
    assert!(
        p.bytes() == expected_p,
        "{name} gen_pq P, {count} x {length}"
    );
    assert!(
        q.bytes() == expected_q,
        "{name} gen_pq Q, {count} x {length}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn gen_p_equals_reference(
        count in 1usize..=30, length in lengths(), skews in skews(), seed in any::<u64>()
    ) {
        for kernel in kernels() {
            check_gen_p(kernel, count, length, &skews, seed);
        }
    }

    #[test]
    fn gen_pq_equals_reference(
        count in 1usize..=30, length in lengths(), skews in skews(), seed in any::<u64>()
    ) {
        for kernel in kernels() {
            check_gen_pq(kernel, count, length, &skews, seed);
        }
    }

    /// P and Q equally aligned, long: the streamed (non-temporal) body with its head.
    #[test]
    fn streamed_gen_pq_equals_reference(
        count in 1usize..=12, length in 16_384usize..40_000, skew in 0usize..64,
        seed in any::<u64>()
    ) {
        for kernel in kernels() {
            check_gen_pq(kernel, count, length, &[skew], seed);
        }
    }

    #[test]
    fn xor_and_mul_xor_equal_reference(
        length in lengths(), target_skew in 0usize..64, source_skew in 0usize..64,
        factor in any::<u8>(), seed in any::<u64>()
    ) {
        let mut noise = Noise::new(seed);
        let source = Buffer::noisy(length, source_skew, &mut noise);
        let start = Buffer::noisy(length, target_skew, &mut noise);
        let mut xor_expected = start.bytes().to_vec();
        reference::xor_into(&mut xor_expected, source.bytes());
        let mut mul_expected = start.bytes().to_vec();
        reference::mul_xor_into(&mut mul_expected, factor, source.bytes());
        for kernel in kernels() {
            let mut target = Buffer::new(length, target_skew);
            target.bytes_mut().copy_from_slice(start.bytes());
            kernel.xor_into(target.bytes_mut(), source.bytes());
            prop_assert!(target.bytes() == xor_expected, "{} xor_into", kernel.name());
            target.bytes_mut().copy_from_slice(start.bytes());
            kernel.mul_xor_into(target.bytes_mut(), factor, source.bytes());
            prop_assert!(target.bytes() == mul_expected, "{} mul_xor_into {factor}", kernel.name());
        }
    }
}

#[test]
fn one_data_chunk_gives_p_and_q_equal_to_it() {
    let mut noise = Noise::new(7);
    let data = data_buffers(1, 333, &[5], &mut noise);
    for kernel in kernels() {
        let (mut p, mut q) = (vec![0xa5u8; 333], vec![0x5au8; 333]);
        kernel.gen_pq(&views(&data), &mut p, &mut q);
        assert!(
            p == data[0].bytes() && q == data[0].bytes(),
            "{}",
            kernel.name()
        );
    }
}

#[test]
fn every_length_up_to_three_vectors() {
    for kernel in kernels() {
        for length in 0..=200 {
            check_gen_p(kernel, 5, length, &[0, 3, 17], length as u64);
            check_gen_pq(kernel, 5, length, &[1, 0, 63], length as u64);
        }
    }
}

#[test]
fn the_table_holds_scalar_and_best_is_valid() {
    let names: Vec<&str> = kernels().map(Kernel::name).collect();
    assert_eq!(names.last(), Some(&"scalar"), "{names:?}");
    assert!(names.contains(&amf_parity::best().name()));
    assert_eq!(
        amf_parity::by_name("scalar").map(Kernel::name),
        Some("scalar")
    );
    assert!(amf_parity::by_name("no-such-kernel").is_none());
}

/// On x86-64 machines that have them, the SIMD kernels must be in the table, so the
/// property tests above really exercise them.
#[cfg(target_arch = "x86_64")]
#[test]
fn simd_kernels_are_offered_where_the_cpu_has_them() {
    let names: Vec<&str> = kernels().map(Kernel::name).collect();
    let expected = [
        ("avx2", is_x86_feature_detected!("avx2")),
        (
            "avx512bw",
            is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw"),
        ),
        (
            "gfni-avx512",
            is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("gfni"),
        ),
    ];
    for (name, present) in expected {
        assert_eq!(names.contains(&name), present, "{name} in {names:?}");
    }
}

#[test]
#[should_panic(expected = "chunk lengths differ")]
fn mismatched_lengths_are_refused() {
    let (a, b) = (vec![0u8; 64], vec![0u8; 65]);
    let mut p = vec![0u8; 64];
    amf_parity::best().gen_p(&[&a, &b], &mut p);
}
