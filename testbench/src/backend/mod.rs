//! The `rtl` card backend: `amf_card::CardBackend` over the Verilated `card_top`.
//!
//! Every register access is a bus access on the RTL, clock cycle by clock cycle; the card's
//! verdict on it is read back from its `ERROR_CODE` (so a rejected access is an `Err`, as on
//! sim). While the RTL holds an earlier error its first-error latch cannot tell a new fault,
//! so the access returns `Ok`, as a posted write on vfio does: the driver treats a latched
//! error as fatal anyway. Around the RTL, in software, sit what a PCIe card's shell would hold and what the
//! RTL does not have yet (docs/CARD.md):
//!
//! * the **bus bridge**: a 64-bit access becomes two 32-bit bus accesses, low half first;
//!   accesses past BAR0, misaligned ones and 64-bit ones where no 64-bit register is are
//!   refused before the bus, with the sim card's rules (`amf_card::sim::model::Model::decode`);
//! * the **DMA front end** ([`front`]): the parity rings, played in software, fetching
//!   descriptors from host memory (`amf_card::sim::dma::DmaSpace`) and running each through
//!   the RTL's parity stream ([`unit`]) with the sim's descriptor rules; faults it finds are
//!   latched beside the RTL's (the first of either shows in `ERROR_CODE`). The fabric rings
//!   are not played: the RTL refuses them with `BadOffset`, honestly.
//!
//! Descriptors run only inside [`CardBackend::advance`] and [`CardBackend::wait_interrupt`],
//! and a completion is posted when the RTL has produced every column's result.

pub mod front;
pub mod unit;

use crate::card::{BusError, CardModel};
use crate::rtl::TestbenchError;
use amf_card::backend::{CardBackend, DmaBuffer, InterruptWait};
use amf_card::sim::dma::{DmaError, DmaSpace};
use amf_card::sim::model::{Fault, Model as SimRules};
use amf_card::sim::parity::execute_on;
use front::{FrontEnd, entry_bytes};
use shared_regs::regs::{self, ErrorCode, Location};
use shared_regs::ring::{Completion, CompletionStatus, PARITY_FLAG_INTERRUPT, ParityDescriptor};
use std::mem::size_of;
use unit::{RtlParity, StreamError};
use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, IntoBytes};

/// Which Verilated card to run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RtlVariant {
    /// `card_top` as hdl generates it.
    #[default]
    Card,
    /// `card_top_wrong_q`: the same Verilog with one term of Q's polynomial dropped (built
    /// by testbench/build.rs) for tests that show the driver suite catches a wrong RTL.
    WrongQ,
}

impl RtlVariant {
    fn model_name(self) -> &'static str {
        match self {
            RtlVariant::Card => "card_top",
            RtlVariant::WrongQ => "card_top_wrong_q",
        }
    }
}

/// How to build an rtl card.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtlConfig {
    /// Which RTL.
    pub variant: RtlVariant,
    /// Most DMA memory the host may have mapped at once.
    pub dma_bytes_max: u64,
    /// Clock cycles one [`CardBackend::advance`] runs when no descriptor is waiting.
    pub idle_cycles: u32,
}

impl Default for RtlConfig {
    fn default() -> Self {
        Self {
            variant: RtlVariant::Card,
            dma_bytes_max: 256 << 20,
            idle_cycles: 8,
        }
    }
}

/// Errors of the rtl backend.
#[derive(Debug, thiserror::Error)]
pub enum RtlError {
    /// The Verilated model is not there (built without Verilator).
    #[error("the rtl card backend cannot start")]
    Model(#[from] TestbenchError),
    /// The card (the RTL, or the bridge and front end around it) rejected an access.
    #[error(
        "card rejected a {width_bytes}-byte {direction} at BAR0 offset {offset:#x}: {code:?} (ERROR_INFO {info:#x})"
    )]
    Register {
        /// "read" or "write".
        direction: &'static str,
        /// BAR0 offset.
        offset: u32,
        /// 4 or 8.
        width_bytes: u32,
        /// The card's error code.
        code: ErrorCode,
        /// Its `ERROR_INFO`.
        info: u32,
    },
    /// The RTL latched a code shared-regs does not define.
    #[error("the RTL latched undefined error code {raw} at BAR0 offset {offset:#x}")]
    UnknownErrorCode {
        /// `ERROR_CODE` as read.
        raw: u32,
        /// The access that latched it.
        offset: u32,
    },
    /// The RTL did not answer on its bus.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The host's DMA memory.
    #[error(transparent)]
    Dma(#[from] DmaError),
    /// The RTL's parity stream stopped answering.
    #[error(transparent)]
    Stream(#[from] StreamError),
}

/// What an access is: for messages and for [`RtlError::Register`].
#[derive(Clone, Copy, Debug)]
struct Access {
    offset: u32,
    width_bytes: u32,
    write: Option<u64>,
}

impl Access {
    fn rejected(self, fault: Fault) -> RtlError {
        RtlError::Register {
            direction: if self.write.is_some() {
                "write"
            } else {
                "read"
            },
            offset: self.offset,
            width_bytes: self.width_bytes,
            code: fault.code,
            info: fault.info,
        }
    }
}

/// The Verilated card behind the `CardBackend` trait.
#[derive(Debug)]
pub struct RtlCard {
    card: CardModel,
    dma: DmaSpace,
    front: FrontEnd,
    /// Whether the RTL's own latch holds an error (so its verdict on an access is unknown).
    rtl_latched: bool,
    /// `CONTROL` and `IRQ_MASK` as the RTL read them back after the last write.
    control: u32,
    irq_mask: u32,
    idle_cycles: u32,
}

impl RtlCard {
    /// Powers on a Verilated card (out of reset, registers at their reset values).
    pub fn new(config: RtlConfig) -> Result<Self, RtlError> {
        Ok(Self {
            card: CardModel::named(config.variant.model_name())?,
            dma: DmaSpace::new(config.dma_bytes_max),
            front: FrontEnd::default(),
            rtl_latched: false,
            control: 0,
            irq_mask: 0,
            idle_cycles: config.idle_cycles,
        })
    }

    /// Clock cycles simulated so far.
    pub fn cycles(&self) -> u64 {
        self.card.cycles()
    }

    /// The co-simulation bridge, for what the trait does not cover (the fabric side).
    pub fn model_mut(&mut self) -> &mut CardModel {
        &mut self.card
    }

    fn bus(&mut self, offset: u32, write: Option<u32>) -> Result<u32, BusError> {
        match write {
            Some(value) => self.card.write32(offset, value).map(|()| 0),
            None => self.card.read32(offset),
        }
    }

    /// One 32-bit access on the RTL and its verdict.
    fn rtl_access(
        &mut self,
        access: Access,
        offset: u32,
        write: Option<u32>,
    ) -> Result<u32, RtlError> {
        let value = self.bus(offset, write)?;
        if self.rtl_latched || offset == regs::ERROR_CODE {
            return Ok(value);
        }
        let raw = self.bus(regs::ERROR_CODE, None)?;
        if raw == 0 {
            return Ok(value);
        }
        self.rtl_latched = true;
        let info = self.bus(regs::ERROR_INFO, None)?;
        let code = ErrorCode::from_u32(raw).ok_or(RtlError::UnknownErrorCode { raw, offset })?;
        // The RTL raised IRQ_ERROR itself; a fault the front end latched first still shows.
        Err(access.rejected(Fault { code, info }))
    }

    fn fault(&mut self, access: Access, fault: Fault) -> RtlError {
        access.rejected(self.front.latch(fault, self.rtl_latched))
    }

    fn access(&mut self, access: Access) -> Result<u64, RtlError> {
        let location = match bridge_check(access.offset, access.width_bytes) {
            Ok(location) => location,
            Err(fault) => return Err(self.fault(access, fault)),
        };
        if let Some(Location::Ring {
            ring,
            field,
            high_half,
        }) = location
            && FrontEnd::plays(ring)
        {
            return self.front_access(access, ring, field, high_half);
        }
        if access.width_bytes == 4 {
            let value = self.rtl_access(access, access.offset, access.write.map(|v| v as u32))?;
            return self.merge(access, value).map(u64::from);
        }
        let halves = access.write.map(|v| (v as u32, (v >> 32) as u32));
        let low = self.rtl_access(access, access.offset, halves.map(|h| h.0))?;
        let high = self.rtl_access(access, access.offset + 4, halves.map(|h| h.1))?;
        Ok(u64::from(low) | u64::from(high) << 32)
    }

    /// A 32-bit register the RTL and the front end share: the RTL's value with the front
    /// end's part added, or a write's effect on the front end.
    fn merge(&mut self, access: Access, value: u32) -> Result<u32, RtlError> {
        let written = access.write.map(|v| v as u32);
        match (access.offset, written) {
            (regs::STATUS, None) => Ok(value | self.front_status()),
            (regs::ERROR_CODE, None) => Ok(self.front.error.map_or(value, |f| f.code as u32)),
            (regs::ERROR_INFO, None) => Ok(self.front.error.map_or(value, |f| f.info)),
            (regs::IRQ_STATUS, None) => Ok(value | self.front.irq_status),
            (regs::ERROR_CODE, Some(_)) => {
                self.front.error = None;
                self.rtl_latched = false;
                Ok(0)
            }
            (regs::IRQ_STATUS, Some(cleared)) => {
                self.front.irq_status &= !cleared;
                Ok(0)
            }
            (regs::CONTROL, Some(written)) => {
                if written & regs::CONTROL_RESET != 0 {
                    // The front end resets with the card, as the RTL's registers (its
                    // error latch included) did.
                    self.front = FrontEnd::default();
                    self.rtl_latched = false;
                }
                self.control = self.bus(regs::CONTROL, None)?;
                self.irq_mask = self.bus(regs::IRQ_MASK, None)?;
                Ok(0)
            }
            (regs::IRQ_MASK, Some(_)) => {
                self.irq_mask = self.bus(regs::IRQ_MASK, None)?;
                Ok(0)
            }
            _ => Ok(value),
        }
    }

    fn front_status(&self) -> u32 {
        let mut status = 0;
        if self.front.error.is_some() {
            status |= regs::STATUS_ERROR;
        }
        if self.front.submissions.occupancy() != 0 {
            status |= regs::STATUS_PARITY_BUSY;
        }
        status
    }

    fn front_access(
        &mut self,
        access: Access,
        ring: u32,
        field: u32,
        high_half: bool,
    ) -> Result<u64, RtlError> {
        let current = self.front.read(ring, field);
        let Some(value) = access.write else {
            return Ok(half(current, high_half, access.width_bytes));
        };
        let merged = merge_half(current, value, high_half, access.width_bytes);
        let enabled = self.control & regs::CONTROL_ENABLE != 0;
        match self
            .front
            .write(ring, field, access.offset, merged, enabled)
        {
            Ok(()) => Ok(0),
            Err(fault) => Err(self.fault(access, fault)),
        }
    }

    /// The interrupt line: the RTL's `irq`, or a front-end cause the RTL's mask lets out.
    fn interrupt_line(&mut self) -> bool {
        let front = self.control & regs::CONTROL_IRQ_ENABLE != 0
            && self.front.irq_status & self.irq_mask != 0;
        front || self.card.irq()
    }

    /// Runs the next parity descriptor if one can run; whether one did.
    fn parity_step(&mut self) -> Result<bool, RtlError> {
        let sq = self.front.submissions;
        let cq = self.front.completions;
        let runnable = self.control & regs::CONTROL_ENABLE != 0 && sq.enabled && cq.enabled;
        if !runnable || sq.occupancy() == 0 || cq.occupancy() >= cq.active_entries {
            return Ok(false);
        }
        let address = sq.slot_address(sq.head, entry_bytes(regs::PARITY_SQ));
        let descriptor = self
            .dma
            .device_bytes(
                address,
                entry_bytes(regs::PARITY_SQ),
                entry_bytes(regs::PARITY_SQ),
            )
            .and_then(|raw| ParityDescriptor::read_from_bytes(raw).ok());
        let (tag, interrupt, status) = match descriptor {
            Some(descriptor) => {
                let mut unit = RtlParity {
                    card: &mut self.card,
                };
                let status = execute_on(&mut self.dma, &descriptor, &mut unit)?;
                (
                    descriptor.tag.get(),
                    descriptor.flags & PARITY_FLAG_INTERRUPT != 0,
                    status,
                )
            }
            None => (0, true, CompletionStatus::DmaFault),
        };
        self.front.submissions.head = sq.head.wrapping_add(1);
        let completion = Completion {
            tag: U32::new(tag),
            status: U16::new(status as u16),
            reserved0: U16::new(0),
            submission_index: U32::new(sq.head),
            length_bytes: U32::new(0),
        };
        self.post_completion(&completion, interrupt || status != CompletionStatus::Ok);
        Ok(true)
    }

    fn post_completion(&mut self, completion: &Completion, interrupt: bool) {
        let cq = self.front.completions;
        let bytes = size_of::<Completion>() as u64;
        let address = cq.slot_address(cq.tail, bytes);
        match self.dma.device_bytes_mut(address, bytes, bytes) {
            Some(target) => {
                target.copy_from_slice(completion.as_bytes());
                self.front.completions.tail = cq.tail.wrapping_add(1);
                if interrupt {
                    self.front.irq_status |= regs::IRQ_PARITY_CQ;
                }
            }
            None => {
                // The completion ring's memory is gone: the card cannot report through it.
                self.front.completions.enabled = false;
                let fault = Fault {
                    code: ErrorCode::BadRingConfig,
                    info: regs::PARITY_CQ,
                };
                self.front.latch(fault, self.rtl_latched);
            }
        }
    }
}

/// What the bus bridge refuses before the RTL sees it; else where the access lands (for a
/// 32-bit access to an unmapped offset, `None`: the RTL decides).
fn bridge_check(offset: u32, width_bytes: u32) -> Result<Option<Location>, Fault> {
    match SimRules::decode(offset, width_bytes) {
        Ok(location) => Ok(Some(location)),
        Err(fault)
            if width_bytes == 4
                && fault.code == ErrorCode::BadOffset
                && offset < regs::BAR0_BYTES =>
        {
            Ok(None)
        }
        Err(fault) => Err(fault),
    }
}

/// The part of a register value an access of `width_bytes` sees.
fn half(value: u64, high_half: bool, width_bytes: u32) -> u64 {
    match (width_bytes, high_half) {
        (8, _) => value,
        (_, false) => value & 0xFFFF_FFFF,
        (_, true) => value >> 32,
    }
}

/// `current` with the part an access of `width_bytes` writes replaced by `value`.
fn merge_half(current: u64, value: u64, high_half: bool, width_bytes: u32) -> u64 {
    match (width_bytes, high_half) {
        (8, _) => value,
        (_, false) => (current & !0xFFFF_FFFF) | (value & 0xFFFF_FFFF),
        (_, true) => (current & 0xFFFF_FFFF) | (value << 32),
    }
}

impl CardBackend for RtlCard {
    type Error = RtlError;

    fn name(&self) -> &'static str {
        "rtl"
    }

    fn read32(&mut self, offset: u32) -> Result<u32, RtlError> {
        let value = self.access(Access {
            offset,
            width_bytes: 4,
            write: None,
        })?;
        Ok(value as u32)
    }

    fn write32(&mut self, offset: u32, value: u32) -> Result<(), RtlError> {
        self.access(Access {
            offset,
            width_bytes: 4,
            write: Some(u64::from(value)),
        })
        .map(drop)
    }

    fn read64(&mut self, offset: u32) -> Result<u64, RtlError> {
        self.access(Access {
            offset,
            width_bytes: 8,
            write: None,
        })
    }

    fn write64(&mut self, offset: u32, value: u64) -> Result<(), RtlError> {
        self.access(Access {
            offset,
            width_bytes: 8,
            write: Some(value),
        })
        .map(drop)
    }

    fn dma_alloc(&mut self, bytes: u64) -> Result<DmaBuffer, RtlError> {
        let (handle, device_address) = self.dma.alloc(bytes)?;
        Ok(DmaBuffer::new(handle, device_address, bytes))
    }

    fn dma_free(&mut self, buffer: DmaBuffer) -> Result<(), RtlError> {
        Ok(self.dma.free(buffer.handle(), buffer.device_address())?)
    }

    fn dma_write(
        &mut self,
        buffer: &DmaBuffer,
        offset: u64,
        source: &[u8],
    ) -> Result<(), RtlError> {
        Ok(self.dma.host_write(buffer, offset, source)?)
    }

    fn dma_read(
        &mut self,
        buffer: &DmaBuffer,
        offset: u64,
        target: &mut [u8],
    ) -> Result<(), RtlError> {
        Ok(self.dma.host_read(buffer, offset, target)?)
    }

    /// Runs one waiting descriptor through the RTL, or idles the clock a few cycles.
    fn advance(&mut self) -> Result<(), RtlError> {
        if !self.parity_step()? {
            self.card.step(self.idle_cycles);
        }
        Ok(())
    }

    /// Virtual time: runs descriptors until the line rises or nothing is left to run.
    fn wait_interrupt(&mut self, _timeout_ms: u32) -> Result<InterruptWait, RtlError> {
        loop {
            if self.interrupt_line() {
                return Ok(InterruptWait::Raised);
            }
            if !self.parity_step()? {
                self.card.step(self.idle_cycles);
                return Ok(if self.interrupt_line() {
                    InterruptWait::Raised
                } else {
                    InterruptWait::TimedOut
                });
            }
        }
    }
}
