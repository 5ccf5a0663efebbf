//! A fabric port's receive queue: eight messages, first in first out, the oldest on offer.
//!
//! The fabric pushes at most one message a cycle (from its bus register) and the port pops
//! at most one (valid/ready). The queue never refuses a push: the fabric grants a message
//! only when every member's queue is sure to have room for it when it arrives, counting
//! what is already on its way (see [`crate::broadcast_fabric`]), and reads `fill` (the
//! messages held, as a thermometer) for that. Eight entries leave room for the messages the
//! fabric's pipeline may hold towards one port while its consumer keeps up, so that the
//! worst-case reckoning does not cost throughput.
//!
//! The store is a small memory written at one slot and read at another without a clock
//! (distributed RAM on the FPGAs: `TRELLIS_DPR16X4` on the ECP5), and the offered message
//! sits in flip-flops of its own, loaded from the store whenever the port has taken the
//! last one or none is offered. Built from flip-flops instead, every one of the 1,152
//! stored bits needs its own enable or multiplexer steered by the port's `ready`, a
//! fan-out that alone took most of a 5 ns cycle; here `ready` steers the 144 offered bits
//! only. A pushed message is offered two cycles later.
//!
//! `flush` empties the queue (a port that is not a member holds nothing it could still
//! take) and drops a push in the same cycle. The Verilog is written by hand
//! (as rust-hdl's own RAM is) so that synthesis infers the memory; `update` is its model
//! for rust-hdl's simulator, and the Verilator testbench runs the Verilog.
use rust_hdl::prelude::*;

/// Messages the queue holds, the one on offer included (the fabric never grants beyond
/// it; the model asserts so, the Verilog's `fill` would saturate).
pub const DEPTH: usize = 8;

/// One stored message: kind, source, sequence, payload.
type Message = (u8, u8, u64, u64);

/// The receive queue of one fabric port.
#[derive(Debug, Default, LogicBlock)]
pub struct ReceiveQueue {
    /// Clock of every register.
    pub clock: Signal<In, Clock>,
    /// Empty the queue.
    pub flush: Signal<In, Bit>,
    /// Take the message below this cycle.
    pub push: Signal<In, Bit>,
    /// Kind of the pushed message.
    pub push_kind: Signal<In, Bits<8>>,
    /// Sender of the pushed message.
    pub push_source: Signal<In, Bits<8>>,
    /// Grant number of the pushed message.
    pub push_sequence: Signal<In, Bits<64>>,
    /// Payload of the pushed message.
    pub push_payload: Signal<In, Bits<64>>,
    /// A message is offered (a flip-flop).
    pub valid: Signal<Out, Bit>,
    /// The port takes the offered message this cycle.
    pub ready: Signal<In, Bit>,
    /// Kind of the offered message.
    pub out_kind: Signal<Out, Bits<8>>,
    /// Sender of the offered message.
    pub out_source: Signal<Out, Bits<8>>,
    /// Grant number of the offered message.
    pub out_sequence: Signal<Out, Bits<64>>,
    /// Payload of the offered message.
    pub out_payload: Signal<Out, Bits<64>>,
    /// Messages held (in store and on offer) as a thermometer: bit `k` is set while more
    /// than `k` are (flip-flops). A thermometer moves by a shift, one level of logic per
    /// bit, where a count's adder and its zero test took four; "fewer than `k`" is one bit
    /// of it; and counting the offer too keeps the reload of the offer out of it.
    pub fill: Signal<Out, Bits<8>>,
    _store: Store,
}

/// The model's state: what the Verilog keeps in its memory and pointers.
#[derive(Clone, Debug, Default)]
struct Store {
    slots: [Message; DEPTH],
    write_slot: usize,
    read_slot: usize,
    stored: usize,
    offered: bool,
}

impl Logic for ReceiveQueue {
    fn update(&mut self) {
        if !self.clock.pos_edge() {
            return;
        }
        let store = &mut self._store;
        let pop = store.offered && self.ready.val();
        let load = store.stored != 0 && (!store.offered || pop);
        if load {
            let (kind, source, sequence, payload) = store.slots[store.read_slot];
            self.out_kind.next = u64::from(kind).into();
            self.out_source.next = u64::from(source).into();
            self.out_sequence.next = sequence.into();
            self.out_payload.next = payload.into();
            store.read_slot = (store.read_slot + 1) % DEPTH;
        }
        store.offered = load || (store.offered && !pop);
        if self.push.val() {
            store.slots[store.write_slot] = (
                self.push_kind.val().to_u8(),
                self.push_source.val().to_u8(),
                self.push_sequence.val().to_u64(),
                self.push_payload.val().to_u64(),
            );
            store.write_slot = (store.write_slot + 1) % DEPTH;
        }
        if self.flush.val() {
            store.stored = 0;
            store.offered = false;
            store.write_slot = 0;
            store.read_slot = 0;
        } else {
            store.stored = store.stored + usize::from(self.push.val()) - usize::from(load);
        }
        self.valid.next = store.offered;
        let held = store.stored + usize::from(store.offered);
        assert!(held <= DEPTH, "the receive queue overflowed");
        self.fill.next = ((1_u64 << held) - 1).into();
    }

    fn connect(&mut self) {
        self.valid.connect();
        self.out_kind.connect();
        self.out_source.connect();
        self.out_sequence.connect();
        self.out_payload.connect();
        self.fill.connect();
    }

    fn hdl(&self) -> Verilog {
        Verilog::Custom(
            "\
reg [143:0] slots[0:7];
// The pointers start at slot 0 (an FPGA's flip-flops are configured to their initial
// value), as a flush leaves them: a four-state simulator would otherwise carry X through
// both until the first flush.
reg [2:0] write_slot = 3'd0;
reg [2:0] read_slot = 3'd0;
// A message waits in the store (besides the one on offer): a flip-flop of its own, so that
// `load`, which enables the 144 offered bits, is one LUT of flip-flops and the port's ready.
reg stored_any;
wire pop = valid & ready;
wire load = stored_any & (~valid | ready);
// Two or more held, one on offer: a message stays in the store after a load.
wire stored_two = valid ? fill[2] : fill[1];
// The thermometer's next value as one expression: written as a chain of ifs, synthesis
// turned its shift-right case into a reset condition and put a level of logic in front
// of the flip-flops' reset input. It need not see the flush, which overrides it (at the
// flip-flops' reset pins), as it does `valid`, `stored_any` and the pointers.
wire [7:0] fill_next = (push & ~pop) ? {fill[6:0], 1'b1}
    : (pop & ~push) ? {1'b0, fill[7:1]}
    : fill;

always @(posedge clock) begin
    // The slot is written on every push, kept or not: the memory's write enable is then
    // the fabric's bus register itself, with no logic in front of its 36 cells.
    if (push) begin
        slots[write_slot] <= {push_kind, push_source, push_sequence, push_payload};
        write_slot <= write_slot + 3'd1;
    end
    if (load) begin
        {out_kind, out_source, out_sequence, out_payload} <= slots[read_slot];
        read_slot <= read_slot + 3'd1;
    end
    valid <= load | (valid & ~pop);
    fill <= fill_next;
    stored_any <= push | stored_two | (stored_any & ~load);
    if (flush) begin
        fill <= 8'd0;
        valid <= 1'b0;
        stored_any <= 1'b0;
        // Both pointers back to slot 0, whatever the cycle's push and load: a reset from a
        // flip-flop, free at the pointers' set/reset pins, where moving the read pointer to
        // the write pointer put a multiplexer and the flush behind its enable.
        write_slot <= 3'd0;
        read_slot <= 3'd0;
    end
end
"
            .into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{rising_edge, settle};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::collections::VecDeque;

    fn queue() -> ReceiveQueue {
        let mut uut = ReceiveQueue::default();
        uut.connect_all();
        uut.flush.next = true;
        rising_edge(&mut uut, |u| &mut u.clock);
        uut.flush.next = false;
        uut
    }

    fn push(uut: &mut ReceiveQueue, message: Option<Message>) {
        let (kind, source, sequence, payload) = message.unwrap_or_default();
        uut.push.next = message.is_some();
        uut.push_kind.next = u64::from(kind).into();
        uut.push_source.next = u64::from(source).into();
        uut.push_sequence.next = sequence.into();
        uut.push_payload.next = payload.into();
    }

    fn offered(uut: &ReceiveQueue) -> Message {
        (
            uut.out_kind.val().to_u8(),
            uut.out_source.val().to_u8(),
            uut.out_sequence.val().to_u64(),
            uut.out_payload.val().to_u64(),
        )
    }

    /// Random pushes (only while the store has room, as the fabric does) and pops against
    /// a `VecDeque`: order kept, nothing lost, `fill` counts what is held, and a message is
    /// offered at most two cycles after the queue stops being empty.
    #[test]
    fn keeps_order_and_count_under_random_push_and_pop() {
        let mut uut = queue();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut model: VecDeque<Message> = VecDeque::new();
        let mut popped = 0;
        let mut waiting_cycles = 0;
        for cycle in 0..20_000_u64 {
            settle(&mut uut);
            let held = uut.fill.val().to_u8().count_ones() as usize;
            assert_eq!(
                uut.fill.val().to_u8(),
                ((1_u16 << held) - 1) as u8,
                "a thermometer"
            );
            let message = (rng.r#gen(), rng.r#gen(), cycle, rng.r#gen());
            let pushed = (held < DEPTH && rng.gen_ratio(2, 3)).then_some(message);
            push(&mut uut, pushed);
            uut.ready.next = rng.gen_ratio(1, 2);
            settle(&mut uut);
            assert_eq!(held, model.len());
            waiting_cycles = if model.is_empty() || uut.valid.val() {
                0
            } else {
                waiting_cycles + 1
            };
            assert!(waiting_cycles <= 2, "cycle {cycle}: stored but not offered");
            if uut.valid.val() && uut.ready.val() {
                let expected = model.pop_front().expect("offered from an empty queue");
                assert_eq!(offered(&uut), expected, "cycle {cycle}");
                popped += 1;
            }
            model.extend(pushed);
            rising_edge(&mut uut, |u| &mut u.clock);
        }
        assert!(popped > 5_000, "only {popped} messages went through");
    }

    #[test]
    fn holds_depth_then_flush_empties_it() {
        let mut uut = queue();
        for payload in 0..DEPTH as u64 {
            push(&mut uut, Some((1, 2, 3, payload)));
            rising_edge(&mut uut, |u| &mut u.clock);
        }
        push(&mut uut, None);
        settle(&mut uut);
        assert_eq!(uut.fill.val().to_u8().count_ones() as usize, DEPTH);
        assert!(uut.valid.val());
        assert_eq!(offered(&uut), (1, 2, 3, 0), "the first pushed is offered");
        uut.flush.next = true;
        rising_edge(&mut uut, |u| &mut u.clock);
        uut.flush.next = false;
        settle(&mut uut);
        assert!(!uut.valid.val());
        assert_eq!(uut.fill.val().to_u8().count_ones() as usize, 0);
        push(&mut uut, Some((4, 5, 6, 99)));
        rising_edge(&mut uut, |u| &mut u.clock);
        push(&mut uut, None);
        rising_edge(&mut uut, |u| &mut u.clock);
        assert!(uut.valid.val());
        assert_eq!(
            offered(&uut),
            (4, 5, 6, 99),
            "a push after a flush comes first"
        );
    }
}
