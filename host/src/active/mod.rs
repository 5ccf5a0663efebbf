//! Active-active plumbing: the coherency core (`amf-coherency`) on a card's fabric port.
//!
//! The core is sans-IO; this module is the thin layer between it and the card:
//!
//! * [`link`]: the translation, without I/O: the core's transmits become fabric frames
//!   (broadcasts, unicasts, SRAM writes of intent records), received frames become the
//!   core's inputs, and each `SramWriteAck` is matched to its write by the fabric's
//!   per-sender numbering;
//! * [`port`]: the card as the core needs it: [`FabricPort`] to send (implemented by
//!   [`amf_card::Card`]) and [`CardSram`], the card's SRAM behind the core's `Sram`;
//! * [`node`]: [`ActiveNode`], which starts the core at the fabric's welcome (its join
//!   order is the core's `live_ports`) and then delivers frames and drains transmits.
//!
//! * [`cluster`]: [`ClusterVolume`], the I/O shell `amf serve --id N --fabric ADDR` runs:
//!   the node and the card on a driver thread, member I/O on worker threads, NBD in front.

pub mod cluster;
mod jobs;
pub mod link;
mod member_io;
pub mod node;
pub mod port;

pub use cluster::{
    CACHE_BYTES_DEFAULT, ClusterConfig, ClusterOpenError, ClusterRebuild, ClusterRebuildState,
    ClusterStatus, ClusterVolume,
};
pub use link::{Delivery, FabricLink, LinkError, OutFrame};
pub use node::{ActiveError, ActiveNode};
pub use port::{CardSram, FabricPort, SEND_TIMEOUT_MS};

#[cfg(test)]
mod tests;
