//! GF(2^8) with polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11d) and generator 2: the field of
//! Linux md's and ISA-L's RAID-6 Q.
//!
//! Tables are built at compile time; nothing here allocates.

/// The reducing polynomial, without its x^8 term.
pub const POLY_LOW: u8 = 0x1d;

const fn build_exp() -> [u8; 512] {
    let mut exp = [0u8; 512];
    let mut value: u16 = 1;
    let mut i = 0;
    while i < 512 {
        exp[i] = value as u8;
        value <<= 1;
        if value & 0x100 != 0 {
            value ^= 0x11d;
        }
        i += 1;
    }
    exp
}

const fn build_log(exp: &[u8; 512]) -> [u8; 256] {
    let mut log = [0u8; 256];
    let mut i = 0;
    while i < 255 {
        log[exp[i] as usize] = i as u8;
        i += 1;
    }
    log
}

/// `EXP[i] = g^i`, doubled in length so `EXP[log a + log b]` needs no reduction.
pub static EXP: [u8; 512] = build_exp();
/// `LOG[a]` with `g^LOG[a] = a`, for `a != 0` (`LOG[0]` is meaningless).
pub static LOG: [u8; 256] = build_log(&EXP);

/// Multiply by the generator (2): one shift and a conditional reduction.
#[inline]
pub const fn mul2(a: u8) -> u8 {
    (a << 1) ^ if a & 0x80 != 0 { POLY_LOW } else { 0 }
}

/// `a * b`.
#[inline]
pub fn mul(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        return 0;
    }
    EXP[LOG[a as usize] as usize + LOG[b as usize] as usize]
}

/// `g^power`.
#[inline]
pub fn pow2(power: usize) -> u8 {
    EXP[power % 255]
}

/// Multiplicative inverse of `a != 0`.
#[inline]
pub fn inv(a: u8) -> u8 {
    assert!(a != 0, "zero has no inverse");
    EXP[255 - LOG[a as usize] as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mul_slow(mut a: u8, mut b: u8) -> u8 {
        let mut product = 0u8;
        while b != 0 {
            if b & 1 != 0 {
                product ^= a;
            }
            a = mul2(a);
            b >>= 1;
        }
        product
    }

    #[test]
    fn table_multiply_matches_shift_and_add() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                assert_eq!(mul(a, b), mul_slow(a, b), "{a} * {b}");
            }
        }
    }

    #[test]
    fn generator_has_order_255() {
        let mut seen = [false; 256];
        for power in 0..255 {
            let value = pow2(power);
            assert!(!seen[value as usize], "g^{power} repeats");
            seen[value as usize] = true;
        }
        assert!(!seen[0]);
    }

    #[test]
    fn inverse_inverts() {
        for a in 1..=255u8 {
            assert_eq!(mul(a, inv(a)), 1);
        }
    }
}
