//! The fabric's grant number: a 64-bit counter built as a 4-bit nibble and four 15-bit
//! chunks.
//!
//! A 64-bit increment is a carry chain of 32 `CCU2C` cells on the ECP5, about 2 ns on its
//! own. Its length is not what hurts: yosys's LUT mapper (abc9) aims every path of a
//! module at the slowest one it sees, so one long chain lets it stack four levels of LUTs
//! wherever it likes, and the fabric's arbiter then misses 5 ns. Here the low nibble counts
//! every step, and chunk `k` counts when the nibble and every chunk below `k` are all ones.
//!
//! Only the nibble's "all ones" must be exact every cycle: it is a flip-flop of its own,
//! worked out from the nibble and `step` (one LUT). A chunk changes only when the nibble
//! wraps, and is next asked about when the nibble is all ones again, at least 15 steps (so
//! 15 cycles) later. So its "all ones" may lag: it is worked out in three registered
//! stages (each half of the chunk, the chunk, the chunks below `k`), one LUT each, and is
//! right again three cycles after any change. Every enable is then a LUT of three
//! flip-flops, `step` (which comes from far away) among them, and the count is exact every
//! cycle.
use rust_hdl::prelude::*;

/// Bits of the low nibble, which counts every step.
const NIBBLE_BITS: usize = 4;
/// Bits of each upper chunk.
const CHUNK_BITS: usize = 15;

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
    nibble: DFF<Bits<NIBBLE_BITS>>,
    /// The nibble is all ones (exact).
    nibble_ones: DFF<Bit>,
    chunk: [DFF<Bits<CHUNK_BITS>>; 4],
    /// The low 8 bits of chunk `k` are all ones (lags a cycle).
    low_half_ones: [DFF<Bit>; 3],
    /// The high 7 bits of chunk `k` are all ones (lags a cycle).
    high_half_ones: [DFF<Bit>; 3],
    /// Chunk `k` is all ones (lags two cycles).
    chunk_ones: [DFF<Bit>; 3],
    /// Chunks 0 to `k` are all ones (lags three cycles).
    chunks_below_ones: [DFF<Bit>; 3],
    nibble_one: Constant<Bits<NIBBLE_BITS>>,
    nibble_all: Constant<Bits<NIBBLE_BITS>>,
    nibble_all_but_last: Constant<Bits<NIBBLE_BITS>>,
    nibble_zero: Constant<Bits<NIBBLE_BITS>>,
    chunk_one: Constant<Bits<CHUNK_BITS>>,
    chunk_zero: Constant<Bits<CHUNK_BITS>>,
    low_half: Constant<Bits<CHUNK_BITS>>,
    high_half: Constant<Bits<CHUNK_BITS>>,
    chunk_shift: [Constant<Bits<64>>; 4],
}

impl Default for SequenceCounter {
    fn default() -> Self {
        let chunk_shift = |k: usize| (NIBBLE_BITS + CHUNK_BITS * k) as u64;
        Self {
            clock: Default::default(),
            reset: Default::default(),
            value: Default::default(),
            step: Default::default(),
            nibble: Default::default(),
            nibble_ones: Default::default(),
            chunk: Default::default(),
            low_half_ones: Default::default(),
            high_half_ones: Default::default(),
            chunk_ones: Default::default(),
            chunks_below_ones: Default::default(),
            nibble_one: Constant::new(1_u64.into()),
            nibble_all: Constant::new(0xf_u64.into()),
            nibble_all_but_last: Constant::new(0xe_u64.into()),
            nibble_zero: Constant::new(0_u64.into()),
            chunk_one: Constant::new(1_u64.into()),
            chunk_zero: Constant::new(0_u64.into()),
            low_half: Constant::new(0x00ff_u64.into()),
            high_half: Constant::new(0x7f00_u64.into()),
            chunk_shift: std::array::from_fn(|k| Constant::new(chunk_shift(k).into())),
        }
    }
}

impl Logic for SequenceCounter {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(self, clock, nibble, nibble_ones);
        for k in 0..4 {
            self.chunk[k].clock.next = self.clock.val();
            self.chunk[k].d.next = self.chunk[k].q.val();
        }
        // The top chunk carries into nothing: no flag says whether it is all ones.
        for k in 0..3 {
            self.low_half_ones[k].clock.next = self.clock.val();
            self.high_half_ones[k].clock.next = self.clock.val();
            self.chunk_ones[k].clock.next = self.clock.val();
            self.chunks_below_ones[k].clock.next = self.clock.val();
            self.low_half_ones[k].d.next =
                (self.chunk[k].q.val() & self.low_half.val()) == self.low_half.val();
            self.high_half_ones[k].d.next =
                (self.chunk[k].q.val() & self.high_half.val()) == self.high_half.val();
            self.chunk_ones[k].d.next =
                self.low_half_ones[k].q.val() & self.high_half_ones[k].q.val();
        }
        self.chunks_below_ones[0].d.next = self.chunk_ones[0].q.val();
        self.chunks_below_ones[1].d.next = self.chunk_ones[0].q.val() & self.chunk_ones[1].q.val();
        self.chunks_below_ones[2].d.next =
            self.chunk_ones[0].q.val() & self.chunk_ones[1].q.val() & self.chunk_ones[2].q.val();
        // After this edge the nibble is all ones if it is one short and counts, or all ones
        // and does not.
        self.nibble_ones.d.next = self.nibble.q.val() == self.nibble_all.val();
        if self.step.val() {
            self.nibble.d.next = self.nibble.q.val() + self.nibble_one.val();
            self.nibble_ones.d.next = self.nibble.q.val() == self.nibble_all_but_last.val();
        }
        if self.step.val() & self.nibble_ones.q.val() {
            self.chunk[0].d.next = self.chunk[0].q.val() + self.chunk_one.val();
        }
        if self.step.val() & self.nibble_ones.q.val() & self.chunks_below_ones[0].q.val() {
            self.chunk[1].d.next = self.chunk[1].q.val() + self.chunk_one.val();
        }
        if self.step.val() & self.nibble_ones.q.val() & self.chunks_below_ones[1].q.val() {
            self.chunk[2].d.next = self.chunk[2].q.val() + self.chunk_one.val();
        }
        if self.step.val() & self.nibble_ones.q.val() & self.chunks_below_ones[2].q.val() {
            self.chunk[3].d.next = self.chunk[3].q.val() + self.chunk_one.val();
        }
        if self.reset.val() {
            self.nibble.d.next = self.nibble_zero.val();
            self.nibble_ones.d.next = false;
            for k in 0..4 {
                self.chunk[k].d.next = self.chunk_zero.val();
            }
            for k in 0..3 {
                self.low_half_ones[k].d.next = false;
                self.high_half_ones[k].d.next = false;
                self.chunk_ones[k].d.next = false;
                self.chunks_below_ones[k].d.next = false;
            }
        }
        // Outside any loop: rust-hdl's code generation loses a loop index inside `bit_cast`.
        self.value.next = bit_cast::<64, NIBBLE_BITS>(self.nibble.q.val())
            | (bit_cast::<64, CHUNK_BITS>(self.chunk[0].q.val()) << self.chunk_shift[0].val())
            | (bit_cast::<64, CHUNK_BITS>(self.chunk[1].q.val()) << self.chunk_shift[1].val())
            | (bit_cast::<64, CHUNK_BITS>(self.chunk[2].q.val()) << self.chunk_shift[2].val())
            | (bit_cast::<64, CHUNK_BITS>(self.chunk[3].q.val()) << self.chunk_shift[3].val());
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

    /// Puts `value` in the nibble and chunks, then idles until every lagging flag agrees.
    fn preset(uut: &mut SequenceCounter, value: u64) {
        uut.nibble.q.next = (value & 0xf).into();
        for k in 0..4 {
            let shift = NIBBLE_BITS + CHUNK_BITS * k;
            uut.chunk[k].q.next = ((value >> shift) & 0x7fff).into();
        }
        uut.step.next = false;
        for _ in 0..3 {
            rising_edge(uut, |u| &mut u.clock);
        }
        assert_eq!(uut.value.val().to_u64(), value, "preset");
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
        assert!(
            expected > 0x1_0000,
            "the nibble carried into the first chunk many times"
        );
    }

    /// From a few steps below every boundary between nibble and chunks (and the wrap), and
    /// from far enough below that the chunks' flags rise while counting, stepping every
    /// cycle (the flags' lag at its tightest) and every other cycle (a flag must survive a
    /// cycle without a step).
    #[test]
    fn carries_through_every_chunk_boundary() {
        let boundaries = (0..=4).map(|k| NIBBLE_BITS + CHUNK_BITS * k);
        let below: Vec<u64> = boundaries
            .flat_map(|bits| {
                // Wrapping: 40 below the nibble's boundary is 24 below the 64-bit wrap.
                let boundary = 1_u64.checked_shl(bits as u32).unwrap_or(0);
                [3, 40].map(|below| boundary.wrapping_sub(below))
            })
            .chain([0x1234_ffff_ffff_fffc, 0x0003_ffff_ffff_fffd])
            .collect();
        for &start in &below {
            for idle_every in [None, Some(2)] {
                let mut uut = counter();
                preset(&mut uut, start);
                let mut expected = start;
                for cycle in 0..120_u64 {
                    assert_eq!(
                        uut.value.val().to_u64(),
                        expected,
                        "from {start:#x}, cycle {cycle}, idle every {idle_every:?}"
                    );
                    let step = idle_every.is_none_or(|every| cycle % every == 0);
                    uut.step.next = step;
                    rising_edge(&mut uut, |u| &mut u.clock);
                    expected = expected.wrapping_add(u64::from(step));
                }
            }
        }
    }

    #[test]
    fn reset_returns_to_zero() {
        let mut uut = counter();
        preset(&mut uut, 0xffff_ffff);
        assert!(uut.chunks_below_ones[0].q.val(), "the flags have caught up");
        uut.reset.next = true;
        uut.step.next = true;
        rising_edge(&mut uut, |u| &mut u.clock);
        assert_eq!(uut.value.val().to_u64(), 0);
        // Counting on at once, no flag left over from before the reset.
        uut.reset.next = false;
        for expected in 0..40_u64 {
            assert_eq!(uut.value.val().to_u64(), expected);
            rising_edge(&mut uut, |u| &mut u.clock);
        }
    }
}
