//! Verilator testbench for the amflink card.
//!
//! This crate will own the Verilator builds of the Verilog that `hdl` generates: bit-exact
//! runs of the parity engine against the host's software reference and ISA-L, fabric
//! ordering checks under random traffic, simulated-cycle rates, and the co-simulation
//! bridge (reset, clock stepping, register access, a DMA port served from host memory)
//! behind the host's `rtl` card backend.
//!
//! Empty until the RustHDL card issue lands.
#![forbid(unsafe_code)]

/// The register-map version the testbench checks the RTL against.
pub const REGISTER_MAP_VERSION: u32 = shared_regs::regs::VERSION_VALUE;
