//! The fabric's grant number: a 64-bit counter built as four 16-bit chunks.
//!
//! A 64-bit increment is a carry chain of 32 `CCU2C` cells on the ECP5, about 2 ns on its
//! own. Its length is not what hurts: yosys's LUT mapper (abc9) aims every path of a
//! module at the slowest one it sees, so one long chain lets it stack four levels of LUTs
//! wherever it likes, and the fabric's arbiter then misses 5 ns. Here chunk `k` counts when
//! every chunk below it is all ones, which a registered flag per `k` says ("the low `k`
//! chunks are all ones", worked out a cycle ahead), so no chain is longer than 16 bits, the
//! count is exact every cycle, and `step` (which comes from far away) is the last input of
//! every cone it enters.
use rust_hdl::prelude::*;

/// Counts the cycles `step` is high; reads zero after reset.
#[derive(Debug, LogicBlock)]
pub struct SequenceCounter {
    /// Clock of every register.
    pub clock: Signal<In, Clock>,
    /// Synchronous reset to zero.
    pub reset: Signal<In, Bit>,
    /// The count.
    pub value: Signal<Out, Bits<64>>,
    /// Count one at the next edge.
    pub step: Signal<In, Bit>,
    chunk: [DFF<Bits<16>>; 4],
    /// `low_ones[k]`: chunks 0 to `k` are all ones.
    low_ones: [DFF<Bit>; 3],
    /// `middle_ones[k]`: chunk `k + 1` is all ones (the top chunk carries into nothing).
    middle_ones: [DFF<Bit>; 2],
    lowest_one_short: Signal<Local, Bit>,
    one: Constant<Bits<16>>,
    ones: Constant<Bits<16>>,
    ones_but_last: Constant<Bits<16>>,
    zero: Constant<Bits<16>>,
    chunk_shift: [Constant<Bits<64>>; 3],
}

impl Default for SequenceCounter {
    fn default() -> Self {
        Self {
            clock: Default::default(),
            reset: Default::default(),
            value: Default::default(),
            step: Default::default(),
            chunk: Default::default(),
            low_ones: Default::default(),
            middle_ones: Default::default(),
            lowest_one_short: Default::default(),
            one: Constant::new(1_u64.into()),
            ones: Constant::new(0xffff_u64.into()),
            ones_but_last: Constant::new(0xfffe_u64.into()),
            zero: Constant::new(0_u64.into()),
            chunk_shift: std::array::from_fn(|k| Constant::new((16 * (k as u64 + 1)).into())),
        }
    }
}

impl Logic for SequenceCounter {
    #[hdl_gen]
    fn update(&mut self) {
        for k in 0..4 {
            self.chunk[k].clock.next = self.clock.val();
            self.chunk[k].d.next = self.chunk[k].q.val();
        }
        for k in 0..3 {
            self.low_ones[k].clock.next = self.clock.val();
            self.low_ones[k].d.next = self.low_ones[k].q.val();
        }
        for k in 0..2 {
            self.middle_ones[k].clock.next = self.clock.val();
            self.middle_ones[k].d.next = self.middle_ones[k].q.val();
        }
        if self.step.val() {
            self.chunk[0].d.next = self.chunk[0].q.val() + self.one.val();
        }
        if self.step.val() & self.low_ones[0].q.val() {
            self.chunk[1].d.next = self.chunk[1].q.val() + self.one.val();
        }
        if self.step.val() & self.low_ones[1].q.val() {
            self.chunk[2].d.next = self.chunk[2].q.val() + self.one.val();
        }
        if self.step.val() & self.low_ones[2].q.val() {
            self.chunk[3].d.next = self.chunk[3].q.val() + self.one.val();
        }
        // After a step, the low chunks are all ones if they were one short of it: chunk 0
        // one short and the middle chunks all ones.
        self.lowest_one_short.next = self.chunk[0].q.val() == self.ones_but_last.val();
        if self.step.val() {
            self.low_ones[0].d.next = self.lowest_one_short.val();
            self.low_ones[1].d.next = self.lowest_one_short.val() & self.middle_ones[0].q.val();
            self.low_ones[2].d.next = self.lowest_one_short.val()
                & self.middle_ones[0].q.val()
                & self.middle_ones[1].q.val();
        }
        // A middle chunk is all ones after this edge if it is one short and counts, or all
        // ones and does not.
        self.middle_ones[0].d.next = self.chunk[1].q.val() == self.ones.val();
        if self.step.val() & self.low_ones[0].q.val() {
            self.middle_ones[0].d.next = self.chunk[1].q.val() == self.ones_but_last.val();
        }
        self.middle_ones[1].d.next = self.chunk[2].q.val() == self.ones.val();
        if self.step.val() & self.low_ones[1].q.val() {
            self.middle_ones[1].d.next = self.chunk[2].q.val() == self.ones_but_last.val();
        }
        if self.reset.val() {
            for k in 0..4 {
                self.chunk[k].d.next = self.zero.val();
            }
            for k in 0..3 {
                self.low_ones[k].d.next = false;
            }
            for k in 0..2 {
                self.middle_ones[k].d.next = false;
            }
        }
        // Outside any loop: rust-hdl's code generation loses a loop index inside `bit_cast`.
        self.value.next = bit_cast::<64, 16>(self.chunk[0].q.val())
            | (bit_cast::<64, 16>(self.chunk[1].q.val()) << self.chunk_shift[0].val())
            | (bit_cast::<64, 16>(self.chunk[2].q.val()) << self.chunk_shift[1].val())
            | (bit_cast::<64, 16>(self.chunk[3].q.val()) << self.chunk_shift[2].val());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::rising_edge;

    fn counter() -> SequenceCounter {
        let mut uut = SequenceCounter::default();
        uut.connect_all();
        uut.reset.next = true;
        rising_edge(&mut uut, |u| &mut u.clock);
        uut.reset.next = false;
        uut
    }

    /// Puts `value` in the chunks and their flags, as counting up to it would have.
    fn preset(uut: &mut SequenceCounter, value: u64) {
        for k in 0..4 {
            let chunk = (value >> (16 * k)) & 0xffff;
            uut.chunk[k].q.next = chunk.into();
        }
        let ones = |chunks: u32| {
            value & ((1_u128 << (16 * chunks)) - 1) as u64 == ((1_u128 << (16 * chunks)) - 1) as u64
        };
        for k in 0..3 {
            uut.low_ones[k].q.next = ones(k as u32 + 1);
        }
        for k in 0..2 {
            uut.middle_ones[k].q.next = (value >> (16 * (k + 1))) & 0xffff == 0xffff;
        }
        crate::sim::settle(uut);
    }

    #[test]
    fn counts_every_step_and_holds_otherwise() {
        let mut uut = counter();
        let mut expected = 0_u64;
        for cycle in 0..80_000_u64 {
            assert_eq!(uut.value.val().to_u64(), expected, "cycle {cycle}");
            let step = cycle % 7 != 3;
            uut.step.next = step;
            rising_edge(&mut uut, |u| &mut u.clock);
            expected += u64::from(step);
        }
        assert!(expected > 0x1_0000, "the first chunk carried");
    }

    #[test]
    fn carries_through_every_chunk_boundary() {
        for start in [
            0xffff_u64 - 3,
            0xffff_ffff - 3,
            0xffff_ffff_ffff - 3,
            0x1234_ffff_ffff_fffc,
            u64::MAX - 3,
        ] {
            let mut uut = counter();
            preset(&mut uut, start);
            for step in 0..8_u64 {
                assert_eq!(
                    uut.value.val().to_u64(),
                    start.wrapping_add(step.div_ceil(2)),
                    "from {start:#x}, step {step}"
                );
                // Every other cycle idle: a flag must survive a cycle without a step.
                uut.step.next = step % 2 == 0;
                rising_edge(&mut uut, |u| &mut u.clock);
            }
        }
    }

    #[test]
    fn reset_returns_to_zero() {
        let mut uut = counter();
        preset(&mut uut, 0xffff_ffff);
        uut.reset.next = true;
        uut.step.next = true;
        rising_edge(&mut uut, |u| &mut u.clock);
        assert_eq!(uut.value.val().to_u64(), 0);
    }
}
