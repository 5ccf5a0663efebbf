//! The one interface between the driver and a card: [`CardBackend`].
//!
//! The driver ([`crate::Card`]) speaks only registers, DMA memory and interrupts through
//! this trait, so the same driver code runs on every backend:
//!
//! * `sim` ([`crate::sim::SimCard`]): the card modelled in software, its SRAM a mapped file;
//! * `rtl` (later, in `testbench/`): the Verilated RTL, advanced clock cycle by clock cycle;
//! * `vfio` (later): a real card, BAR0 mapped through VFIO, DMA memory IOMMU-mapped.
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
