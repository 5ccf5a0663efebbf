//! The sim card's DMA address map: host memory the card reaches by device address.
//!
//! Each buffer gets a fresh, page-aligned device address range followed by an unmapped
//! guard page, and ranges are never reused; so an address one past a buffer, or into a
//! freed buffer, faults (as an IOMMU would) instead of reaching other memory. The first
//! range starts above 4 GiB so that the high halves of 64-bit address registers matter.

use crate::backend::{DMA_ALIGN_BYTES, DmaBuffer};
use std::collections::BTreeMap;

/// First device address handed out.
const DEVICE_ADDRESS_FIRST: u64 = 1 << 32;

/// Why a DMA map operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DmaError {
    /// Zero bytes, or more than the map may still hold.
    #[error("DMA allocation of {bytes} bytes refused: {in_use_bytes} of {limit_bytes} in use")]
    Exhausted {
        /// Requested.
        bytes: u64,
        /// Already allocated.
        in_use_bytes: u64,
        /// Limit of the map.
        limit_bytes: u64,
    },
    /// The handle names no live buffer.
    #[error("DMA buffer handle {handle} is not allocated")]
    UnknownBuffer {
        /// The handle.
        handle: u64,
    },
    /// A host access reaches outside its buffer.
    #[error(
        "DMA access of {length_bytes} bytes at offset {offset} is outside a buffer of {buffer_bytes}"
    )]
    OutOfRange {
        /// Offset into the buffer.
        offset: u64,
        /// Length of the access.
        length_bytes: u64,
        /// Size of the buffer.
        buffer_bytes: u64,
    },
}

/// One mapped buffer.
#[derive(Debug)]
struct Region {
    device_address: u64,
    bytes: Vec<u8>,
}

/// The DMA map: handle → buffer, and device address → handle.
#[derive(Debug)]
pub struct DmaSpace {
    regions: BTreeMap<u64, Region>,
    by_address: BTreeMap<u64, u64>,
    next_handle: u64,
    next_address: u64,
    in_use_bytes: u64,
    limit_bytes: u64,
}

impl DmaSpace {
    /// An empty map that holds at most `limit_bytes` at once.
    pub fn new(limit_bytes: u64) -> Self {
        Self {
            regions: BTreeMap::new(),
            by_address: BTreeMap::new(),
            next_handle: 1,
            next_address: DEVICE_ADDRESS_FIRST,
            in_use_bytes: 0,
            limit_bytes,
        }
    }

    /// Maps a zeroed buffer; returns its handle and device address.
    pub fn alloc(&mut self, bytes: u64) -> Result<(u64, u64), DmaError> {
        let exhausted = DmaError::Exhausted {
            bytes,
            in_use_bytes: self.in_use_bytes,
            limit_bytes: self.limit_bytes,
        };
        let in_use_bytes = self.in_use_bytes.checked_add(bytes).ok_or(exhausted)?;
        if bytes == 0 || in_use_bytes > self.limit_bytes {
            return Err(exhausted);
        }
        let length = usize::try_from(bytes).map_err(|_| exhausted)?;
        let span = bytes.div_ceil(DMA_ALIGN_BYTES) * DMA_ALIGN_BYTES + DMA_ALIGN_BYTES;
        let device_address = self.next_address;
        self.next_address = device_address.checked_add(span).ok_or(exhausted)?;
        let handle = self.next_handle;
        self.next_handle += 1;
        let region = Region {
            device_address,
            bytes: vec![0; length],
        };
        self.regions.insert(handle, region);
        self.by_address.insert(device_address, handle);
        self.in_use_bytes = in_use_bytes;
        Ok((handle, device_address))
    }

    /// Unmaps the buffer `handle` at `device_address`.
    pub fn free(&mut self, handle: u64, device_address: u64) -> Result<(), DmaError> {
        self.region(handle, device_address)?;
        let region = self.regions.remove(&handle).expect("checked above");
        self.by_address.remove(&region.device_address);
        self.in_use_bytes -= region.bytes.len() as u64;
        Ok(())
    }

    /// The host's view of buffer `handle` at `offset`, `length_bytes` long.
    pub fn host_bytes_mut(
        &mut self,
        handle: u64,
        device_address: u64,
        offset: u64,
        length_bytes: u64,
    ) -> Result<&mut [u8], DmaError> {
        self.region(handle, device_address)?;
        let region = self.regions.get_mut(&handle).expect("checked above");
        let range = range_within(region.bytes.len(), offset, length_bytes)?;
        Ok(&mut region.bytes[range])
    }

    /// Copies `source` into `buffer` at `offset` (the host writing its DMA memory).
    pub fn host_write(
        &mut self,
        buffer: &DmaBuffer,
        offset: u64,
        source: &[u8],
    ) -> Result<(), DmaError> {
        let (handle, address) = (buffer.handle(), buffer.device_address());
        self.host_bytes_mut(handle, address, offset, source.len() as u64)?
            .copy_from_slice(source);
        Ok(())
    }

    /// Copies `buffer` at `offset` into `target` (the host reading its DMA memory).
    pub fn host_read(
        &mut self,
        buffer: &DmaBuffer,
        offset: u64,
        target: &mut [u8],
    ) -> Result<(), DmaError> {
        let (handle, address) = (buffer.handle(), buffer.device_address());
        target.copy_from_slice(self.host_bytes_mut(
            handle,
            address,
            offset,
            target.len() as u64,
        )?);
        Ok(())
    }

    fn region(&self, handle: u64, device_address: u64) -> Result<&Region, DmaError> {
        match self.regions.get(&handle) {
            Some(region) if region.device_address == device_address => Ok(region),
            _ => Err(DmaError::UnknownBuffer { handle }),
        }
    }

    /// The card's view: `length_bytes` at `device_address`, which must lie inside one
    /// buffer and be aligned to `align_bytes`; `None` is a DMA fault.
    pub fn device_bytes(
        &self,
        device_address: u64,
        length_bytes: u64,
        align_bytes: u64,
    ) -> Option<&[u8]> {
        let (handle, range) = self.device_range(device_address, length_bytes, align_bytes)?;
        Some(&self.regions[&handle].bytes[range])
    }

    /// As [`Self::device_bytes`], for the card writing.
    pub fn device_bytes_mut(
        &mut self,
        device_address: u64,
        length_bytes: u64,
        align_bytes: u64,
    ) -> Option<&mut [u8]> {
        let (handle, range) = self.device_range(device_address, length_bytes, align_bytes)?;
        Some(&mut self.regions.get_mut(&handle)?.bytes[range])
    }

    fn device_range(
        &self,
        device_address: u64,
        length_bytes: u64,
        align_bytes: u64,
    ) -> Option<(u64, std::ops::Range<usize>)> {
        debug_assert!(align_bytes.is_power_of_two());
        if !device_address.is_multiple_of(align_bytes) {
            return None;
        }
        let (_, handle) = self.by_address.range(..=device_address).next_back()?;
        let region = &self.regions[handle];
        let offset = device_address - region.device_address;
        let range = range_within(region.bytes.len(), offset, length_bytes).ok()?;
        Some((*handle, range))
    }
}

fn range_within(
    buffer_bytes: usize,
    offset: u64,
    length_bytes: u64,
) -> Result<std::ops::Range<usize>, DmaError> {
    let out_of_range = DmaError::OutOfRange {
        offset,
        length_bytes,
        buffer_bytes: buffer_bytes as u64,
    };
    let end = offset.checked_add(length_bytes).ok_or(out_of_range)?;
    if end > buffer_bytes as u64 {
        return Err(out_of_range);
    }
    // Both fit in usize: they are at most the length of a Vec.
    Ok(offset as usize..end as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_resolve_inside_one_buffer_only() {
        let mut space = DmaSpace::new(1 << 20);
        let (first, first_address) = space.alloc(100).unwrap();
        let (_, second_address) = space.alloc(8192).unwrap();
        assert!(second_address > first_address + 100);
        assert_eq!(
            space.device_bytes(first_address, 100, 1).unwrap().len(),
            100
        );
        assert!(space.device_bytes(first_address, 101, 1).is_none());
        assert!(
            space.device_bytes(first_address + 4096, 1, 1).is_none(),
            "guard"
        );
        assert!(space.device_bytes(first_address - 1, 1, 1).is_none());
        assert!(
            space.device_bytes(second_address + 8, 64, 64).is_none(),
            "misaligned"
        );
        assert!(space.device_bytes(0, 1, 1).is_none());
        space.free(first, first_address).unwrap();
        assert!(space.device_bytes(first_address, 1, 1).is_none(), "freed");
        assert_eq!(
            space.free(first, first_address),
            Err(DmaError::UnknownBuffer { handle: first })
        );
    }

    #[test]
    fn limit_is_enforced_and_released() {
        let mut space = DmaSpace::new(8192);
        let (handle, address) = space.alloc(8192).unwrap();
        assert!(matches!(space.alloc(1), Err(DmaError::Exhausted { .. })));
        assert!(matches!(space.alloc(0), Err(DmaError::Exhausted { .. })));
        space.free(handle, address).unwrap();
        space.alloc(4096).unwrap();
    }

    #[test]
    fn host_access_is_bounds_checked() {
        let mut space = DmaSpace::new(8192);
        let (handle, address) = space.alloc(64).unwrap();
        space.host_bytes_mut(handle, address, 0, 64).unwrap()[63] = 7;
        assert_eq!(space.device_bytes(address + 63, 1, 1), Some(&[7u8][..]));
        assert!(space.host_bytes_mut(handle, address, 60, 5).is_err());
        assert!(space.host_bytes_mut(handle, address, u64::MAX, 2).is_err());
        assert!(space.host_bytes_mut(handle + 1, address, 0, 1).is_err());
    }
}
