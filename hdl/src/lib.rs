//! The amflink card in RustHDL.
//!
//! This crate will own the hardware: the **parity engine** (streaming XOR for P and GF(2^8)
//! multiply-accumulate for Q, generator 2, polynomial 0x11d, W-bit datapath with
//! valid/ready backpressure), the **broadcast fabric** (N ports, a fair arbiter, one total
//! order of broadcasts, point-to-point messages, remote SRAM writes with acknowledgement,
//! port-down ordered after the port's last message), the dual-port **SRAM**, the
//! **register file** generated from `shared_regs::regs`, and a **top** that ties them to
//! the host-facing register/DMA interface. One module per file, each with a rust-hdl
//! simulation test checked against the host's software reference, and a `gen-verilog`
//! binary that writes the Verilog for `testbench/` and `bitstreams/`.
//!
//! Empty until the RustHDL card issue lands; the register map it will implement is already
//! fixed in `shared-regs`.
#![forbid(unsafe_code)]

/// The register-map version this hardware will implement.
pub const REGISTER_MAP_VERSION: u32 = shared_regs::regs::VERSION_VALUE;
