//! amflink's software fabric: `amf fabric` plays the cards' hardware arbiter over TCP or
//! Unix sockets when the controllers have no card fabric between them.
//!
//! It gives the guarantees the coherency core relies on (`docs/PROTOCOL.md`, "Fabric
//! guarantees"): one total order of broadcasts seen by every live port, the sender
//! included; FIFO per sender-receiver pair; a remote SRAM write forwarded to its target,
//! whose card acknowledges it once applied; heartbeats; and a port's death announced as a
//! `MemberDown` broadcast ordered after everything it sent, and only once the port is
//! fenced (its process killed, or an external agent's word) or left cleanly. Frames are the
//! `shared_regs::fabric` format on every link, so a malformed one is refused with its
//! typed error and closes that link only.
//!
//! * [`arbiter`]: the ordering and routing rules, a state machine without I/O;
//! * [`server`]: the tokio shell that listens and runs the links;
//! * [`client`]: a port's side of a link, blocking (the sim card's fabric port, tests);
//! * [`codec`]: owned frames and the stream decoder (fuzzed);
//! * [`fence`]: who is at the other end of a link, and how the fabric makes sure a dead
//!   port's process can no longer write before it announces the port down;
//! * [`address`]: `tcp:HOST:PORT`, `HOST:PORT` or `unix:PATH`.
//!
//! Running a fabric on a free port and joining it:
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use amf_fabric::{ServerConfig, client, server::BackgroundFabric};
//! let fabric = BackgroundFabric::start(&"127.0.0.1:0".parse()?, ServerConfig::default())?;
//! let timeout = std::time::Duration::from_secs(5);
//! let joined = client::join(fabric.address(), 3, [7; 16], timeout)?;
//! assert_eq!(joined.welcome.live_ports().collect::<Vec<_>>(), vec![3]);
//! drop(fabric); // stops it: the port is refused with `ShuttingDown`
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod address;
pub mod arbiter;
pub mod client;
pub mod codec;
pub mod fence;
pub mod replica;
pub mod server;

pub use address::{Address, AddressError};
pub use arbiter::{Arbiter, ArbiterConfig, LinkId, Output};
pub use client::{ClientError, Joined, LinkReader, LinkWriter};
pub use codec::{FRAME_BYTES_MAX, FrameDecoder, OwnedFrame};
pub use fence::{FenceAgent, FenceError};
pub use server::{BackgroundFabric, Listener, ServerConfig, ServerError, error_chain};
