//! The card SRAM: 64-bit words, one read/write port for the host (through the BAR0 window,
//! registered read) and one write port for the fabric (peers' remote writes; the fabric
//! protocol has no remote read).
//!
//! The host writes 32-bit halves (BAR0 accesses are 32 bits wide), so each half has its own
//! write enable; the fabric writes whole words. A read returns the word as it was before a
//! write in the same cycle. When both ports write one word in the same cycle the fabric's
//! write wins (it is the replicated state the SRAM exists for). The Verilog is written by
//! hand (as rust-hdl's own RAM is) so that synthesis infers block RAM.
use rust_hdl::prelude::*;

/// Bits of one SRAM word.
pub const WORD_BITS: usize = 64;

/// A dual-port SRAM of `2^A` 64-bit words.
#[derive(Debug, LogicBlock)]
pub struct DualPortSram<const A: usize> {
    /// Clock of both ports.
    pub clock: Signal<In, Clock>,
    /// Host port: word address.
    pub host_address: Signal<In, Bits<A>>,
    /// Host port: write the low 32 bits.
    pub host_write_low: Signal<In, Bit>,
    /// Host port: write the high 32 bits.
    pub host_write_high: Signal<In, Bit>,
    /// Host port: the 32-bit half to write, into whichever half is enabled.
    pub host_write_data: Signal<In, Bits<32>>,
    /// Host port: the word at last cycle's address.
    pub host_read_data: Signal<Out, Bits<WORD_BITS>>,
    /// Fabric port: word address.
    pub fabric_address: Signal<In, Bits<A>>,
    /// Fabric port: write the whole word.
    pub fabric_write: Signal<In, Bit>,
    /// Fabric port: data to write.
    pub fabric_write_data: Signal<In, Bits<WORD_BITS>>,
    _words: Vec<u64>,
}

impl<const A: usize> DualPortSram<A> {
    /// Bytes the SRAM holds.
    pub const BYTES: u64 = (WORD_BITS as u64 / 8) << A;

    /// An SRAM of `2^A` zeroed words.
    pub fn new() -> Self {
        assert!(
            (1..=24).contains(&A),
            "{A} address bits: the SRAM takes 1 to 24"
        );
        Self {
            clock: Default::default(),
            host_address: Default::default(),
            host_write_low: Default::default(),
            host_write_high: Default::default(),
            host_write_data: Default::default(),
            host_read_data: Default::default(),
            fabric_address: Default::default(),
            fabric_write: Default::default(),
            fabric_write_data: Default::default(),
            _words: vec![0; 1 << A],
        }
    }
}

impl<const A: usize> Default for DualPortSram<A> {
    fn default() -> Self {
        Self::new()
    }
}

const LOW_HALF: u64 = 0xFFFF_FFFF;
const HIGH_HALF: u64 = !LOW_HALF;

impl<const A: usize> Logic for DualPortSram<A> {
    fn update(&mut self) {
        if !self.clock.pos_edge() {
            return;
        }
        let host = self.host_address.val().index();
        let fabric = self.fabric_address.val().index();
        self.host_read_data.next = self._words[host].into();
        let half = self.host_write_data.val().to_u64();
        if self.host_write_low.val() {
            self._words[host] = (self._words[host] & HIGH_HALF) | half;
        }
        if self.host_write_high.val() {
            self._words[host] = (self._words[host] & LOW_HALF) | (half << 32);
        }
        if self.fabric_write.val() {
            self._words[fabric] = self.fabric_write_data.val().to_u64();
        }
    }

    fn connect(&mut self) {
        self.host_read_data.connect();
    }

    fn hdl(&self) -> Verilog {
        Verilog::Custom(format!(
            "\
reg [31:0] low_words[0:{last}];
reg [31:0] high_words[0:{last}];

always @(posedge clock) begin
    host_read_data <= {{high_words[host_address], low_words[host_address]}};
    if (host_write_low & ~(fabric_write & (fabric_address == host_address)))
        low_words[host_address] <= host_write_data;
    if (host_write_high & ~(fabric_write & (fabric_address == host_address)))
        high_words[host_address] <= host_write_data;
    if (fabric_write) begin
        low_words[fabric_address] <= fabric_write_data[31:0];
        high_words[fabric_address] <= fabric_write_data[63:32];
    end
end
",
            last = (1_u64 << A) - 1
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{rising_edge, settle};

    fn sram() -> DualPortSram<4> {
        let mut uut = DualPortSram::<4>::new();
        uut.connect_all();
        uut
    }

    fn host_read(uut: &mut DualPortSram<4>, address: u64) -> u64 {
        uut.host_address.next = address.into();
        uut.host_write_low.next = false;
        uut.host_write_high.next = false;
        uut.fabric_write.next = false;
        rising_edge(uut, |u| &mut u.clock);
        settle(uut);
        uut.host_read_data.val().to_u64()
    }

    #[test]
    fn host_halves_and_fabric_words_land_where_addressed() {
        let mut uut = sram();
        uut.host_address.next = 3_u64.into();
        uut.host_write_data.next = 0x3333_4444_u64.into();
        uut.host_write_low.next = true;
        uut.fabric_address.next = 9_u64.into();
        uut.fabric_write.next = true;
        uut.fabric_write_data.next = 0xDEAD_BEEF_0BAD_F00D_u64.into();
        rising_edge(&mut uut, |u| &mut u.clock);
        assert_eq!(
            host_read(&mut uut, 3),
            0x3333_4444,
            "only the low half was written"
        );
        assert_eq!(host_read(&mut uut, 9), 0xDEAD_BEEF_0BAD_F00D);
        assert_eq!(host_read(&mut uut, 4), 0, "a neighbour stays zero");
    }

    #[test]
    fn the_fabric_wins_a_same_word_collision_and_reads_see_the_old_word() {
        let mut uut = sram();
        uut.host_address.next = 5_u64.into();
        uut.host_write_data.next = 1_u64.into();
        uut.host_write_low.next = true;
        uut.host_write_high.next = true;
        uut.fabric_address.next = 5_u64.into();
        uut.fabric_write.next = true;
        uut.fabric_write_data.next = 2_u64.into();
        rising_edge(&mut uut, |u| &mut u.clock);
        assert_eq!(
            uut.host_read_data.val().to_u64(),
            0,
            "read before the write"
        );
        assert_eq!(host_read(&mut uut, 5), 2);
    }
}
