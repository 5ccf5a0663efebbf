//! Recovery of lost chunks, one path per failure class as in Linux lib/raid6/recov.c:
//! one data chunk (from P, or from Q when P is lost too), data+data, data+P, data+Q, P+Q.

use super::{best, gf};

/// Why a recovery cannot run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecoverError {
    /// More chunks lost than the parity can rebuild.
    #[error("{lost} chunks lost, parity rebuilds at most {parity}")]
    TooManyLost { lost: usize, parity: usize },
    /// An index beyond the stripe, or listed twice.
    #[error("lost chunk index {0} invalid or repeated")]
    BadIndex(usize),
    /// Not 1 (RAID-5) or 2 (RAID-6) parity chunks, or too few data chunks.
    #[error("stripe of {chunks} chunks with {parity} parity is not a RAID-5/6 stripe")]
    BadShape { chunks: usize, parity: usize },
}

/// Rebuilds `chunks[i]` for every `i` in `lost` from the others.
///
/// `chunks` is data `0..k`, then P, then Q when `parity_count == 2`; all of one length.
/// Lost buffers' contents are ignored and overwritten.
pub fn recover(
    chunks: &mut [&mut [u8]],
    parity_count: usize,
    lost: &[usize],
) -> Result<(), RecoverError> {
    let data_count = check(chunks.len(), parity_count, lost)?;
    let mut lost = lost.to_vec();
    lost.sort_unstable();
    let (p_index, q_index) = (data_count, data_count + 1);
    match lost[..] {
        [] => {}
        [x] if x == p_index || x == q_index => regenerate_parity(chunks, data_count, parity_count),
        [x] => data_from_p(chunks, data_count, x),
        [x, y] if x == p_index && y == q_index => regenerate_parity(chunks, data_count, 2),
        [x, y] if y == p_index => {
            data_from_q(chunks, data_count, x);
            regenerate_parity(chunks, data_count, 1);
        }
        [x, y] if y == q_index => {
            data_from_p(chunks, data_count, x);
            regenerate_parity(chunks, data_count, 2);
        }
        [x, y] => data_data(chunks, data_count, x, y),
        _ => unreachable!("check() bounds the lost count"),
    }
    Ok(())
}

fn check(chunk_count: usize, parity_count: usize, lost: &[usize]) -> Result<usize, RecoverError> {
    if !(1..=2).contains(&parity_count) || chunk_count < parity_count + 2 {
        return Err(RecoverError::BadShape {
            chunks: chunk_count,
            parity: parity_count,
        });
    }
    if lost.len() > parity_count {
        return Err(RecoverError::TooManyLost {
            lost: lost.len(),
            parity: parity_count,
        });
    }
    for (position, &index) in lost.iter().enumerate() {
        if index >= chunk_count || lost[..position].contains(&index) {
            return Err(RecoverError::BadIndex(index));
        }
    }
    Ok(chunk_count - parity_count)
}

/// Recomputes P (and Q when `which == 2`) from the data chunks.
fn regenerate_parity(chunks: &mut [&mut [u8]], data_count: usize, which: usize) {
    let (data, parity) = chunks.split_at_mut(data_count);
    let data: Vec<&[u8]> = data.iter().map(|chunk| &**chunk).collect();
    match (which, parity) {
        (2, [p, q]) => super::gen_pq(&data, p, q),
        (_, [p, ..]) => super::gen_p(&data, p),
        _ => unreachable!("a stripe has P"),
    }
}

/// Data chunk `x` = P xor every other data chunk.
fn data_from_p(chunks: &mut [&mut [u8]], data_count: usize, x: usize) {
    let (head, tail) = chunks.split_at_mut(x);
    let (target, after) = tail.split_first_mut().expect("x < data_count");
    target.copy_from_slice(after[data_count - x - 1]);
    let kernel = best();
    for chunk in head.iter().chain(after[..data_count - x - 1].iter()) {
        kernel.xor_into(target, chunk);
    }
}

/// Data chunk `x` from Q: D_x = (Q xor sum over i != x of g^i D_i) * g^-x.
fn data_from_q(chunks: &mut [&mut [u8]], data_count: usize, x: usize) {
    let syndrome = q_syndrome_without(chunks, data_count, &[x]);
    let factor = gf::inv(gf::pow2(x));
    chunks[x].fill(0);
    best().mul_xor_into(chunks[x], factor, &syndrome);
}

/// Q xor the Q-contribution of every data chunk not in `missing`.
fn q_syndrome_without(chunks: &[&mut [u8]], data_count: usize, missing: &[usize]) -> Vec<u8> {
    let kernel = best();
    let mut syndrome = chunks[data_count + 1].to_vec();
    for (index, chunk) in chunks[..data_count].iter().enumerate() {
        if !missing.contains(&index) {
            kernel.mul_xor_into(&mut syndrome, gf::pow2(index), chunk);
        }
    }
    syndrome
}

/// Two data chunks `x < y` from P and Q.
///
/// With Pxy = P xor the other data and Qxy = Q xor the others' Q terms:
/// D_x + D_y = Pxy and g^x D_x + g^y D_y = Qxy, so
/// D_x = (g^(y-x) Pxy + g^-x Qxy) / (g^(y-x) + 1), and D_y = Pxy + D_x.
fn data_data(chunks: &mut [&mut [u8]], data_count: usize, x: usize, y: usize) {
    let kernel = best();
    let q_syndrome = q_syndrome_without(chunks, data_count, &[x, y]);
    let mut p_syndrome = chunks[data_count].to_vec();
    for (index, chunk) in chunks[..data_count].iter().enumerate() {
        if index != x && index != y {
            kernel.xor_into(&mut p_syndrome, chunk);
        }
    }
    let g_diff = gf::pow2(y - x);
    let denominator_inv = gf::inv(g_diff ^ 1);
    let p_factor = gf::mul(g_diff, denominator_inv);
    let q_factor = gf::mul(gf::inv(gf::pow2(x)), denominator_inv);
    let (head, tail) = chunks.split_at_mut(y);
    let (dx, dy) = (&mut *head[x], &mut *tail[0]);
    dx.fill(0);
    kernel.mul_xor_into(dx, p_factor, &p_syndrome);
    kernel.mul_xor_into(dx, q_factor, &q_syndrome);
    dy.copy_from_slice(&p_syndrome);
    kernel.xor_into(dy, dx);
}
