//! A PCI function opened through VFIO: its regions, configuration space, interrupts and
//! reset.

use crate::address::PciAddress;
use crate::bar::Bar;
use crate::container::{Container, Group};
use crate::error::{InterruptKind, VfioError, ioctl_failed};
use crate::interrupt::Interrupt;
use crate::sys;
use crate::sysfs::VfioPaths;
use std::ffi::CString;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use vfio_bindings::bindings::vfio::{
    VFIO_DEVICE_FLAGS_PCI, VFIO_DEVICE_FLAGS_RESET, VFIO_IRQ_INFO_EVENTFD,
    VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_INTX_IRQ_INDEX,
    VFIO_PCI_MSI_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX, VFIO_REGION_INFO_FLAG_MMAP,
};

/// BARs of a type-0 function.
pub const BAR_COUNT: u32 = 6;

/// Configuration space offsets and bits this layer uses (PCI Local Bus spec).
mod config {
    pub const VENDOR_ID: u64 = 0x00;
    pub const DEVICE_ID: u64 = 0x02;
    pub const COMMAND: u64 = 0x04;
    pub const COMMAND_MEMORY: u16 = 1 << 1;
    pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
}

/// Where a region lives in the device file and what may be done with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionInfo {
    /// Offset of the region in the device file.
    pub file_offset: u64,
    /// Size in bytes (0: absent).
    pub bytes: u64,
    /// Whether VFIO lets it be mmapped.
    pub mappable: bool,
}

/// An open VFIO device.
#[derive(Debug)]
pub struct Device {
    address: PciAddress,
    group: Arc<Group>,
    file: Arc<File>,
    flags: u32,
    bars: Vec<RegionInfo>,
    config: RegionInfo,
    /// Vectors per interrupt index: INTx, MSI, MSI-X.
    interrupt_counts: [u32; 3],
}

impl Device {
    /// Opens the function at `address` in a container and group of its own (what a
    /// device whose group holds only itself, as a card in its own slot, needs).
    pub fn open(paths: &VfioPaths, address: PciAddress) -> Result<Self, VfioError> {
        let (_, group_id) = paths.describe_vfio(address)?;
        let container = Container::open(paths, address)?;
        let group = Group::open(&container, paths, group_id, address)?;
        Self::open_in(&group, address)
    }

    /// Opens the function at `address` from `group`, which must be its group.
    pub fn open_in(group: &Arc<Group>, address: PciAddress) -> Result<Self, VfioError> {
        let (_, device_group) = group.paths().describe_vfio(address)?;
        if device_group != group.id() {
            return Err(VfioError::DeviceNotInGroup {
                address,
                group: group.id(),
                device_group,
            });
        }
        let name = CString::new(address.to_string()).expect("an address has no NUL");
        let file = sys::group_device(group.file(), &name)
            .map_err(ioctl_failed(address, "VFIO_GROUP_GET_DEVICE_FD"))?;
        let info =
            sys::device_info(&file).map_err(ioctl_failed(address, "VFIO_DEVICE_GET_INFO"))?;
        if info.flags & VFIO_DEVICE_FLAGS_PCI == 0 {
            return Err(VfioError::NotPci { address });
        }
        let bars = (0..BAR_COUNT)
            .map(|bar| region(&file, address, VFIO_PCI_BAR0_REGION_INDEX + bar))
            .collect::<Result<_, _>>()?;
        let config = region(&file, address, VFIO_PCI_CONFIG_REGION_INDEX)?;
        let interrupt_counts = [
            interrupt_count(&file, address, VFIO_PCI_INTX_IRQ_INDEX)?,
            interrupt_count(&file, address, VFIO_PCI_MSI_IRQ_INDEX)?,
            interrupt_count(&file, address, VFIO_PCI_MSIX_IRQ_INDEX)?,
        ];
        Ok(Self {
            address,
            group: Arc::clone(group),
            file: Arc::new(file),
            flags: info.flags,
            bars,
            config,
            interrupt_counts,
        })
    }

    /// The function's address.
    pub fn address(&self) -> PciAddress {
        self.address
    }

    /// Its IOMMU group number.
    pub fn iommu_group(&self) -> u32 {
        self.group.id()
    }

    /// Its open IOMMU group.
    pub fn group(&self) -> &Arc<Group> {
        &self.group
    }

    /// The container its DMA mappings go to.
    pub fn container(&self) -> &Arc<Container> {
        self.group.container()
    }

    /// BAR `bar`'s place and size; `None` past the sixth BAR.
    pub fn bar_info(&self, bar: u32) -> Option<RegionInfo> {
        self.bars.get(bar as usize).copied()
    }

    /// Reads `target.len()` bytes of configuration space at `offset`.
    pub fn config_read(&self, offset: u64, target: &mut [u8]) -> Result<(), VfioError> {
        self.file
            .read_exact_at(target, self.config.file_offset + offset)
            .map_err(ioctl_failed(self.address, "reading configuration space"))
    }

    /// Writes `source` to configuration space at `offset`.
    pub fn config_write(&self, offset: u64, source: &[u8]) -> Result<(), VfioError> {
        self.file
            .write_all_at(source, self.config.file_offset + offset)
            .map_err(ioctl_failed(self.address, "writing configuration space"))
    }

    fn config_read16(&self, offset: u64) -> Result<u16, VfioError> {
        let mut bytes = [0u8; 2];
        self.config_read(offset, &mut bytes)?;
        Ok(u16::from_le_bytes(bytes))
    }

    /// Vendor and device id, from configuration space.
    pub fn ids(&self) -> Result<(u16, u16), VfioError> {
        Ok((
            self.config_read16(config::VENDOR_ID)?,
            self.config_read16(config::DEVICE_ID)?,
        ))
    }

    /// Turns on memory decoding and bus mastering: without the latter the device's DMA
    /// never reaches the IOMMU.
    pub fn enable_bus_master(&self) -> Result<(), VfioError> {
        let command = self.config_read16(config::COMMAND)?;
        let wanted = command | config::COMMAND_MEMORY | config::COMMAND_BUS_MASTER;
        self.config_write(config::COMMAND, &wanted.to_le_bytes())
    }

    /// Maps BAR `bar` whole.
    pub fn map_bar(&self, bar: u32) -> Result<Bar, VfioError> {
        let unavailable = |reason| VfioError::BarUnavailable {
            address: self.address,
            bar,
            reason,
        };
        let info = self.bar_info(bar).ok_or(unavailable("does not exist"))?;
        if info.bytes == 0 {
            return Err(unavailable("is not implemented by the device"));
        }
        if !info.mappable {
            return Err(unavailable("cannot be mmapped (VFIO does not allow it)"));
        }
        let bytes = usize::try_from(info.bytes).map_err(|_| unavailable("is too large"))?;
        let mmio = sys::Mmio::map_region(&self.file, info.file_offset, bytes)
            .map_err(ioctl_failed(self.address, "mmap of a BAR"))?;
        Ok(Bar::new(self.address, bar, mmio))
    }

    /// Whether VFIO can reset the function (FLR, PM or bus reset).
    pub fn can_reset(&self) -> bool {
        self.flags & VFIO_DEVICE_FLAGS_RESET != 0
    }

    /// Resets the function.
    pub fn reset(&self) -> Result<(), VfioError> {
        if !self.can_reset() {
            return Err(VfioError::ResetUnsupported {
                address: self.address,
            });
        }
        sys::device_reset(&self.file).map_err(ioctl_failed(self.address, "VFIO_DEVICE_RESET"))
    }

    /// Vectors the function offers of `kind`.
    pub fn interrupt_count(&self, kind: InterruptKind) -> u32 {
        self.interrupt_counts[interrupt_slot(kind)]
    }

    /// Routes vector 0 of `kind` to a new eventfd.
    pub fn enable_interrupt(&self, kind: InterruptKind) -> Result<Interrupt, VfioError> {
        if self.interrupt_count(kind) == 0 {
            return Err(VfioError::InterruptUnavailable {
                address: self.address,
                kind,
            });
        }
        Interrupt::enable(Arc::clone(&self.file), self.address, kind)
    }

    /// MSI-X if offered, else MSI, else INTx.
    pub fn enable_best_interrupt(&self) -> Result<Interrupt, VfioError> {
        let kind = [InterruptKind::MsiX, InterruptKind::Msi]
            .into_iter()
            .find(|kind| self.interrupt_count(*kind) > 0)
            .unwrap_or(InterruptKind::Intx);
        self.enable_interrupt(kind)
    }
}

/// The VFIO interrupt index of `kind`.
pub(crate) fn interrupt_index(kind: InterruptKind) -> u32 {
    match kind {
        InterruptKind::Intx => VFIO_PCI_INTX_IRQ_INDEX,
        InterruptKind::Msi => VFIO_PCI_MSI_IRQ_INDEX,
        InterruptKind::MsiX => VFIO_PCI_MSIX_IRQ_INDEX,
    }
}

fn interrupt_slot(kind: InterruptKind) -> usize {
    interrupt_index(kind) as usize
}

fn region(file: &File, address: PciAddress, index: u32) -> Result<RegionInfo, VfioError> {
    let info = sys::region_info(file, index)
        .map_err(ioctl_failed(address, "VFIO_DEVICE_GET_REGION_INFO"))?;
    Ok(RegionInfo {
        file_offset: info.offset,
        bytes: info.size,
        mappable: info.flags & VFIO_REGION_INFO_FLAG_MMAP != 0,
    })
}

/// Vectors of one interrupt index that can signal an eventfd (0 when none can).
fn interrupt_count(file: &File, address: PciAddress, index: u32) -> Result<u32, VfioError> {
    let info =
        sys::irq_info(file, index).map_err(ioctl_failed(address, "VFIO_DEVICE_GET_IRQ_INFO"))?;
    Ok(if info.flags & VFIO_IRQ_INFO_EVENTFD != 0 {
        info.count
    } else {
        0
    })
}
