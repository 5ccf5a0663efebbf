//! amflink card interface: the one trait every card backend implements
//! ([`CardBackend`]), the driver above it ([`Card`]), the card's parity engine
//! ([`CardParity`], an [`amf_parity::ParityEngine`] like the host's
//! [`amf_parity::HostParity`]), and the sim card ([`sim::SimCard`]) whose SRAM is a mapped
//! file that outlives the host process.
//!
//! Opening a sim card for parity and SRAM:
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use amf_card::open_sim;
//! use amf_parity::ParityEngine;
//! let mut engine = open_sim(std::path::Path::new("/tmp/amf0.sram"), 64 << 20)?;
//! let (a, b) = (vec![1u8; 4096], vec![2u8; 4096]);
//! let (mut p, mut q) = (vec![0u8; 4096], vec![0u8; 4096]);
//! engine.compute(&[&a, &b], &mut p, Some(&mut q))?;
//! engine.card_mut().sram_write(0, b"intent")?;
//! // Stop the card and free its rings.
//! engine.into_card()?.close()?;
//! # Ok(()) }
//! ```
//!
//! `unsafe` lives only in the SRAM file mapping (`sim::sram`, a private `sys` module);
//! the rest of the crate denies it.
#![deny(unsafe_code)]

pub mod backend;
pub mod driver;
pub mod engine;
pub mod sim;

pub use backend::{CardBackend, DMA_ALIGN_BYTES, DmaBuffer, InterruptWait};
pub use driver::{Card, CardConfig, CardError, Identity, ParityCompletion};
pub use engine::{CardParity, CardParityError};
pub use sim::{Execution, SimCard, SimConfig, SimError, SimFabric};

use std::path::Path;

/// Why [`open_sim`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenSimError {
    /// The sim card could not be built (SRAM file missing, wrong size, locked, ...).
    #[error("opening the sim card failed")]
    Sim(#[from] SimError),
    /// The driver could not open it.
    #[error("the driver could not open the sim card")]
    Card(#[from] CardError),
}

/// Opens (or creates) a sim card whose SRAM is the file at `sram_path`
/// (`sram_bytes` long; an existing file keeps its contents and must have that size), opens
/// the driver on it with the default configuration, and returns its parity engine. The
/// card itself, for SRAM access, is [`CardParity::card_mut`].
pub fn open_sim(sram_path: &Path, sram_bytes: u64) -> Result<CardParity<SimCard>, OpenSimError> {
    // Stepped: a host that waits for each completion runs the card's model on its own
    // thread instead of handing every descriptor to a worker and back (two thread
    // switches a stripe; 15% of `amf serve`'s sequential write throughput on two cores).
    let sim = SimCard::open(sram_path, SimConfig::new(sram_bytes).stepped())?;
    let card = Card::open(sim, CardConfig::default())?;
    Ok(CardParity::new(card)?)
}
