//! The card as the core sees it: a fabric port to send on, and its SRAM.

use super::link::OutFrame;
use amf_card::{Card, CardBackend, CardError};
use std::cell::RefCell;

/// How long a send may wait for a free transmit slot.
pub const SEND_TIMEOUT_MS: u32 = 5_000;

/// Sends frames from this AMF's port: the card, or a fake in tests.
pub trait FabricPort {
    /// The port's own failure.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Hands one frame to the port.
    fn send(&mut self, frame: &OutFrame) -> Result<(), Self::Error>;

    /// Writes `bytes` at `offset` of this card's own SRAM (local copies of own records).
    fn write_own_sram(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error>;
}

impl<B: CardBackend> FabricPort for Card<B> {
    type Error = CardError;

    fn send(&mut self, frame: &OutFrame) -> Result<(), CardError> {
        self.fabric_send(
            frame.kind,
            frame.target,
            frame.sram_offset,
            &frame.payload,
            SEND_TIMEOUT_MS,
        )
    }

    fn write_own_sram(&mut self, offset: u32, bytes: &[u8]) -> Result<(), CardError> {
        self.sram_write(u64::from(offset), bytes)
    }
}

/// The card's SRAM behind the core's infallible [`amf_coherency::Sram`]: a failed access
/// reads as zeros (an empty slot) and is kept; [`CardSram::finish`] returns it, and the
/// caller must treat it as the card's death.
#[derive(Debug)]
pub struct CardSram<'a, B: CardBackend> {
    card: RefCell<&'a mut Card<B>>,
    failure: RefCell<Option<CardError>>,
}

impl<'a, B: CardBackend> CardSram<'a, B> {
    /// The SRAM of `card`, for one call into the core.
    pub fn new(card: &'a mut Card<B>) -> Self {
        Self {
            card: RefCell::new(card),
            failure: RefCell::new(None),
        }
    }

    /// The first failed access, if any.
    pub fn finish(self) -> Result<(), CardError> {
        match self.failure.into_inner() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    fn keep(&self, result: Result<(), CardError>) -> bool {
        let failed = result.is_err();
        if let Err(error) = result {
            self.failure.borrow_mut().get_or_insert(error);
        }
        !failed
    }
}

impl<B: CardBackend> amf_coherency::Sram for CardSram<'_, B> {
    fn read(&self, offset: u32, bytes: &mut [u8]) {
        let result = self.card.borrow_mut().sram_read(u64::from(offset), bytes);
        if !self.keep(result) {
            bytes.fill(0);
        }
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) {
        let result = self.card.borrow_mut().sram_write(u64::from(offset), bytes);
        self.keep(result);
    }
}
