//! The x86-64 SIMD kernels: AVX2, AVX-512BW, and GFNI on either width. The only `unsafe`
//! in the crate lives here (CPU intrinsics and raw-pointer vector loads and stores).
//!
//! Each public function is a safe entry that asserts the CPU has its instruction sets, then
//! calls a `#[target_feature]` twin in which the generic loops of [`stripe`] are
//! instantiated, so the intrinsics inline into real instructions.
#![allow(unsafe_code)]

mod lanes;
mod multiply;
mod stripe;

use core::arch::x86_64::{__m256i, __m512i};

use multiply::{Double256, Double512, Gfni256, Gfni512, Table256, Table512};

/// Vectors per column in the stripe loops (measured on Zen 5, 8 x 64 KiB stripes). P is
/// bound by cache bandwidth, where narrow columns (fewer lines in flight per stream) keep
/// the L1 fill rate highest; Q adds a multiply per vector, and four independent
/// accumulators hide its latency. The RMW loops stream two buffers and like long runs.
const UNROLL_P_256: usize = 4;
const UNROLL_PQ_256: usize = 4;
const UNROLL_P_512: usize = 2;
const UNROLL_PQ_512: usize = 4;
const UNROLL_256: usize = 4;
const UNROLL_512: usize = 4;

pub(crate) fn avx2_valid() -> bool {
    is_x86_feature_detected!("avx2")
}

pub(crate) fn avx512_valid() -> bool {
    is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")
}

pub(crate) fn gfni_avx2_valid() -> bool {
    avx2_valid() && is_x86_feature_detected!("gfni")
}

pub(crate) fn gfni_avx512_valid() -> bool {
    avx512_valid() && is_x86_feature_detected!("gfni")
}

/// Defines a safe entry `$name` that checks `$valid()` and runs `$body` inside a function
/// compiled with `$features`.
macro_rules! entry {
    ($name:ident, $features:literal, $valid:ident, ($($arg:ident: $type:ty),*) $body:block) => {
        pub(crate) fn $name($($arg: $type),*) {
            /// # Safety
            /// The CPU must have the instruction sets in this function's target features.
            #[target_feature(enable = $features)]
            unsafe fn featured($($arg: $type),*) $body

            assert!($valid(), concat!(stringify!($name), " needs ", $features));
            // SAFETY: the assert above checked that the CPU has every enabled feature.
            unsafe { featured($($arg),*) }
        }
    };
}

entry!(avx2_gen_p, "avx2", avx2_valid, (data: &[&[u8]], p: &mut [u8]) {
    // SAFETY: compiled with AVX2, the only instruction set a 256-bit XOR needs.
    unsafe { stripe::gen_p::<__m256i, UNROLL_P_256>(data, p) }
});

entry!(avx2_gen_pq, "avx2", avx2_valid, (data: &[&[u8]], p: &mut [u8], q: &mut [u8]) {
    // SAFETY: compiled with AVX2, which the 256-bit doubling needs.
    unsafe { stripe::gen_pq::<__m256i, _, UNROLL_PQ_256>(data, p, q, &Double256::new()) }
});

entry!(avx2_xor_into, "avx2", avx2_valid, (target: &mut [u8], source: &[u8]) {
    // SAFETY: compiled with AVX2.
    unsafe { stripe::xor_into::<__m256i, UNROLL_256>(target, source) }
});

entry!(avx2_mul_xor_into, "avx2", avx2_valid, (target: &mut [u8], factor: u8, source: &[u8]) {
    // SAFETY: compiled with AVX2, which the 256-bit table lookups need.
    unsafe {
        let multiply = Table256::new(factor);
        stripe::mul_xor_into::<__m256i, _, UNROLL_256>(target, factor, source, &multiply)
    }
});

entry!(gfni_avx2_gen_pq, "avx2,gfni", gfni_avx2_valid,
    (data: &[&[u8]], p: &mut [u8], q: &mut [u8]) {
    // SAFETY: compiled with AVX2 and GFNI, which the 256-bit affine doubling needs.
    unsafe { stripe::gen_pq::<__m256i, _, UNROLL_PQ_256>(data, p, q, &Gfni256::new(2)) }
});

entry!(gfni_avx2_mul_xor_into, "avx2,gfni", gfni_avx2_valid,
    (target: &mut [u8], factor: u8, source: &[u8]) {
    // SAFETY: compiled with AVX2 and GFNI.
    unsafe {
        let multiply = Gfni256::new(factor);
        stripe::mul_xor_into::<__m256i, _, UNROLL_256>(target, factor, source, &multiply)
    }
});

entry!(avx512_gen_p, "avx512f,avx512bw", avx512_valid, (data: &[&[u8]], p: &mut [u8]) {
    // SAFETY: compiled with AVX-512F, which 512-bit loads, stores and XOR need.
    unsafe { stripe::gen_p::<__m512i, UNROLL_P_512>(data, p) }
});

entry!(avx512_gen_pq, "avx512f,avx512bw", avx512_valid,
    (data: &[&[u8]], p: &mut [u8], q: &mut [u8]) {
    // SAFETY: compiled with AVX-512F and BW, which the 512-bit bytewise doubling needs.
    unsafe { stripe::gen_pq::<__m512i, _, UNROLL_PQ_512>(data, p, q, &Double512::new()) }
});

entry!(avx512_xor_into, "avx512f,avx512bw", avx512_valid, (target: &mut [u8], source: &[u8]) {
    // SAFETY: compiled with AVX-512F.
    unsafe { stripe::xor_into::<__m512i, UNROLL_512>(target, source) }
});

entry!(avx512_mul_xor_into, "avx512f,avx512bw", avx512_valid,
    (target: &mut [u8], factor: u8, source: &[u8]) {
    // SAFETY: compiled with AVX-512F and BW, which the 512-bit table lookups need.
    unsafe {
        let multiply = Table512::new(factor);
        stripe::mul_xor_into::<__m512i, _, UNROLL_512>(target, factor, source, &multiply)
    }
});

entry!(gfni_avx512_gen_pq, "avx512f,avx512bw,gfni", gfni_avx512_valid,
    (data: &[&[u8]], p: &mut [u8], q: &mut [u8]) {
    // SAFETY: compiled with AVX-512F/BW and GFNI, which the 512-bit affine doubling needs.
    unsafe { stripe::gen_pq::<__m512i, _, UNROLL_PQ_512>(data, p, q, &Gfni512::new(2)) }
});

entry!(gfni_avx512_mul_xor_into, "avx512f,avx512bw,gfni", gfni_avx512_valid,
    (target: &mut [u8], factor: u8, source: &[u8]) {
    // SAFETY: compiled with AVX-512F/BW and GFNI.
    unsafe {
        let multiply = Gfni512::new(factor);
        stripe::mul_xor_into::<__m512i, _, UNROLL_512>(target, factor, source, &multiply)
    }
});
