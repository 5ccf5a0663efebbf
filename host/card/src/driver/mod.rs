//! The driver: [`Card`], the same code on every [`CardBackend`].
//!
//! It opens the card (identity and version check, capabilities and limits, reset, ring
//! setup, enable), submits parity descriptors and collects their completions by polling or
//! by waiting for the interrupt, reads and writes SRAM through the paged window
//! ([`sram`]), and turns the card's error register into [`CardError::Device`].
//!
//! On a card with a fabric port (`CAP_FABRIC`) it also runs the fabric rings: sending
//! and receiving frames ([`fabric`]).
//!
//! The driver never assumes work is done when it is submitted: completions are found by
//! reading the completion ring's `TAIL`, and between looks the driver either sleeps in
//! [`CardBackend::wait_interrupt`] or lets time pass with [`CardBackend::advance`].

pub mod fabric;
pub mod sram;

use crate::backend::{CardBackend, DmaBuffer, InterruptWait};
use shared_regs::limits::RING_ENTRIES_MAX;
use shared_regs::regs::{self, ErrorCode, Limits, ring_block};
use shared_regs::ring::{Completion, CompletionStatus, PARITY_FLAG_INTERRUPT, ParityDescriptor};
use std::error::Error as StdError;
use std::mem::size_of;
use std::time::{Duration, Instant};
use zerocopy::{FromBytes, IntoBytes};

const DESCRIPTOR_BYTES: u64 = size_of::<ParityDescriptor>() as u64;
const COMPLETION_BYTES: u64 = size_of::<Completion>() as u64;
/// `IRQ_MASK` outside fabric waits: parity completions and errors.
const PARITY_IRQ_MASK: u32 = regs::IRQ_PARITY_CQ | regs::IRQ_ERROR;

/// Errors of the driver.
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    /// The backend failed an access; the source is the backend's own error.
    #[error("{backend} card backend failed while {operation}")]
    Backend {
        /// Backend name.
        backend: &'static str,
        /// What the driver was doing.
        operation: &'static str,
        /// The backend's error.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// `ID` is not an amflink card's.
    #[error("card ID is {found:#010x}, expected {expected:#010x} (\"AMFL\")")]
    BadId {
        /// [`regs::ID_VALUE`].
        expected: u32,
        /// What the card reported.
        found: u32,
    },
    /// The register map's major version differs from the driver's.
    #[error(
        "card register map is version {found_major}.{found_minor}, this driver needs major version {expected_major}"
    )]
    VersionMismatch {
        /// [`regs::VERSION_MAJOR`].
        expected_major: u16,
        /// Card's major.
        found_major: u16,
        /// Card's minor.
        found_minor: u16,
    },
    /// The card lacks a capability the caller needs.
    #[error("card capabilities {found:#x} lack {missing:#x}")]
    MissingCapability {
        /// `CAP_*` bits missing.
        missing: u32,
        /// `CAPS` as read.
        found: u32,
    },
    /// The card did not come out of reset.
    #[error("card not ready {timeout_ms} ms after reset")]
    NotReady {
        /// How long the driver waited.
        timeout_ms: u32,
    },
    /// The requested ring size is not one the card takes.
    #[error("{ring} ring of {entries} entries: must be a power of two from {min} to {max}")]
    BadRingEntries {
        /// "parity" or "fabric".
        ring: &'static str,
        /// Requested.
        entries: u32,
        /// Smallest ring.
        min: u32,
        /// Largest ring this card takes.
        max: u32,
    },
    /// The card latched an error.
    #[error("card latched error {code:?} (ERROR_INFO {info:#x})")]
    Device {
        /// Decoded `ERROR_CODE`.
        code: ErrorCode,
        /// `ERROR_INFO`: the offending BAR0 offset or ring block.
        info: u32,
    },
    /// The card latched an error code no card defines.
    #[error("card latched unknown error code {raw} (ERROR_INFO {info:#x})")]
    UnknownErrorCode {
        /// `ERROR_CODE` as read.
        raw: u32,
        /// `ERROR_INFO`.
        info: u32,
    },
    /// Every submission slot holds a descriptor in flight.
    #[error("parity submission ring full: {entries} descriptors in flight")]
    RingFull {
        /// Ring size.
        entries: u32,
    },
    /// `wait_completion` with nothing in flight would wait forever.
    #[error("waiting for a parity completion with no descriptor in flight")]
    NothingInFlight,
    /// No completion arrived in time.
    #[error("no parity completion within {timeout_ms} ms ({in_flight} in flight)")]
    Timeout {
        /// The timeout.
        timeout_ms: u32,
        /// Descriptors still in flight.
        in_flight: u32,
    },
    /// The card produced a completion that does not match what is in flight.
    #[error(
        "card posted an inconsistent parity completion: {reason} (CQ tail {tail}, head {head}, {in_flight} in flight)"
    )]
    BadCompletion {
        /// What is wrong.
        reason: &'static str,
        /// Completion ring tail.
        tail: u32,
        /// Completion ring head.
        head: u32,
        /// Descriptors in flight.
        in_flight: u32,
    },
    /// A register did not read back what the driver's protocol guarantees.
    #[error("card register {register} reads {found:#x}, expected {expected:#x}")]
    Misbehaved {
        /// Which register.
        register: &'static str,
        /// What the protocol guarantees.
        expected: u64,
        /// What was read.
        found: u64,
    },
    /// The card's fabric link is down (the fabric closed it, went silent, or is gone).
    #[error("the card's fabric link is down")]
    FabricLinkDown,
    /// A fabric completion reported a failure.
    #[error("fabric {ring} completion with status {status} (tag {tag})")]
    FabricCompletion {
        /// "transmit" or "receive".
        ring: &'static str,
        /// The raw `CompletionStatus`.
        status: u16,
        /// The buffer's tag.
        tag: u32,
    },
    /// A frame the card delivered fails its checks, or one to send is too large.
    #[error("malformed fabric frame")]
    FabricFrame(#[source] shared_regs::fabric::FrameError),
    /// Every transmit slot stayed busy for the whole timeout.
    #[error("no fabric transmit slot freed within {timeout_ms} ms")]
    FabricTimeout {
        /// The timeout.
        timeout_ms: u32,
    },
    /// An SRAM access reaches past the end of the SRAM.
    #[error(
        "SRAM access of {length_bytes} bytes at offset {offset} is beyond the {sram_bytes}-byte SRAM"
    )]
    SramOutOfRange {
        /// First byte.
        offset: u64,
        /// Length.
        length_bytes: u64,
        /// SRAM size.
        sram_bytes: u64,
    },
}

/// How the driver sets the card up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CardConfig {
    /// Entries of the parity submission and completion rings (equal, so a completion
    /// always has a slot).
    pub parity_ring_entries: u32,
    /// Index both parity rings start at. Any value works (indices wrap modulo 2^32); tests
    /// start near 2^32 to cross the wrap.
    pub ring_index_start: u32,
    /// How long `open` waits for the card to leave reset.
    pub ready_timeout_ms: u32,
    /// Entries of each fabric ring (a card with a fabric port only); each entry also
    /// takes one largest-frame DMA buffer per direction.
    pub fabric_ring_entries: u32,
}

impl Default for CardConfig {
    fn default() -> Self {
        Self {
            parity_ring_entries: 64,
            ring_index_start: 0,
            ready_timeout_ms: 5_000,
            fabric_ring_entries: 16,
        }
    }
}

/// What the card says about itself, read at open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Register map major version.
    pub version_major: u16,
    /// Register map minor version.
    pub version_minor: u16,
    /// `CAP_*` bits.
    pub caps: u32,
    /// Packed limits.
    pub limits: Limits,
    /// SRAM size.
    pub sram_bytes: u64,
    /// This card's fabric port.
    pub fabric_port_id: u32,
}

/// One parity completion, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParityCompletion {
    /// The descriptor's tag.
    pub tag: u32,
    /// Ring index the descriptor was submitted at.
    pub submission_index: u32,
    /// The card's verdict.
    pub status: CompletionStatus,
}

/// The host side of the parity rings.
#[derive(Debug)]
struct ParityRings {
    submissions: DmaBuffer,
    completions: DmaBuffer,
    entries: u32,
    /// Next submission index (what `TAIL` of the submission ring holds).
    tail: u32,
    /// Next completion index to consume (what `HEAD` of the completion ring holds).
    head: u32,
    in_flight: u32,
}

/// An open card: the driver on one backend.
///
/// Call [`Card::close`] to stop the card and free its DMA memory; a card merely dropped
/// leaves that to the backend's own drop.
#[derive(Debug)]
pub struct Card<B: CardBackend> {
    backend: B,
    backend_name: &'static str,
    identity: Identity,
    interrupts: bool,
    rings: ParityRings,
    fabric: Option<fabric::FabricRings>,
}

/// Wraps a backend error with what the driver was doing.
pub(crate) fn backend_error<E: StdError + Send + Sync + 'static>(
    backend: &'static str,
    operation: &'static str,
) -> impl FnOnce(E) -> CardError {
    move |source| CardError::Backend {
        backend,
        operation,
        source: Box::new(source),
    }
}

/// Register access with the backend's error wrapped.
struct Registers<'a, B: CardBackend> {
    backend: &'a mut B,
    name: &'static str,
}

impl<B: CardBackend> Registers<'_, B> {
    fn read32(&mut self, offset: u32, operation: &'static str) -> Result<u32, CardError> {
        let name = self.name;
        self.backend
            .read32(offset)
            .map_err(backend_error(name, operation))
    }

    fn write32(
        &mut self,
        offset: u32,
        value: u32,
        operation: &'static str,
    ) -> Result<(), CardError> {
        let name = self.name;
        self.backend
            .write32(offset, value)
            .map_err(backend_error(name, operation))
    }

    fn read64(&mut self, offset: u32, operation: &'static str) -> Result<u64, CardError> {
        let name = self.name;
        self.backend
            .read64(offset)
            .map_err(backend_error(name, operation))
    }

    fn write64(
        &mut self,
        offset: u32,
        value: u64,
        operation: &'static str,
    ) -> Result<(), CardError> {
        let name = self.name;
        self.backend
            .write64(offset, value)
            .map_err(backend_error(name, operation))
    }

    /// `Err(Device)` when the card has an error latched.
    fn check_error(&mut self) -> Result<(), CardError> {
        let status = self.read32(regs::STATUS, "reading STATUS")?;
        if status & regs::STATUS_ERROR == 0 {
            return Ok(());
        }
        let raw = self.read32(regs::ERROR_CODE, "reading ERROR_CODE")?;
        let info = self.read32(regs::ERROR_INFO, "reading ERROR_INFO")?;
        Err(match ErrorCode::from_u32(raw) {
            Some(code) => CardError::Device { code, info },
            None => CardError::UnknownErrorCode { raw, info },
        })
    }
}

impl<B: CardBackend> Card<B> {
    /// Opens the card behind `backend`: checks its identity, resets it, sets up the parity
    /// rings and enables it.
    pub fn open(mut backend: B, config: CardConfig) -> Result<Self, CardError> {
        let name = backend.name();
        let mut registers = Registers {
            backend: &mut backend,
            name,
        };
        let (version_major, version_minor) = check_identity(&mut registers)?;
        reset(&mut registers, config.ready_timeout_ms)?;
        let caps = registers.read32(regs::CAPS, "reading CAPS")?;
        let limits = Limits::from_register(registers.read32(regs::LIMITS, "reading LIMITS")?);
        let identity = Identity {
            version_major,
            version_minor,
            caps,
            limits,
            sram_bytes: registers.read64(regs::SRAM_BYTES, "reading SRAM_BYTES")?,
            fabric_port_id: registers.read32(regs::FABRIC_PORT_ID, "reading FABRIC_PORT_ID")?,
        };
        let rings = setup_parity_rings(&mut backend, name, &identity, config)?;
        let fabric = if caps & regs::CAP_FABRIC != 0 {
            let entries = checked_ring_entries("fabric", config.fabric_ring_entries, &identity)?;
            let start = config.ring_index_start;
            Some(fabric::setup(&mut backend, name, entries, start)?)
        } else {
            None
        };
        let mut card = Self {
            backend,
            backend_name: name,
            identity,
            interrupts: caps & regs::CAP_INTERRUPTS != 0,
            rings,
            fabric,
        };
        card.enable()?;
        card.post_receive_buffers()?;
        Ok(card)
    }

    fn registers(&mut self) -> Registers<'_, B> {
        Registers {
            backend: &mut self.backend,
            name: self.backend_name,
        }
    }

    fn enable(&mut self) -> Result<(), CardError> {
        let interrupts = self.interrupts;
        let mut registers = self.registers();
        registers.write32(regs::IRQ_MASK, PARITY_IRQ_MASK, "writing IRQ_MASK")?;
        let mut control = regs::CONTROL_ENABLE;
        if interrupts {
            control |= regs::CONTROL_IRQ_ENABLE;
        }
        registers.write32(regs::CONTROL, control, "enabling the card")?;
        registers.check_error()?;
        let readback = registers.read32(regs::CONTROL, "reading CONTROL")?;
        expect_register("CONTROL", control, readback)
    }

    /// What the card reported at open.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Entries of each parity ring.
    pub fn parity_ring_entries(&self) -> u32 {
        self.rings.entries
    }

    /// Descriptors submitted and not yet completed.
    pub fn parity_in_flight(&self) -> u32 {
        self.rings.in_flight
    }

    /// The backend, for what the driver does not wrap (DMA buffers for parity data).
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// `Err(Device)` when the card has an error latched.
    pub fn check_error(&mut self) -> Result<(), CardError> {
        self.registers().check_error()
    }

    /// Clears the latched error (and its interrupt cause).
    pub fn clear_error(&mut self) -> Result<(), CardError> {
        let mut registers = self.registers();
        registers.write32(regs::ERROR_CODE, 0, "clearing ERROR_CODE")?;
        registers.write32(regs::IRQ_STATUS, regs::IRQ_ERROR, "clearing IRQ_ERROR")
    }

    /// Queues `descriptor` on the parity submission ring and rings the doorbell; returns
    /// the ring index it took. The driver sets [`PARITY_FLAG_INTERRUPT`] itself when the
    /// card has interrupts, since [`Card::wait_completion`] sleeps on them.
    pub fn submit_parity(&mut self, descriptor: &ParityDescriptor) -> Result<u32, CardError> {
        let rings = &self.rings;
        if rings.in_flight >= rings.entries {
            return Err(CardError::RingFull {
                entries: rings.entries,
            });
        }
        let mut descriptor = *descriptor;
        if self.interrupts {
            descriptor.flags |= PARITY_FLAG_INTERRUPT;
        }
        let index = rings.tail;
        let slot = u64::from(index & (rings.entries - 1));
        self.backend
            .dma_write(
                &rings.submissions,
                slot * DESCRIPTOR_BYTES,
                descriptor.as_bytes(),
            )
            .map_err(backend_error(
                self.backend_name,
                "writing a parity descriptor",
            ))?;
        let tail = index.wrapping_add(1);
        self.registers().write32(
            regs::PARITY_SQ + ring_block::TAIL,
            tail,
            "ringing the parity doorbell",
        )?;
        self.rings.tail = tail;
        self.rings.in_flight += 1;
        assert!(self.rings.in_flight <= self.rings.entries);
        Ok(index)
    }

    /// Takes the next parity completion if the card has posted one; `Ok(None)` otherwise.
    /// A latched card error is returned as [`CardError::Device`].
    pub fn poll_completion(&mut self) -> Result<Option<ParityCompletion>, CardError> {
        let tail = self.registers().read32(
            regs::PARITY_CQ + ring_block::TAIL,
            "reading the parity completion tail",
        )?;
        let rings = &self.rings;
        let inconsistent = |reason| CardError::BadCompletion {
            reason,
            tail,
            head: rings.head,
            in_flight: rings.in_flight,
        };
        let available = tail.wrapping_sub(rings.head);
        if available > rings.in_flight {
            return Err(inconsistent("more completions than descriptors in flight"));
        }
        if available == 0 {
            self.check_error()?;
            return Ok(None);
        }
        let slot = u64::from(rings.head & (rings.entries - 1));
        let mut raw = [0u8; COMPLETION_BYTES as usize];
        self.backend
            .dma_read(&rings.completions, slot * COMPLETION_BYTES, &mut raw)
            .map_err(backend_error(
                self.backend_name,
                "reading a parity completion",
            ))?;
        let entry = Completion::read_from_bytes(&raw).expect("16 bytes make a completion");
        let index = entry.submission_index.get();
        // The submission must be one of those in flight: tail - in_flight ..= tail - 1.
        let age = rings.tail.wrapping_sub(index);
        if age == 0 || age > rings.in_flight {
            return Err(inconsistent("completion for an index not in flight"));
        }
        let status = CompletionStatus::from_u16(entry.status.get())
            .ok_or_else(|| inconsistent("unknown completion status"))?;
        let head = rings.head.wrapping_add(1);
        self.registers().write32(
            regs::PARITY_CQ + ring_block::HEAD,
            head,
            "returning a completion slot",
        )?;
        self.rings.head = head;
        self.rings.in_flight -= 1;
        Ok(Some(ParityCompletion {
            tag: entry.tag.get(),
            submission_index: index,
            status,
        }))
    }

    /// Waits up to `timeout_ms` for the next parity completion.
    pub fn wait_completion(&mut self, timeout_ms: u32) -> Result<ParityCompletion, CardError> {
        if self.rings.in_flight == 0 {
            return Err(CardError::NothingInFlight);
        }
        let deadline = Instant::now() + Duration::from_millis(u64::from(timeout_ms));
        loop {
            if let Some(completion) = self.poll_completion()? {
                return Ok(completion);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let timed_out = if self.interrupts {
                let remaining_ms = u32::try_from(remaining.as_millis()).unwrap_or(u32::MAX);
                let wait = self
                    .backend
                    .wait_interrupt(remaining_ms)
                    .map_err(backend_error(self.backend_name, "waiting for an interrupt"))?;
                self.acknowledge_interrupts()?;
                wait == InterruptWait::TimedOut
            } else {
                self.backend
                    .advance()
                    .map_err(backend_error(self.backend_name, "letting the card run"))?;
                remaining.is_zero()
            };
            if timed_out {
                return match self.poll_completion()? {
                    Some(completion) => Ok(completion),
                    None => Err(CardError::Timeout {
                        timeout_ms,
                        in_flight: self.rings.in_flight,
                    }),
                };
            }
        }
    }

    /// Clears the interrupt causes the driver handles; done before draining the ring, so
    /// a completion posted meanwhile raises the line again rather than being missed.
    fn acknowledge_interrupts(&mut self) -> Result<(), CardError> {
        let mut registers = self.registers();
        let pending = registers.read32(regs::IRQ_STATUS, "reading IRQ_STATUS")?;
        let handled = pending & regs::IRQ_PARITY_CQ;
        if handled != 0 {
            registers.write32(regs::IRQ_STATUS, handled, "acknowledging IRQ_PARITY_CQ")?;
        }
        // IRQ_ERROR stays set with the error: `poll_completion` reports it.
        Ok(())
    }

    /// Stops the card (reset) and frees the rings' DMA memory; returns the backend.
    pub fn close(mut self) -> Result<B, CardError> {
        self.registers()
            .write32(regs::CONTROL, regs::CONTROL_RESET, "resetting the card")?;
        let name = self.backend_name;
        let rings = self.rings;
        self.backend
            .dma_free(rings.submissions)
            .map_err(backend_error(name, "freeing the submission ring"))?;
        self.backend
            .dma_free(rings.completions)
            .map_err(backend_error(name, "freeing the completion ring"))?;
        let fabric_buffers = self.fabric.take().map(fabric::FabricRings::into_buffers);
        for buffer in fabric_buffers.into_iter().flatten() {
            self.backend
                .dma_free(buffer)
                .map_err(backend_error(name, "freeing a fabric ring"))?;
        }
        Ok(self.backend)
    }
}

fn expect_register(
    register: &'static str,
    expected: impl Into<u64>,
    found: impl Into<u64>,
) -> Result<(), CardError> {
    let (expected, found) = (expected.into(), found.into());
    if expected == found {
        Ok(())
    } else {
        Err(CardError::Misbehaved {
            register,
            expected,
            found,
        })
    }
}

fn check_identity<B: CardBackend>(
    registers: &mut Registers<'_, B>,
) -> Result<(u16, u16), CardError> {
    let id = registers.read32(regs::ID, "reading ID")?;
    if id != regs::ID_VALUE {
        return Err(CardError::BadId {
            expected: regs::ID_VALUE,
            found: id,
        });
    }
    let version = registers.read32(regs::VERSION, "reading VERSION")?;
    let (major, minor) = ((version >> 16) as u16, version as u16);
    if major != regs::VERSION_MAJOR {
        return Err(CardError::VersionMismatch {
            expected_major: regs::VERSION_MAJOR,
            found_major: major,
            found_minor: minor,
        });
    }
    Ok((major, minor))
}

/// Resets the card and waits for `STATUS_READY`, letting the card run meanwhile.
fn reset<B: CardBackend>(
    registers: &mut Registers<'_, B>,
    timeout_ms: u32,
) -> Result<(), CardError> {
    registers.write32(regs::CONTROL, regs::CONTROL_RESET, "resetting the card")?;
    let deadline = Instant::now() + Duration::from_millis(u64::from(timeout_ms));
    loop {
        let status = registers.read32(regs::STATUS, "reading STATUS")?;
        if status & regs::STATUS_READY != 0 {
            // Reset clears the error latch.
            return expect_register(
                "STATUS_ERROR after reset",
                0u32,
                status & regs::STATUS_ERROR,
            );
        }
        if Instant::now() >= deadline {
            return Err(CardError::NotReady { timeout_ms });
        }
        let name = registers.name;
        registers
            .backend
            .advance()
            .map_err(backend_error(name, "waiting for reset"))?;
    }
}

/// `entries` if the card takes rings of that size.
fn checked_ring_entries(
    ring: &'static str,
    entries: u32,
    identity: &Identity,
) -> Result<u32, CardError> {
    let log2_max =
        u32::from(identity.limits.ring_entries_log2_max).min(RING_ENTRIES_MAX.trailing_zeros());
    let entries_max = 1u32 << log2_max;
    if !regs::ring_entries_valid(entries) || entries > entries_max {
        return Err(CardError::BadRingEntries {
            ring,
            entries,
            min: shared_regs::limits::RING_ENTRIES_MIN,
            max: entries_max,
        });
    }
    Ok(entries)
}

fn setup_parity_rings<B: CardBackend>(
    backend: &mut B,
    name: &'static str,
    identity: &Identity,
    config: CardConfig,
) -> Result<ParityRings, CardError> {
    let entries = checked_ring_entries("parity", config.parity_ring_entries, identity)?;
    let submissions = backend
        .dma_alloc(u64::from(entries) * DESCRIPTOR_BYTES)
        .map_err(backend_error(name, "allocating the submission ring"))?;
    let completions = backend
        .dma_alloc(u64::from(entries) * COMPLETION_BYTES)
        .map_err(backend_error(name, "allocating the completion ring"))?;
    let mut registers = Registers { backend, name };
    let start = config.ring_index_start;
    for (ring, buffer, host_index) in [
        (regs::PARITY_SQ, &submissions, ring_block::TAIL),
        (regs::PARITY_CQ, &completions, ring_block::HEAD),
    ] {
        registers.write64(
            ring + ring_block::BASE,
            buffer.device_address(),
            "writing a ring base",
        )?;
        registers.write32(ring + ring_block::ENTRIES, entries, "writing a ring size")?;
        registers.write32(ring + host_index, start, "writing a ring's start index")?;
        registers.write32(
            ring + ring_block::CONTROL,
            regs::RING_ENABLE,
            "enabling a ring",
        )?;
    }
    registers.check_error()?;
    // Both rings start empty at the index chosen.
    let card_head = registers.read32(regs::PARITY_SQ + ring_block::HEAD, "reading the SQ head")?;
    let card_tail = registers.read32(regs::PARITY_CQ + ring_block::TAIL, "reading the CQ tail")?;
    expect_register("PARITY_SQ HEAD after enable", start, card_head)?;
    expect_register("PARITY_CQ TAIL after enable", start, card_tail)?;
    Ok(ParityRings {
        submissions,
        completions,
        entries,
        tail: start,
        head: start,
        in_flight: 0,
    })
}
