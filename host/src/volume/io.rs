//! Journal access: the card's SRAM (through the engine's mutex) or the intent file.

use super::journal::{BlockRun, HEADER_BYTES, encode_slot};
use super::{Store, Volume};
use crate::block::BlockError;
use std::os::unix::fs::FileExt;

impl Volume {
    pub(super) fn store_write(&self, offset: u64, bytes: &[u8]) -> Result<(), BlockError> {
        let failed =
            |cause: String| BlockError::Io(format!("intent journal write at {offset}: {cause}"));
        match &self.store {
            Store::File { file, .. } => file
                .write_all_at(bytes, offset)
                .map_err(|error| failed(error.to_string())),
            Store::Sram => self
                .engine()
                .sram_write(offset, bytes)
                .map_err(|error| failed(super::faults::chain(&error))),
            Store::Peers => unreachable!("a cluster AMF keeps no journal to write"),
        }
    }

    pub(super) fn store_read(&self, offset: u64, bytes: &mut [u8]) -> Result<(), BlockError> {
        let failed =
            |cause: String| BlockError::Io(format!("intent journal read at {offset}: {cause}"));
        match &self.store {
            Store::File { file, .. } => file
                .read_exact_at(bytes, offset)
                .map_err(|error| failed(error.to_string())),
            Store::Sram => self
                .engine()
                .sram_read(offset, bytes)
                .map_err(|error| failed(super::faults::chain(&error))),
            Store::Peers => unreachable!("a cluster AMF keeps no journal to read"),
        }
    }

    /// Makes journal writes durable: the intent file is synced; the card's SRAM needs
    /// nothing (it outlives the process by itself).
    pub(super) fn store_sync(&self) -> Result<(), BlockError> {
        match &self.store {
            Store::File { file, path } => file.sync_data().map_err(|error| {
                BlockError::Io(format!("intent file {}: {error}", path.display()))
            }),
            Store::Sram | Store::Peers => Ok(()),
        }
    }

    /// Makes the journal durable against a machine crash too (FLUSH): the intent file is
    /// synced, the sim card's SRAM file written back, so that a slot freed before the
    /// flush cannot come back after a power loss and replay older data over newer.
    pub(super) fn store_flush(&self) -> Result<(), BlockError> {
        match &self.store {
            Store::File { .. } => self.store_sync(),
            Store::Sram => self.engine().flush_sram().map_err(|error| {
                BlockError::Io(format!(
                    "card SRAM write-back: {}",
                    super::faults::chain(error.as_ref())
                ))
            }),
            Store::Peers => Ok(()),
        }
    }

    /// Writes a slot's records, then its header (the commit), and makes them durable.
    pub(super) fn commit_slot(
        &self,
        slot: u32,
        op_id: u64,
        stripe: u64,
        generation: u64,
        runs: &[BlockRun],
    ) -> Result<(), BlockError> {
        let (header, records) = encode_slot(op_id, stripe, generation, runs);
        assert!(HEADER_BYTES + records.len() <= self.layout.slot_bytes as usize);
        let offset = self.layout.slot_offset(slot);
        self.store_write(offset + HEADER_BYTES as u64, &records)?;
        self.store_sync()?;
        self.store_write(offset, &header)?;
        self.store_sync()
    }

    /// Zeroes a slot's header: its intent is done.
    pub(super) fn free_slot(&self, slot: u32) -> Result<(), BlockError> {
        self.store_write(self.layout.slot_offset(slot), &[0u8; HEADER_BYTES])
    }
}
