//! The amflink card's contract, written once.
//!
//! Everything that both the hardware (`hdl/`) and the host driver (`host/`) must agree on
//! lives here and nowhere else:
//!
//! * [`pci`]: the vendor and device id the card reports in its PCI configuration space;
//! * [`regs`]: the BAR0 register map (identity, capabilities, control/status, errors,
//!   interrupts, ring registers for the parity engine and the fabric port, the SRAM window);
//! * [`ring`]: the parity engine's submission descriptor and completion entry;
//! * [`fabric`]: the header every fabric message carries;
//! * [`intent`]: the intent record replicated into peers' card SRAM, with its checksum;
//! * [`limits`]: every `_max`/`_min` of the card and of the array format, with the
//!   compile-time assertions that tie them together.
//!
//! All wire and persistent structures are `#[repr(C)]` with explicit little-endian fields
//! and derive zerocopy's traits, so parsing is a checked cast: a byte string of the wrong
//! length is an error, never a panic. Sizes and field offsets are pinned by `const`
//! assertions; a change that moves a field fails to compile.
#![forbid(unsafe_code)]

pub mod checksum;
pub mod fabric;
pub mod intent;
pub mod limits;
pub mod pci;
pub mod regs;
pub mod ring;
mod wire_enum;

pub use checksum::crc32c_with_zeroed_field;
