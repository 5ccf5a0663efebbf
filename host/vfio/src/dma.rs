//! DMA memory: host memory allocated for a device ([`DmaMemory`]) and its IOMMU mapping
//! ([`DmaMapping`]), which the device reaches at an IOVA until the mapping drops.

use crate::container::Container;
use crate::error::VfioError;
use crate::sys::{HostMemory, IommuMapping};
use memmap2::MmapMut;
use std::sync::Arc;

/// Host memory meant for a device, not yet mapped.
#[derive(Debug)]
pub struct DmaMemory {
    memory: HostMemory,
}

impl DmaMemory {
    /// Zeroed memory of at least `bytes` (> 0), rounded up to `page_bytes` (a power of
    /// two, the IOMMU's page), backed by 2 MiB hugepages when `bytes` is at least one
    /// and the system has them free, by ordinary pages otherwise.
    pub fn allocate(bytes: u64, page_bytes: u64) -> std::io::Result<Self> {
        assert!(bytes > 0, "DMA memory is never empty");
        assert!(page_bytes.is_power_of_two());
        let too_large = || std::io::Error::other("larger than the address space");
        let bytes = usize::try_from(bytes).map_err(|_| too_large())?;
        let page_bytes = usize::try_from(page_bytes).map_err(|_| too_large())?;
        Ok(Self {
            memory: HostMemory::allocate(bytes, page_bytes)?,
        })
    }

    /// Memory the caller mapped itself, of any length; [`Container::map_dma`] refuses it
    /// unless its address and length are multiples of the IOMMU page.
    pub fn from_mmap(map: MmapMut) -> Self {
        Self {
            memory: HostMemory::from_map(map),
        }
    }

    /// Length in bytes.
    pub fn bytes(&self) -> u64 {
        self.memory.len() as u64
    }

    /// Whether hugepages back it.
    pub fn is_hugepage(&self) -> bool {
        self.memory.is_hugepage()
    }
}

/// Memory the device reaches at [`DmaMapping::iova`]; the host reaches it only by
/// copying ([`DmaMapping::write`], [`DmaMapping::read`]), since the device may change
/// it at any time. Dropping it unmaps it from the IOMMU, then frees it.
#[derive(Debug)]
pub struct DmaMapping {
    container: Arc<Container>,
    mapping: IommuMapping,
}

impl Container {
    /// Maps `memory` for the devices of this container at device address `iova`. Refuses
    /// memory or an IOVA not aligned to the IOMMU page.
    pub fn map_dma(
        self: &Arc<Self>,
        memory: DmaMemory,
        iova: u64,
    ) -> Result<DmaMapping, VfioError> {
        let page_bytes = self.page_bytes();
        let misaligned = |what, value: u64| {
            (!value.is_multiple_of(page_bytes)).then_some(VfioError::DmaMisaligned {
                address: self.address(),
                what,
                value,
                page_bytes,
            })
        };
        let host = &memory.memory;
        if let Some(error) = misaligned("host address", host.host_address())
            .or_else(|| misaligned("length", host.len() as u64))
            .or_else(|| misaligned("IOVA", iova))
        {
            return Err(error);
        }
        let bytes = memory.bytes();
        let mapping = IommuMapping::new(Arc::clone(self.file()), memory.memory, iova).map_err(
            |(source, _memory)| VfioError::Iommu {
                address: self.address(),
                operation: "map",
                iova,
                bytes,
                source,
            },
        )?;
        Ok(DmaMapping {
            container: Arc::clone(self),
            mapping,
        })
    }
}

impl DmaMapping {
    /// Device address of byte 0.
    pub fn iova(&self) -> u64 {
        self.mapping.iova()
    }

    /// Length in bytes.
    pub fn bytes(&self) -> u64 {
        self.mapping.memory().len() as u64
    }

    /// Whether hugepages back it.
    pub fn is_hugepage(&self) -> bool {
        self.mapping.memory().is_hugepage()
    }

    fn check(&self, offset: u64, length_bytes: usize) -> Result<usize, VfioError> {
        let length_bytes = length_bytes as u64;
        let inside = offset
            .checked_add(length_bytes)
            .is_some_and(|end| end <= self.bytes());
        if !inside {
            return Err(VfioError::DmaOutOfRange {
                address: self.container.address(),
                iova: self.iova(),
                offset,
                length_bytes,
                buffer_bytes: self.bytes(),
            });
        }
        Ok(usize::try_from(offset).expect("inside a mapping"))
    }

    /// Copies `source` into the buffer at `offset`.
    pub fn write(&self, offset: u64, source: &[u8]) -> Result<(), VfioError> {
        let offset = self.check(offset, source.len())?;
        self.mapping.memory().write(offset, source);
        Ok(())
    }

    /// Copies `target.len()` bytes at `offset` out of the buffer.
    pub fn read(&self, offset: u64, target: &mut [u8]) -> Result<(), VfioError> {
        let offset = self.check(offset, target.len())?;
        self.mapping.memory().read(offset, target);
        Ok(())
    }

    /// Unmaps now, reporting the kernel's refusal (the memory is then leaked, never
    /// freed while the device might still reach it).
    pub fn unmap(self) -> Result<(), VfioError> {
        let (address, iova, bytes) = (self.container.address(), self.iova(), self.bytes());
        self.mapping.unmap().map_err(|source| VfioError::Iommu {
            address,
            operation: "unmap",
            iova,
            bytes,
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_rounds_up_to_the_page_and_is_zeroed() {
        let memory = DmaMemory::allocate(100, 4096).unwrap();
        assert_eq!(memory.bytes(), 4096);
        assert!(!memory.is_hugepage(), "small buffers take ordinary pages");
        let memory = DmaMemory::allocate(3 << 20, 4096).unwrap();
        assert!(memory.bytes() >= 3 << 20);
        assert!(memory.bytes().is_multiple_of(4096));
        let mut probe = [0xffu8; 64];
        memory.memory.read(memory.memory.len() - 64, &mut probe);
        assert_eq!(probe, [0u8; 64]);
    }
}
