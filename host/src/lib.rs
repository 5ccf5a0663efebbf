//! amflink host: everything the `amf` binary runs.
//!
//! The modules follow the architecture in `docs/ARCHITECTURE.md`:
//!
//! * [`parity`]: software P/Q, their read-modify-write update and recovery (scalar
//!   reference plus SIMD kernels picked at run time);
//! * [`raid`]: the RAID core, free of I/O: md's left-symmetric layout, address mapping,
//!   the read-modify-write / reconstruct-write choice, degraded reads and writes;
//! * [`card`]: the card interface every backend implements, the driver above it, and the
//!   `sim` backend (the card modeled in software, SRAM in a file that outlives the process);
//! * [`format`]: the on-disk member superblock;
//! * [`array`]: the I/O shell: members opened from files, checked against each other, and
//!   stripes read and written through the RAID core;
//! * [`scrub`]: offline parity verification (and repair);
//! * [`bench`]: throughput of our parity kernels beside ISA-L's;
//! * [`cli`]: the `amf` command line.
//!
//! Later issues add the coherency core (sans-IO, driven by `amf serve` and the simulator)
//! and the NBD front end.
#![deny(unsafe_code)]

pub mod array;
pub mod bench;
pub mod card;
pub mod cli;
pub mod format;
pub mod parity;
pub mod raid;
pub mod scrub;
