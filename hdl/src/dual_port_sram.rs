//! The card SRAM: 64-bit words, one read/write port for the host (through the BAR0 window,
//! registered read) and one write port for the fabric (peers' remote writes; the fabric
//! protocol has no remote read).
//!
//! The host writes 32-bit halves (BAR0 accesses are 32 bits wide), so each half has its own
//! write enable; the fabric writes whole words. `host_read_data` is the word at last cycle's
//! `host_address`, and a cycle in which both ports touch one word behaves as follows:
//!
//! * **the fabric's write shows through**: a host read of the word the fabric writes in the
//!   same cycle returns the fabric's new word;
//! * **the host's own write does not**: a host read of the word the host itself writes in
//!   that cycle returns the word as it was before that write;
//! * **the fabric wins**: when both ports write one word in the same cycle the host's write
//!   (either half) is dropped and the word is the fabric's (the fabric carries the replicated
//!   state the SRAM exists for).
//!
//! Each cycle is thus the sequence host write, fabric write, host read when the fabric writes
//! the word the host addresses, and host read, host write otherwise: a valid ordering of the
//! two ports, since a host window read is unordered with a peer's remote write in flight.
//!
//! The Verilog is written by hand (as rust-hdl's own RAM is) so that synthesis infers block
//! RAM, and it states all of the above itself; nothing is left to what a block RAM does on a
//! collision. A DP16KD on the ECP5 returns an undefined word on its read port when its other
//! port writes the same address, so the fabric's show-through is written as a read port
//! transparent to the fabric's write port, which yosys builds in soft logic around the block
//! RAM (the collision flag and the fabric's word registered, muxed into the read data); the
//! host's read-before-its-own-write is the block RAM port's READBEFOREWRITE mode; the fabric
//! winning is the host's write enables gated by the address match, so the two ports never
//! write one address of the block RAM in the same cycle. There is no `(* no_rw_check *)`:
//! it would waive the host port's read-before-write too (yosys could then pick a block RAM
//! mode that returns something else), and without it a synthesis tool that cannot keep
//! these rules falls back to flip-flops instead of building something else.
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
        let same_word = self.fabric_write.val() && fabric == host;
        // The cycle in the order the module doc gives: the fabric's write before the host's
        // read, the host's own write after it (and dropped on the fabric's word).
        if self.fabric_write.val() {
            self._words[fabric] = self.fabric_write_data.val().to_u64();
        }
        self.host_read_data.next = self._words[host].into();
        if same_word {
            return;
        }
        let half = self.host_write_data.val().to_u64();
        if self.host_write_low.val() {
            self._words[host] = (self._words[host] & HIGH_HALF) | half;
        }
        if self.host_write_high.val() {
            self._words[host] = (self._words[host] & LOW_HALF) | (half << 32);
        }
    }

    fn connect(&mut self) {
        self.host_read_data.connect();
    }

    fn hdl(&self) -> Verilog {
        // `same_word` is the one collision the block RAM cannot resolve: the read port sees
        // the fabric's word through it (yosys: "write port 1: transparent", emulated in soft
        // logic) and the host's write enables are gated by it. The read of the host's own
        // address is non-transparent to the host's write (the block RAM's READBEFOREWRITE).
        Verilog::Custom(format!(
            "\
reg [31:0] low_words[0:{last}];
reg [31:0] high_words[0:{last}];
wire same_word = fabric_write & (fabric_address == host_address);

always @(posedge clock) begin
    if (same_word)
        host_read_data <= fabric_write_data;
    else
        host_read_data <= {{high_words[host_address], low_words[host_address]}};
    if (host_write_low & ~same_word)
        low_words[host_address] <= host_write_data;
    if (host_write_high & ~same_word)
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

    /// One clock edge: the host at `host` (writing `host_write`'s halves, low then high, if
    /// any), the fabric writing `fabric` if any; returns the read data after the edge.
    fn cycle(
        uut: &mut DualPortSram<4>,
        host: u64,
        host_write: Option<(bool, bool, u32)>,
        fabric: Option<(u64, u64)>,
    ) -> u64 {
        let (low, high, half) = host_write.unwrap_or((false, false, 0));
        uut.host_address.next = host.into();
        uut.host_write_low.next = low;
        uut.host_write_high.next = high;
        uut.host_write_data.next = u64::from(half).into();
        let (address, data) = fabric.unwrap_or((0, 0));
        uut.fabric_address.next = address.into();
        uut.fabric_write.next = fabric.is_some();
        uut.fabric_write_data.next = data.into();
        rising_edge(uut, |u| &mut u.clock);
        settle(uut);
        uut.host_read_data.val().to_u64()
    }

    fn host_read(uut: &mut DualPortSram<4>, address: u64) -> u64 {
        cycle(uut, address, None, None)
    }

    #[test]
    fn host_halves_and_fabric_words_land_where_addressed() {
        let mut uut = sram();
        cycle(
            &mut uut,
            3,
            Some((true, false, 0x3333_4444)),
            Some((9, 0xDEAD_BEEF_0BAD_F00D)),
        );
        assert_eq!(
            host_read(&mut uut, 3),
            0x3333_4444,
            "only the low half was written"
        );
        assert_eq!(host_read(&mut uut, 9), 0xDEAD_BEEF_0BAD_F00D);
        assert_eq!(host_read(&mut uut, 4), 0, "a neighbour stays zero");
    }

    #[test]
    fn a_read_of_the_word_the_fabric_writes_returns_the_new_word() {
        let mut uut = sram();
        cycle(&mut uut, 6, None, Some((6, 0x1111)));
        assert_eq!(
            cycle(&mut uut, 6, None, Some((6, 0x2222))),
            0x2222,
            "the fabric's write shows through"
        );
        assert_eq!(host_read(&mut uut, 6), 0x2222);
        assert_eq!(
            cycle(&mut uut, 6, None, Some((7, 0x3333))),
            0x2222,
            "another word's write does not"
        );
    }

    #[test]
    fn a_read_of_the_word_the_host_writes_returns_the_old_word() {
        let mut uut = sram();
        cycle(&mut uut, 2, None, Some((2, 0xAAAA_AAAA_BBBB_BBBB)));
        assert_eq!(
            cycle(&mut uut, 2, Some((false, true, 0xCCCC_CCCC)), None),
            0xAAAA_AAAA_BBBB_BBBB,
            "read before the host's own write"
        );
        assert_eq!(host_read(&mut uut, 2), 0xCCCC_CCCC_BBBB_BBBB);
    }

    #[test]
    fn the_fabric_wins_a_same_word_collision_and_the_read_sees_its_word() {
        let mut uut = sram();
        cycle(&mut uut, 5, None, Some((5, 7)));
        for (low, high) in [(true, true), (true, false), (false, true)] {
            assert_eq!(
                cycle(&mut uut, 5, Some((low, high, 1)), Some((5, 2))),
                2,
                "the read sees the fabric's word (halves {low} {high})"
            );
            assert_eq!(
                host_read(&mut uut, 5),
                2,
                "the host's write is dropped (halves {low} {high})"
            );
        }
        cycle(&mut uut, 5, Some((true, true, 1)), Some((6, 3)));
        assert_eq!(
            host_read(&mut uut, 5),
            0x1_0000_0001,
            "on another word it lands"
        );
        assert_eq!(host_read(&mut uut, 6), 3);
    }
}
