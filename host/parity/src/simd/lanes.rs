//! One SIMD register of bytes, as the stripe loops see it: load, store, stream, XOR.
//!
//! Every method is `#[inline(always)]` and `unsafe` because it uses instructions the CPU may
//! lack; the loops in `stripe` are instantiated only inside `#[target_feature]` functions
//! (see `simd/mod.rs`), where these calls inline into real instructions.

use core::arch::x86_64::{
    __m256i, __m512i, _mm256_loadu_si256, _mm256_storeu_si256, _mm256_stream_si256,
    _mm256_xor_si256, _mm512_loadu_si512, _mm512_storeu_si512, _mm512_stream_si512,
    _mm512_xor_si512,
};

/// A vector of `WIDTH` bytes.
pub(super) trait Lanes: Copy {
    /// Bytes per vector.
    const WIDTH: usize;

    /// Reads `WIDTH` bytes at any alignment.
    ///
    /// # Safety
    /// The CPU has the vector's instruction set; `source` is readable for `WIDTH` bytes.
    unsafe fn load(source: *const u8) -> Self;

    /// Writes `WIDTH` bytes at any alignment.
    ///
    /// # Safety
    /// The CPU has the vector's instruction set; `target` is writable for `WIDTH` bytes.
    unsafe fn store(target: *mut u8, value: Self);

    /// Writes `WIDTH` bytes with a non-temporal (cache-bypassing) store.
    ///
    /// # Safety
    /// As [`Lanes::store`], and `target` is aligned to `WIDTH`. The caller fences
    /// (`sfence`) before other threads may read the bytes.
    unsafe fn stream(target: *mut u8, value: Self);

    /// `a ^ b`.
    ///
    /// # Safety
    /// The CPU has the vector's instruction set.
    unsafe fn xor(a: Self, b: Self) -> Self;
}

impl Lanes for __m256i {
    const WIDTH: usize = 32;

    #[inline(always)]
    unsafe fn load(source: *const u8) -> Self {
        // SAFETY: the caller guarantees AVX and 32 readable bytes; loadu has no alignment need.
        unsafe { _mm256_loadu_si256(source.cast()) }
    }

    #[inline(always)]
    unsafe fn store(target: *mut u8, value: Self) {
        // SAFETY: the caller guarantees AVX and 32 writable bytes; storeu has no alignment need.
        unsafe { _mm256_storeu_si256(target.cast(), value) }
    }

    #[inline(always)]
    unsafe fn stream(target: *mut u8, value: Self) {
        // SAFETY: the caller guarantees AVX, 32 writable bytes aligned to 32, and the fence.
        unsafe { _mm256_stream_si256(target.cast(), value) }
    }

    #[inline(always)]
    unsafe fn xor(a: Self, b: Self) -> Self {
        // SAFETY: the caller guarantees AVX2.
        unsafe { _mm256_xor_si256(a, b) }
    }
}

impl Lanes for __m512i {
    const WIDTH: usize = 64;

    #[inline(always)]
    unsafe fn load(source: *const u8) -> Self {
        // SAFETY: the caller guarantees AVX-512F and 64 readable bytes; loadu needs no alignment.
        unsafe { _mm512_loadu_si512(source.cast()) }
    }

    #[inline(always)]
    unsafe fn store(target: *mut u8, value: Self) {
        // SAFETY: the caller guarantees AVX-512F and 64 writable bytes; storeu needs no alignment.
        unsafe { _mm512_storeu_si512(target.cast(), value) }
    }

    #[inline(always)]
    unsafe fn stream(target: *mut u8, value: Self) {
        // SAFETY: the caller guarantees AVX-512F, 64 writable bytes aligned to 64, and the fence.
        unsafe { _mm512_stream_si512(target.cast(), value) }
    }

    #[inline(always)]
    unsafe fn xor(a: Self, b: Self) -> Self {
        // SAFETY: the caller guarantees AVX-512F.
        unsafe { _mm512_xor_si512(a, b) }
    }
}
