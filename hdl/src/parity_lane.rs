//! One 32-bit lane of the parity engine: P by XOR and Q by Horner's rule in GF(2^8).
//!
//! Beats arrive column by column: for one 64-bit offset of the stripe, the data chunks in
//! *descending* index order (`first` on the highest index, `last` on chunk 0). Horner's rule
//! then needs no multiplier table: `Q <- 2*Q ^ D` per beat gives `sum of 2^i * D_i` after
//! the last one, and `P <- P ^ D` gives the XOR. Each column's P and Q leave through the
//! output port, one result per column.
//!
//! Each lane has its own copy of the flip-flops that steer its wide registers, so a wide
//! engine built from lanes fans each control net out to 32-bit slices only (the engine's wide
//! control nets were what limited its clock). The handshake bookkeeping (filled slots,
//! results owed) is not the lane's: [`crate::parity_control::ParityControl`] keeps one
//! copy for the engine and hands every lane its registered `ready` and `valid`, so each
//! control flip-flop here is one level of logic after the engine's inputs. Timing of the
//! pipeline:
//!
//! * stage A registers the accepted beat (data loads every cycle, no enable);
//! * stage B folds it into the accumulators and, on `last`, files the column's result in
//!   one of two result slots, used in turn;
//! * the consumer reads the slot `read_slot` points at; `ready` and `valid` come from the
//!   control's flip-flops.
//!
//! Every wide register is steered by one flip-flop and no logic: the accumulators by
//! `stage_valid` (and `stage_first` as a data input), each result slot by its own load
//! strobe, registered when the `last` beat is accepted. The lane's slot pointers and load
//! strobes follow the same inputs as the control's and agree with them every cycle (the
//! engine's tests check it).
use rust_hdl::prelude::*;

/// Bits of one lane: narrow enough that each lane's control flip-flops drive few loads
/// (with 64-bit lanes the result-slot select, 256 loads, limited a 512-bit engine to about
/// 214 MHz on the ECP5).
pub const LANE_BITS: usize = 32;

/// A lane-wide constant with `byte` in every byte.
const fn every_byte(byte: u8) -> u64 {
    u64::from_le_bytes([byte; 8]) >> (64 - LANE_BITS)
}

/// One 32-bit P+Q lane, following a [`crate::parity_control::ParityControl`].
#[derive(Debug, LogicBlock)]
pub struct ParityLane {
    /// Clock of every register.
    pub clock: Signal<In, Clock>,
    /// Synchronous reset: drops every beat and result in flight.
    pub reset: Signal<In, Bit>,
    /// A beat is offered.
    pub in_valid: Signal<In, Bit>,
    /// The engine takes an offered beat this cycle (the control's flip-flop).
    pub ready: Signal<In, Bit>,
    /// The beat starts a column (highest data index).
    pub in_first: Signal<In, Bit>,
    /// The beat ends a column (data index 0).
    pub in_last: Signal<In, Bit>,
    /// Compute Q too (RAID-6); when clear Q reads zero (RAID-5, P only).
    pub in_pq: Signal<In, Bit>,
    /// Beat data.
    pub in_data: Signal<In, Bits<LANE_BITS>>,
    /// A column's result is offered (the control's flip-flop).
    pub valid: Signal<In, Bit>,
    /// The consumer takes the offered result this cycle.
    pub out_ready: Signal<In, Bit>,
    /// P of the column.
    pub out_p: Signal<Out, Bits<LANE_BITS>>,
    /// Q of the column (zero in P-only mode).
    pub out_q: Signal<Out, Bits<LANE_BITS>>,
    stage_valid: DFF<Bit>,
    stage_first: DFF<Bit>,
    stage_pq: DFF<Bit>,
    stage_data: DFF<Bits<LANE_BITS>>,
    acc_p: DFF<Bits<LANE_BITS>>,
    acc_q: DFF<Bits<LANE_BITS>>,
    load_slot0: DFF<Bit>,
    load_slot1: DFF<Bit>,
    slot0_p: DFF<Bits<LANE_BITS>>,
    slot0_q: DFF<Bits<LANE_BITS>>,
    slot1_p: DFF<Bits<LANE_BITS>>,
    slot1_q: DFF<Bits<LANE_BITS>>,
    pub(crate) write_slot: DFF<Bit>,
    pub(crate) read_slot: DFF<Bit>,
    accept_last: Signal<Local, Bit>,
    pop: Signal<Local, Bit>,
    q_doubled: Signal<Local, Bits<LANE_BITS>>,
    q_high: Signal<Local, Bits<LANE_BITS>>,
    p_next: Signal<Local, Bits<LANE_BITS>>,
    q_next: Signal<Local, Bits<LANE_BITS>>,
    low_bits_mask: Constant<Bits<LANE_BITS>>,
    high_bits_mask: Constant<Bits<LANE_BITS>>,
    zero: Constant<Bits<LANE_BITS>>,
}

impl Default for ParityLane {
    fn default() -> Self {
        Self {
            clock: Default::default(),
            reset: Default::default(),
            in_valid: Default::default(),
            ready: Default::default(),
            in_first: Default::default(),
            in_last: Default::default(),
            in_pq: Default::default(),
            in_data: Default::default(),
            valid: Default::default(),
            out_ready: Default::default(),
            out_p: Default::default(),
            out_q: Default::default(),
            stage_valid: Default::default(),
            stage_first: Default::default(),
            stage_pq: Default::default(),
            stage_data: Default::default(),
            acc_p: Default::default(),
            acc_q: Default::default(),
            load_slot0: Default::default(),
            load_slot1: Default::default(),
            slot0_p: Default::default(),
            slot0_q: Default::default(),
            slot1_p: Default::default(),
            slot1_q: Default::default(),
            write_slot: Default::default(),
            read_slot: Default::default(),
            accept_last: Default::default(),
            pop: Default::default(),
            q_doubled: Default::default(),
            q_high: Default::default(),
            p_next: Default::default(),
            q_next: Default::default(),
            // Multiplying a byte by 2 shifts it left one bit: the bit shifted in from the
            // byte below must be dropped, and each byte's old top bit selects the reduction.
            low_bits_mask: Constant::new(every_byte(0xFE).into()),
            high_bits_mask: Constant::new(every_byte(0x01).into()),
            zero: Constant::new(0_u64.into()),
        }
    }
}

impl Logic for ParityLane {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self,
            clock,
            stage_valid,
            stage_first,
            stage_pq,
            stage_data,
            acc_p,
            acc_q,
            load_slot0,
            load_slot1,
            slot0_p,
            slot0_q,
            slot1_p,
            slot1_q,
            write_slot,
            read_slot
        );
        // Stage A: data loads every cycle; only its valid bit says whether it counts. A
        // `last` beat also picks the slot its result will go to.
        self.stage_valid.d.next = self.in_valid.val() & self.ready.val();
        self.stage_first.d.next = self.in_first.val();
        self.stage_pq.d.next = self.in_pq.val();
        self.stage_data.d.next = self.in_data.val();
        self.accept_last.next = self.in_valid.val() & self.ready.val() & self.in_last.val();
        self.load_slot0.d.next = self.accept_last.val() & !self.write_slot.q.val();
        self.load_slot1.d.next = self.accept_last.val() & self.write_slot.q.val();
        self.write_slot.d.next = self.write_slot.q.val() ^ self.accept_last.val();

        // Stage B: Horner's rule. 2*Q per byte is (Q << 1) with 0x1d folded in where the
        // byte's top bit fell out (0x11d less the x^8 term: bits 0, 2, 3 and 4).
        self.q_doubled.next = (self.acc_q.q.val() << 1) & self.low_bits_mask.val();
        self.q_high.next = (self.acc_q.q.val() >> 7) & self.high_bits_mask.val();
        self.p_next.next = self.acc_p.q.val() ^ self.stage_data.q.val();
        self.q_next.next = self.q_doubled.val()
            ^ self.q_high.val()
            ^ (self.q_high.val() << 2)
            ^ (self.q_high.val() << 3)
            ^ (self.q_high.val() << 4)
            ^ self.stage_data.q.val();
        if self.stage_first.q.val() {
            self.p_next.next = self.stage_data.q.val();
            self.q_next.next = self.stage_data.q.val();
        }
        if self.stage_valid.q.val() {
            self.acc_p.d.next = self.p_next.val();
            self.acc_q.d.next = self.q_next.val();
        }
        if !self.stage_pq.q.val() {
            self.q_next.next = self.zero.val();
        }
        // Result slots, used in turn by the producer (`write_slot`) and the consumer
        // (`read_slot`); whether a slot is filled is the control's business.
        self.pop.next = self.valid.val() & self.out_ready.val();
        if self.load_slot0.q.val() {
            self.slot0_p.d.next = self.p_next.val();
            self.slot0_q.d.next = self.q_next.val();
        }
        if self.load_slot1.q.val() {
            self.slot1_p.d.next = self.p_next.val();
            self.slot1_q.d.next = self.q_next.val();
        }
        self.read_slot.d.next = self.read_slot.q.val() ^ self.pop.val();
        self.out_p.next = self.slot0_p.q.val();
        self.out_q.next = self.slot0_q.q.val();
        if self.read_slot.q.val() {
            self.out_p.next = self.slot1_p.q.val();
            self.out_q.next = self.slot1_q.q.val();
        }

        if self.reset.val() {
            self.stage_valid.d.next = false;
            self.load_slot0.d.next = false;
            self.load_slot1.d.next = false;
            self.write_slot.d.next = false;
            self.read_slot.d.next = false;
        }
    }
}
