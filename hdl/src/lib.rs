//! The amflink card in RustHDL.
//!
//! One module per file, each with a rust-hdl simulation test beside it:
//!
//! * [`parity_lane`], [`parity_control`] and [`parity_engine`]: P (XOR) and Q (GF(2^8),
//!   generator 2, polynomial 0x11d, Horner's rule) over a `W`-bit datapath with
//!   valid/ready on both sides, and a P-only (RAID-5) mode;
//! * [`broadcast_fabric`]: N ports, a round-robin arbiter, one total order of broadcasts,
//!   point-to-point messages, remote SRAM writes with acknowledgement, and port-down
//!   ordered after the port's last message;
//!   ([`receive_queue`], [`round_robin`] and [`sequence_counter`] are its parts);
//! * [`dual_port_sram`]: the card SRAM, one port for the host, one for the fabric;
//! * [`register_file`]: BAR0's registers, every offset and value taken from
//!   `shared_regs::regs`;
//! * [`card_top`]: one card: register file, SRAM window, parity engine stream and fabric
//!   port behind the host-facing register/DMA interface;
//! * [`verilog`]: the generated Verilog, one module per file, renamed for humans;
//! * [`sim`]: clocking a block in rust-hdl's simulator without its testbench threads.
//!
//! The `gen-verilog` binary writes the Verilog that `testbench/` runs in Verilator and
//! `bitstreams/` synthesises.
#![forbid(unsafe_code)]

pub mod broadcast_fabric;
pub mod card_top;
pub mod dual_port_sram;
pub mod parity_control;
pub mod parity_engine;
pub mod parity_lane;
pub mod receive_queue;
pub mod register_file;
pub mod round_robin;
pub mod sequence_counter;
pub mod sim;
pub mod verilog;

/// The register-map version this hardware implements.
pub const REGISTER_MAP_VERSION: u32 = shared_regs::regs::VERSION_VALUE;
