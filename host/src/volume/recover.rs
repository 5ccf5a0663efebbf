//! Start-up: the journal's region header checked, every live slot replayed or discarded,
//! the journal reset for this array.

use super::journal::{
    BlockRun, HEADER_BYTES, HeaderError, Layout, Region, SlotHeader, decode_records,
};
use super::{Recovery, Store, Volume, VolumeError, store_name};
use crate::block::{BlockDevice, BlockError};
use amf_raid::MemberSet;

impl Volume {
    /// Replays what the journal holds, then resets it for this array.
    pub(super) fn recover(&self) -> Result<Recovery, VolumeError> {
        if matches!(self.store, Store::Peers) {
            // No journal here: a dead AMF's writes are its survivors' to complete.
            return Ok(Recovery::default());
        }
        let store = store_name(&self.store);
        let journal_error = |source| VolumeError::Journal {
            store: store.clone(),
            source,
        };
        let mut header = [0u8; HEADER_BYTES];
        self.store_read(0, &mut header).map_err(journal_error)?;
        let uuid = self.array.superblock.array_uuid;
        let scan = match Region::decode(&header) {
            Ok(region) if region.array_uuid == uuid => Some(region.layout),
            Ok(region) => {
                self.check_no_live_slots(region.layout, region.array_uuid)?;
                tracing::warn!(%store, "journal of another array, with no unfinished writes: taken over");
                None
            }
            Err(HeaderError::Free) => None,
            Err(error) => {
                tracing::warn!(%store, %error, "journal region header corrupt: scanning with this array's layout");
                Some(self.layout)
            }
        };
        let mut recovery = Recovery::default();
        if let Some(layout) = scan {
            for slot in 0..layout.slot_count {
                self.recover_slot(layout, slot, &mut recovery)
                    .map_err(journal_error)?;
            }
        }
        // Replayed stripes are durable before their intents go.
        self.flush().map_err(journal_error)?;
        for layout in scan.into_iter().chain([self.layout]) {
            for slot in 0..layout.slot_count {
                self.store_write(layout.slot_offset(slot), &[0u8; HEADER_BYTES])
                    .map_err(journal_error)?;
            }
        }
        let region = Region {
            layout: self.layout,
            array_uuid: uuid,
        };
        self.store_write(0, &region.encode())
            .map_err(journal_error)?;
        self.store_sync().map_err(journal_error)?;
        Ok(recovery)
    }

    fn check_no_live_slots(&self, layout: Layout, found: [u8; 16]) -> Result<(), VolumeError> {
        for slot in 0..layout.slot_count {
            let mut header = [0u8; HEADER_BYTES];
            let read = self.store_read(layout.slot_offset(slot), &mut header);
            if read.is_err() || SlotHeader::decode(&header).is_ok() {
                return Err(VolumeError::ForeignJournal {
                    store: store_name(&self.store),
                    found: uuid::Uuid::from_bytes(found).to_string(),
                    expected: uuid::Uuid::from_bytes(self.array.superblock.array_uuid).to_string(),
                });
            }
        }
        Ok(())
    }

    /// Replays one slot if it holds a valid intent; logs and skips a corrupt one.
    fn recover_slot(
        &self,
        layout: Layout,
        slot: u32,
        recovery: &mut Recovery,
    ) -> Result<(), BlockError> {
        let offset = layout.slot_offset(slot);
        let mut header_bytes = [0u8; HEADER_BYTES];
        self.store_read(offset, &mut header_bytes)?;
        let header = match SlotHeader::decode(&header_bytes) {
            Ok(header) => header,
            Err(HeaderError::Free) => return Ok(()),
            Err(error) => {
                tracing::warn!(slot, %error, "intent slot discarded: header fails its checks");
                recovery.discarded += 1;
                return Ok(());
            }
        };
        let capacity = layout.slot_bytes as usize - HEADER_BYTES;
        if header.records_bytes as usize > capacity || header.stripe >= self.geometry.stripe_count()
        {
            tracing::warn!(
                slot,
                stripe = header.stripe,
                "intent slot discarded: out of range"
            );
            recovery.discarded += 1;
            return Ok(());
        }
        let mut records = vec![0u8; header.records_bytes as usize];
        self.store_read(offset + HEADER_BYTES as u64, &mut records)?;
        let runs = match decode_records(&header, &records) {
            Ok(runs) if self.runs_fit(&runs) => runs,
            Ok(_) => {
                tracing::warn!(
                    slot,
                    stripe = header.stripe,
                    "intent slot discarded: blocks beyond the stripe"
                );
                recovery.discarded += 1;
                return Ok(());
            }
            Err(error) => {
                tracing::warn!(slot, stripe = header.stripe, error = %super::faults::chain(&error), "intent slot discarded: a record fails its checks");
                recovery.discarded += 1;
                return Ok(());
            }
        };
        tracing::info!(
            slot,
            stripe = header.stripe,
            op_id = header.op_id,
            "replaying an unfinished stripe write"
        );
        self.replay_stripe(header.stripe, &runs)?;
        recovery.replayed += 1;
        recovery.stripes.push(header.stripe);
        Ok(())
    }

    fn runs_fit(&self, runs: &[BlockRun]) -> bool {
        let stripe_bytes = self.geometry.stripe_data_bytes();
        runs.iter().all(|run| {
            u64::from(run.first_block) * super::BLOCK + run.bytes.len() as u64 <= stripe_bytes
        })
    }

    /// Rewrites stripe `stripe` whole: its data as the members hold it, the records laid
    /// over it in order, parity computed afresh. Idempotent.
    pub(super) fn replay_stripe(&self, stripe: u64, runs: &[BlockRun]) -> Result<(), BlockError> {
        let _guard = self.locks.lock(stripe);
        let extent = self.geometry.whole_stripe(stripe);
        let mut data = vec![0u8; extent.length() as usize];
        self.read_locked(&extent, &mut data)?;
        self.warn_uncovered(stripe, runs);
        for run in runs {
            let start = (u64::from(run.first_block) * super::BLOCK) as usize;
            data[start..start + run.bytes.len()].copy_from_slice(&run.bytes);
        }
        let mut touched = MemberSet::new();
        self.write_stripe(&extent, &data, None, &mut touched)
    }

    /// A data chunk lost now but not imaged in the record was rebuilt from parity the
    /// crash may have torn: a crash and a member loss together, which a single parity
    /// journal cannot cover. Said loudly.
    fn warn_uncovered(&self, stripe: u64, runs: &[BlockRun]) {
        let (failed, _) = self.snapshot_for(stripe);
        let chunk_blocks = u64::from(self.geometry.chunk_bytes()) / super::BLOCK;
        for index in 0..self.geometry.data_chunks() {
            if !failed.contains(self.geometry.data_member(stripe, index)) {
                continue;
            }
            let first = u64::from(index) * chunk_blocks;
            let covered = runs.iter().any(|run| {
                let start = u64::from(run.first_block);
                let end = start + run.bytes.len() as u64 / super::BLOCK;
                start <= first && first + chunk_blocks <= end
            });
            if !covered {
                tracing::warn!(
                    stripe,
                    data_chunk = index,
                    "replay rebuilt a lost chunk from parity a crash may have torn"
                );
            }
        }
    }
}
