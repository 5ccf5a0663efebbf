//! amflink's `vfio` card backend and the device-independent VFIO layer under it.
//!
//! The layer opens any PCI function bound to vfio-pci by its address and gives:
//!
//! * [`Device`]: the function, found through its IOMMU group ([`Group`]) in a container
//!   ([`Container`]); configuration space, region information, reset;
//! * [`Bar`]: a BAR mapped into the process, owning its mapping, checking every access
//!   against its size and alignment;
//! * [`DmaMemory`] / [`DmaMapping`]: host memory (hugepage-backed when possible) mapped
//!   through the IOMMU at a chosen IOVA and unmapped when dropped;
//! * [`Interrupt`]: MSI-X, MSI or INTx delivered through an eventfd.
//!
//! [`VfioCard`] is the card backend on that layer: it implements
//! [`amf_card::CardBackend`] for an amflink card, so the driver ([`amf_card::Card`]) runs on
//! a real card unchanged.
//!
//! Every failure is a [`VfioError`] naming the PCI address. All `unsafe` (ioctls, mmap,
//! volatile MMIO, DMA memory copies) lives in the private `sys` module; the rest of the
//! crate denies it.
//!
//! ```no_run
//! # fn main() -> Result<(), amf_vfio::VfioError> {
//! use amf_vfio::{Device, DmaMemory, VfioPaths};
//! let paths = VfioPaths::default();
//! let device = Device::open(&paths, "0000:03:00.0".parse()?)?;
//! let bar0 = device.map_bar(0)?;
//! let id = bar0.read32(0)?;
//! let page = device.container().page_bytes();
//! let buffer = device.container().map_dma(DmaMemory::allocate(4096, page).unwrap(), 0x10_0000)?;
//! buffer.write(0, &id.to_le_bytes())?;
//! # Ok(()) }
//! ```
#![deny(unsafe_code)]

mod address;
mod bar;
mod card;
mod container;
mod device;
mod dma;
mod error;
mod interrupt;
#[allow(unsafe_code)]
mod sys;
mod sysfs;

pub use address::{PciAddress, PciAddressError};
pub use bar::Bar;
pub use card::{CardIdentity, CardProbe, VfioCard, VfioCardOptions};
pub use container::{Container, Group};
pub use device::{BAR_COUNT, Device, RegionInfo};
pub use dma::{DmaMapping, DmaMemory};
pub use error::{InterruptKind, VfioError};
pub use interrupt::Interrupt;
pub use sysfs::{SysfsDevice, VFIO_PCI_DRIVER, VfioPaths};
