//! [`VfioError`]: every way opening or driving a device through VFIO fails. Each variant
//! that concerns a device names its PCI address.

use crate::address::{PciAddress, PciAddressError};
use std::io;
use std::path::PathBuf;

/// Interrupt mechanisms of a PCI function, in the order the layer prefers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InterruptKind {
    /// MSI-X: message signalled, one vector used.
    MsiX,
    /// MSI: message signalled, one vector used.
    Msi,
    /// The legacy level-triggered line; VFIO masks it when it fires.
    Intx,
}

impl InterruptKind {
    /// Name as in the PCI specification.
    pub fn name(self) -> &'static str {
        match self {
            InterruptKind::MsiX => "MSI-X",
            InterruptKind::Msi => "MSI",
            InterruptKind::Intx => "INTx",
        }
    }
}

/// Why a VFIO operation failed.
#[derive(Debug, thiserror::Error)]
pub enum VfioError {
    /// The text given as a PCI address is not one.
    #[error(transparent)]
    BadAddress(#[from] PciAddressError),
    /// No device has this address.
    #[error("PCI device {address}: not present ({} does not exist)", path.display())]
    NoSuchDevice {
        /// The address asked for.
        address: PciAddress,
        /// Its sysfs directory.
        path: PathBuf,
    },
    /// The device is not bound to vfio-pci, so VFIO cannot hand it out.
    #[error("PCI device {address}: bound to {}, not vfio-pci (docs/VFIO.md says how to bind it)",
        driver.as_deref().map_or("no driver".to_owned(), |name| format!("driver {name}")))]
    NotBoundToVfio {
        /// The device.
        address: PciAddress,
        /// The driver it is bound to, if any.
        driver: Option<String>,
    },
    /// The device has no IOMMU group: the IOMMU is off or absent.
    #[error(
        "PCI device {address}: no IOMMU group (turn the IOMMU on: intel_iommu=on or amd_iommu=on)"
    )]
    NoIommuGroup {
        /// The device.
        address: PciAddress,
    },
    /// A sysfs attribute of the device could not be read or made no sense.
    #[error("PCI device {address}: sysfs {}: {source}", path.display())]
    Sysfs {
        /// The device.
        address: PciAddress,
        /// The attribute.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The device is not the one the caller drives.
    #[error(
        "PCI device {address}: is {vendor:04x}:{device:04x}, not an amflink card ({expected_vendor:04x}:{expected_device:04x})"
    )]
    WrongDevice {
        /// The device.
        address: PciAddress,
        /// Its vendor id.
        vendor: u16,
        /// Its device id.
        device: u16,
        /// The card's vendor id.
        expected_vendor: u16,
        /// The card's device id.
        expected_device: u16,
    },
    /// The VFIO container could not be opened or set up.
    #[error("PCI device {address}: VFIO container {}: {operation}", path.display())]
    Container {
        /// The device the container was opened for.
        address: PciAddress,
        /// `/dev/vfio/vfio`.
        path: PathBuf,
        /// What failed.
        operation: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The group is already open: another process or container drives it.
    #[error("PCI device {address}: IOMMU group {group} is in use by another process or container")]
    GroupBusy {
        /// The device.
        address: PciAddress,
        /// Its group.
        group: u32,
    },
    /// The group could not be opened.
    #[error("PCI device {address}: IOMMU group {group}: opening {} failed", path.display())]
    GroupOpen {
        /// The device.
        address: PciAddress,
        /// Its group.
        group: u32,
        /// `/dev/vfio/N`.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Some device of the group is bound to a host driver, so VFIO may not give the group
    /// to user space.
    #[error(
        "PCI device {address}: IOMMU group {group} is not viable: every device in it must be bound to vfio-pci or to no driver{}",
        if others.is_empty() { String::new() } else { format!(" (also in it: {})", others.join(", ")) })]
    GroupNotViable {
        /// The device.
        address: PciAddress,
        /// Its group.
        group: u32,
        /// The other devices of the group, with their drivers.
        others: Vec<String>,
    },
    /// The caller asked a group for a device that belongs to another group.
    #[error("PCI device {address}: in IOMMU group {device_group}, not in group {group}")]
    DeviceNotInGroup {
        /// The device.
        address: PciAddress,
        /// The group asked.
        group: u32,
        /// The device's own group.
        device_group: u32,
    },
    /// An ioctl on the group or the device failed.
    #[error("PCI device {address}: {operation} failed")]
    Ioctl {
        /// The device.
        address: PciAddress,
        /// What was asked of VFIO.
        operation: &'static str,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// VFIO does not describe the device as a PCI device.
    #[error("PCI device {address}: VFIO does not report it as a PCI device")]
    NotPci {
        /// The device.
        address: PciAddress,
    },
    /// The BAR is absent, or VFIO does not let it be mapped.
    #[error("PCI device {address}: BAR{bar} {reason}")]
    BarUnavailable {
        /// The device.
        address: PciAddress,
        /// BAR index.
        bar: u32,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The BAR is smaller than the register map needs.
    #[error("PCI device {address}: BAR{bar} is {found_bytes} bytes, the card needs {needed_bytes}")]
    BarTooSmall {
        /// The device.
        address: PciAddress,
        /// BAR index.
        bar: u32,
        /// Its size.
        found_bytes: u64,
        /// What the register map spans.
        needed_bytes: u64,
    },
    /// A BAR access reaches past the end of the BAR.
    #[error(
        "PCI device {address}: BAR{bar} access of {width_bytes} bytes at {offset:#x} is beyond its {bar_bytes:#x} bytes"
    )]
    BarOutOfRange {
        /// The device.
        address: PciAddress,
        /// BAR index.
        bar: u32,
        /// Offset of the access.
        offset: u64,
        /// Its width.
        width_bytes: u64,
        /// The BAR's size.
        bar_bytes: u64,
    },
    /// A BAR access is not aligned to its width.
    #[error(
        "PCI device {address}: BAR{bar} access of {width_bytes} bytes at {offset:#x} is not aligned to its width"
    )]
    BarMisaligned {
        /// The device.
        address: PciAddress,
        /// BAR index.
        bar: u32,
        /// Offset of the access.
        offset: u64,
        /// Its width.
        width_bytes: u64,
    },
    /// Memory to map for DMA is not aligned to the IOMMU page.
    #[error(
        "PCI device {address}: DMA mapping refused: {what} {value:#x} is not a multiple of the IOMMU page ({page_bytes:#x} bytes)"
    )]
    DmaMisaligned {
        /// The device the container serves.
        address: PciAddress,
        /// `"host address"`, `"length"` or `"IOVA"`.
        what: &'static str,
        /// The offending value.
        value: u64,
        /// The IOMMU's smallest page.
        page_bytes: u64,
    },
    /// A DMA memory access reaches past the end of the buffer.
    #[error(
        "PCI device {address}: DMA buffer at IOVA {iova:#x}: access of {length_bytes} bytes at {offset} is beyond its {buffer_bytes} bytes"
    )]
    DmaOutOfRange {
        /// The device the container serves.
        address: PciAddress,
        /// The buffer's device address.
        iova: u64,
        /// Offset of the access.
        offset: u64,
        /// Its length.
        length_bytes: u64,
        /// The buffer's size.
        buffer_bytes: u64,
    },
    /// Host memory for DMA could not be allocated.
    #[error("PCI device {address}: allocating {bytes} bytes of DMA memory failed")]
    DmaAllocation {
        /// The device.
        address: PciAddress,
        /// Size asked for.
        bytes: u64,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The IOMMU refused a mapping or an unmapping.
    #[error("PCI device {address}: IOMMU {operation} of {bytes:#x} bytes at IOVA {iova:#x} failed")]
    Iommu {
        /// The device the container serves.
        address: PciAddress,
        /// `"map"` or `"unmap"`.
        operation: &'static str,
        /// Device address.
        iova: u64,
        /// Length.
        bytes: u64,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// The device offers no vector of this interrupt kind.
    #[error("PCI device {address}: offers no {} interrupt", kind.name())]
    InterruptUnavailable {
        /// The device.
        address: PciAddress,
        /// The kind asked for.
        kind: InterruptKind,
    },
    /// Waiting on or reading an interrupt's eventfd failed.
    #[error("PCI device {address}: {} interrupt eventfd: {operation} failed", kind.name())]
    Eventfd {
        /// The device.
        address: PciAddress,
        /// The interrupt.
        kind: InterruptKind,
        /// What failed.
        operation: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// VFIO cannot reset this device (no function-level, PM or bus reset it may use).
    #[error("PCI device {address}: VFIO offers no reset for it")]
    ResetUnsupported {
        /// The device.
        address: PciAddress,
    },
    /// The card's identity register is not an amflink card's.
    #[error(
        "PCI device {address}: card ID register reads {found:#010x}, expected {expected:#010x} (\"AMFL\")"
    )]
    BadCardId {
        /// The device.
        address: PciAddress,
        /// What was read.
        found: u32,
        /// `shared_regs::regs::ID_VALUE`.
        expected: u32,
    },
    /// The card's register map has another major version.
    #[error(
        "PCI device {address}: card register map is version {found_major}.{found_minor}, this driver needs major version {expected_major}"
    )]
    CardVersion {
        /// The device.
        address: PciAddress,
        /// Card's major.
        found_major: u16,
        /// Card's minor.
        found_minor: u16,
        /// `shared_regs::regs::VERSION_MAJOR`.
        expected_major: u16,
    },
    /// A DMA handle the backend never gave out, or one already freed.
    #[error("PCI device {address}: no DMA buffer with handle {handle}")]
    UnknownDmaBuffer {
        /// The device.
        address: PciAddress,
        /// The handle.
        handle: u64,
    },
    /// The card backend's IOVA space is used up.
    #[error("PCI device {address}: no IOVA space left for {bytes} more bytes of DMA memory")]
    IovaExhausted {
        /// The device.
        address: PciAddress,
        /// Size asked for.
        bytes: u64,
    },
}

impl VfioError {
    /// The PCI address the error concerns, when it concerns one.
    pub fn address(&self) -> Option<PciAddress> {
        use VfioError::*;
        match self {
            BadAddress(_) => None,
            NoSuchDevice { address, .. }
            | NotBoundToVfio { address, .. }
            | NoIommuGroup { address }
            | Sysfs { address, .. }
            | WrongDevice { address, .. }
            | Container { address, .. }
            | GroupBusy { address, .. }
            | GroupOpen { address, .. }
            | GroupNotViable { address, .. }
            | DeviceNotInGroup { address, .. }
            | Ioctl { address, .. }
            | NotPci { address }
            | BarUnavailable { address, .. }
            | BarTooSmall { address, .. }
            | BarOutOfRange { address, .. }
            | BarMisaligned { address, .. }
            | DmaMisaligned { address, .. }
            | DmaOutOfRange { address, .. }
            | DmaAllocation { address, .. }
            | Iommu { address, .. }
            | InterruptUnavailable { address, .. }
            | Eventfd { address, .. }
            | ResetUnsupported { address }
            | BadCardId { address, .. }
            | CardVersion { address, .. }
            | UnknownDmaBuffer { address, .. }
            | IovaExhausted { address, .. } => Some(*address),
        }
    }
}

/// Maps an ioctl's (or a region access's) `io::Error` to [`VfioError::Ioctl`].
pub(crate) fn ioctl_failed(
    address: PciAddress,
    operation: &'static str,
) -> impl FnOnce(io::Error) -> VfioError {
    move |source| VfioError::Ioctl {
        address,
        operation,
        source,
    }
}
