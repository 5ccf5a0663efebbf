//! amflink card interface: the one trait every card backend implements
//! ([`CardBackend`]) and the sim card ([`sim::SimCard`]) whose SRAM is a mapped file that
//! outlives the host process.
//!
//! `unsafe` lives only in the SRAM file mapping (`sim::sram`, a private `sys` module);
//! the rest of the crate denies it.
#![deny(unsafe_code)]

pub mod backend;
pub mod sim;

pub use backend::{CardBackend, DMA_ALIGN_BYTES, DmaBuffer, InterruptWait};
pub use sim::{Execution, SimCard, SimConfig, SimError};
