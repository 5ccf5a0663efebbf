//! The parity engine: a `W`-bit P+Q datapath built from [`ParityLane`]s in lockstep.
//!
//! The stream protocol is the lane's (see [`crate::parity_lane`]): beats column by column,
//! data chunks in descending index order, `first` on the highest index and `last` on chunk
//! 0; one P (and Q) result per column. One [`ParityControl`] keeps the handshake (results
//! owed, filled slots) and hands every lane its `ready` and `valid` flip-flops; every lane
//! gets the same control inputs and reset, so all lanes accept and emit together (the
//! tests check every cycle that the lanes' slot pointers agree with the control's). An AND
//! over 16 lanes' flip-flops, then a copy of the handshake logic in every lane (two levels
//! of logic after inputs that cross the whole datapath) were the slowest paths of the
//! 512-bit engine. `W` is a multiple of 64 (two lanes): 64 bytes per beat (512 bits) is
//! the card's [`shared_regs::limits::PARITY_BEAT_BYTES`].
use crate::parity_control::ParityControl;
use crate::parity_lane::{LANE_BITS, ParityLane};
use rust_hdl::prelude::*;

/// A `W`-bit parity engine with valid/ready on both sides.
#[derive(Debug, LogicBlock)]
pub struct ParityEngine<const W: usize> {
    /// Clock of every register.
    pub clock: Signal<In, Clock>,
    /// Synchronous reset: drops every beat and result in flight.
    pub reset: Signal<In, Bit>,
    /// A beat is offered.
    pub in_valid: Signal<In, Bit>,
    /// The engine takes the offered beat this cycle.
    pub in_ready: Signal<Out, Bit>,
    /// The beat starts a column (highest data index).
    pub in_first: Signal<In, Bit>,
    /// The beat ends a column (data index 0).
    pub in_last: Signal<In, Bit>,
    /// Compute Q too (RAID-6); when clear Q reads zero (RAID-5, P only).
    pub in_pq: Signal<In, Bit>,
    /// Beat data.
    pub in_data: Signal<In, Bits<W>>,
    /// A column's result is offered.
    pub out_valid: Signal<Out, Bit>,
    /// The consumer takes the offered result this cycle.
    pub out_ready: Signal<In, Bit>,
    /// P of the column.
    pub out_p: Signal<Out, Bits<W>>,
    /// Q of the column (zero in P-only mode).
    pub out_q: Signal<Out, Bits<W>>,
    control: ParityControl,
    lanes: Vec<ParityLane>,
    lane_p: Signal<Local, Bits<LANE_BITS>>,
    lane_q: Signal<Local, Bits<LANE_BITS>>,
    top_lane_shift: Constant<Bits<16>>,
    zero: Constant<Bits<W>>,
}

// The update below writes the lane width as a literal (rust-hdl cannot put a constant's
// name into the Verilog): it must stay the lane's.
const _: () = assert!(LANE_BITS == 32);

impl<const W: usize> ParityEngine<W> {
    /// Lanes in the datapath.
    pub const LANES: usize = W / LANE_BITS;

    /// An engine of `W` bits; `W` must be a positive multiple of 64.
    pub fn new() -> Self {
        assert!(
            W > 0 && W.is_multiple_of(64),
            "W = {W} is not a multiple of 64"
        );
        assert!(W < 1 << 16, "W = {W} does not fit the lane shift constant");
        let top_lane_shift = u64::try_from(W - LANE_BITS).expect("W fits u64");
        Self {
            clock: Default::default(),
            reset: Default::default(),
            in_valid: Default::default(),
            in_ready: Default::default(),
            in_first: Default::default(),
            in_last: Default::default(),
            in_pq: Default::default(),
            in_data: Default::default(),
            out_valid: Default::default(),
            out_ready: Default::default(),
            out_p: Default::default(),
            out_q: Default::default(),
            control: ParityControl::default(),
            lanes: (0..Self::LANES).map(|_| ParityLane::default()).collect(),
            lane_p: Default::default(),
            lane_q: Default::default(),
            top_lane_shift: Constant::new(top_lane_shift.into()),
            zero: Constant::new(0_u64.into()),
        }
    }
}

impl<const W: usize> Default for ParityEngine<W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const W: usize> Logic for ParityEngine<W> {
    #[hdl_gen]
    fn update(&mut self) {
        // The outputs are assembled lane by lane: each step shifts what is there down one
        // lane and puts the next lane on top, so lane 0 ends in the low bits.
        self.control.clock.next = self.clock.val();
        self.control.reset.next = self.reset.val();
        self.control.in_valid.next = self.in_valid.val();
        self.control.in_last.next = self.in_last.val();
        self.control.out_ready.next = self.out_ready.val();
        self.out_p.next = self.zero.val();
        self.out_q.next = self.zero.val();
        for i in 0..Self::LANES {
            self.lanes[i].clock.next = self.clock.val();
            self.lanes[i].reset.next = self.reset.val();
            self.lanes[i].in_valid.next = self.in_valid.val();
            self.lanes[i].in_first.next = self.in_first.val();
            self.lanes[i].in_last.next = self.in_last.val();
            self.lanes[i].in_pq.next = self.in_pq.val();
            self.lanes[i].in_data.next = self.in_data.val().get_bits::<LANE_BITS>(i * 32);
            self.lanes[i].out_ready.next = self.out_ready.val();
            self.lanes[i].ready.next = self.control.ready.val();
            self.lanes[i].valid.next = self.control.valid.val();
            // (bit_cast cannot name the loop index: go through one-lane locals.)
            self.lane_p.next = self.lanes[i].out_p.val();
            self.lane_q.next = self.lanes[i].out_q.val();
            self.out_p.next = (self.out_p.val() >> 32)
                | (bit_cast::<W, LANE_BITS>(self.lane_p.val()) << self.top_lane_shift.val());
            self.out_q.next = (self.out_q.val() >> 32)
                | (bit_cast::<W, LANE_BITS>(self.lane_q.val()) << self.top_lane_shift.val());
        }
        self.in_ready.next = self.control.ready.val();
        self.out_valid.next = self.control.valid.val();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{bits_from_bytes, bytes_from_bits, rising_edge, settle};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::collections::VecDeque;

    /// One beat of the input stream.
    struct Beat {
        data: Vec<u8>,
        first: bool,
        last: bool,
    }

    /// Expected result of one column.
    #[derive(Debug, PartialEq)]
    struct Column {
        p: Vec<u8>,
        q: Vec<u8>,
    }

    /// A random stripe as beats (column by column, descending chunk index) and the
    /// reference's P and Q cut into columns.
    fn random_stripe(
        rng: &mut ChaCha8Rng,
        beat_bytes: usize,
        pq: bool,
    ) -> (Vec<Beat>, Vec<Column>) {
        let chunks = rng.gen_range(2..=8);
        let columns = rng.gen_range(1..=4);
        let length = columns * beat_bytes;
        let data: Vec<Vec<u8>> = (0..chunks)
            .map(|_| (0..length).map(|_| rng.r#gen()).collect())
            .collect();
        let sources: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let (mut p, mut q) = (vec![0; length], vec![0; length]);
        amf_parity::reference::gen_pq(&sources, &mut p, &mut q);
        if !pq {
            q.fill(0);
        }
        let mut beats = Vec::new();
        for column in 0..columns {
            let range = column * beat_bytes..(column + 1) * beat_bytes;
            for chunk in (0..chunks).rev() {
                beats.push(Beat {
                    data: data[chunk][range.clone()].to_vec(),
                    first: chunk == chunks - 1,
                    last: chunk == 0,
                });
            }
        }
        let expected = (0..columns)
            .map(|column| {
                let range = column * beat_bytes..(column + 1) * beat_bytes;
                Column {
                    p: p[range.clone()].to_vec(),
                    q: q[range].to_vec(),
                }
            })
            .collect();
        (beats, expected)
    }

    /// Streams `stripes` random stripes through a `W`-bit engine with random input gaps and
    /// output stalls; returns the cycles it took. Every column must equal the reference.
    fn run_stripes<const W: usize>(
        seed: u64,
        stripes: usize,
        pq: bool,
        stall_percent: u32,
    ) -> usize {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut beats = VecDeque::new();
        let mut expected = VecDeque::new();
        for _ in 0..stripes {
            let (stripe_beats, columns) = random_stripe(&mut rng, W / 8, pq);
            beats.extend(stripe_beats);
            expected.extend(columns);
        }
        let mut uut = ParityEngine::<W>::new();
        uut.connect_all();
        uut.reset.next = true;
        rising_edge(&mut uut, |u| &mut u.clock);
        uut.reset.next = false;
        let mut cycles = 0;
        while !expected.is_empty() {
            cycles += 1;
            assert!(
                cycles < 100_000,
                "engine stopped with {} columns owed",
                expected.len()
            );
            let offer = !beats.is_empty() && !rng.gen_ratio(stall_percent, 100);
            uut.in_valid.next = offer;
            uut.in_pq.next = pq;
            if let Some(beat) = beats.front() {
                uut.in_data.next = bits_from_bytes::<W>(&beat.data);
                uut.in_first.next = beat.first;
                uut.in_last.next = beat.last;
            }
            uut.out_ready.next = !rng.gen_ratio(stall_percent, 100);
            settle(&mut uut);
            for lane in &uut.lanes {
                assert_eq!(
                    lane.write_slot.q.val(),
                    uut.control.write_slot.q.val(),
                    "lanes out of step"
                );
                assert_eq!(
                    lane.read_slot.q.val(),
                    uut.control.read_slot.q.val(),
                    "lanes out of step"
                );
            }
            if offer && uut.in_ready.val() {
                beats.pop_front();
            }
            if uut.out_valid.val() && uut.out_ready.val() {
                let column = expected.pop_front().expect("a result nobody asked for");
                let got = Column {
                    p: bytes_from_bits(uut.out_p.val()),
                    q: bytes_from_bits(uut.out_q.val()),
                };
                assert_eq!(got, column, "seed {seed}");
            }
            rising_edge(&mut uut, |u| &mut u.clock);
        }
        cycles
    }

    #[test]
    fn p_and_q_equal_the_reference_under_backpressure_at_64_bits() {
        run_stripes::<64>(1, 40, true, 30);
    }

    #[test]
    fn p_and_q_equal_the_reference_under_backpressure_at_512_bits() {
        run_stripes::<512>(2, 12, true, 30);
    }

    #[test]
    fn p_only_mode_gives_p_and_a_zero_q() {
        run_stripes::<128>(3, 20, false, 20);
    }

    #[test]
    fn takes_one_beat_per_cycle_when_nobody_stalls() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let beats: usize = (0..30)
            .map(|_| random_stripe(&mut rng, 8, true).0.len())
            .sum();
        let cycles = run_stripes::<64>(4, 30, true, 0);
        // One cycle for `in_ready` to rise after reset, two of pipeline between the last
        // beat and its result; none lost between beats.
        assert_eq!(cycles, beats + 3);
    }

    #[test]
    #[should_panic(expected = "not a multiple of 64")]
    fn refuses_a_width_that_is_not_whole_lanes() {
        let _ = ParityEngine::<96>::new();
    }
}
