//! The stripe loops, generic over the vector ([`Lanes`]) and the multiply ([`Multiply`]).
//!
//! `gen_p`/`gen_pq` walk the stripe column by column: `U` vectors of every data chunk are
//! folded into `U` P (and `U` Q) accumulators held in registers, from the last data chunk
//! down (Horner's rule for Q), then P and Q are written once. Each data byte is read once
//! and each parity byte written once, which is what bounds the speed out of cache.
//!
//! Edges: lengths below one vector go to the scalar model; a length that is not a multiple
//! of the vector ends with one more vector that overlaps the previous one (recomputing the
//! same parity bytes is harmless, as the outputs never alias the inputs).
//!
//! Stores: long P+Q stripes whose P and Q share their alignment are written with
//! non-temporal stores, as ISA-L's `pq_gen` and Linux md do: the parity is not read back
//! soon, and streaming saves the read-for-ownership of every parity line, a fifth of the
//! memory traffic at 8 data chunks (measured: +15% out of cache, -10% in cache, where P+Q
//! has margin to spare). The unaligned head is covered by one ordinary vector. P alone is
//! stored normally: in cache it runs at the L2 bandwidth, where streaming's trip to DRAM
//! costs more than the read-for-ownership it saves (an eighth at 8 data chunks).
//!
//! Every function is `#[inline(always)]` and `unsafe` (the CPU must have the instruction
//! sets of `V` and `M`); `simd/mod.rs` instantiates them inside `#[target_feature]`
//! functions. Lengths are asserted here, so memory safety never rests on the caller.

use core::arch::x86_64::_mm_sfence;

use super::lanes::Lanes;
use super::multiply::Multiply;
use crate::reference;

/// P+Q stripes at least this long write parity with non-temporal stores.
pub(crate) const STREAM_LENGTH_MIN: usize = 16 * 1024;

fn assert_stripe(data: &[&[u8]], length: usize) {
    assert!(!data.is_empty(), "no data chunks");
    assert!(
        data.iter().all(|chunk| chunk.len() == length),
        "chunk lengths differ"
    );
}

/// Where the aligned, streamed part of the outputs starts, if they are to be streamed:
/// long enough, and every output equally misaligned (so one offset aligns them all).
fn stream_start(length: usize, outputs: &[*const u8], width: usize) -> Option<usize> {
    if length < STREAM_LENGTH_MIN {
        return None;
    }
    let start = outputs[0].align_offset(width);
    let shared = outputs
        .iter()
        .all(|output| output.align_offset(width) == start);
    (shared && start < width).then_some(start)
}

/// P = XOR of `data`.
///
/// # Safety
/// The CPU has `V`'s instruction set.
#[inline(always)]
pub(super) unsafe fn gen_p<V: Lanes, const U: usize>(data: &[&[u8]], p: &mut [u8]) {
    let length = p.len();
    assert_stripe(data, length);
    if length < V::WIDTH {
        reference::gen_p(data, p);
        return;
    }
    // SAFETY: every chunk and P are `length >= WIDTH` bytes (asserted above), which is all
    // `p_span` needs besides the CPU, which the caller guarantees.
    unsafe { p_span::<V, U>(data, p.as_mut_ptr(), length) }
}

/// `p_columns` over `[0, length)`, `U` vectors at a time, ending with a vector that
/// overlaps its predecessor when `length` is not a multiple of `WIDTH`.
///
/// # Safety
/// The CPU has `V`'s instruction set; every chunk and `p` hold `length >= WIDTH` bytes.
#[inline(always)]
unsafe fn p_span<V: Lanes, const U: usize>(data: &[&[u8]], p: *mut u8, length: usize) {
    debug_assert!(length >= V::WIDTH);
    let mut offset = 0;
    // SAFETY: each call covers `[offset, offset + n * WIDTH)` within `[0, length)`.
    unsafe {
        while offset + U * V::WIDTH <= length {
            p_columns::<V, U>(data, p, offset);
            offset += U * V::WIDTH;
        }
        while offset + V::WIDTH <= length {
            p_columns::<V, 1>(data, p, offset);
            offset += V::WIDTH;
        }
        if offset < length {
            p_columns::<V, 1>(data, p, length - V::WIDTH);
        }
    }
}

/// P for the `U` vectors at `offset`.
///
/// # Safety
/// The CPU has `V`'s instruction set; every chunk and `p` hold `offset + U * WIDTH` bytes.
#[inline(always)]
unsafe fn p_columns<V: Lanes, const U: usize>(data: &[&[u8]], p: *mut u8, offset: usize) {
    // SAFETY: all reads and writes are within `offset + U * WIDTH` of each chunk and of
    // `p`, as the caller guarantees.
    unsafe {
        let last = data.len() - 1;
        let first = data[last].as_ptr().add(offset);
        let mut parity = [V::load(first); U];
        for (lane, value) in parity.iter_mut().enumerate().skip(1) {
            *value = V::load(first.add(lane * V::WIDTH));
        }
        for chunk in data[..last].iter().rev() {
            let source = chunk.as_ptr().add(offset);
            for (lane, value) in parity.iter_mut().enumerate() {
                *value = V::xor(*value, V::load(source.add(lane * V::WIDTH)));
            }
        }
        for (lane, value) in parity.into_iter().enumerate() {
            V::store(p.add(offset + lane * V::WIDTH), value);
        }
    }
}

/// Stores one vector, streamed or not.
///
/// # Safety
/// As [`Lanes::store`], or [`Lanes::stream`] when `STREAM`.
#[inline(always)]
unsafe fn put<V: Lanes, const STREAM: bool>(target: *mut u8, value: V) {
    // SAFETY: forwarded from the caller.
    unsafe {
        if STREAM {
            V::stream(target, value);
        } else {
            V::store(target, value);
        }
    }
}

/// P = XOR of `data`; Q = sum of g^i * data\[i\], with `double` multiplying by g = 2.
///
/// # Safety
/// The CPU has `V`'s and `M`'s instruction sets.
#[inline(always)]
pub(super) unsafe fn gen_pq<V: Lanes, M: Multiply<V>, const U: usize>(
    data: &[&[u8]],
    p: &mut [u8],
    q: &mut [u8],
    double: &M,
) {
    let length = p.len();
    assert_stripe(data, length);
    assert_eq!(q.len(), length, "P and Q lengths differ");
    if length < V::WIDTH {
        reference::gen_pq(data, p, q);
        return;
    }
    let targets = [p.as_mut_ptr(), q.as_mut_ptr()];
    let outputs = [targets[0].cast_const(), targets[1].cast_const()];
    // SAFETY: every chunk, P and Q are `length >= WIDTH` bytes (asserted above), which is all
    // `pq_span` and `pq_columns` need besides the CPU, which the caller guarantees. A
    // streamed span starts at `start`, where P and Q are both aligned to `WIDTH`.
    unsafe {
        match stream_start(length, &outputs, V::WIDTH) {
            Some(start) => {
                pq_columns::<V, M, 1, false>(data, targets, 0, double);
                pq_span::<V, M, U, true>(data, targets, start, length, double);
                _mm_sfence();
            }
            None => pq_span::<V, M, U, false>(data, targets, 0, length, double),
        }
    }
}

/// `pq_columns` over `[start, end)`, as [`p_span`].
///
/// # Safety
/// The CPU has `V`'s and `M`'s instruction sets; every chunk and both targets hold
/// `end >= start + WIDTH` bytes; when `STREAM`, both targets are aligned at `start`.
#[inline(always)]
unsafe fn pq_span<V: Lanes, M: Multiply<V>, const U: usize, const STREAM: bool>(
    data: &[&[u8]],
    targets: [*mut u8; 2],
    start: usize,
    end: usize,
    double: &M,
) {
    debug_assert!(end >= start + V::WIDTH);
    let mut offset = start;
    // SAFETY: as in `p_span`: every call stays within `[start, end)` and streamed calls
    // stay aligned.
    unsafe {
        while offset + U * V::WIDTH <= end {
            pq_columns::<V, M, U, STREAM>(data, targets, offset, double);
            offset += U * V::WIDTH;
        }
        while offset + V::WIDTH <= end {
            pq_columns::<V, M, 1, STREAM>(data, targets, offset, double);
            offset += V::WIDTH;
        }
        if offset < end {
            pq_columns::<V, M, 1, false>(data, targets, end - V::WIDTH, double);
        }
    }
}

/// P and Q for the `U` vectors at `offset`: Horner's rule from the last chunk down,
/// `Q = Q * 2 ^ D_i`.
///
/// # Safety
/// The CPU has `V`'s and `M`'s instruction sets; every chunk and both targets hold
/// `offset + U * WIDTH` bytes; when `STREAM`, both targets are aligned at `offset`.
#[inline(always)]
unsafe fn pq_columns<V: Lanes, M: Multiply<V>, const U: usize, const STREAM: bool>(
    data: &[&[u8]],
    targets: [*mut u8; 2],
    offset: usize,
    double: &M,
) {
    let last = data.len() - 1;
    // SAFETY: all reads and writes are within `offset + U * WIDTH` of each chunk and of
    // both targets, as the caller guarantees; streamed stores are aligned by the same.
    unsafe {
        let first = data[last].as_ptr().add(offset);
        let mut p = [V::load(first); U];
        for (lane, value) in p.iter_mut().enumerate().skip(1) {
            *value = V::load(first.add(lane * V::WIDTH));
        }
        let mut q = p;
        for chunk in data[..last].iter().rev() {
            let source = chunk.as_ptr().add(offset);
            for lane in 0..U {
                let value = V::load(source.add(lane * V::WIDTH));
                p[lane] = V::xor(p[lane], value);
                q[lane] = double.times_xor(q[lane], value);
            }
        }
        for lane in 0..U {
            put::<V, STREAM>(targets[0].add(offset + lane * V::WIDTH), p[lane]);
            put::<V, STREAM>(targets[1].add(offset + lane * V::WIDTH), q[lane]);
        }
    }
}

/// `target ^= source`.
///
/// # Safety
/// The CPU has `V`'s instruction set.
#[inline(always)]
pub(super) unsafe fn xor_into<V: Lanes, const U: usize>(target: &mut [u8], source: &[u8]) {
    assert_eq!(target.len(), source.len(), "lengths differ");
    let whole = target.len() - target.len() % V::WIDTH;
    let (from, to) = (source.as_ptr(), target.as_mut_ptr());
    let mut offset = 0;
    // SAFETY: every access lies in `[0, whole)` of both slices, which are `>= whole` long;
    // the CPU is the caller's guarantee.
    unsafe {
        while offset + U * V::WIDTH <= whole {
            for lane in 0..U {
                let at = offset + lane * V::WIDTH;
                V::store(
                    to.add(at),
                    V::xor(V::load(to.add(at)), V::load(from.add(at))),
                );
            }
            offset += U * V::WIDTH;
        }
        while offset < whole {
            V::store(
                to.add(offset),
                V::xor(V::load(to.add(offset)), V::load(from.add(offset))),
            );
            offset += V::WIDTH;
        }
    }
    reference::xor_into(&mut target[whole..], &source[whole..]);
}

/// `target ^= c * source`, with `multiply` multiplying by `c` and `factor == c`.
///
/// # Safety
/// The CPU has `V`'s and `M`'s instruction sets.
#[inline(always)]
pub(super) unsafe fn mul_xor_into<V: Lanes, M: Multiply<V>, const U: usize>(
    target: &mut [u8],
    factor: u8,
    source: &[u8],
    multiply: &M,
) {
    assert_eq!(target.len(), source.len(), "lengths differ");
    let whole = target.len() - target.len() % V::WIDTH;
    let (from, to) = (source.as_ptr(), target.as_mut_ptr());
    let mut offset = 0;
    // SAFETY: every access lies in `[0, whole)` of both slices, which are `>= whole` long;
    // the CPU is the caller's guarantee.
    unsafe {
        while offset + U * V::WIDTH <= whole {
            for lane in 0..U {
                let at = offset + lane * V::WIDTH;
                let product = multiply.times_xor(V::load(from.add(at)), V::load(to.add(at)));
                V::store(to.add(at), product);
            }
            offset += U * V::WIDTH;
        }
        while offset < whole {
            let product = multiply.times_xor(V::load(from.add(offset)), V::load(to.add(offset)));
            V::store(to.add(offset), product);
            offset += V::WIDTH;
        }
    }
    reference::mul_xor_into(&mut target[whole..], factor, &source[whole..]);
}
