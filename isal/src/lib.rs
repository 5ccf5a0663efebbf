//! A small, safe interface to Intel ISA-L's RAID parity functions, `xor_gen` (RAID-5 P) and
//! `pq_gen` (RAID-6 P and Q, g = 2, polynomial 0x11d): the outside oracle for amflink's own
//! kernels and the reference its benchmarks are measured against.
//!
//! ISA-L is found at build time through pkg-config (`libisal`). Without it the crate still
//! builds: [`available`] returns `false` and every call returns [`IsalError::NotFound`].
//!
//! ISA-L's constraints, checked here before any call (its assembly faults or silently
//! fails otherwise; see `raid.h` and the per-ISA sources):
//!
//! * every buffer (data, P, Q) starts on a 32-byte boundary (its AVX versions use aligned,
//!   some non-temporal, loads and stores);
//! * `pq_gen` takes at least 2 data buffers and a length that is a multiple of 32;
//! * `xor_gen` takes at least 2 data buffers and any length;
//! * counts and lengths are C `int`s.
//!
//! Buffers are numbered as in Linux lib/raid6: data `0..k`, then P (`k`), then Q (`k + 1`).
#![deny(unsafe_code)]

#[cfg(isal_found)]
mod ffi;

/// Every buffer ISA-L touches must start on this boundary.
pub const ALIGNMENT_BYTES: usize = 32;
/// `pq_gen` lengths must be a multiple of this.
pub const PQ_LENGTH_MULTIPLE_BYTES: usize = 32;
/// Both functions need at least this many data buffers.
pub const DATA_COUNT_MIN: usize = 2;

/// Why an ISA-L call was refused or failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IsalError {
    /// The crate was built without ISA-L (pkg-config found no `libisal`).
    #[error("ISA-L not found: built without libisal (install libisal-dev and rebuild)")]
    NotFound,
    /// Fewer data buffers than ISA-L accepts.
    #[error("{got} data buffers given, ISA-L needs at least {min}")]
    TooFewData { got: usize, min: usize },
    /// More buffers than a C `int` counts.
    #[error("{got} buffers do not fit ISA-L's int count")]
    TooManyBuffers { got: usize },
    /// A buffer's length differs from P's.
    #[error("buffer {buffer} is {got} bytes, P is {expected}")]
    LengthMismatch {
        buffer: usize,
        got: usize,
        expected: usize,
    },
    /// The length is not a multiple of what the function requires.
    #[error("length {length} is not a multiple of {multiple} bytes")]
    LengthNotMultiple { length: usize, multiple: usize },
    /// The length does not fit ISA-L's int length.
    #[error("length {length} does not fit ISA-L's int length")]
    LengthTooLarge { length: usize },
    /// A buffer does not start on an [`ALIGNMENT_BYTES`] boundary.
    #[error("buffer {buffer} is not aligned to {alignment} bytes")]
    Misaligned { buffer: usize, alignment: usize },
    /// ISA-L itself returned non-zero.
    #[error("ISA-L {function} returned {code}")]
    Failed { function: &'static str, code: i32 },
}

/// Whether this build links ISA-L.
pub fn available() -> bool {
    cfg!(isal_found)
}

/// P = XOR of `data`, through ISA-L's `xor_gen`.
pub fn xor_gen(data: &[&[u8]], p: &mut [u8]) -> Result<(), IsalError> {
    let shape = check(data, &[&*p], 1)?;
    if shape.length == 0 {
        return Ok(());
    }
    call_xor_gen(data, p, shape)
}

/// P = XOR of `data`, Q = sum of g^i * data\[i\], through ISA-L's `pq_gen`.
pub fn pq_gen(data: &[&[u8]], p: &mut [u8], q: &mut [u8]) -> Result<(), IsalError> {
    let shape = check(data, &[&*p, &*q], PQ_LENGTH_MULTIPLE_BYTES)?;
    if shape.length == 0 {
        return Ok(());
    }
    call_pq_gen(data, p, q, shape)
}

/// Validated call arguments, as ISA-L's C types.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(isal_found), allow(dead_code))]
struct Shape {
    length: usize,
    vects: i32,
    length_int: i32,
}

/// Checks everything ISA-L needs of `data` followed by `parity` (P, or P and Q).
fn check(data: &[&[u8]], parity: &[&[u8]], multiple: usize) -> Result<Shape, IsalError> {
    if !available() {
        return Err(IsalError::NotFound);
    }
    if data.len() < DATA_COUNT_MIN {
        return Err(IsalError::TooFewData {
            got: data.len(),
            min: DATA_COUNT_MIN,
        });
    }
    let count = data.len() + parity.len();
    let vects = i32::try_from(count).map_err(|_| IsalError::TooManyBuffers { got: count })?;
    let length = parity[0].len();
    let length_int = i32::try_from(length).map_err(|_| IsalError::LengthTooLarge { length })?;
    if !length.is_multiple_of(multiple) {
        return Err(IsalError::LengthNotMultiple { length, multiple });
    }
    for (buffer, chunk) in data.iter().chain(parity).enumerate() {
        if chunk.len() != length {
            return Err(IsalError::LengthMismatch {
                buffer,
                got: chunk.len(),
                expected: length,
            });
        }
        // An empty slice may dangle anywhere; ISA-L reads nothing then.
        if length != 0 && chunk.as_ptr().align_offset(ALIGNMENT_BYTES) != 0 {
            return Err(IsalError::Misaligned {
                buffer,
                alignment: ALIGNMENT_BYTES,
            });
        }
    }
    Ok(Shape {
        length,
        vects,
        length_int,
    })
}

#[cfg(isal_found)]
fn call_xor_gen(data: &[&[u8]], p: &mut [u8], shape: Shape) -> Result<(), IsalError> {
    debug_assert_eq!(p.len(), shape.length);
    match ffi::xor_gen(data, p, shape.vects, shape.length_int) {
        0 => Ok(()),
        code => Err(IsalError::Failed {
            function: "xor_gen",
            code,
        }),
    }
}

#[cfg(isal_found)]
fn call_pq_gen(data: &[&[u8]], p: &mut [u8], q: &mut [u8], shape: Shape) -> Result<(), IsalError> {
    debug_assert_eq!(q.len(), shape.length);
    match ffi::pq_gen(data, p, q, shape.vects, shape.length_int) {
        0 => Ok(()),
        code => Err(IsalError::Failed {
            function: "pq_gen",
            code,
        }),
    }
}

#[cfg(not(isal_found))]
fn call_xor_gen(_data: &[&[u8]], _p: &mut [u8], _shape: Shape) -> Result<(), IsalError> {
    Err(IsalError::NotFound)
}

#[cfg(not(isal_found))]
fn call_pq_gen(
    _data: &[&[u8]],
    _p: &mut [u8],
    _q: &mut [u8],
    _shape: Shape,
) -> Result<(), IsalError> {
    Err(IsalError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer of `length` bytes starting `skew` bytes past a 64-byte boundary.
    fn buffer(storage: &mut Vec<u8>, length: usize, skew: usize) -> &mut [u8] {
        storage.resize(length + 64 + skew, 0);
        let start = storage.as_ptr().align_offset(64) + skew;
        &mut storage[start..start + length]
    }

    #[test]
    fn reports_presence_as_built() {
        assert_eq!(available(), cfg!(isal_found));
    }

    #[test]
    fn short_stripe_is_refused() {
        let mut storage = [Vec::new(), Vec::new(), Vec::new()];
        let [a, b, c] = &mut storage;
        let (d0, p, q) = (buffer(a, 64, 0), buffer(b, 64, 0), buffer(c, 64, 0));
        let expected = if available() {
            IsalError::TooFewData { got: 1, min: 2 }
        } else {
            IsalError::NotFound
        };
        assert_eq!(pq_gen(&[&*d0], p, q), Err(expected));
    }

    #[cfg(isal_found)]
    #[test]
    fn constraints_are_typed() {
        let mut storage = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
        let [a, b, c, d] = &mut storage;
        let (d0, d1, p, q) = (
            buffer(a, 96, 0),
            buffer(b, 96, 8),
            buffer(c, 96, 0),
            buffer(d, 96, 0),
        );
        assert_eq!(
            pq_gen(&[&*d0, &*d1], p, q),
            Err(IsalError::Misaligned {
                buffer: 1,
                alignment: 32
            })
        );
        assert_eq!(
            pq_gen(&[&d0[..64], &d0[..32]], &mut p[..64], &mut q[..64]),
            Err(IsalError::LengthMismatch {
                buffer: 1,
                got: 32,
                expected: 64
            })
        );
        assert_eq!(
            pq_gen(&[&d0[..40], &d0[..40]], &mut p[..40], &mut q[..40]),
            Err(IsalError::LengthNotMultiple {
                length: 40,
                multiple: 32
            })
        );
        assert_eq!(
            xor_gen(&[&d0[..64], &d0[..63]], &mut p[..64]),
            Err(IsalError::LengthMismatch {
                buffer: 1,
                got: 63,
                expected: 64
            })
        );
    }

    #[cfg(isal_found)]
    #[test]
    fn small_stripe_matches_hand_computation() {
        let mut storage = [Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new()];
        let [a, b, c, d, e] = &mut storage;
        let (d0, d1, d2, p, q) = (
            buffer(a, 32, 0),
            buffer(b, 32, 0),
            buffer(c, 32, 0),
            buffer(d, 32, 0),
            buffer(e, 32, 0),
        );
        d0.fill(0x01);
        d1.fill(0x80);
        d2.fill(0x03);
        pq_gen(&[&*d0, &*d1, &*d2], p, q).expect("pq_gen");
        // P = 1 ^ 0x80 ^ 3; Q = 1 + 2*0x80 + 4*3 = 1 ^ 0x1d ^ 0x0c.
        assert!(p.iter().all(|&byte| byte == 0x82));
        assert!(q.iter().all(|&byte| byte == 0x01 ^ 0x1d ^ 0x0c));
        xor_gen(&[&*d0, &*d1], p).expect("xor_gen");
        assert!(p.iter().all(|&byte| byte == 0x81));
    }
}
