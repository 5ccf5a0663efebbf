//! Software parity: P (XOR) and Q (GF(2^8), g = 2, polynomial 0x11d), their read-modify-
//! write update, and recovery of one or two lost chunks.
//!
//! Buffers follow Linux lib/raid6's order: data chunks `0..k`, then P, then (RAID-6) Q;
//! every buffer has the same length. The entry points dispatch to the fastest kernel the
//! CPU supports ([`best`], chosen once from the table [`kernels`]: GFNI on AVX-512 or AVX2,
//! AVX-512BW, AVX2, scalar); [`reference`](mod@reference) is the plain scalar model every kernel is tested
//! against, and ISA-L the outside oracle (tests/isal_oracle.rs).
//!
//! [`ParityEngine`] is where the RAID core asks for P and Q: [`HostParity`] computes them
//! here, the card crate's engine on the card. The read-modify-write update and recovery
//! stay plain functions: the card's register map (1.0) has no opcode for either.
//!
//! `unsafe` is allowed only in the SIMD kernels (CPU intrinsics), each block with a
//! `// SAFETY:` comment; the rest of the crate denies it.
#![deny(unsafe_code)]

pub mod engine;
pub mod gf;
mod kernel;
pub mod recover;
pub mod reference;
#[cfg(target_arch = "x86_64")]
mod simd;

pub use engine::{EngineError, HostParity, PARITY_SOURCES_MIN, ParityEngine, check_shape};
pub use kernel::{Kernel, best, by_name, kernels};
pub use recover::{RecoverError, recover};

/// P = XOR of `data`.
///
/// # Panics
/// If `data` is empty or any length differs from `p`'s (a caller bug, asserted).
pub fn gen_p(data: &[&[u8]], p: &mut [u8]) {
    best().gen_p(data, p);
}

/// P = XOR of `data`; Q = sum over i of `g^i * data[i]`.
///
/// # Panics
/// If `data` is empty or any length differs from `p`'s or `q`'s (asserted).
pub fn gen_pq(data: &[&[u8]], p: &mut [u8], q: &mut [u8]) {
    best().gen_pq(data, p, q);
}

/// Folds the change of data chunk `index` from `old` to `new` into P and, when given, Q:
/// the read-modify-write update (`P ^= old ^ new`, `Q ^= g^index * (old ^ new)`).
///
/// Four passes of the best kernel's XOR and multiply-XOR, with no temporary buffer.
///
/// # Panics
/// If the lengths differ.
pub fn update(index: usize, old: &[u8], new: &[u8], p: &mut [u8], q: Option<&mut [u8]>) {
    assert_eq!(old.len(), new.len(), "old and new lengths differ");
    assert_eq!(old.len(), p.len(), "P length differs");
    let kernel = best();
    kernel.xor_into(p, old);
    kernel.xor_into(p, new);
    if let Some(q) = q {
        assert_eq!(q.len(), p.len(), "Q length differs");
        let factor = gf::pow2(index);
        kernel.mul_xor_into(q, factor, old);
        kernel.mul_xor_into(q, factor, new);
    }
}
