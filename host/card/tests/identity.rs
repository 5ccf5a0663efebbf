//! The driver refuses a card that is not an amflink card, or speaks another major version
//! of the register map, or never leaves reset, naming what it expected and what it found.
//! The backend here is the sim card behind a wrapper that forges some registers: the trait
//! is implementable outside the crate, as the rtl and vfio backends will be.

mod common;

use amf_card::{
    Card, CardBackend, CardConfig, CardError, DmaBuffer, Execution, InterruptWait, SimCard,
    SimError,
};
use shared_regs::regs;

#[derive(Debug)]
struct Forged {
    inner: SimCard,
    id: Option<u32>,
    version: Option<u32>,
    status: Option<u32>,
    fail_reads_at: Option<u32>,
}

impl Forged {
    fn new(inner: SimCard) -> Self {
        Self {
            inner,
            id: None,
            version: None,
            status: None,
            fail_reads_at: None,
        }
    }
}

impl CardBackend for Forged {
    type Error = SimError;

    fn name(&self) -> &'static str {
        "forged"
    }

    fn read32(&mut self, offset: u32) -> Result<u32, SimError> {
        if self.fail_reads_at == Some(offset) {
            return Err(SimError::Poisoned);
        }
        let forged = match offset {
            regs::ID => self.id,
            regs::VERSION => self.version,
            regs::STATUS => self.status,
            _ => None,
        };
        match forged {
            Some(value) => Ok(value),
            None => self.inner.read32(offset),
        }
    }

    fn write32(&mut self, offset: u32, value: u32) -> Result<(), SimError> {
        self.inner.write32(offset, value)
    }

    fn read64(&mut self, offset: u32) -> Result<u64, SimError> {
        self.inner.read64(offset)
    }

    fn write64(&mut self, offset: u32, value: u64) -> Result<(), SimError> {
        self.inner.write64(offset, value)
    }

    fn dma_alloc(&mut self, bytes: u64) -> Result<DmaBuffer, SimError> {
        self.inner.dma_alloc(bytes)
    }

    fn dma_free(&mut self, buffer: DmaBuffer) -> Result<(), SimError> {
        self.inner.dma_free(buffer)
    }

    fn dma_write(
        &mut self,
        buffer: &DmaBuffer,
        offset: u64,
        source: &[u8],
    ) -> Result<(), SimError> {
        self.inner.dma_write(buffer, offset, source)
    }

    fn dma_read(
        &mut self,
        buffer: &DmaBuffer,
        offset: u64,
        target: &mut [u8],
    ) -> Result<(), SimError> {
        self.inner.dma_read(buffer, offset, target)
    }

    fn advance(&mut self) -> Result<(), SimError> {
        self.inner.advance()
    }

    fn wait_interrupt(&mut self, timeout_ms: u32) -> Result<InterruptWait, SimError> {
        self.inner.wait_interrupt(timeout_ms)
    }
}

#[test]
fn a_foreign_id_is_refused() {
    let (sim, _dir) = common::sim(Execution::Stepped);
    let mut forged = Forged::new(sim);
    forged.id = Some(0x1234_5678);
    let error = Card::open(forged, CardConfig::default()).unwrap_err();
    assert!(matches!(
        error,
        CardError::BadId {
            expected: regs::ID_VALUE,
            found: 0x1234_5678
        }
    ));
    let message = error.to_string();
    assert!(
        message.contains("0x12345678") && message.contains("AMFL"),
        "{message}"
    );
}

#[test]
fn another_major_version_is_refused_and_a_newer_minor_accepted() {
    let (sim, _dir) = common::sim(Execution::Stepped);
    let mut forged = Forged::new(sim);
    forged.version = Some((u32::from(regs::VERSION_MAJOR) + 1) << 16 | 3);
    let error = Card::open(forged, CardConfig::default()).unwrap_err();
    match error {
        CardError::VersionMismatch {
            expected_major,
            found_major,
            found_minor,
        } => {
            assert_eq!(expected_major, regs::VERSION_MAJOR);
            assert_eq!((found_major, found_minor), (regs::VERSION_MAJOR + 1, 3));
        }
        other => panic!("expected a version mismatch, got {other}"),
    }
    let (sim, _dir) = common::sim(Execution::Stepped);
    let mut forged = Forged::new(sim);
    forged.version = Some(u32::from(regs::VERSION_MAJOR) << 16 | 7);
    let card = Card::open(forged, CardConfig::default()).unwrap();
    assert_eq!(card.identity().version_minor, 7);
}

#[test]
fn a_card_that_never_gets_ready_is_refused() {
    let (sim, _dir) = common::sim(Execution::Threaded);
    let mut forged = Forged::new(sim);
    forged.status = Some(0);
    let config = CardConfig {
        ready_timeout_ms: 20,
        ..CardConfig::default()
    };
    assert!(matches!(
        Card::open(forged, config),
        Err(CardError::NotReady { timeout_ms: 20 })
    ));
}

#[test]
fn backend_errors_carry_the_backend_error_as_source() {
    let (sim, _dir) = common::sim(Execution::Stepped);
    let mut card = Card::open(Forged::new(sim), CardConfig::default()).unwrap();
    card.backend_mut().fail_reads_at = Some(regs::PARITY_CQ + regs::ring_block::TAIL);
    let error = card.poll_completion().unwrap_err();
    let CardError::Backend {
        backend,
        operation,
        ref source,
    } = error
    else {
        panic!("expected a backend error, got {error}");
    };
    assert_eq!(backend, "forged");
    assert!(operation.contains("completion tail"), "{operation}");
    assert!(matches!(
        source.downcast_ref::<SimError>(),
        Some(SimError::Poisoned)
    ));
    assert!(std::error::Error::source(&error).is_some());
}
