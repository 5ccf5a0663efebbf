//! Rebuilding lost chunks over a column range: which survivors to read, and the recovery.
//!
//! Every surviving data chunk is read, and as many surviving parity chunks (P first) as
//! there are failed data chunks: those are the unknowns. The chunks not read (failed ones
//! and spare parity) are exactly `parity_count` and are handed to `amf_parity::recover`.

use crate::faults::StripeFaults;
use crate::geometry::{Geometry, Role};
use crate::io::IoList;
use crate::mapping::Columns;

/// Whether a reconstruction reads `role`.
pub(crate) fn is_source(geometry: &Geometry, faults: &StripeFaults, role: Role) -> bool {
    if !faults.alive(role) {
        return false;
    }
    match role {
        Role::Data(_) => true,
        Role::P | Role::Q => {
            let needed = faults.data_failed.count_ones() as usize;
            let rank = faults.parity_alive().position(|alive| alive == role);
            assert!(rank.is_some(), "alive parity is ranked");
            assert!(needed <= geometry.parity_count() as usize);
            rank.is_some_and(|rank| rank < needed)
        }
    }
}

/// The roles a reconstruction reads, in `amf_parity` slot order.
pub(crate) fn sources<'a>(
    geometry: &'a Geometry,
    faults: &'a StripeFaults,
) -> impl Iterator<Item = Role> + 'a {
    (0..geometry.members() as usize)
        .map(|slot| geometry.role_of_slot(slot))
        .filter(|&role| is_source(geometry, faults, role))
}

/// Adds every source's `columns` to `reads`.
pub(crate) fn push_sources(
    geometry: &Geometry,
    faults: &StripeFaults,
    columns: Columns,
    reads: &mut IoList,
) {
    for role in sources(geometry, faults) {
        reads.push(role, columns);
    }
}

/// Every chunk of the stripe over `columns`, in slot order, `columns.length()` bytes each,
/// the lost ones rebuilt from the sources in `buffers` (one per I/O of `reads`).
pub(crate) fn recover_columns(
    geometry: &Geometry,
    faults: &StripeFaults,
    columns: Columns,
    reads: &IoList,
    buffers: &[&[u8]],
) -> Vec<u8> {
    let length = columns.length() as usize;
    let mut chunks = vec![0u8; geometry.members() as usize * length];
    let mut lost = Vec::with_capacity(geometry.parity_count() as usize);
    for (slot, chunk) in chunks.chunks_exact_mut(length).enumerate() {
        let role = geometry.role_of_slot(slot);
        if is_source(geometry, faults, role) {
            chunk.copy_from_slice(reads.slice(buffers, role, columns));
        } else {
            lost.push(slot);
        }
    }
    assert_eq!(lost.len(), geometry.parity_count() as usize);
    let mut chunk_slices: Vec<&mut [u8]> = chunks.chunks_exact_mut(length).collect();
    amf_parity::recover(&mut chunk_slices, geometry.parity_count() as usize, &lost)
        .expect("exactly parity_count chunks are rebuilt");
    chunks
}
