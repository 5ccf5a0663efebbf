//! amflink host: everything the `amf` binary runs.
//!
//! The architecture is in `docs/ARCHITECTURE.md`. The pieces that must stay free of I/O,
//! or that need `unsafe`, are crates of their own beside this one: `amf-parity` (P/Q,
//! update, recovery; SIMD kernels), `amf-raid` (the RAID core, sans-IO) and `amf-card` (the
//! card trait, the driver, the sim card). This crate is the I/O shell and the CLI:
//!
//! * [`active`]: the coherency core on a card's fabric port (active-active plumbing);
//! * [`format`](mod@format): the on-disk member superblock;
//! * [`create`]: `amf create`, laying superblocks on new or existing members;
//! * [`status`]: `amf status` reports;
//! * [`block`]: the [`block::BlockDevice`] boundary between the NBD front end and the volume;
//! * [`array`](mod@array): the I/O shell: members opened from files, checked against each other, and
//!   stripes read and written through the RAID core;
//! * [`scrub`]: offline parity verification (and repair);
//! * [`bench`]: throughput of our parity kernels beside ISA-L's;
//! * [`bench_nbd`]: `amf serve` beside `nbdkit file` under fio;
//! * [`bench_cluster`]: 4 KiB writes through one AMF and through two, with fabric costs;
//! * [`fabric_cmd`]: `amf fabric`, the software fabric (`amf-fabric`) as a process;
//! * [`serve`]: `amf serve`, one AMF over NBD; [`serve_cluster`]: `amf serve --id N
//!   --fabric ADDR`, one AMF of an active-active cluster;
//! * [`cli`]: the `amf` command line.
//!
#![forbid(unsafe_code)]

pub mod active;
pub mod array;
pub mod bench;
pub mod bench_cluster;
pub mod bench_nbd;
pub mod block;
pub mod cli;
pub mod control;
pub mod create;
pub mod fabric_cmd;
pub mod format;
pub mod metrics;
pub mod nbd;
pub mod online;
pub mod scrub;
pub mod serve;
pub mod serve_cluster;
pub mod simulate;
pub mod status;
pub mod tasks;
pub mod up;
pub mod volume;
