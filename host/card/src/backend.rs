//! The one interface between the driver and a card: [`CardBackend`].
//!
//! The driver ([`crate::Card`]) speaks only registers, DMA memory and interrupts through
//! this trait, so the same driver code runs on every backend:
//!
//! * `sim` ([`crate::sim::SimCard`]): the card modelled in software, its SRAM a mapped file;
//! * `rtl` (later, in `testbench/`): the Verilated RTL, advanced clock cycle by clock cycle;
//! * `vfio` (`amf_vfio::VfioCard`, crate `host/vfio`): a real card, BAR0 mapped through
//!   VFIO, DMA memory IOMMU-mapped.
//!
//! # What every backend guarantees
//!
//! **Registers.** `read32`/`write32`/`read64`/`write64` take a BAR0 offset. An access past
//! the end of BAR0 or not aligned to its width is an `Err` on every backend (vfio refuses
//! to issue it; sim and rtl model the card rejecting it, so they also latch it). Any other
//! access follows the card's own rules in `shared_regs::regs`: the card latches the first
//! fault in `ERROR_CODE` / `ERROR_INFO`, drops a faulting write and reads a faulting
//! register as all ones (what vfio returns). Backends that learn the card's verdict at the
//! call (sim, rtl) also return it as an `Err`; a posted MMIO write on a real card cannot,
//! so vfio returns `Ok`. A driver must therefore treat every `Err` as fatal *and* check `STATUS_ERROR`
//! after it configures the card (the driver here also checks it on every empty poll).
//!
//! **DMA memory.** [`CardBackend::dma_alloc`] returns a [`DmaBuffer`]: a handle plus the
//! device address the card uses to reach the memory (an IOVA for vfio, an address in the
//! sim's DMA map, an address in the testbench's memory model for rtl). The host side
//! reaches the bytes only by copying through [`CardBackend::dma_write`] and
//! [`CardBackend::dma_read`], because the card may write the memory at any time (a plain
//! `&mut [u8]` into it would be a data race). Buffers are zeroed, aligned to
//! [`DMA_ALIGN_BYTES`], and device addresses are never reused within one backend, so a
//! stale address faults instead of reaching a newer buffer. Every access is bounds-checked
//! against the buffer and is an `Err` when outside it.
//!
//! **Time.** Work never completes inside the call that submits it: the driver must poll
//! the completion ring or wait for an interrupt. [`CardBackend::advance`] lets the card make
//! progress (sim in stepped mode: one model step; rtl: a batch of clock cycles; sim in
//! threaded mode and vfio: nothing, the card runs on its own) and is cheap to call in a
//! polling loop. [`CardBackend::wait_interrupt`] returns [`InterruptWait::Raised`] as soon
//! as the card's interrupt line is asserted (`CONTROL_IRQ_ENABLE` set and
//! `IRQ_STATUS & IRQ_MASK` non-zero), possibly spuriously, and [`InterruptWait::TimedOut`]
//! only once `timeout_ms` have passed in the backend's notion of time (wall time for
//! threaded sim and vfio; for stepped sim and rtl, virtual time: a timeout is reported as
//! soon as the card is idle with the line low, since nothing can happen any more without
//! the host). The line may be level (sim) or edge (vfio MSI) triggered: the driver clears
//! `IRQ_STATUS` before it drains a completion ring, never after.
//!
//! # The SRAM window
//!
//! [`CardBackend::window_write`] and [`CardBackend::window_read`] move a byte range of the
//! SRAM window in one call. `within` is an offset *inside* the window, so a range can never
//! reach the registers below it. Any start and length are accepted: unaligned edges are
//! handled, not refused. Their meaning is defined as the sequence of register accesses
//! [`window_accesses`] lists (aligned 8-byte accesses for the body, 4-byte ones at the
//! edges, a read-modify-write of a word the range shares with its neighbour), which is
//! exactly what the default implementations issue. An override must leave the same SRAM
//! contents and, for a range that leaves the window or the SRAM, return the same error and
//! latch the same `ERROR_CODE`/`ERROR_INFO` as the first access of that sequence that the
//! card would reject. Which bytes moved before an `Err` is unspecified (the default moved
//! the accesses before the rejected one; sim moves nothing): the driver treats it as fatal.
//!
//! The vfio backend keeps the defaults: a byte-wise `memcpy` into the BAR mapping would
//! issue accesses narrower than 4 bytes, which the card rejects, so it issues the same
//! aligned volatile 8- and 4-byte accesses, each one bus transaction. Overrides need not
//! be atomic against a peer writing the same SRAM, and the default's read-modify-write of
//! a shared edge word is not: callers that share SRAM with peers keep their records 4-byte
//! aligned.

use shared_regs::regs;
use std::error::Error as StdError;

/// Alignment of every DMA buffer a backend hands out (a page: what an IOMMU maps).
pub const DMA_ALIGN_BYTES: u64 = 4096;

/// A DMA buffer: memory the card reaches at `device_address` and the host through
/// [`CardBackend::dma_read`]/[`CardBackend::dma_write`].
///
/// Deliberately not `Clone`: [`CardBackend::dma_free`] consumes it, so a freed buffer cannot
/// be used again through the same handle.
#[derive(Debug, PartialEq, Eq)]
pub struct DmaBuffer {
    handle: u64,
    device_address: u64,
    bytes: u64,
}

impl DmaBuffer {
    /// Made by backends only; `handle` is the backend's own key for the buffer.
    pub fn new(handle: u64, device_address: u64, bytes: u64) -> Self {
        assert!(bytes > 0, "a DMA buffer is never empty");
        assert!(
            device_address.is_multiple_of(DMA_ALIGN_BYTES),
            "DMA buffers are page aligned"
        );
        Self {
            handle,
            device_address,
            bytes,
        }
    }

    /// The backend's key for this buffer.
    pub fn handle(&self) -> u64 {
        self.handle
    }

    /// Address the card uses to reach byte 0 of the buffer.
    pub fn device_address(&self) -> u64 {
        self.device_address
    }

    /// Size of the buffer.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// Outcome of [`CardBackend::wait_interrupt`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterruptWait {
    /// The interrupt line is (or was) asserted; may be spurious.
    Raised,
    /// The timeout passed with the line low.
    TimedOut,
}

/// Register access, DMA memory, interrupts and the passing of time for one card.
///
/// See the [module documentation](self) for what every implementation guarantees.
pub trait CardBackend {
    /// The backend's own error; the driver carries it as the source of its errors.
    type Error: StdError + Send + Sync + 'static;

    /// Short name for messages: `"sim"`, `"rtl"`, `"vfio"`.
    fn name(&self) -> &'static str;

    /// Reads the 32-bit register (or 64-bit half, or SRAM window word) at `offset`.
    fn read32(&mut self, offset: u32) -> Result<u32, Self::Error>;
    /// Writes the 32-bit register at `offset`.
    fn write32(&mut self, offset: u32, value: u32) -> Result<(), Self::Error>;
    /// Reads the 64-bit register at `offset` in one access.
    fn read64(&mut self, offset: u32) -> Result<u64, Self::Error>;
    /// Writes the 64-bit register at `offset` in one access.
    fn write64(&mut self, offset: u32, value: u64) -> Result<(), Self::Error>;

    /// Copies `source` into the SRAM window at byte `within` of it (BAR0 offset
    /// `SRAM_WINDOW_OFFSET + within`), in the page `SRAM_WINDOW_SELECT` currently shows.
    ///
    /// See [the window rules](self#the-sram-window). The default issues the register
    /// accesses of [`window_accesses`] one by one, so a backend is correct without
    /// overriding it; sim overrides it with one copy into its mapped SRAM (vfio keeps it:
    /// see [the window rules](self#the-sram-window)).
    fn window_write(&mut self, within: u32, source: &[u8]) -> Result<(), Self::Error> {
        for access in window_accesses(within, source.len()) {
            let bytes = &source[access.source_range()];
            let offset = access.bar0_offset();
            if access.width_bytes == 8 {
                let value = u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
                self.write64(offset, value)?;
                continue;
            }
            let mut word = if access.is_partial() {
                // Keep the bytes of the word outside the range.
                self.read32(offset)?.to_le_bytes()
            } else {
                [0u8; 4]
            };
            word[access.word_range()].copy_from_slice(bytes);
            self.write32(offset, u32::from_le_bytes(word))?;
        }
        Ok(())
    }

    /// Copies `target.len()` bytes of the SRAM window at byte `within` of it into `target`;
    /// the read counterpart of [`CardBackend::window_write`], under the same rules.
    fn window_read(&mut self, within: u32, target: &mut [u8]) -> Result<(), Self::Error> {
        for access in window_accesses(within, target.len()) {
            let offset = access.bar0_offset();
            let range = access.source_range();
            if access.width_bytes == 8 {
                target[range].copy_from_slice(&self.read64(offset)?.to_le_bytes());
            } else {
                let word = self.read32(offset)?.to_le_bytes();
                target[range].copy_from_slice(&word[access.word_range()]);
            }
        }
        Ok(())
    }

    /// Allocates a zeroed DMA buffer of `bytes` (> 0) and maps it for the card.
    fn dma_alloc(&mut self, bytes: u64) -> Result<DmaBuffer, Self::Error>;
    /// Unmaps and frees `buffer`; the card faults on its address from now on.
    fn dma_free(&mut self, buffer: DmaBuffer) -> Result<(), Self::Error>;
    /// Copies `source` into `buffer` at `offset`.
    fn dma_write(
        &mut self,
        buffer: &DmaBuffer,
        offset: u64,
        source: &[u8],
    ) -> Result<(), Self::Error>;
    /// Copies `target.len()` bytes of `buffer` at `offset` into `target`.
    fn dma_read(
        &mut self,
        buffer: &DmaBuffer,
        offset: u64,
        target: &mut [u8],
    ) -> Result<(), Self::Error>;

    /// Lets the card make progress; see the module docs for what that means per backend.
    fn advance(&mut self) -> Result<(), Self::Error>;
    /// Waits up to `timeout_ms` for the interrupt line.
    fn wait_interrupt(&mut self, timeout_ms: u32) -> Result<InterruptWait, Self::Error>;
}

/// One register access of a window transfer: see [`window_accesses`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowAccess {
    /// Window offset of the accessed word (a multiple of `width_bytes`).
    pub word_start: u64,
    /// 4 or 8.
    pub width_bytes: u32,
    /// First byte of the word that belongs to the range (0 unless the range starts inside
    /// the word).
    pub first: u32,
    /// One past the last byte of the word that belongs to the range.
    pub end: u32,
    /// Index in the caller's buffer of the word's first byte that belongs to the range.
    pub buffer_start: usize,
}

impl WindowAccess {
    /// BAR0 offset of the word; past the end of BAR0 (and so rejected by the card) for a
    /// word outside the window, saturating at `u32::MAX`.
    pub fn bar0_offset(&self) -> u32 {
        u32::try_from(u64::from(regs::SRAM_WINDOW_OFFSET) + self.word_start).unwrap_or(u32::MAX)
    }

    /// Whether the range covers only part of the word (a write must read it first).
    pub fn is_partial(&self) -> bool {
        self.first != 0 || self.end != self.width_bytes
    }

    /// The bytes of the word that belong to the range.
    pub fn word_range(&self) -> std::ops::Range<usize> {
        self.first as usize..self.end as usize
    }

    /// Where those bytes are in the caller's buffer.
    pub fn source_range(&self) -> std::ops::Range<usize> {
        self.buffer_start..self.buffer_start + (self.end - self.first) as usize
    }
}

/// The register accesses, in order, that move `length` bytes at window offset `within`:
/// an aligned 8-byte access wherever 8 aligned bytes of the range remain, otherwise the
/// aligned 4-byte word holding the next byte.
pub fn window_accesses(within: u32, length: usize) -> impl Iterator<Item = WindowAccess> {
    let start = u64::from(within);
    let end = start + length as u64;
    let mut position = start;
    std::iter::from_fn(move || {
        if position >= end {
            return None;
        }
        let access = if position.is_multiple_of(8) && end - position >= 8 {
            WindowAccess {
                word_start: position,
                width_bytes: 8,
                first: 0,
                end: 8,
                buffer_start: (position - start) as usize,
            }
        } else {
            let word_start = position & !3;
            let word_end = (word_start + 4).min(end);
            WindowAccess {
                word_start,
                width_bytes: 4,
                first: (position - word_start) as u32,
                end: (word_end - word_start) as u32,
                buffer_start: (position - start) as usize,
            }
        };
        position = access.word_start + u64::from(access.end);
        Some(access)
    })
}
