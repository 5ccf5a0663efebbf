//! The card's PCI identity: what its configuration space reports, so a host driver can
//! tell an amflink card from any other device before it touches BAR0.
//!
//! The vendor id is Xilinx's, which FPGA development cards carry until a product has its
//! own; the device id is ours within it. A card built for production replaces both here,
//! and only here.

/// PCI vendor id of the card.
pub const VENDOR_ID: u16 = 0x10ee;
/// PCI device id of the card.
pub const DEVICE_ID: u16 = 0xa3f1;
/// The BAR holding the register map of [`crate::regs`].
pub const REGISTER_BAR: u32 = 0;
