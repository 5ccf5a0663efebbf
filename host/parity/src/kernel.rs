//! The table of parity implementations, Linux lib/raid6/algos.c style: each entry has a
//! name, a priority, a CPU check and its functions; the scalar model is always valid and
//! always last. [`best`] picks the valid entry of highest priority once and caches it.

use std::sync::OnceLock;

use super::reference;
#[cfg(target_arch = "x86_64")]
use super::simd;

type GenP = fn(&[&[u8]], &mut [u8]);
type GenPq = fn(&[&[u8]], &mut [u8], &mut [u8]);
type XorInto = fn(&mut [u8], &[u8]);
type MulXorInto = fn(&mut [u8], u8, &[u8]);

/// One implementation of the parity primitives.
///
/// Obtained only from [`kernels`] or [`best`], so its functions run on this CPU.
pub struct Kernel {
    name: &'static str,
    priority: u32,
    valid: fn() -> bool,
    gen_p: GenP,
    gen_pq: GenPq,
    xor_into: XorInto,
    mul_xor_into: MulXorInto,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Kernel")
            .field("name", &self.name)
            .field("priority", &self.priority)
            .finish_non_exhaustive()
    }
}

impl Kernel {
    /// Short name, e.g. `gfni-avx512`, `avx2`, `scalar`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Higher wins in [`best`].
    pub fn priority(&self) -> u32 {
        self.priority
    }

    /// P = XOR of `data`.
    ///
    /// # Panics
    /// If `data` is empty or any length differs from `p`'s.
    pub fn gen_p(&self, data: &[&[u8]], p: &mut [u8]) {
        assert_stripe(data, p.len());
        (self.gen_p)(data, p);
    }

    /// P = XOR of `data`; Q = sum over i of g^i * data\[i\].
    ///
    /// # Panics
    /// If `data` is empty or any length differs from `p`'s or `q`'s.
    pub fn gen_pq(&self, data: &[&[u8]], p: &mut [u8], q: &mut [u8]) {
        assert_stripe(data, p.len());
        assert_eq!(p.len(), q.len(), "P and Q lengths differ");
        (self.gen_pq)(data, p, q);
    }

    /// `target ^= source`.
    ///
    /// # Panics
    /// If the lengths differ.
    pub fn xor_into(&self, target: &mut [u8], source: &[u8]) {
        assert_eq!(target.len(), source.len(), "lengths differ");
        (self.xor_into)(target, source);
    }

    /// `target ^= factor * source` in GF(2^8).
    ///
    /// # Panics
    /// If the lengths differ.
    pub fn mul_xor_into(&self, target: &mut [u8], factor: u8, source: &[u8]) {
        assert_eq!(target.len(), source.len(), "lengths differ");
        match factor {
            0 => {}
            1 => (self.xor_into)(target, source),
            _ => (self.mul_xor_into)(target, factor, source),
        }
    }
}

fn assert_stripe(data: &[&[u8]], length: usize) {
    assert!(!data.is_empty(), "no data chunks");
    assert!(
        data.iter().all(|chunk| chunk.len() == length),
        "chunk lengths differ"
    );
}

fn always() -> bool {
    true
}

/// Every implementation this build knows, highest priority first; scalar last.
static TABLE: &[Kernel] = &[
    #[cfg(target_arch = "x86_64")]
    Kernel {
        name: "gfni-avx512",
        priority: 50,
        valid: simd::gfni_avx512_valid,
        gen_p: simd::avx512_gen_p,
        gen_pq: simd::gfni_avx512_gen_pq,
        xor_into: simd::avx512_xor_into,
        mul_xor_into: simd::gfni_avx512_mul_xor_into,
    },
    #[cfg(target_arch = "x86_64")]
    Kernel {
        name: "gfni-avx2",
        priority: 40,
        valid: simd::gfni_avx2_valid,
        gen_p: simd::avx2_gen_p,
        gen_pq: simd::gfni_avx2_gen_pq,
        xor_into: simd::avx2_xor_into,
        mul_xor_into: simd::gfni_avx2_mul_xor_into,
    },
    #[cfg(target_arch = "x86_64")]
    Kernel {
        name: "avx512bw",
        priority: 30,
        valid: simd::avx512_valid,
        gen_p: simd::avx512_gen_p,
        gen_pq: simd::avx512_gen_pq,
        xor_into: simd::avx512_xor_into,
        mul_xor_into: simd::avx512_mul_xor_into,
    },
    #[cfg(target_arch = "x86_64")]
    Kernel {
        name: "avx2",
        priority: 20,
        valid: simd::avx2_valid,
        gen_p: simd::avx2_gen_p,
        gen_pq: simd::avx2_gen_pq,
        xor_into: simd::avx2_xor_into,
        mul_xor_into: simd::avx2_mul_xor_into,
    },
    Kernel {
        name: "scalar",
        priority: 0,
        valid: always,
        gen_p: reference::gen_p,
        gen_pq: reference::gen_pq,
        xor_into: reference::xor_into,
        mul_xor_into: reference::mul_xor_into,
    },
];

/// The implementations valid on this CPU, highest priority first; `scalar` is always there.
pub fn kernels() -> impl Iterator<Item = &'static Kernel> {
    TABLE.iter().filter(|kernel| (kernel.valid)())
}

/// The valid implementation of highest priority, chosen on first use.
pub fn best() -> &'static Kernel {
    static BEST: OnceLock<&'static Kernel> = OnceLock::new();
    BEST.get_or_init(|| {
        let chosen = kernels()
            .max_by_key(|kernel| kernel.priority)
            .expect("scalar is always valid");
        assert!((chosen.valid)());
        chosen
    })
}

/// Looks a valid implementation up by name (for benchmarks and tests).
pub fn by_name(name: &str) -> Option<&'static Kernel> {
    kernels().find(|kernel| kernel.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_ends_in_scalar() {
        assert!(
            TABLE
                .windows(2)
                .all(|pair| pair[0].priority > pair[1].priority)
        );
        let last = TABLE.last().expect("table not empty");
        assert_eq!(last.name, "scalar");
        assert!(kernels().any(|kernel| kernel.name == "scalar"));
    }

    #[test]
    fn best_is_valid_and_highest() {
        let chosen = best();
        assert!((chosen.valid)());
        assert!(kernels().all(|kernel| kernel.priority <= chosen.priority));
    }
}
