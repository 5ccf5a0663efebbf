//! The raw ISA-L calls: the only `unsafe` in this crate. Callers in `lib.rs` have already
//! checked counts, lengths and 32-byte alignment.
#![allow(unsafe_code)]

use std::ffi::{c_int, c_void};

// SAFETY: these declarations match `/usr/include/isa-l/raid.h` (ISA-L 2.x):
// `int xor_gen(int vects, int len, void **array)` and the same for `pq_gen`.
unsafe extern "C" {
    #[link_name = "xor_gen"]
    fn isal_xor_gen(vects: c_int, len: c_int, array: *mut *mut c_void) -> c_int;
    #[link_name = "pq_gen"]
    fn isal_pq_gen(vects: c_int, len: c_int, array: *mut *mut c_void) -> c_int;
}

/// The `void **` ISA-L wants: the data pointers, then the parity pointers.
///
/// The data pointers come from shared slices and are cast to `*mut` only because the C
/// prototype has one array for sources and destinations; ISA-L reads the sources and
/// writes only the last one (`xor_gen`) or two (`pq_gen`) entries.
/// The `void **` ISA-L takes: data pointers, then parity pointers. Asserts here what the
/// `unsafe` calls rely on, so the safety does not rest on a check in another module: every
/// buffer is `length` bytes long and 32-byte aligned.
fn pointer_array(data: &[&[u8]], parity: &mut [&mut [u8]], length: usize) -> Vec<*mut c_void> {
    let lengths = data
        .iter()
        .map(|chunk| chunk.len())
        .chain(parity.iter().map(|chunk| chunk.len()));
    assert!(
        lengths.clone().all(|chunk_length| chunk_length == length),
        "buffer lengths differ"
    );
    let addresses = data
        .iter()
        .map(|chunk| chunk.as_ptr())
        .chain(parity.iter().map(|chunk| chunk.as_ptr()));
    assert!(
        addresses
            .clone()
            .all(|address| address.align_offset(32) == 0),
        "buffer not 32-byte aligned"
    );
    let mut array = Vec::with_capacity(data.len() + parity.len());
    array.extend(data.iter().map(|chunk| chunk.as_ptr() as *mut c_void));
    array.extend(
        parity
            .iter_mut()
            .map(|chunk| chunk.as_mut_ptr().cast::<c_void>()),
    );
    array
}

/// `xor_gen` over `data` into `p`; returns ISA-L's return code.
pub(crate) fn xor_gen(data: &[&[u8]], p: &mut [u8], vects: c_int, length: c_int) -> c_int {
    assert_eq!(usize::try_from(vects).ok(), Some(data.len() + 1));
    assert_eq!(usize::try_from(length).ok(), Some(p.len()));
    let mut array = pointer_array(data, &mut [p], length as usize);
    // SAFETY: `array` holds `vects` pointers, each to a live buffer of `length` bytes
    // aligned to 32 (asserted in `pointer_array`), and outlives the call. ISA-L writes only
    // through the last pointer, which comes from the exclusive `p`; the others come from
    // shared slices that it only reads. No buffer is retained after the call returns.
    unsafe { isal_xor_gen(vects, length, array.as_mut_ptr()) }
}

/// `pq_gen` over `data` into `p` and `q`; returns ISA-L's return code.
pub(crate) fn pq_gen(
    data: &[&[u8]],
    p: &mut [u8],
    q: &mut [u8],
    vects: c_int,
    length: c_int,
) -> c_int {
    assert_eq!(usize::try_from(vects).ok(), Some(data.len() + 2));
    assert_eq!(usize::try_from(length).ok(), Some(p.len()));
    assert_eq!(p.len(), q.len());
    let mut array = pointer_array(data, &mut [p, q], length as usize);
    // SAFETY: `array` holds `vects` pointers, each to a live buffer of `length` bytes
    // (a multiple of 32, checked by the caller) aligned to 32 (asserted in `pointer_array`),
    // and outlives the call.
    // ISA-L writes only through the last two pointers, from the exclusive and disjoint `p`
    // and `q`; the data pointers come from shared slices that it only reads. No buffer is
    // retained after the call returns.
    unsafe { isal_pq_gen(vects, length, array.as_mut_ptr()) }
}
