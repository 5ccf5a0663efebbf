//! The sim card's state machine: the register file of `shared_regs::regs`, the rings, the
//! parity engine's progress, the SRAM window. No threads and no clock here: the caller
//! ([`super::SimCard`]) decides when [`Model::step`] runs.
//!
//! # Register rules the model implements
//!
//! * Every access is decoded with [`regs::locate`]. Offsets past BAR0 or where nothing is
//!   mapped are [`ErrorCode::BadOffset`]; a misaligned access, or a 64-bit access to a 32-bit
//!   register, is [`ErrorCode::BadAccess`]; a write to a read-only register (including the
//!   card-owned index of a ring) is [`ErrorCode::ReadOnly`].
//! * A faulting access is dropped (nothing changes but the error latch) and returned as
//!   `Err(code)`. The first fault since the last clear is latched in `ERROR_CODE` with the
//!   offending BAR0 offset in `ERROR_INFO` (for ring faults: the ring block's offset), and
//!   raises [`regs::IRQ_ERROR`]. Writing `ERROR_CODE` clears both.
//! * Undefined bits of `CONTROL`, `IRQ_MASK`, ring `CONTROL` are ignored and read as zero;
//!   `IRQ_STATUS` is write-one-to-clear.
//! * `CONTROL_RESET` returns every register to its reset value (SRAM and the host's DMA
//!   memory are untouched) and clears `STATUS_READY` until the next model step.
//! * Rings: `BASE` and `ENTRIES` take effect when the ring's `CONTROL` enables it; enabling
//!   checks them ([`ErrorCode::BadRingConfig`]: entries not a power of two within the
//!   card's limits, base not aligned to the entry size) and sets the card-owned index equal
//!   to the host-owned one, so the ring starts empty at whatever index the host chose while
//!   the ring was disabled. Moving the host-owned index of an enabled ring requires
//!   `CONTROL_ENABLE` ([`ErrorCode::NotEnabled`]; for the parity submission ring the
//!   completion ring must be enabled too) and must keep `tail - head <= entries`
//!   ([`ErrorCode::RingOverflow`]).
//! * The parity engine takes a descriptor only while a completion slot is free (it stalls
//!   rather than drop a completion). A completion for a descriptor that failed is always
//!   followed by [`regs::IRQ_PARITY_CQ`], so a waiting driver wakes up; a successful one only
//!   when the descriptor asked with [`PARITY_FLAG_INTERRUPT`].
//! * A card without a fabric port (`CAP_FABRIC` not advertised) has fabric rings that are
//!   registers only: they can be configured and rung, but nothing is consumed. With a port
//!   ([`super::fabric`]), while the link is up (`STATUS_FABRIC_LINK_UP`), each step may
//!   take one `FABRIC_TX_SQ` buffer (a whole frame from this port: `Broadcast`, `Unicast`
//!   or `SramWrite`; anything else completes `BadFrame`, an unreachable buffer
//!   `DmaFault`) and hand it to the link, and may copy one received frame into the next
//!   `FABRIC_RX_SQ` buffer (too small a buffer completes `BadFrame` with the frame's
//!   length, and the frame is lost). Every fabric completion carries the buffer's tag and
//!   raises `IRQ_FABRIC_TX_CQ` / `IRQ_FABRIC_RX_CQ`; a ring stalls, as the parity ring
//!   does, while its completion ring is full.

use super::dma::DmaSpace;
use super::fabric::PortState;
use super::parity;
use super::sram::SramFile;
use amf_fabric::{FRAME_BYTES_MAX, OwnedFrame};
use shared_regs::fabric::MessageKind;
use shared_regs::limits::{PARITY_SOURCES_MAX, RING_ENTRIES_MAX, SRAM_WINDOW_BYTES};
use shared_regs::regs::{self, Access, ErrorCode, Limits, Location, Register, Width, ring_block};
use shared_regs::ring::{
    Completion, CompletionStatus, FabricBuffer, PARITY_FLAG_INTERRUPT, ParityDescriptor,
};
use std::mem::size_of;
use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, IntoBytes};

/// Capabilities the sim card advertises.
pub const SIM_CAPS: u32 =
    regs::CAP_PARITY_P | regs::CAP_PARITY_PQ | regs::CAP_SRAM | regs::CAP_INTERRUPTS;

/// A register access the card rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// What the card latched (or would have, were an earlier fault not latched).
    pub code: ErrorCode,
    /// The value for `ERROR_INFO`.
    pub info: u32,
}

impl Fault {
    fn at(code: ErrorCode, info: u32) -> Self {
        Self { code, info }
    }
}

/// A window transfer the card rejected: the fault and the register access it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowFault {
    /// What the card latched (or would have).
    pub fault: Fault,
    /// Whether the rejected access was a read.
    pub reading: bool,
    /// BAR0 offset of the rejected access.
    pub offset: u32,
    /// 4 or 8.
    pub width_bytes: u32,
}

/// One ring's registers.
#[derive(Clone, Copy, Debug, Default)]
struct RingState {
    /// As written by the host.
    base: u64,
    entries: u32,
    head: u32,
    tail: u32,
    enabled: bool,
    /// Latched at enable.
    active_base: u64,
    active_entries: u32,
}

impl RingState {
    fn occupancy(&self) -> u32 {
        self.tail.wrapping_sub(self.head)
    }

    fn slot_address(&self, index: u32, entry_bytes: u64) -> u64 {
        debug_assert!(self.active_entries.is_power_of_two());
        let slot = u64::from(index & (self.active_entries - 1));
        self.active_base.wrapping_add(slot * entry_bytes)
    }
}

/// The card's state.
#[derive(Debug)]
pub struct Model {
    sram: SramFile,
    dma: DmaSpace,
    fabric_port_id: u32,
    ready: bool,
    control: u32,
    error_code: ErrorCode,
    error_info: u32,
    irq_status: u32,
    irq_mask: u32,
    scratch: u32,
    window_select: u32,
    rings: [RingState; regs::RINGS.len()],
    fabric: Option<PortState>,
    parity: parity::SoftwareParity,
}

impl Model {
    /// A card out of power-on reset (not yet ready: the first step makes it so).
    pub fn new(
        sram: SramFile,
        dma: DmaSpace,
        fabric_port_id: u32,
        parity: parity::SoftwareParity,
    ) -> Self {
        assert!(
            sram.len_bytes()
                .is_multiple_of(u64::from(SRAM_WINDOW_BYTES))
        );
        Self {
            sram,
            dma,
            fabric_port_id,
            ready: false,
            control: 0,
            error_code: ErrorCode::None,
            error_info: 0,
            irq_status: 0,
            irq_mask: 0,
            scratch: 0,
            window_select: 0,
            rings: [RingState::default(); regs::RINGS.len()],
            fabric: None,
            parity,
        }
    }

    /// Gives the card its fabric port (before it runs).
    pub fn attach_fabric(&mut self, port: PortState) {
        assert!(self.fabric.is_none(), "one fabric port per card");
        self.fabric = Some(port);
    }

    /// The fabric port, if the card has one.
    pub fn fabric(&self) -> Option<&PortState> {
        self.fabric.as_ref()
    }

    /// The fabric port, for the link's threads.
    pub fn fabric_mut(&mut self) -> Option<&mut PortState> {
        self.fabric.as_mut()
    }

    /// The fabric link is gone: link and membership clear, `IRQ_FABRIC_LINK` rises.
    pub fn fabric_link_lost(&mut self, reason: String) {
        if let Some(port) = self.fabric.as_mut() {
            port.link_lost(reason);
            self.irq_status |= regs::IRQ_FABRIC_LINK;
        }
    }

    /// A peer's write into this card's SRAM through the fabric: applied whole when
    /// `start + bytes.len()` lies within the SRAM, else not at all (false).
    pub fn sram_apply_remote(&mut self, start: u64, bytes: &[u8]) -> bool {
        let end = start.checked_add(bytes.len() as u64);
        let Some(end) = end.filter(|&end| end <= self.sram.len_bytes()) else {
            return false;
        };
        // Below the SRAM's length, which is a mapped slice's length.
        self.sram.bytes_mut()[start as usize..end as usize].copy_from_slice(bytes);
        true
    }

    /// The host's DMA memory.
    pub fn dma_mut(&mut self) -> &mut DmaSpace {
        &mut self.dma
    }

    /// The SRAM.
    pub fn sram(&self) -> &SramFile {
        &self.sram
    }

    /// The interrupt line: enabled, and some unmasked cause pending.
    pub fn interrupt_line(&self) -> bool {
        self.control & regs::CONTROL_IRQ_ENABLE != 0 && self.irq_status & self.irq_mask != 0
    }

    /// Limits the card reports.
    pub fn limits() -> Limits {
        Limits {
            parity_sources_max: PARITY_SOURCES_MAX as u8,
            fabric_ports: shared_regs::limits::FABRIC_PORTS_MAX as u8,
            ring_entries_log2_max: RING_ENTRIES_MAX.trailing_zeros() as u8,
        }
    }

    fn latch(&mut self, fault: Fault) -> Fault {
        if self.error_code == ErrorCode::None {
            self.error_code = fault.code;
            self.error_info = fault.info;
        }
        self.irq_status |= regs::IRQ_ERROR;
        fault
    }

    /// Where an access of `width_bytes` at `offset` lands, or the fault the card latches
    /// for it (past BAR0, misaligned, a width the register does not have, nothing there).
    /// The rtl backend's bus bridge applies the same rules before it splits an access.
    pub fn decode(offset: u32, width_bytes: u32) -> Result<Location, Fault> {
        let in_bar = offset
            .checked_add(width_bytes)
            .is_some_and(|end| end <= regs::BAR0_BYTES);
        if !in_bar {
            return Err(Fault::at(ErrorCode::BadOffset, offset));
        }
        if !offset.is_multiple_of(width_bytes) {
            return Err(Fault::at(ErrorCode::BadAccess, offset));
        }
        regs::locate(offset, width_bytes).ok_or_else(|| {
            // Aligned but unlocated: a register of another width, or nothing at all.
            let code = if regs::locate(offset, 4).is_some() {
                ErrorCode::BadAccess
            } else {
                ErrorCode::BadOffset
            };
            Fault::at(code, offset)
        })
    }

    /// A read of `width_bytes` (4 or 8) at BAR0 `offset`.
    pub fn read(&mut self, offset: u32, width_bytes: u32) -> Result<u64, Fault> {
        let result = Self::decode(offset, width_bytes).and_then(|location| match location {
            Location::Register {
                register,
                high_half,
            } => Ok(half(self.register_value(register), high_half, width_bytes)),
            Location::Ring {
                ring,
                field,
                high_half,
            } => Ok(half(self.ring_value(ring, field), high_half, width_bytes)),
            Location::SramWindow { offset: within } => {
                self.window_read(offset, within, width_bytes)
            }
        });
        result.map_err(|fault| self.latch(fault))
    }

    /// A write of `width_bytes` (4 or 8) at BAR0 `offset`.
    pub fn write(&mut self, offset: u32, width_bytes: u32, value: u64) -> Result<(), Fault> {
        debug_assert!(width_bytes == 8 || value <= u64::from(u32::MAX));
        let result = Self::decode(offset, width_bytes).and_then(|location| match location {
            Location::Register {
                register,
                high_half,
            } => self.register_write(register, offset, high_half, width_bytes, value),
            Location::Ring {
                ring,
                field,
                high_half,
            } => self.ring_write(ring, field, offset, high_half, width_bytes, value),
            Location::SramWindow { offset: within } => {
                self.window_write(offset, within, width_bytes, value)
            }
        });
        result.map_err(|fault| self.latch(fault))
    }

    fn status(&self) -> u32 {
        let mut status = 0;
        if self.ready {
            status |= regs::STATUS_READY;
        }
        if self.error_code != ErrorCode::None {
            status |= regs::STATUS_ERROR;
        }
        if self.rings[ring_slot(regs::PARITY_SQ)].occupancy() != 0 {
            status |= regs::STATUS_PARITY_BUSY;
        }
        if self.fabric.as_ref().is_some_and(PortState::link_up) {
            status |= regs::STATUS_FABRIC_LINK_UP;
        }
        status
    }

    fn register_value(&self, register: Register) -> u64 {
        match register.offset {
            regs::ID => u64::from(regs::ID_VALUE),
            regs::VERSION => u64::from(regs::VERSION_VALUE),
            regs::CAPS => {
                u64::from(SIM_CAPS | self.fabric.as_ref().map_or(0, |_| regs::CAP_FABRIC))
            }
            regs::LIMITS => u64::from(Self::limits().to_register()),
            regs::SRAM_BYTES => self.sram.len_bytes(),
            regs::CONTROL => u64::from(self.control),
            regs::STATUS => u64::from(self.status()),
            regs::ERROR_CODE => u64::from(self.error_code as u32),
            regs::ERROR_INFO => u64::from(self.error_info),
            regs::IRQ_STATUS => u64::from(self.irq_status),
            regs::IRQ_MASK => u64::from(self.irq_mask),
            regs::SCRATCH => u64::from(self.scratch),
            regs::FABRIC_PORT_ID => u64::from(self.fabric_port_id),
            // Without a link, no live port, not even this one.
            regs::FABRIC_MEMBERSHIP => {
                u64::from(self.fabric.as_ref().map_or(0, PortState::membership))
            }
            regs::SRAM_WINDOW_SELECT => u64::from(self.window_select),
            other => unreachable!("register {other:#x} is in REGISTERS but not modelled"),
        }
    }

    fn register_write(
        &mut self,
        register: Register,
        offset: u32,
        high_half: bool,
        width_bytes: u32,
        value: u64,
    ) -> Result<(), Fault> {
        // Every writable register outside the rings is 32 bits wide.
        debug_assert!(register.width == Width::W32 || register.access == Access::ReadOnly);
        debug_assert!(!high_half && width_bytes == 4 || register.access == Access::ReadOnly);
        let value32 = value as u32;
        match register.access {
            Access::ReadOnly => return Err(Fault::at(ErrorCode::ReadOnly, offset)),
            Access::WriteToClear => {
                self.error_code = ErrorCode::None;
                self.error_info = 0;
            }
            Access::WriteOneToClear => self.irq_status &= !value32,
            Access::ReadWrite => match register.offset {
                regs::CONTROL => self.control_write(value32),
                regs::IRQ_MASK => self.irq_mask = value32 & regs::IRQ_ALL,
                regs::SCRATCH => self.scratch = value32,
                regs::SRAM_WINDOW_SELECT => {
                    let page_address = u64::from(value32) * u64::from(SRAM_WINDOW_BYTES);
                    if page_address >= self.sram.len_bytes() {
                        return Err(Fault::at(ErrorCode::BadWindow, offset));
                    }
                    self.window_select = value32;
                }
                other => unreachable!("read/write register {other:#x} not modelled"),
            },
        }
        Ok(())
    }

    fn control_write(&mut self, value: u32) {
        if value & regs::CONTROL_RESET != 0 {
            self.reset();
            return;
        }
        self.control = value & (regs::CONTROL_ENABLE | regs::CONTROL_IRQ_ENABLE);
    }

    fn reset(&mut self) {
        self.ready = false;
        self.control = 0;
        self.error_code = ErrorCode::None;
        self.error_info = 0;
        self.irq_status = 0;
        self.irq_mask = 0;
        self.scratch = 0;
        self.window_select = 0;
        self.rings = [RingState::default(); regs::RINGS.len()];
    }

    fn ring_value(&self, ring: u32, field: u32) -> u64 {
        let state = &self.rings[ring_slot(ring)];
        match field {
            ring_block::BASE => state.base,
            ring_block::ENTRIES => u64::from(state.entries),
            ring_block::HEAD => u64::from(state.head),
            ring_block::TAIL => u64::from(state.tail),
            ring_block::CONTROL => u64::from(if state.enabled { regs::RING_ENABLE } else { 0 }),
            other => unreachable!("ring field {other:#x} located but not modelled"),
        }
    }

    fn ring_write(
        &mut self,
        ring: u32,
        field: u32,
        offset: u32,
        high_half: bool,
        width_bytes: u32,
        value: u64,
    ) -> Result<(), Fault> {
        if regs::ring_field_access(ring, field) == Access::ReadOnly {
            return Err(Fault::at(ErrorCode::ReadOnly, offset));
        }
        let slot = ring_slot(ring);
        match field {
            ring_block::BASE => {
                let state = &mut self.rings[slot];
                state.base = merge_half(state.base, value, high_half, width_bytes);
            }
            ring_block::ENTRIES => self.rings[slot].entries = value as u32,
            ring_block::CONTROL => self.ring_control_write(ring, value as u32)?,
            ring_block::HEAD | ring_block::TAIL => self.ring_index_write(ring, value as u32)?,
            other => unreachable!("ring field {other:#x} located but not modelled"),
        }
        Ok(())
    }

    fn ring_control_write(&mut self, ring: u32, value: u32) -> Result<(), Fault> {
        let state = &mut self.rings[ring_slot(ring)];
        if value & regs::RING_ENABLE == 0 {
            state.enabled = false;
            return Ok(());
        }
        let entry_bytes = entry_bytes(ring);
        let entries_max = 1u32 << Self::limits().ring_entries_log2_max;
        if !regs::ring_entries_valid(state.entries)
            || state.entries > entries_max
            || !state.base.is_multiple_of(entry_bytes)
        {
            return Err(Fault::at(ErrorCode::BadRingConfig, ring));
        }
        state.enabled = true;
        state.active_base = state.base;
        state.active_entries = state.entries;
        // The ring starts empty at the host's index.
        if host_produces(ring) {
            state.head = state.tail;
        } else {
            state.tail = state.head;
        }
        Ok(())
    }

    fn ring_index_write(&mut self, ring: u32, value: u32) -> Result<(), Fault> {
        let card_enabled = self.control & regs::CONTROL_ENABLE != 0;
        let partner_enabled =
            ring != regs::PARITY_SQ || self.rings[ring_slot(regs::PARITY_CQ)].enabled;
        let state = &mut self.rings[ring_slot(ring)];
        let mut moved = *state;
        if host_produces(ring) {
            moved.tail = value;
        } else {
            moved.head = value;
        }
        if state.enabled {
            if !card_enabled {
                return Err(Fault::at(ErrorCode::NotEnabled, ring));
            }
            if !partner_enabled {
                return Err(Fault::at(ErrorCode::NotEnabled, regs::PARITY_CQ));
            }
            if moved.occupancy() > state.active_entries {
                return Err(Fault::at(ErrorCode::RingOverflow, ring));
            }
        }
        *state = moved;
        Ok(())
    }

    fn window_address(&self, offset: u32, within: u32, width_bytes: u32) -> Result<usize, Fault> {
        let address =
            u64::from(self.window_select) * u64::from(SRAM_WINDOW_BYTES) + u64::from(within);
        if address + u64::from(width_bytes) > self.sram.len_bytes() {
            return Err(Fault::at(ErrorCode::BadWindow, offset));
        }
        // Below the SRAM's length, which is a mapped slice's length.
        Ok(address as usize)
    }

    fn window_read(&self, offset: u32, within: u32, width_bytes: u32) -> Result<u64, Fault> {
        let address = self.window_address(offset, within, width_bytes)?;
        let mut word = [0u8; 8];
        let width = width_bytes as usize;
        word[..width].copy_from_slice(&self.sram.bytes()[address..address + width]);
        Ok(u64::from_le_bytes(word))
    }

    fn window_write(
        &mut self,
        offset: u32,
        within: u32,
        width_bytes: u32,
        value: u64,
    ) -> Result<(), Fault> {
        let address = self.window_address(offset, within, width_bytes)?;
        let width = width_bytes as usize;
        self.sram.bytes_mut()[address..address + width]
            .copy_from_slice(&value.to_le_bytes()[..width]);
        Ok(())
    }

    /// Copies `source` into the window at `within` in one go: the bulk form of the window
    /// writes [`crate::backend::window_accesses`] lists, with their contents and faults.
    pub fn window_copy_in(&mut self, within: u32, source: &[u8]) -> Result<(), WindowFault> {
        let range = self.window_range(within, source.len(), true)?;
        self.sram.bytes_mut()[range].copy_from_slice(source);
        Ok(())
    }

    /// Copies `target.len()` bytes of the window at `within` into `target` in one go.
    pub fn window_copy_out(&mut self, within: u32, target: &mut [u8]) -> Result<(), WindowFault> {
        let range = self.window_range(within, target.len(), false)?;
        target.copy_from_slice(&self.sram.bytes()[range]);
        Ok(())
    }

    /// The SRAM bytes of a window range; for a range leaving the window or the SRAM, the
    /// fault of the first register access of the per-register sequence that the card would
    /// reject, latched as that access would latch it.
    fn window_range(
        &mut self,
        within: u32,
        length: usize,
        writing: bool,
    ) -> Result<std::ops::Range<usize>, WindowFault> {
        let window = u64::from(SRAM_WINDOW_BYTES);
        let page_base = u64::from(self.window_select) * window;
        // Window bytes backed by SRAM: the whole window (SRAM is whole pages and
        // SRAM_WINDOW_SELECT refuses pages past it), a multiple of 8 in any case.
        let limit = window.min(self.sram.len_bytes().saturating_sub(page_base));
        let start = u64::from(within);
        let end = start + length as u64;
        if end <= limit {
            // Below the SRAM's length, which is a mapped slice's length.
            return Ok((page_base + start) as usize..(page_base + end) as usize);
        }
        // No access straddles a multiple of 8, so the first rejected one is the first that
        // reaches past `limit`.
        let access = crate::backend::window_accesses(within, length)
            .find(|access| access.word_start + u64::from(access.width_bytes) > limit)
            .expect("a range past the limit has an access past it");
        let offset = access.bar0_offset();
        let width_bytes = access.width_bytes;
        let past_bar = u64::from(offset) + u64::from(width_bytes) > u64::from(regs::BAR0_BYTES);
        let code = if past_bar {
            ErrorCode::BadOffset
        } else {
            ErrorCode::BadWindow
        };
        // A partial word is read before it is written.
        let reading = !writing || (width_bytes == 4 && access.is_partial());
        Err(WindowFault {
            fault: self.latch(Fault::at(code, offset)),
            reading,
            offset,
            width_bytes,
        })
    }

    /// One unit of card progress: finish a reset, or run one parity descriptor, send one
    /// fabric frame and deliver one. Returns whether anything happened (false: the card
    /// is idle until the host, or the fabric, acts).
    pub fn step(&mut self) -> bool {
        if !self.ready {
            self.ready = true;
            return true;
        }
        let parity = self.parity_step();
        let sent = self.fabric_tx_step();
        let received = self.fabric_rx_step();
        parity || sent || received
    }

    /// The submission ring `sq` and its completion ring `cq` when the card may take an
    /// entry: enabled, something posted, a completion slot free.
    fn ready_rings(&self, sq: u32, cq: u32) -> Option<(RingState, RingState)> {
        let (sq, cq) = (self.rings[ring_slot(sq)], self.rings[ring_slot(cq)]);
        let runnable = self.control & regs::CONTROL_ENABLE != 0 && sq.enabled && cq.enabled;
        let ready = runnable && sq.occupancy() != 0 && cq.occupancy() < cq.active_entries;
        ready.then_some((sq, cq))
    }

    fn fetch_fabric_buffer(&self, sq: &RingState) -> Option<FabricBuffer> {
        let bytes = size_of::<FabricBuffer>() as u64;
        let raw = self
            .dma
            .device_bytes(sq.slot_address(sq.head, bytes), bytes, bytes)?;
        FabricBuffer::read_from_bytes(raw).ok()
    }

    /// Takes one frame from `FABRIC_TX_SQ` for the link.
    fn fabric_tx_step(&mut self) -> bool {
        if !self.fabric.as_ref().is_some_and(PortState::link_up) {
            return false;
        }
        let Some((sq, _)) = self.ready_rings(regs::FABRIC_TX_SQ, regs::FABRIC_TX_CQ) else {
            return false;
        };
        let buffer = self.fetch_fabric_buffer(&sq);
        let status = match buffer.map(|buffer| self.outgoing_frame(&buffer)) {
            None | Some(Err(CompletionStatus::DmaFault)) => CompletionStatus::DmaFault,
            Some(Err(status)) => status,
            Some(Ok(bytes)) => {
                let port = self.fabric.as_mut().expect("checked above");
                if port.try_send(bytes).is_err() {
                    // The writer is behind: leave the entry for a later step.
                    return false;
                }
                CompletionStatus::Ok
            }
        };
        let tag = buffer.map_or(0, |buffer| buffer.tag.get());
        self.rings[ring_slot(regs::FABRIC_TX_SQ)].head = sq.head.wrapping_add(1);
        let completion = completion(tag, status, sq.head, 0);
        self.post_completion(regs::FABRIC_TX_CQ, &completion, regs::IRQ_FABRIC_TX_CQ);
        true
    }

    /// The frame a transmit buffer holds, checked as the port checks it.
    fn outgoing_frame(&self, buffer: &FabricBuffer) -> Result<Vec<u8>, CompletionStatus> {
        let length = u64::from(buffer.length_bytes.get());
        if length > FRAME_BYTES_MAX as u64 {
            return Err(CompletionStatus::BadFrame);
        }
        let bytes = self
            .dma
            .device_bytes(buffer.addr.get(), length, 1)
            .ok_or(CompletionStatus::DmaFault)?;
        let frame = OwnedFrame::parse(bytes).map_err(|_| CompletionStatus::BadFrame)?;
        let own = u32::from(frame.source_port()) == self.fabric_port_id;
        let host_kind = matches!(
            frame.kind(),
            MessageKind::Broadcast | MessageKind::Unicast | MessageKind::SramWrite
        );
        if !own || !host_kind {
            return Err(CompletionStatus::BadFrame);
        }
        Ok(bytes.to_vec())
    }

    /// Copies one received frame into the next `FABRIC_RX_SQ` buffer.
    fn fabric_rx_step(&mut self) -> bool {
        if self
            .fabric
            .as_ref()
            .is_none_or(|port| port.incoming_len() == 0)
        {
            return false;
        }
        let Some((sq, _)) = self.ready_rings(regs::FABRIC_RX_SQ, regs::FABRIC_RX_CQ) else {
            return false;
        };
        let frame = self
            .fabric
            .as_mut()
            .and_then(PortState::pop_incoming)
            .expect("checked above");
        let buffer = self.fetch_fabric_buffer(&sq);
        let status = match buffer {
            None => CompletionStatus::DmaFault,
            Some(buffer) if frame.len() > buffer.length_bytes.get() as usize => {
                CompletionStatus::BadFrame
            }
            Some(buffer) => {
                let length = frame.len() as u64;
                match self.dma.device_bytes_mut(buffer.addr.get(), length, 1) {
                    Some(target) => {
                        target.copy_from_slice(&frame);
                        CompletionStatus::Ok
                    }
                    None => CompletionStatus::DmaFault,
                }
            }
        };
        let tag = buffer.map_or(0, |buffer| buffer.tag.get());
        self.rings[ring_slot(regs::FABRIC_RX_SQ)].head = sq.head.wrapping_add(1);
        let length = u32::try_from(frame.len()).expect("frames fit u32");
        let completion = completion(tag, status, sq.head, length);
        self.post_completion(regs::FABRIC_RX_CQ, &completion, regs::IRQ_FABRIC_RX_CQ);
        true
    }

    fn parity_step(&mut self) -> bool {
        let sq = self.rings[ring_slot(regs::PARITY_SQ)];
        let cq = self.rings[ring_slot(regs::PARITY_CQ)];
        let runnable = self.control & regs::CONTROL_ENABLE != 0 && sq.enabled && cq.enabled;
        if !runnable || sq.occupancy() == 0 || cq.occupancy() >= cq.active_entries {
            return false;
        }
        let entry_address = sq.slot_address(sq.head, size_of::<ParityDescriptor>() as u64);
        let (tag, interrupt, status) = match self.fetch_descriptor(entry_address) {
            Some(descriptor) => (
                descriptor.tag.get(),
                descriptor.flags & PARITY_FLAG_INTERRUPT != 0,
                parity::execute(&mut self.dma, &descriptor, &mut self.parity),
            ),
            None => (0, true, CompletionStatus::DmaFault),
        };
        let completion = completion(tag, status, sq.head, 0);
        self.rings[ring_slot(regs::PARITY_SQ)].head = sq.head.wrapping_add(1);
        let interrupt = interrupt || status != CompletionStatus::Ok;
        let irq = if interrupt { regs::IRQ_PARITY_CQ } else { 0 };
        self.post_completion(regs::PARITY_CQ, &completion, irq);
        true
    }

    fn fetch_descriptor(&self, address: u64) -> Option<ParityDescriptor> {
        let bytes = size_of::<ParityDescriptor>() as u64;
        let raw = self.dma.device_bytes(address, bytes, bytes)?;
        ParityDescriptor::read_from_bytes(raw).ok()
    }

    /// Posts `completion` on the completion ring `ring` and raises `irq` (zero: none).
    fn post_completion(&mut self, ring: u32, completion: &Completion, irq: u32) {
        let slot = ring_slot(ring);
        let cq = self.rings[slot];
        let bytes = size_of::<Completion>() as u64;
        let address = cq.slot_address(cq.tail, bytes);
        match self.dma.device_bytes_mut(address, bytes, bytes) {
            Some(target) => {
                target.copy_from_slice(completion.as_bytes());
                self.rings[slot].tail = cq.tail.wrapping_add(1);
                self.irq_status |= irq;
            }
            None => {
                // The completion ring's memory is gone: the card cannot report through it.
                self.rings[slot].enabled = false;
                self.latch(Fault::at(ErrorCode::BadRingConfig, ring));
            }
        }
    }
}

fn completion(
    tag: u32,
    status: CompletionStatus,
    submission_index: u32,
    length: u32,
) -> Completion {
    Completion {
        tag: U32::new(tag),
        status: U16::new(status as u16),
        reserved0: U16::new(0),
        submission_index: U32::new(submission_index),
        length_bytes: U32::new(length),
    }
}

/// Index of a ring block in [`regs::RINGS`].
fn ring_slot(ring: u32) -> usize {
    regs::RINGS
        .iter()
        .position(|&candidate| candidate == ring)
        .expect("locate only returns ring blocks of RINGS")
}

fn host_produces(ring: u32) -> bool {
    matches!(
        ring,
        regs::PARITY_SQ | regs::FABRIC_TX_SQ | regs::FABRIC_RX_SQ
    )
}

fn entry_bytes(ring: u32) -> u64 {
    match ring {
        regs::PARITY_SQ => size_of::<ParityDescriptor>() as u64,
        regs::FABRIC_TX_SQ | regs::FABRIC_RX_SQ => {
            size_of::<shared_regs::ring::FabricBuffer>() as u64
        }
        _ => size_of::<Completion>() as u64,
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
