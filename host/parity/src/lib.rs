//! Software parity: P (XOR) and Q (GF(2^8), g = 2, polynomial 0x11d), their read-modify-
//! write update, and recovery of one or two lost chunks.
//!
//! Buffers follow Linux lib/raid6's order: data chunks `0..k`, then P, then (RAID-6) Q;
//! every buffer has the same length. The entry points dispatch to the fastest kernel the
//! CPU supports ([`kernels`]); [`reference`] is the plain scalar model every kernel is
//! tested against.
//!
//! `unsafe` is allowed only in the SIMD kernels (CPU intrinsics), each block with a
//! `// SAFETY:` comment; the rest of the crate denies it.
#![deny(unsafe_code)]

pub mod gf;
pub mod recover;
pub mod reference;

pub use recover::{RecoverError, recover};

/// P = XOR of `data`.
///
/// # Panics
/// If `data` is empty or any length differs from `p`'s (a caller bug, asserted).
pub fn gen_p(data: &[&[u8]], p: &mut [u8]) {
    reference::gen_p(data, p);
}

/// P = XOR of `data`; Q = sum over i of g^i * data[i].
///
/// # Panics
/// If `data` is empty or any length differs from `p`'s or `q`'s (asserted).
pub fn gen_pq(data: &[&[u8]], p: &mut [u8], q: &mut [u8]) {
    reference::gen_pq(data, p, q);
}

/// Folds the change of data chunk `index` from `old` to `new` into P and, when given, Q:
/// the read-modify-write update (`P ^= old ^ new`, `Q ^= g^index * (old ^ new)`).
pub fn update(index: usize, old: &[u8], new: &[u8], p: &mut [u8], q: Option<&mut [u8]>) {
    reference::update(index, old, new, p, q);
}
