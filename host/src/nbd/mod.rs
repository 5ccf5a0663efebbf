//! The NBD front end: every AMF exports the whole volume over the Network Block Device
//! protocol, so that `qemu-io`, `qemu-img`, `nbdcopy`, `nbdinfo`, `fio` and the kernel's
//! `nbd-client` can use it.
//!
//! * [`protocol`]: the wire format, pure parsers and encoders (fuzzed);
//! * [`server`]: the tokio server that serves one [`BlockDevice`](crate::block::BlockDevice).
//!
//! The subset we speak is written out in `docs/PROTOCOL.md` ("The NBD subset we speak").

pub mod protocol;
pub mod server;

pub use server::{ServerOptions, ServerStats, serve};
