//! The parity engine's handshake: the one copy of the valid/ready bookkeeping its lanes
//! follow.
//!
//! The stream protocol, the two result slots and the credit that keeps a `last` beat out
//! while no slot is free are the lane's (see [`crate::parity_lane`]); this block keeps
//! the flip-flops that need the whole picture (which slots are filled, how many results
//! are owed) and hands the lanes two of them: `ready` (next to take a beat) and `valid`
//! (a result is offered). A lane then needs only one level of logic after the engine's
//! inputs for each of its own control flip-flops.
//!
//! Why it is not in every lane: `in_ready` and `out_valid` are worked out from
//! `out_ready`, `in_valid` and `in_last` through two levels of logic, and the engine's
//! inputs reach every lane across a 512-bit datapath (about 2 ns of routing on the ECP5),
//! which left a 512-bit engine whose every lane kept its own copy at 229-237 MHz. One
//! copy of that logic sits where the inputs arrive; the lanes take its flip-flops.
use rust_hdl::prelude::*;

/// Result slots: a column's result waits in one while the next column accumulates.
const RESULT_SLOTS: u64 = 2;

/// The handshake of a parity engine: valid/ready on both sides, two result slots.
#[derive(Debug, LogicBlock)]
pub struct ParityControl {
    /// Clock of every register.
    pub clock: Signal<In, Clock>,
    /// Synchronous reset: drops every beat and result in flight.
    pub reset: Signal<In, Bit>,
    /// A beat is offered.
    pub in_valid: Signal<In, Bit>,
    /// The offered beat ends a column.
    pub in_last: Signal<In, Bit>,
    /// The consumer takes the offered result this cycle.
    pub out_ready: Signal<In, Bit>,
    /// The engine takes an offered beat this cycle (a flip-flop).
    pub ready: Signal<Out, Bit>,
    /// A column's result is offered (a flip-flop).
    pub valid: Signal<Out, Bit>,
    load_slot0: DFF<Bit>,
    load_slot1: DFF<Bit>,
    filled_slot0: DFF<Bit>,
    filled_slot1: DFF<Bit>,
    pub(crate) write_slot: DFF<Bit>,
    pub(crate) read_slot: DFF<Bit>,
    valid_reg: DFF<Bit>,
    owed: DFF<Bits<2>>,
    ready_reg: DFF<Bit>,
    accept_last: Signal<Local, Bit>,
    pop: Signal<Local, Bit>,
    filled0_next: Signal<Local, Bit>,
    filled1_next: Signal<Local, Bit>,
    read_next: Signal<Local, Bit>,
    owed_next: Signal<Local, Bits<2>>,
    result_slots: Constant<Bits<2>>,
    one_result: Constant<Bits<2>>,
    no_results: Constant<Bits<2>>,
}

impl Default for ParityControl {
    fn default() -> Self {
        Self {
            clock: Default::default(),
            reset: Default::default(),
            in_valid: Default::default(),
            in_last: Default::default(),
            out_ready: Default::default(),
            ready: Default::default(),
            valid: Default::default(),
            load_slot0: Default::default(),
            load_slot1: Default::default(),
            filled_slot0: Default::default(),
            filled_slot1: Default::default(),
            write_slot: Default::default(),
            read_slot: Default::default(),
            valid_reg: Default::default(),
            owed: Default::default(),
            ready_reg: Default::default(),
            accept_last: Default::default(),
            pop: Default::default(),
            filled0_next: Default::default(),
            filled1_next: Default::default(),
            read_next: Default::default(),
            owed_next: Default::default(),
            result_slots: Constant::new(RESULT_SLOTS.into()),
            // Constants rather than literals: rust-hdl writes literals 32 bits wide.
            one_result: Constant::new(1_u64.into()),
            no_results: Constant::new(0_u64.into()),
        }
    }
}

impl Logic for ParityControl {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self,
            clock,
            load_slot0,
            load_slot1,
            filled_slot0,
            filled_slot1,
            write_slot,
            read_slot,
            valid_reg,
            owed,
            ready_reg
        );
        // A `last` beat taken now files its result next cycle, in the slot `write_slot`
        // points at (the lanes keep the same pointer and load strobes).
        self.accept_last.next = self.in_valid.val() & self.ready_reg.q.val() & self.in_last.val();
        self.load_slot0.d.next = self.accept_last.val() & !self.write_slot.q.val();
        self.load_slot1.d.next = self.accept_last.val() & self.write_slot.q.val();
        self.write_slot.d.next = self.write_slot.q.val() ^ self.accept_last.val();

        // Result slots, used in turn by the producer (`write_slot`) and the consumer
        // (`read_slot`). `valid_reg` is next cycle's `valid`, worked out a cycle early so
        // the handshake leaves from a flip-flop.
        self.pop.next = self.valid_reg.q.val() & self.out_ready.val();
        self.filled0_next.next =
            self.filled_slot0.q.val() & !(self.pop.val() & !self.read_slot.q.val());
        self.filled1_next.next =
            self.filled_slot1.q.val() & !(self.pop.val() & self.read_slot.q.val());
        if self.load_slot0.q.val() {
            self.filled0_next.next = true;
        }
        if self.load_slot1.q.val() {
            self.filled1_next.next = true;
        }
        self.read_next.next = self.read_slot.q.val() ^ self.pop.val();
        self.filled_slot0.d.next = self.filled0_next.val();
        self.filled_slot1.d.next = self.filled1_next.val();
        self.read_slot.d.next = self.read_next.val();
        self.valid_reg.d.next = self.filled0_next.val();
        if self.read_next.val() {
            self.valid_reg.d.next = self.filled1_next.val();
        }

        // Credit: a `last` beat is taken only while a slot is free for its result.
        self.owed_next.next = self.owed.q.val();
        if self.accept_last.val() {
            self.owed_next.next = self.owed_next.val() + self.one_result.val();
        }
        if self.pop.val() {
            self.owed_next.next = self.owed_next.val() - self.one_result.val();
        }
        self.owed.d.next = self.owed_next.val();
        self.ready_reg.d.next = self.owed_next.val() < self.result_slots.val();

        if self.reset.val() {
            self.load_slot0.d.next = false;
            self.load_slot1.d.next = false;
            self.filled_slot0.d.next = false;
            self.filled_slot1.d.next = false;
            self.write_slot.d.next = false;
            self.read_slot.d.next = false;
            self.valid_reg.d.next = false;
            self.owed.d.next = self.no_results.val();
            self.ready_reg.d.next = false;
        }
        self.ready.next = self.ready_reg.q.val();
        self.valid.next = self.valid_reg.q.val();
    }
}
