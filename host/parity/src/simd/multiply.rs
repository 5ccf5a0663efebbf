//! Multiplication of every byte of a vector by one constant of GF(2^8) (polynomial 0x11d).
//!
//! Three ways, one per instruction set:
//! * GFNI: multiplication by a constant is linear over GF(2), so it is an 8x8 bit matrix
//!   and one `gf2p8affineqb`. (`gf2p8mulb` would not do: it reduces by the AES polynomial
//!   0x11b.)
//! * Doubling without GFNI (the Q recurrence): shift left, and XOR 0x1d into the bytes whose
//!   top bit was set.
//! * Any constant without GFNI: two 16-entry tables, one per nibble, looked up with
//!   `pshufb` (the product is linear, so `c*x = c*(x & 0x0f) ^ c*(x & 0xf0)`).

use core::arch::x86_64::{
    __m256i, __m512i, _mm_loadu_si128, _mm256_add_epi8, _mm256_and_si256,
    _mm256_broadcastsi128_si256, _mm256_cmpgt_epi8, _mm256_gf2p8affine_epi64_epi8,
    _mm256_set1_epi8, _mm256_set1_epi64x, _mm256_setzero_si256, _mm256_shuffle_epi8,
    _mm256_srli_epi16, _mm256_xor_si256, _mm512_add_epi8, _mm512_and_si512, _mm512_broadcast_i32x4,
    _mm512_gf2p8affine_epi64_epi8, _mm512_maskz_mov_epi8, _mm512_movepi8_mask, _mm512_set1_epi8,
    _mm512_set1_epi64, _mm512_shuffle_epi8, _mm512_srli_epi16, _mm512_ternarylogic_epi64,
    _mm512_xor_si512,
};

use super::lanes::Lanes;
use crate::gf;

/// `value * c` for a constant `c` fixed at construction.
pub(super) trait Multiply<V: Lanes> {
    /// `value * c`, bytewise.
    ///
    /// # Safety
    /// The CPU has the instruction sets the implementation names.
    unsafe fn times(&self, value: V) -> V;

    /// `value * c ^ addend`, bytewise; implementations may fuse the XOR.
    ///
    /// # Safety
    /// As [`Multiply::times`].
    #[inline(always)]
    unsafe fn times_xor(&self, value: V, addend: V) -> V {
        // SAFETY: the caller guarantees the instruction sets for both calls.
        unsafe { V::xor(self.times(value), addend) }
    }
}

/// The bit matrix of `x -> factor * x`, in `gf2p8affineqb`'s layout: the byte at position
/// `7 - i` of the qword holds the row that gives output bit `i`, and bit `j` of a row
/// selects input bit `j`. Column `j` of the matrix is `factor * 2^j`.
pub(crate) const fn affine_matrix(factor: u8) -> u64 {
    let mut columns = [0u8; 8];
    let mut power = factor;
    let mut j = 0;
    while j < 8 {
        columns[j] = power;
        power = gf::mul2(power);
        j += 1;
    }
    let mut matrix = 0u64;
    let mut i = 0;
    while i < 8 {
        let mut row = 0u8;
        let mut j = 0;
        while j < 8 {
            row |= ((columns[j] >> i) & 1) << j;
            j += 1;
        }
        matrix |= (row as u64) << (8 * (7 - i));
        i += 1;
    }
    matrix
}

/// `factor * n` and `factor * (n << 4)` for every nibble `n`.
fn nibble_tables(factor: u8) -> ([u8; 16], [u8; 16]) {
    let mut low = [0u8; 16];
    let mut high = [0u8; 16];
    for nibble in 0..16u8 {
        low[usize::from(nibble)] = gf::mul(factor, nibble);
        high[usize::from(nibble)] = gf::mul(factor, nibble << 4);
    }
    (low, high)
}

/// GFNI multiply on 32-byte vectors (needs GFNI and AVX2).
#[derive(Clone, Copy)]
pub(super) struct Gfni256(__m256i);

impl Gfni256 {
    /// # Safety
    /// The CPU has AVX.
    #[inline(always)]
    pub(super) unsafe fn new(factor: u8) -> Self {
        let matrix = affine_matrix(factor).cast_signed();
        // SAFETY: the caller guarantees AVX.
        Self(unsafe { _mm256_set1_epi64x(matrix) })
    }
}

impl Multiply<__m256i> for Gfni256 {
    #[inline(always)]
    unsafe fn times(&self, value: __m256i) -> __m256i {
        // SAFETY: the caller guarantees GFNI and AVX.
        unsafe { _mm256_gf2p8affine_epi64_epi8::<0>(value, self.0) }
    }
}

/// GFNI multiply on 64-byte vectors (needs GFNI and AVX-512F).
#[derive(Clone, Copy)]
pub(super) struct Gfni512(__m512i);

impl Gfni512 {
    /// # Safety
    /// The CPU has AVX-512F.
    #[inline(always)]
    pub(super) unsafe fn new(factor: u8) -> Self {
        let matrix = affine_matrix(factor).cast_signed();
        // SAFETY: the caller guarantees AVX-512F.
        Self(unsafe { _mm512_set1_epi64(matrix) })
    }
}

impl Multiply<__m512i> for Gfni512 {
    #[inline(always)]
    unsafe fn times(&self, value: __m512i) -> __m512i {
        // SAFETY: the caller guarantees GFNI and AVX-512F.
        unsafe { _mm512_gf2p8affine_epi64_epi8::<0>(value, self.0) }
    }
}

/// Doubling on 32-byte vectors (AVX2): `(x + x) ^ (0x1d where x's top bit was set)`.
#[derive(Clone, Copy)]
pub(super) struct Double256 {
    poly: __m256i,
    zero: __m256i,
}

impl Double256 {
    /// # Safety
    /// The CPU has AVX2.
    #[inline(always)]
    pub(super) unsafe fn new() -> Self {
        // SAFETY: the caller guarantees AVX2.
        unsafe {
            Self {
                poly: _mm256_set1_epi8(gf::POLY_LOW.cast_signed()),
                zero: _mm256_setzero_si256(),
            }
        }
    }
}

impl Multiply<__m256i> for Double256 {
    #[inline(always)]
    unsafe fn times(&self, value: __m256i) -> __m256i {
        // SAFETY: the caller guarantees AVX2.
        unsafe {
            let top_set = _mm256_cmpgt_epi8(self.zero, value);
            let reduce = _mm256_and_si256(top_set, self.poly);
            _mm256_xor_si256(_mm256_add_epi8(value, value), reduce)
        }
    }
}

/// Doubling on 64-byte vectors (AVX-512BW), fusing the Q recurrence's XOR.
#[derive(Clone, Copy)]
pub(super) struct Double512 {
    poly: __m512i,
}

impl Double512 {
    /// # Safety
    /// The CPU has AVX-512F.
    #[inline(always)]
    pub(super) unsafe fn new() -> Self {
        // SAFETY: the caller guarantees AVX-512F.
        let poly = unsafe { _mm512_set1_epi8(gf::POLY_LOW.cast_signed()) };
        Self { poly }
    }
}

impl Multiply<__m512i> for Double512 {
    #[inline(always)]
    unsafe fn times(&self, value: __m512i) -> __m512i {
        // SAFETY: the caller guarantees AVX-512F and AVX-512BW.
        unsafe {
            let reduce = _mm512_maskz_mov_epi8(_mm512_movepi8_mask(value), self.poly);
            _mm512_xor_si512(_mm512_add_epi8(value, value), reduce)
        }
    }

    #[inline(always)]
    unsafe fn times_xor(&self, value: __m512i, addend: __m512i) -> __m512i {
        // SAFETY: the caller guarantees AVX-512F and AVX-512BW.
        unsafe {
            let reduce = _mm512_maskz_mov_epi8(_mm512_movepi8_mask(value), self.poly);
            // 0x96: the three-way XOR truth table.
            _mm512_ternarylogic_epi64::<0x96>(_mm512_add_epi8(value, value), reduce, addend)
        }
    }
}

/// Nibble-table multiply on 32-byte vectors (AVX2).
#[derive(Clone, Copy)]
pub(super) struct Table256 {
    low: __m256i,
    high: __m256i,
    nibble: __m256i,
}

impl Table256 {
    /// # Safety
    /// The CPU has AVX2.
    #[inline(always)]
    pub(super) unsafe fn new(factor: u8) -> Self {
        let (low, high) = nibble_tables(factor);
        // SAFETY: the caller guarantees AVX2; each table is 16 readable bytes.
        unsafe {
            Self {
                low: _mm256_broadcastsi128_si256(_mm_loadu_si128(low.as_ptr().cast())),
                high: _mm256_broadcastsi128_si256(_mm_loadu_si128(high.as_ptr().cast())),
                nibble: _mm256_set1_epi8(0x0f),
            }
        }
    }
}

impl Multiply<__m256i> for Table256 {
    #[inline(always)]
    unsafe fn times(&self, value: __m256i) -> __m256i {
        // SAFETY: the caller guarantees AVX2.
        unsafe {
            let low = _mm256_and_si256(value, self.nibble);
            let high = _mm256_and_si256(_mm256_srli_epi16::<4>(value), self.nibble);
            _mm256_xor_si256(
                _mm256_shuffle_epi8(self.low, low),
                _mm256_shuffle_epi8(self.high, high),
            )
        }
    }
}

/// Nibble-table multiply on 64-byte vectors (AVX-512BW).
#[derive(Clone, Copy)]
pub(super) struct Table512 {
    low: __m512i,
    high: __m512i,
    nibble: __m512i,
}

impl Table512 {
    /// # Safety
    /// The CPU has AVX-512F and AVX-512BW.
    #[inline(always)]
    pub(super) unsafe fn new(factor: u8) -> Self {
        let (low, high) = nibble_tables(factor);
        // SAFETY: the caller guarantees AVX-512F/BW; each table is 16 readable bytes.
        unsafe {
            Self {
                low: _mm512_broadcast_i32x4(_mm_loadu_si128(low.as_ptr().cast())),
                high: _mm512_broadcast_i32x4(_mm_loadu_si128(high.as_ptr().cast())),
                nibble: _mm512_set1_epi8(0x0f),
            }
        }
    }
}

impl Multiply<__m512i> for Table512 {
    #[inline(always)]
    unsafe fn times(&self, value: __m512i) -> __m512i {
        // SAFETY: the caller guarantees AVX-512F and AVX-512BW.
        unsafe {
            let low = _mm512_and_si512(value, self.nibble);
            let high = _mm512_and_si512(_mm512_srli_epi16::<4>(value), self.nibble);
            _mm512_xor_si512(
                _mm512_shuffle_epi8(self.low, low),
                _mm512_shuffle_epi8(self.high, high),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies a matrix in `gf2p8affineqb`'s layout to one byte, bit by bit.
    fn apply(matrix: u64, value: u8) -> u8 {
        (0..8).fold(0u8, |out, i| {
            let row = (matrix >> (8 * (7 - i))) as u8;
            let bit = (row & value).count_ones() as u8 & 1;
            out | (bit << i)
        })
    }

    #[test]
    fn matrix_of_two_is_the_documented_constant() {
        // Rows for output bits 0..8: x7, x0, x1^x7, x2^x7, x3^x7, x4, x5, x6.
        assert_eq!(affine_matrix(2), 0x8001_8284_8810_2040);
        assert_eq!(affine_matrix(1), 0x0102_0408_1020_4080);
    }

    #[test]
    fn matrix_multiplies_like_the_tables() {
        for factor in 0..=255u8 {
            let matrix = affine_matrix(factor);
            for value in 0..=255u8 {
                assert_eq!(
                    apply(matrix, value),
                    gf::mul(factor, value),
                    "{factor} * {value}"
                );
            }
        }
    }

    #[test]
    fn nibble_tables_split_the_product() {
        for factor in [1u8, 2, 0x1d, 0x8e, 0xff] {
            let (low, high) = nibble_tables(factor);
            for value in 0..=255u8 {
                let split = low[usize::from(value & 0x0f)] ^ high[usize::from(value >> 4)];
                assert_eq!(split, gf::mul(factor, value));
            }
        }
    }
}
