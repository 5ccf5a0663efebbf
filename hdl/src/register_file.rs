//! BAR0's registers below the SRAM window, every offset and value taken from
//! `shared_regs::regs`.
//!
//! The host bus is 32 bits wide: a 64-bit register is two halves, the low one at its
//! offset and the high one 4 bytes above, as `shared_regs::regs` allows. A request (`bus_read` or `bus_write`) is answered the
//! next cycle with `bus_done` (and `bus_read_data` for a read). Faults latch the first
//! error in `ERROR_CODE`/`ERROR_INFO` exactly as the map says: an unmapped offset
//! (`BadOffset`; reads return zero), a write to a read-only register (`ReadOnly`; the write
//! is dropped), a window page beyond the SRAM (`BadWindow`; the page is kept).
//!
//! The ring register blocks are not in this register file yet: the RTL has no ring
//! engines, so an access to them latches `BadOffset` (docs/CARD.md lists what is missing).
use rust_hdl::prelude::*;
use shared_regs::limits::{FABRIC_PORTS_MAX, PARITY_SOURCES_MAX, RING_ENTRIES_MAX};
use shared_regs::regs::{self, ErrorCode, Limits};

/// Bits of a BAR0 offset.
pub const ADDRESS_BITS: usize = 32;

/// What this card can do: P and P+Q parity, SRAM, and an interrupt line. Not
/// `CAP_FABRIC`: a driver that sees it sets up the fabric rings, which the RTL does not
/// have yet (its fabric reaches the SRAM only); the bit comes with those rings.
pub const CARD_CAPS: u32 =
    regs::CAP_PARITY_P | regs::CAP_PARITY_PQ | regs::CAP_SRAM | regs::CAP_INTERRUPTS;

const _: () = {
    assert!(RING_ENTRIES_MAX.is_power_of_two());
};

/// The value of `LIMITS` for a card with `fabric_ports` ports.
pub fn limits_value(fabric_ports: u8) -> u32 {
    assert!(
        u32::from(fabric_ports) <= FABRIC_PORTS_MAX,
        "{fabric_ports} fabric ports"
    );
    Limits {
        parity_sources_max: u8::try_from(PARITY_SOURCES_MAX).expect("fits the LIMITS field"),
        fabric_ports,
        ring_entries_log2_max: u8::try_from(RING_ENTRIES_MAX.trailing_zeros())
            .expect("fits the LIMITS field"),
    }
    .to_register()
}

fn word(value: u32) -> Constant<Bits<32>> {
    Constant::new(u64::from(value).into())
}

/// Bits of a register's word index: every register lies below `REGISTER_PAGE_BYTES`.
const WORD_BITS: usize = 7;
/// The registers' page: decoding compares a 7-bit word index, and checks once that the
/// rest of the offset is zero (a parallel decode; a chain of 32-bit compares held the
/// register file to 67 MHz on an HX8K).
const REGISTER_PAGE_BYTES: u32 = 4 << WORD_BITS;

const _: () = {
    let mut index = 0;
    while index < regs::REGISTERS.len() {
        let offset = regs::REGISTERS[index].offset;
        assert!(offset + 8 <= REGISTER_PAGE_BYTES && offset.is_multiple_of(4));
        index += 1;
    }
};

/// The word index of a register offset.
fn offset(value: u32) -> Constant<Bits<WORD_BITS>> {
    assert!(
        value < REGISTER_PAGE_BYTES && value.is_multiple_of(4),
        "offset {value:#x}"
    );
    Constant::new(u64::from(value / 4).into())
}

/// The register file.
#[derive(Debug, LogicBlock)]
pub struct RegisterFile {
    /// Clock of every register.
    pub clock: Signal<In, Clock>,
    /// Power-on reset (the host's `CONTROL_RESET` resets the registers too, and comes out
    /// as `soft_reset` for the rest of the card).
    pub reset: Signal<In, Bit>,
    /// Read request at `bus_address`.
    pub bus_read: Signal<In, Bit>,
    /// Write request of `bus_write_data` at `bus_address`.
    pub bus_write: Signal<In, Bit>,
    /// BAR0 byte offset of the request.
    pub bus_address: Signal<In, Bits<ADDRESS_BITS>>,
    /// Data of a write request.
    pub bus_write_data: Signal<In, Bits<32>>,
    /// Last cycle's request is answered.
    pub bus_done: Signal<Out, Bit>,
    /// Data of last cycle's read.
    pub bus_read_data: Signal<Out, Bits<32>>,
    /// The parity engine holds unfinished work.
    pub parity_busy: Signal<In, Bit>,
    /// The fabric link is up.
    pub fabric_link_up: Signal<In, Bit>,
    /// This card's port on the fabric.
    pub fabric_port_id: Signal<In, Bits<32>>,
    /// Live fabric ports.
    pub fabric_membership: Signal<In, Bits<32>>,
    /// Interrupt causes raised this cycle, `IRQ_*` bits.
    pub irq_raise: Signal<In, Bits<32>>,
    /// `CONTROL_ENABLE`: the card processes work.
    pub enabled: Signal<Out, Bit>,
    /// One-cycle pulse when the host writes `CONTROL_RESET`.
    pub soft_reset: Signal<Out, Bit>,
    /// Interrupt line: an enabled cause is pending and interrupts are enabled.
    pub irq: Signal<Out, Bit>,
    /// `SRAM_WINDOW_SELECT`.
    pub window_select: Signal<Out, Bits<32>>,
    control: DFF<Bits<32>>,
    error_code: DFF<Bits<32>>,
    error_info: DFF<Bits<32>>,
    irq_status: DFF<Bits<32>>,
    irq_mask: DFF<Bits<32>>,
    scratch: DFF<Bits<32>>,
    window: DFF<Bits<32>>,
    ready: DFF<Bit>,
    done: DFF<Bit>,
    read_data: DFF<Bits<32>>,
    reset_pulse: DFF<Bit>,
    read_value: Signal<Local, Bits<32>>,
    word: Signal<Local, Bits<WORD_BITS>>,
    in_page: Signal<Local, Bit>,
    mapped: Signal<Local, Bit>,
    writable: Signal<Local, Bit>,
    fault: Signal<Local, Bits<32>>,
    status: Signal<Local, Bits<32>>,
    irq_cleared: Signal<Local, Bits<32>>,
    /// The host writes `CONTROL_RESET` this cycle.
    host_reset: Signal<Local, Bit>,
    irq_next: Signal<Local, Bits<32>>,
    at_id: Constant<Bits<WORD_BITS>>,
    at_version: Constant<Bits<WORD_BITS>>,
    at_caps: Constant<Bits<WORD_BITS>>,
    at_limits: Constant<Bits<WORD_BITS>>,
    at_sram_bytes_low: Constant<Bits<WORD_BITS>>,
    at_sram_bytes_high: Constant<Bits<WORD_BITS>>,
    at_control: Constant<Bits<WORD_BITS>>,
    at_status: Constant<Bits<WORD_BITS>>,
    at_error_code: Constant<Bits<WORD_BITS>>,
    at_error_info: Constant<Bits<WORD_BITS>>,
    at_irq_status: Constant<Bits<WORD_BITS>>,
    at_irq_mask: Constant<Bits<WORD_BITS>>,
    at_scratch: Constant<Bits<WORD_BITS>>,
    at_fabric_port_id: Constant<Bits<WORD_BITS>>,
    at_fabric_membership: Constant<Bits<WORD_BITS>>,
    at_window_select: Constant<Bits<WORD_BITS>>,
    id_value: Constant<Bits<32>>,
    version_value: Constant<Bits<32>>,
    caps_value: Constant<Bits<32>>,
    limits: Constant<Bits<32>>,
    sram_bytes_low: Constant<Bits<32>>,
    sram_bytes_high: Constant<Bits<32>>,
    window_pages: Constant<Bits<32>>,
    control_writable: Constant<Bits<32>>,
    control_reset: Constant<Bits<32>>,
    control_enable: Constant<Bits<32>>,
    control_irq_enable: Constant<Bits<32>>,
    status_ready: Constant<Bits<32>>,
    status_error: Constant<Bits<32>>,
    status_parity_busy: Constant<Bits<32>>,
    status_link_up: Constant<Bits<32>>,
    irq_error: Constant<Bits<32>>,
    irq_all: Constant<Bits<32>>,
    no_causes: Constant<Bits<32>>,
    error_none: Constant<Bits<32>>,
    error_bad_offset: Constant<Bits<32>>,
    error_read_only: Constant<Bits<32>>,
    error_bad_window: Constant<Bits<32>>,
    zero: Constant<Bits<32>>,
    outside_word_bits: Constant<Bits<32>>,
}

impl RegisterFile {
    /// The register file of a card with `sram_bytes` of SRAM on a fabric of
    /// `fabric_ports` ports.
    pub fn new(sram_bytes: u64, fabric_ports: u8) -> Self {
        let window_bytes = u64::from(shared_regs::limits::SRAM_WINDOW_BYTES);
        assert!(
            sram_bytes > 0 && sram_bytes.is_multiple_of(window_bytes),
            "SRAM of {sram_bytes} bytes is not whole window pages"
        );
        let window_pages = u32::try_from(sram_bytes / window_bytes).expect("pages fit u32");
        let [low, high] = [sram_bytes as u32, (sram_bytes >> 32) as u32];
        Self {
            clock: Default::default(),
            reset: Default::default(),
            bus_read: Default::default(),
            bus_write: Default::default(),
            bus_address: Default::default(),
            bus_write_data: Default::default(),
            bus_done: Default::default(),
            bus_read_data: Default::default(),
            parity_busy: Default::default(),
            fabric_link_up: Default::default(),
            fabric_port_id: Default::default(),
            fabric_membership: Default::default(),
            irq_raise: Default::default(),
            enabled: Default::default(),
            soft_reset: Default::default(),
            irq: Default::default(),
            window_select: Default::default(),
            control: Default::default(),
            error_code: Default::default(),
            error_info: Default::default(),
            irq_status: Default::default(),
            irq_mask: Default::default(),
            scratch: Default::default(),
            window: Default::default(),
            ready: Default::default(),
            done: Default::default(),
            read_data: Default::default(),
            reset_pulse: Default::default(),
            read_value: Default::default(),
            word: Default::default(),
            in_page: Default::default(),
            mapped: Default::default(),
            writable: Default::default(),
            fault: Default::default(),
            status: Default::default(),
            irq_cleared: Default::default(),
            host_reset: Default::default(),
            irq_next: Default::default(),
            at_id: offset(regs::ID),
            at_version: offset(regs::VERSION),
            at_caps: offset(regs::CAPS),
            at_limits: offset(regs::LIMITS),
            at_sram_bytes_low: offset(regs::SRAM_BYTES),
            at_sram_bytes_high: offset(regs::SRAM_BYTES + 4),
            at_control: offset(regs::CONTROL),
            at_status: offset(regs::STATUS),
            at_error_code: offset(regs::ERROR_CODE),
            at_error_info: offset(regs::ERROR_INFO),
            at_irq_status: offset(regs::IRQ_STATUS),
            at_irq_mask: offset(regs::IRQ_MASK),
            at_scratch: offset(regs::SCRATCH),
            at_fabric_port_id: offset(regs::FABRIC_PORT_ID),
            at_fabric_membership: offset(regs::FABRIC_MEMBERSHIP),
            at_window_select: offset(regs::SRAM_WINDOW_SELECT),
            id_value: word(regs::ID_VALUE),
            version_value: word(regs::VERSION_VALUE),
            caps_value: word(CARD_CAPS),
            limits: word(limits_value(fabric_ports)),
            sram_bytes_low: word(low),
            sram_bytes_high: word(high),
            window_pages: word(window_pages),
            control_writable: word(regs::CONTROL_ENABLE | regs::CONTROL_IRQ_ENABLE),
            control_reset: word(regs::CONTROL_RESET),
            control_enable: word(regs::CONTROL_ENABLE),
            control_irq_enable: word(regs::CONTROL_IRQ_ENABLE),
            status_ready: word(regs::STATUS_READY),
            status_error: word(regs::STATUS_ERROR),
            status_parity_busy: word(regs::STATUS_PARITY_BUSY),
            status_link_up: word(regs::STATUS_FABRIC_LINK_UP),
            irq_error: word(regs::IRQ_ERROR),
            irq_all: word(regs::IRQ_ALL),
            no_causes: Constant::new(0_u64.into()),
            error_none: word(ErrorCode::None as u32),
            error_bad_offset: word(ErrorCode::BadOffset as u32),
            error_read_only: word(ErrorCode::ReadOnly as u32),
            error_bad_window: word(ErrorCode::BadWindow as u32),
            zero: word(0),
            outside_word_bits: word(!(REGISTER_PAGE_BYTES - 4)),
        }
    }
}

impl Logic for RegisterFile {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self,
            clock,
            control,
            error_code,
            error_info,
            irq_status,
            irq_mask,
            scratch,
            window,
            ready,
            done,
            read_data,
            reset_pulse
        );
        self.status.next = self.zero.val();
        if self.ready.q.val() {
            self.status.next = self.status.val() | self.status_ready.val();
        }
        if self.error_code.q.val() != self.error_none.val() {
            self.status.next = self.status.val() | self.status_error.val();
        }
        if self.parity_busy.val() {
            self.status.next = self.status.val() | self.status_parity_busy.val();
        }
        if self.fabric_link_up.val() {
            self.status.next = self.status.val() | self.status_link_up.val();
        }

        // Decode: what a read returns, and whether a write is allowed. Every register's
        // compare is independent (offsets are distinct), so reads are an AND-OR.
        self.word.next = self.bus_address.val().get_bits::<WORD_BITS>(2);
        self.in_page.next =
            (self.bus_address.val() & self.outside_word_bits.val()) == self.zero.val();
        self.mapped.next = false;
        self.writable.next = false;
        self.read_value.next = self.zero.val();
        if self.word.val() == self.at_id.val() {
            self.read_value.next = self.read_value.val() | self.id_value.val();
            self.mapped.next = true;
        }
        if self.word.val() == self.at_version.val() {
            self.read_value.next = self.read_value.val() | self.version_value.val();
            self.mapped.next = true;
        }
        if self.word.val() == self.at_caps.val() {
            self.read_value.next = self.read_value.val() | self.caps_value.val();
            self.mapped.next = true;
        }
        if self.word.val() == self.at_limits.val() {
            self.read_value.next = self.read_value.val() | self.limits.val();
            self.mapped.next = true;
        }
        if self.word.val() == self.at_sram_bytes_low.val() {
            self.read_value.next = self.read_value.val() | self.sram_bytes_low.val();
            self.mapped.next = true;
        }
        if self.word.val() == self.at_sram_bytes_high.val() {
            self.read_value.next = self.read_value.val() | self.sram_bytes_high.val();
            self.mapped.next = true;
        }
        if self.word.val() == self.at_control.val() {
            self.read_value.next = self.read_value.val() | self.control.q.val();
            self.writable.next = true;
            self.mapped.next = true;
        }
        if self.word.val() == self.at_status.val() {
            self.read_value.next = self.read_value.val() | self.status.val();
            self.mapped.next = true;
        }
        if self.word.val() == self.at_error_code.val() {
            self.read_value.next = self.read_value.val() | self.error_code.q.val();
            self.writable.next = true;
            self.mapped.next = true;
        }
        if self.word.val() == self.at_error_info.val() {
            self.read_value.next = self.read_value.val() | self.error_info.q.val();
            self.mapped.next = true;
        }
        if self.word.val() == self.at_irq_status.val() {
            self.read_value.next = self.read_value.val() | self.irq_status.q.val();
            self.writable.next = true;
            self.mapped.next = true;
        }
        if self.word.val() == self.at_irq_mask.val() {
            self.read_value.next = self.read_value.val() | self.irq_mask.q.val();
            self.writable.next = true;
            self.mapped.next = true;
        }
        if self.word.val() == self.at_scratch.val() {
            self.read_value.next = self.read_value.val() | self.scratch.q.val();
            self.writable.next = true;
            self.mapped.next = true;
        }
        if self.word.val() == self.at_fabric_port_id.val() {
            self.read_value.next = self.read_value.val() | self.fabric_port_id.val();
            self.mapped.next = true;
        }
        if self.word.val() == self.at_fabric_membership.val() {
            self.read_value.next = self.read_value.val() | self.fabric_membership.val();
            self.mapped.next = true;
        }
        if self.word.val() == self.at_window_select.val() {
            self.read_value.next = self.read_value.val() | self.window.q.val();
            self.writable.next = true;
            self.mapped.next = true;
        }
        if !self.in_page.val() {
            self.mapped.next = false;
            self.writable.next = false;
            self.read_value.next = self.zero.val();
        }

        // Faults, in the map's order of precedence.
        self.fault.next = self.error_none.val();
        if (self.bus_read.val() | self.bus_write.val()) & !self.mapped.val() {
            self.fault.next = self.error_bad_offset.val();
        } else if self.bus_write.val() & !self.writable.val() {
            self.fault.next = self.error_read_only.val();
        }

        // Writes.
        self.reset_pulse.d.next = false;
        self.irq_cleared.next = self.no_causes.val();
        self.host_reset.next = false;
        if self.bus_write.val() & self.writable.val() & self.mapped.val() {
            if self.word.val() == self.at_control.val() {
                self.control.d.next = self.bus_write_data.val() & self.control_writable.val();
                self.host_reset.next = (self.bus_write_data.val() & self.control_reset.val()).any();
                self.reset_pulse.d.next = self.host_reset.val();
            }
            if self.word.val() == self.at_error_code.val() {
                self.error_code.d.next = self.error_none.val();
                self.error_info.d.next = self.zero.val();
            }
            if self.word.val() == self.at_irq_status.val() {
                self.irq_cleared.next = self.bus_write_data.val() & self.irq_all.val();
            }
            if self.word.val() == self.at_irq_mask.val() {
                self.irq_mask.d.next = self.bus_write_data.val() & self.irq_all.val();
            }
            if self.word.val() == self.at_scratch.val() {
                self.scratch.d.next = self.bus_write_data.val();
            }
            if self.word.val() == self.at_window_select.val() {
                if self.bus_write_data.val() < self.window_pages.val() {
                    self.window.d.next = self.bus_write_data.val();
                } else {
                    self.fault.next = self.error_bad_window.val();
                }
            }
        }
        // A cause raised in the cycle it is cleared stays pending.
        self.irq_next.next = (self.irq_status.q.val() & !self.irq_cleared.val())
            | (self.irq_raise.val() & self.irq_all.val());
        if (self.fault.val() != self.error_none.val())
            & (self.error_code.q.val() == self.error_none.val())
        {
            self.error_code.d.next = self.fault.val();
            self.error_info.d.next = self.bus_address.val();
            self.irq_next.next = self.irq_next.val() | self.irq_error.val();
        }
        self.irq_status.d.next = self.irq_next.val();

        self.ready.d.next = true;
        self.done.d.next = self.bus_read.val() | self.bus_write.val();
        self.read_data.d.next = self.read_value.val();
        // The host's CONTROL_RESET returns the registers to their reset values as power-on
        // does (shared-regs: "reset the card"; SRAM survives), with the write that asks for
        // it; that write is still answered.
        if self.reset.val() | self.host_reset.val() {
            self.control.d.next = self.zero.val();
            self.error_code.d.next = self.error_none.val();
            self.error_info.d.next = self.zero.val();
            self.irq_status.d.next = self.no_causes.val();
            self.irq_mask.d.next = self.no_causes.val();
            self.scratch.d.next = self.zero.val();
            self.window.d.next = self.zero.val();
            self.ready.d.next = false;
        }
        if self.reset.val() {
            self.done.d.next = false;
        }
        self.bus_done.next = self.done.q.val();
        self.bus_read_data.next = self.read_data.q.val();
        self.enabled.next = (self.control.q.val() & self.control_enable.val()).any();
        self.soft_reset.next = self.reset_pulse.q.val();
        self.irq.next = (self.irq_status.q.val() & self.irq_mask.q.val()).any()
            & (self.control.q.val() & self.control_irq_enable.val()).any();
        self.window_select.next = self.window.q.val();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{rising_edge, settle};
    use shared_regs::limits::SRAM_WINDOW_BYTES;
    use shared_regs::regs::{Access, REGISTERS};

    const SRAM_BYTES: u64 = 4 * SRAM_WINDOW_BYTES as u64;

    fn register_file() -> RegisterFile {
        let mut uut = RegisterFile::new(SRAM_BYTES, 4);
        uut.connect_all();
        uut.reset.next = true;
        rising_edge(&mut uut, |u| &mut u.clock);
        uut.reset.next = false;
        rising_edge(&mut uut, |u| &mut u.clock);
        uut
    }

    /// One bus access; returns the read data of its answer.
    fn access(uut: &mut RegisterFile, write: Option<u32>, offset: u32) -> u32 {
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

    fn read(uut: &mut RegisterFile, offset: u32) -> u32 {
        access(uut, None, offset)
    }

    /// ERROR_INFO's value before the write that it now reports.
    fn before_info(_after: u32) -> u32 {
        0
    }

    fn write(uut: &mut RegisterFile, offset: u32, value: u32) {
        access(uut, Some(value), offset);
    }

    #[test]
    fn identity_reads_what_shared_regs_defines() {
        let mut uut = register_file();
        assert_eq!(read(&mut uut, regs::ID), regs::ID_VALUE);
        assert_eq!(read(&mut uut, regs::VERSION), regs::VERSION_VALUE);
        assert_eq!(read(&mut uut, regs::CAPS), CARD_CAPS);
        let limits = Limits::from_register(read(&mut uut, regs::LIMITS));
        assert_eq!(u32::from(limits.parity_sources_max), PARITY_SOURCES_MAX);
        assert_eq!(limits.fabric_ports, 4);
        assert_eq!(1_u32 << limits.ring_entries_log2_max, RING_ENTRIES_MAX);
        let low = u64::from(read(&mut uut, regs::SRAM_BYTES));
        let high = u64::from(read(&mut uut, regs::SRAM_BYTES + 4));
        assert_eq!(high << 32 | low, SRAM_BYTES);
        assert_eq!(
            read(&mut uut, regs::STATUS) & regs::STATUS_READY,
            regs::STATUS_READY
        );
        assert_eq!(
            read(&mut uut, regs::ERROR_CODE),
            ErrorCode::None as u32,
            "reads raised no error"
        );
    }

    #[test]
    fn every_read_only_register_refuses_writes_and_every_other_keeps_them() {
        for register in REGISTERS.iter().filter(|r| r.access == Access::ReadOnly) {
            let mut uut = register_file();
            // STATUS reports the error this write latches; nothing else may change.
            // ERROR_INFO reports the offset of the refused write itself (checked below).
            let unchanged = |offset, value| match offset {
                regs::STATUS => value & !regs::STATUS_ERROR,
                regs::ERROR_INFO => before_info(value),
                _ => value,
            };
            let before = read(&mut uut, register.offset);
            write(&mut uut, register.offset, !before);
            let after = read(&mut uut, register.offset);
            assert_eq!(
                unchanged(register.offset, after),
                before,
                "{} changed",
                register.name
            );
            assert_eq!(
                read(&mut uut, regs::ERROR_CODE),
                ErrorCode::ReadOnly as u32,
                "{}",
                register.name
            );
            assert_eq!(read(&mut uut, regs::ERROR_INFO), register.offset);
        }
        let mut uut = register_file();
        write(&mut uut, regs::SCRATCH, 0xA5A5_5A5A);
        assert_eq!(read(&mut uut, regs::SCRATCH), 0xA5A5_5A5A);
        write(&mut uut, regs::IRQ_MASK, regs::IRQ_ALL);
        assert_eq!(read(&mut uut, regs::IRQ_MASK), regs::IRQ_ALL);
        assert_eq!(read(&mut uut, regs::ERROR_CODE), ErrorCode::None as u32);
    }

    #[test]
    fn the_first_fault_is_latched_until_cleared_and_raises_an_interrupt() {
        let mut uut = register_file();
        write(&mut uut, regs::IRQ_MASK, regs::IRQ_ERROR);
        write(&mut uut, regs::CONTROL, regs::CONTROL_IRQ_ENABLE);
        assert!(!uut.irq.val());
        read(&mut uut, 0x0FC);
        write(&mut uut, regs::ID, 0);
        assert_eq!(
            read(&mut uut, regs::ERROR_CODE),
            ErrorCode::BadOffset as u32
        );
        assert_eq!(
            read(&mut uut, regs::ERROR_INFO),
            0x0FC,
            "the first fault, not the second"
        );
        assert_ne!(read(&mut uut, regs::STATUS) & regs::STATUS_ERROR, 0);
        assert!(uut.irq.val());
        write(&mut uut, regs::ERROR_CODE, 0);
        write(&mut uut, regs::IRQ_STATUS, regs::IRQ_ERROR);
        assert_eq!(read(&mut uut, regs::ERROR_CODE), ErrorCode::None as u32);
        assert_eq!(read(&mut uut, regs::IRQ_STATUS), 0);
        assert!(!uut.irq.val());
    }

    /// docs/CARD.md's register table lists every register at its offset, width and access.
    #[test]
    fn card_md_lists_every_register_as_shared_regs_defines_it() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/CARD.md");
        let card_md = std::fs::read_to_string(path).expect("docs/CARD.md");
        for register in &REGISTERS {
            let width = match register.width {
                regs::Width::W32 => "32",
                regs::Width::W64 => "64",
            };
            let access = match register.access {
                Access::ReadOnly => "read-only",
                Access::ReadWrite => "read/write",
                Access::WriteOneToClear => "write-one-to-clear",
                Access::WriteToClear => "write-to-clear",
            };
            let row = format!(
                "| 0x{:03X} | {} | {width} | {access} |",
                register.offset, register.name
            );
            assert!(card_md.contains(&row), "docs/CARD.md lacks the row {row}");
        }
    }

    #[test]
    fn ring_blocks_are_not_mapped_yet() {
        let mut uut = register_file();
        read(&mut uut, regs::PARITY_SQ + regs::ring_block::TAIL);
        assert_eq!(
            read(&mut uut, regs::ERROR_CODE),
            ErrorCode::BadOffset as u32
        );
    }

    #[test]
    fn a_window_page_beyond_the_sram_is_refused() {
        let mut uut = register_file();
        write(&mut uut, regs::SRAM_WINDOW_SELECT, 3);
        write(&mut uut, regs::SRAM_WINDOW_SELECT, 4);
        assert_eq!(read(&mut uut, regs::SRAM_WINDOW_SELECT), 3);
        assert_eq!(
            read(&mut uut, regs::ERROR_CODE),
            ErrorCode::BadWindow as u32
        );
        assert_eq!(uut.window_select.val().to_u32(), 3);
    }

    #[test]
    fn raised_causes_are_pending_until_written_one_and_reset_pulses_once() {
        let mut uut = register_file();
        uut.irq_raise.next = u64::from(regs::IRQ_PARITY_CQ | regs::IRQ_FABRIC_RX_CQ).into();
        rising_edge(&mut uut, |u| &mut u.clock);
        uut.irq_raise.next = 0_u64.into();
        write(&mut uut, regs::IRQ_STATUS, regs::IRQ_PARITY_CQ);
        assert_eq!(read(&mut uut, regs::IRQ_STATUS), regs::IRQ_FABRIC_RX_CQ);
        write(
            &mut uut,
            regs::CONTROL,
            regs::CONTROL_RESET | regs::CONTROL_ENABLE,
        );
        assert!(uut.soft_reset.val() && !uut.enabled.val());
        assert_eq!(
            read(&mut uut, regs::CONTROL),
            0,
            "reset clears CONTROL, itself included"
        );
        assert_eq!(
            read(&mut uut, regs::IRQ_STATUS),
            0,
            "and every pending cause"
        );
        assert!(!uut.soft_reset.val());
    }
}
