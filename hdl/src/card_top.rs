//! One card: the register file and the SRAM window behind the host bus, the parity engine
//! behind a DMA stream port, and the SRAM's second port facing the fabric.
//!
//! * **Host bus** (BAR0, 32-bit accesses): offsets below `SRAM_WINDOW_OFFSET` go to the
//!   [`RegisterFile`]; offsets in the window read and write the SRAM page that
//!   `SRAM_WINDOW_SELECT` picks. Every access is answered the next cycle (`bus_done`).
//! * **DMA stream**: the parity engine's beats in and results out, as a DMA engine serving
//!   the parity rings would move them (descriptor fetch is the host side's job in this
//!   RTL). The stream only flows while `CONTROL_ENABLE` is set; `CONTROL_RESET` resets the
//!   engine.
//! * **Fabric side**: remote writes the fabric delivers land in the SRAM through its second
//!   port; the port number, link state and membership show in the registers.
use crate::dual_port_sram::DualPortSram;
use crate::parity_engine::ParityEngine;
use crate::register_file::RegisterFile;
use rust_hdl::prelude::*;
use shared_regs::limits::SRAM_WINDOW_BYTES;
use shared_regs::regs;

/// Bits of a word index within one window page.
const WINDOW_WORD_BITS: u32 = (SRAM_WINDOW_BYTES / 8).trailing_zeros();

/// A card with a `W`-bit parity engine and `2^A` 64-bit words of SRAM.
#[derive(Debug, LogicBlock)]
pub struct CardTop<const W: usize, const A: usize> {
    /// Clock of every register.
    pub clock: Signal<In, Clock>,
    /// Power-on reset.
    pub reset: Signal<In, Bit>,
    /// Host bus: read request.
    pub bus_read: Signal<In, Bit>,
    /// Host bus: write request.
    pub bus_write: Signal<In, Bit>,
    /// Host bus: BAR0 byte offset.
    pub bus_address: Signal<In, Bits<32>>,
    /// Host bus: write data.
    pub bus_write_data: Signal<In, Bits<32>>,
    /// Host bus: last cycle's request is answered.
    pub bus_done: Signal<Out, Bit>,
    /// Host bus: data of last cycle's read.
    pub bus_read_data: Signal<Out, Bits<32>>,
    /// Interrupt line.
    pub irq: Signal<Out, Bit>,
    /// DMA stream: a beat is offered to the parity engine.
    pub dma_in_valid: Signal<In, Bit>,
    /// DMA stream: the engine takes it.
    pub dma_in_ready: Signal<Out, Bit>,
    /// DMA stream: the beat starts a column.
    pub dma_in_first: Signal<In, Bit>,
    /// DMA stream: the beat ends a column.
    pub dma_in_last: Signal<In, Bit>,
    /// DMA stream: compute Q too.
    pub dma_in_pq: Signal<In, Bit>,
    /// DMA stream: beat data.
    pub dma_in_data: Signal<In, Bits<W>>,
    /// DMA stream: a result is offered.
    pub dma_out_valid: Signal<Out, Bit>,
    /// DMA stream: the host side takes it.
    pub dma_out_ready: Signal<In, Bit>,
    /// DMA stream: P.
    pub dma_out_p: Signal<Out, Bits<W>>,
    /// DMA stream: Q.
    pub dma_out_q: Signal<Out, Bits<W>>,
    /// Fabric: this card's port number.
    pub fabric_port_id: Signal<In, Bits<32>>,
    /// Fabric: the link is up.
    pub fabric_link_up: Signal<In, Bit>,
    /// Fabric: live ports.
    pub fabric_membership: Signal<In, Bits<32>>,
    /// Fabric: a remote write into this card's SRAM.
    pub fabric_sram_write: Signal<In, Bit>,
    /// Fabric: its byte offset.
    pub fabric_sram_offset: Signal<In, Bits<32>>,
    /// Fabric: its data.
    pub fabric_sram_data: Signal<In, Bits<64>>,
    registers: RegisterFile,
    sram: DualPortSram<A>,
    engine: ParityEngine<W>,
    window_read: DFF<Bit>,
    window_write: DFF<Bit>,
    window_high_half: DFF<Bit>,
    column_open: DFF<Bit>,
    in_window: Signal<Local, Bit>,
    window_word: Signal<Local, Bits<32>>,
    fabric_word: Signal<Local, Bits<32>>,
    window_offset: Constant<Bits<32>>,
    bar_end: Constant<Bits<32>>,
    window_word_bits: Constant<Bits<32>>,
    window_word_mask: Constant<Bits<32>>,
    no_causes: Constant<Bits<32>>,
}

impl<const W: usize, const A: usize> CardTop<W, A> {
    /// A card on a fabric of `fabric_ports` ports.
    pub fn new(fabric_ports: u8) -> Self {
        assert!(
            A as u32 >= WINDOW_WORD_BITS,
            "SRAM of 2^{A} words is less than one window page"
        );
        let constant = |value: u32| Constant::new(u64::from(value).into());
        Self {
            clock: Default::default(),
            reset: Default::default(),
            bus_read: Default::default(),
            bus_write: Default::default(),
            bus_address: Default::default(),
            bus_write_data: Default::default(),
            bus_done: Default::default(),
            bus_read_data: Default::default(),
            irq: Default::default(),
            dma_in_valid: Default::default(),
            dma_in_ready: Default::default(),
            dma_in_first: Default::default(),
            dma_in_last: Default::default(),
            dma_in_pq: Default::default(),
            dma_in_data: Default::default(),
            dma_out_valid: Default::default(),
            dma_out_ready: Default::default(),
            dma_out_p: Default::default(),
            dma_out_q: Default::default(),
            fabric_port_id: Default::default(),
            fabric_link_up: Default::default(),
            fabric_membership: Default::default(),
            fabric_sram_write: Default::default(),
            fabric_sram_offset: Default::default(),
            fabric_sram_data: Default::default(),
            registers: RegisterFile::new(DualPortSram::<A>::BYTES, fabric_ports),
            sram: DualPortSram::new(),
            engine: ParityEngine::new(),
            window_read: Default::default(),
            window_write: Default::default(),
            window_high_half: Default::default(),
            column_open: Default::default(),
            in_window: Default::default(),
            window_word: Default::default(),
            fabric_word: Default::default(),
            window_offset: constant(regs::SRAM_WINDOW_OFFSET),
            bar_end: constant(regs::BAR0_BYTES),
            window_word_bits: constant(WINDOW_WORD_BITS),
            window_word_mask: constant((1 << WINDOW_WORD_BITS) - 1),
            no_causes: constant(0),
        }
    }
}

impl<const W: usize, const A: usize> Logic for CardTop<W, A> {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self,
            clock,
            window_read,
            window_write,
            window_high_half,
            column_open
        );
        self.registers.clock.next = self.clock.val();
        self.sram.clock.next = self.clock.val();
        self.engine.clock.next = self.clock.val();

        // Host bus: the window or the register file.
        self.in_window.next = (self.bus_address.val() >= self.window_offset.val())
            & (self.bus_address.val() < self.bar_end.val());
        self.registers.reset.next = self.reset.val();
        self.registers.bus_address.next = self.bus_address.val();
        self.registers.bus_write_data.next = self.bus_write_data.val();
        self.registers.bus_read.next = self.bus_read.val() & !self.in_window.val();
        self.registers.bus_write.next = self.bus_write.val() & !self.in_window.val();
        self.window_word.next = (self.registers.window_select.val() << self.window_word_bits.val())
            | ((self.bus_address.val() >> 3) & self.window_word_mask.val());
        self.sram.host_address.next = self.window_word.val().get_bits::<A>(0);
        self.sram.host_write_data.next = self.bus_write_data.val();
        self.sram.host_write_low.next =
            self.bus_write.val() & self.in_window.val() & !self.bus_address.val().get_bit(2);
        self.sram.host_write_high.next =
            self.bus_write.val() & self.in_window.val() & self.bus_address.val().get_bit(2);
        self.window_read.d.next = self.bus_read.val() & self.in_window.val();
        self.window_write.d.next = self.bus_write.val() & self.in_window.val();
        self.window_high_half.d.next = self.bus_address.val().get_bit(2);
        self.bus_done.next =
            self.registers.bus_done.val() | self.window_read.q.val() | self.window_write.q.val();
        self.bus_read_data.next = self.registers.bus_read_data.val();
        if self.window_read.q.val() {
            self.bus_read_data.next = self.sram.host_read_data.val().get_bits::<32>(0);
            if self.window_high_half.q.val() {
                self.bus_read_data.next = self.sram.host_read_data.val().get_bits::<32>(32);
            }
        }

        // Fabric side: remote writes into the SRAM's second port.
        self.fabric_word.next = self.fabric_sram_offset.val() >> 3;
        self.sram.fabric_address.next = self.fabric_word.val().get_bits::<A>(0);
        self.sram.fabric_write.next = self.fabric_sram_write.val();
        self.sram.fabric_write_data.next = self.fabric_sram_data.val();
        self.registers.fabric_port_id.next = self.fabric_port_id.val();
        self.registers.fabric_link_up.next = self.fabric_link_up.val();
        self.registers.fabric_membership.next = self.fabric_membership.val();
        self.registers.irq_raise.next = self.no_causes.val();

        // DMA stream: flows only while the card is enabled.
        self.engine.reset.next = self.reset.val() | self.registers.soft_reset.val();
        self.engine.in_valid.next = self.dma_in_valid.val() & self.registers.enabled.val();
        self.dma_in_ready.next = self.engine.in_ready.val() & self.registers.enabled.val();
        self.engine.in_first.next = self.dma_in_first.val();
        self.engine.in_last.next = self.dma_in_last.val();
        self.engine.in_pq.next = self.dma_in_pq.val();
        self.engine.in_data.next = self.dma_in_data.val();
        self.engine.out_ready.next = self.dma_out_ready.val();
        self.dma_out_valid.next = self.engine.out_valid.val();
        self.dma_out_p.next = self.engine.out_p.val();
        self.dma_out_q.next = self.engine.out_q.val();
        if self.dma_in_valid.val() & self.dma_in_ready.val() {
            self.column_open.d.next = !self.dma_in_last.val();
        }
        if self.engine.reset.val() {
            self.column_open.d.next = false;
        }
        self.registers.parity_busy.next = self.column_open.q.val() | self.engine.out_valid.val();
        self.irq.next = self.registers.irq.val();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{rising_edge, settle};

    type Card = CardTop<64, 14>;

    fn card() -> Card {
        let mut uut = Card::new(4);
        uut.connect_all();
        uut.reset.next = true;
        rising_edge(&mut uut, |u| &mut u.clock);
        uut.reset.next = false;
        rising_edge(&mut uut, |u| &mut u.clock);
        uut
    }

    fn access(uut: &mut Card, write: Option<u32>, offset: u32) -> u32 {
        uut.bus_address.next = u64::from(offset).into();
        uut.bus_read.next = write.is_none();
        uut.bus_write.next = write.is_some();
        uut.bus_write_data.next = u64::from(write.unwrap_or(0)).into();
        rising_edge(uut, |u| &mut u.clock);
        uut.bus_read.next = false;
        uut.bus_write.next = false;
        settle(uut);
        assert!(uut.bus_done.val(), "no answer the cycle after a request");
        uut.bus_read_data.val().to_u32()
    }

    #[test]
    fn registers_and_window_pages_answer_on_one_bus() {
        let mut uut = card();
        assert_eq!(access(&mut uut, None, regs::ID), regs::ID_VALUE);
        let low = access(&mut uut, None, regs::SRAM_BYTES);
        assert_eq!(u64::from(low), DualPortSram::<14>::BYTES);
        access(&mut uut, Some(0x1111_1111), regs::SRAM_WINDOW_OFFSET + 8);
        access(&mut uut, Some(1), regs::SRAM_WINDOW_SELECT);
        access(&mut uut, Some(0x2222_2222), regs::SRAM_WINDOW_OFFSET + 12);
        assert_eq!(
            access(&mut uut, None, regs::SRAM_WINDOW_OFFSET + 8),
            0,
            "page 1 is another page"
        );
        assert_eq!(
            access(&mut uut, None, regs::SRAM_WINDOW_OFFSET + 12),
            0x2222_2222
        );
        access(&mut uut, Some(0), regs::SRAM_WINDOW_SELECT);
        assert_eq!(
            access(&mut uut, None, regs::SRAM_WINDOW_OFFSET + 8),
            0x1111_1111
        );
        assert_eq!(access(&mut uut, None, regs::ERROR_CODE), 0);
    }

    #[test]
    fn a_remote_write_shows_through_the_window() {
        let mut uut = card();
        uut.fabric_sram_write.next = true;
        uut.fabric_sram_offset.next = u64::from(SRAM_WINDOW_BYTES + 16).into();
        uut.fabric_sram_data.next = 0x0123_4567_89AB_CDEF_u64.into();
        rising_edge(&mut uut, |u| &mut u.clock);
        uut.fabric_sram_write.next = false;
        access(&mut uut, Some(1), regs::SRAM_WINDOW_SELECT);
        assert_eq!(
            access(&mut uut, None, regs::SRAM_WINDOW_OFFSET + 16),
            0x89AB_CDEF
        );
        assert_eq!(
            access(&mut uut, None, regs::SRAM_WINDOW_OFFSET + 20),
            0x0123_4567
        );
    }

    #[test]
    fn a_window_access_and_a_remote_write_to_one_word_resolve_as_the_sram_promises() {
        let mut uut = card();
        let remote = |uut: &mut Card, write: Option<(u32, u64)>| {
            let (offset, data) = write.unwrap_or((0, 0));
            uut.fabric_sram_write.next = write.is_some();
            uut.fabric_sram_offset.next = u64::from(offset).into();
            uut.fabric_sram_data.next = data.into();
        };
        let window = regs::SRAM_WINDOW_OFFSET + 0x40;
        remote(&mut uut, Some((0x40, 0x1111_1111_2222_2222)));
        rising_edge(&mut uut, |u| &mut u.clock);
        remote(&mut uut, Some((0x40, 0x3333_3333_4444_4444)));
        let read = access(&mut uut, None, window + 4);
        remote(&mut uut, None);
        assert_eq!(read, 0x3333_3333, "the window read sees the remote word");
        remote(&mut uut, Some((0x40, 0x6666_6666_7777_7777)));
        access(&mut uut, Some(0x5555_5555), window);
        remote(&mut uut, None);
        assert_eq!(
            access(&mut uut, None, window),
            0x7777_7777,
            "the remote write wins"
        );
    }

    #[test]
    fn the_parity_stream_flows_only_while_enabled() {
        let mut uut = card();
        uut.dma_in_valid.next = true;
        uut.dma_in_first.next = true;
        uut.dma_in_last.next = true;
        uut.dma_in_pq.next = true;
        uut.dma_in_data.next = 0x80_u64.into();
        uut.dma_out_ready.next = false;
        settle(&mut uut);
        assert!(!uut.dma_in_ready.val(), "disabled card takes a beat");
        uut.dma_in_valid.next = false;
        access(&mut uut, Some(regs::CONTROL_ENABLE), regs::CONTROL);
        uut.dma_in_valid.next = true;
        settle(&mut uut);
        assert!(uut.dma_in_ready.val());
        rising_edge(&mut uut, |u| &mut u.clock);
        uut.dma_in_valid.next = false;
        for _ in 0..3 {
            rising_edge(&mut uut, |u| &mut u.clock);
        }
        assert!(uut.dma_out_valid.val());
        assert_eq!(uut.dma_out_p.val().to_u64(), 0x80);
        assert_eq!(
            uut.dma_out_q.val().to_u64(),
            0x80,
            "one source: Q is the source"
        );
        let status = access(&mut uut, None, regs::STATUS);
        assert_ne!(status & regs::STATUS_PARITY_BUSY, 0, "a result waits");
    }
}
