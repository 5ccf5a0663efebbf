//! Verilator testbench for the amflink card.
//!
//! `build.rs` Verilates the Verilog that `hdl` generates and links it with a small C++ shim;
//! [`rtl`] drives those models from Rust: ports by name, `eval`, rising clock edges. On top
//! of it:
//!
//! * [`parity`]: streams stripes through a parity engine model with valid/ready and
//!   collects P and Q;
//! * [`fabric`]: drives every port of a fabric model with a message plan and records what
//!   each port received, the SRAM writes, and what was refused;
//! * [`card`]: the co-simulation bridge of one card (reset, clock stepping, 32-bit register
//!   access, the parity DMA stream, fabric writes);
//! * [`backend`]: the `rtl` card backend, `amf_card::CardBackend` over that bridge;
//! * [`rtl_pair`]: two such cards on a Verilated fabric, stepped in lockstep, with the
//!   fabric's remote writes driven into the cards' SRAM and payloads longer than one
//!   fabric word carried in words.
//!
//! The tests in `tests/` check the models bit for bit against the host's software reference
//! and ISA-L; `src/bin/rtl-speed.rs` measures simulated cycles per second. Without
//! Verilator the crate still builds, and every model constructor returns
//! [`TestbenchError::VerilatorMissing`].
#![deny(unsafe_code)]

pub mod backend;
pub mod card;
pub mod fabric;
pub mod parity;
pub mod rtl;
pub mod rtl_pair;

pub use rtl::{Model, Port, TestbenchError};

/// The register-map version the testbench checks the RTL against.
pub const REGISTER_MAP_VERSION: u32 = shared_regs::regs::VERSION_VALUE;
