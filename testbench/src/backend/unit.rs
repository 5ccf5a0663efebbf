//! The Verilated parity engine as an `amf_card::sim::parity::ParityUnit`: resolved
//! buffers go through the card's DMA stream column by column (docs/CARD.md, "The parity
//! stream"), the highest source first, one result taken per column.

use crate::card::CardModel;
use crate::rtl::{bytes_from_words, words_from_bytes};
use amf_card::sim::parity::ParityUnit;
use shared_regs::limits::PARITY_BEAT_BYTES;

/// Cycles the engine may refuse a beat, or withhold a result, before it counts as stuck
/// (it answers within a few).
pub const HANDSHAKE_CYCLES_MAX: u32 = 64;

/// The engine stopped answering on its stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// `dma_in_ready` stayed low.
    #[error("the RTL parity engine refused a beat for {HANDSHAKE_CYCLES_MAX} cycles")]
    BeatRefused,
    /// `dma_out_valid` stayed low after a column's last beat.
    #[error("the RTL parity engine gave no result {HANDSHAKE_CYCLES_MAX} cycles after a column")]
    NoResult,
}

/// The card's engine, borrowed for one descriptor.
#[derive(Debug)]
pub struct RtlParity<'a> {
    /// The card.
    pub card: &'a mut CardModel,
}

impl RtlParity<'_> {
    fn offer(&mut self, beat: &[u8], first: bool, last: bool, pq: bool) -> Result<(), StreamError> {
        let words = words_from_bytes(beat);
        let taken =
            (0..HANDSHAKE_CYCLES_MAX).any(|_| self.card.offer_beat(&words, first, last, pq));
        if taken {
            Ok(())
        } else {
            Err(StreamError::BeatRefused)
        }
    }
}

impl ParityUnit for RtlParity<'_> {
    type Error = StreamError;

    fn generate(
        &mut self,
        sources: &[&[u8]],
        p: &mut [u8],
        mut q: Option<&mut [u8]>,
    ) -> Result<(), StreamError> {
        let beat_bytes = PARITY_BEAT_BYTES as usize;
        debug_assert_eq!(self.card.beat_bits() as usize, beat_bytes * 8);
        let pq = q.is_some();
        for start in (0..p.len()).step_by(beat_bytes) {
            let column = start..start + beat_bytes;
            for (index, source) in sources.iter().enumerate().rev() {
                self.offer(
                    &source[column.clone()],
                    index == sources.len() - 1,
                    index == 0,
                    pq,
                )?;
            }
            let result = (0..HANDSHAKE_CYCLES_MAX)
                .find_map(|_| self.card.take_result())
                .ok_or(StreamError::NoResult)?;
            p[column.clone()].copy_from_slice(&bytes_from_words(&result.p));
            if let Some(q) = q.as_deref_mut() {
                q[column].copy_from_slice(&bytes_from_words(&result.q));
            }
        }
        Ok(())
    }
}
