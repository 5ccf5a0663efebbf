//! The scalar model: obviously correct, byte at a time. Every faster kernel must equal it.

use super::gf;

fn assert_shapes(data: &[&[u8]], length: usize) {
    assert!(!data.is_empty(), "no data chunks");
    assert!(
        data.iter().all(|chunk| chunk.len() == length),
        "chunk lengths differ"
    );
}

/// P = XOR of `data`.
pub fn gen_p(data: &[&[u8]], p: &mut [u8]) {
    assert_shapes(data, p.len());
    p.copy_from_slice(data[0]);
    for chunk in &data[1..] {
        xor_into(p, chunk);
    }
}

/// P = XOR; Q by Horner's rule from the highest data index down: `Q = (..(D[k-1]*g + D[k-2])*g ..) + D[0]`.
pub fn gen_pq(data: &[&[u8]], p: &mut [u8], q: &mut [u8]) {
    assert_shapes(data, p.len());
    assert_eq!(p.len(), q.len(), "P and Q lengths differ");
    let last = data.len() - 1;
    p.copy_from_slice(data[last]);
    q.copy_from_slice(data[last]);
    for chunk in data[..last].iter().rev() {
        for ((p_byte, q_byte), &byte) in p.iter_mut().zip(q.iter_mut()).zip(chunk.iter()) {
            *p_byte ^= byte;
            *q_byte = gf::mul2(*q_byte) ^ byte;
        }
    }
}

/// `target ^= source`.
pub fn xor_into(target: &mut [u8], source: &[u8]) {
    assert_eq!(target.len(), source.len(), "lengths differ");
    for (t, s) in target.iter_mut().zip(source) {
        *t ^= s;
    }
}

/// `target ^= factor * source` in GF(2^8).
pub fn mul_xor_into(target: &mut [u8], factor: u8, source: &[u8]) {
    assert_eq!(target.len(), source.len(), "lengths differ");
    for (t, &s) in target.iter_mut().zip(source) {
        *t ^= gf::mul(factor, s);
    }
}

/// Read-modify-write update of P (and Q) for data chunk `index` changing from `old` to `new`.
pub fn update(index: usize, old: &[u8], new: &[u8], p: &mut [u8], q: Option<&mut [u8]>) {
    assert_eq!(old.len(), new.len(), "old and new lengths differ");
    assert_eq!(old.len(), p.len(), "P length differs");
    let factor = gf::pow2(index);
    let mut q = q;
    if let Some(q) = q.as_deref() {
        assert_eq!(q.len(), p.len(), "Q length differs");
    }
    for i in 0..p.len() {
        let delta = old[i] ^ new[i];
        p[i] ^= delta;
        if let Some(q) = q.as_deref_mut() {
            q[i] ^= gf::mul(factor, delta);
        }
    }
}
