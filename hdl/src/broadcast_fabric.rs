//! The broadcast fabric: `N` ports (2..=8), one arbiter, one order.
//!
//! Every message crosses one round-robin arbiter that grants at most one message a cycle,
//! so the grant order *is* the fabric's order, and the guarantees of DESIGN.md follow from
//! it:
//!
//! * **one total order of broadcasts**: a granted message travels down one pipeline into
//!   the receive queue of every destination, so every port sees broadcasts in grant
//!   order; nothing is granted unless every member's queue is sure to have room for it;
//! * **FIFO per sender-receiver pair**: a port's messages are granted in the order it
//!   offers them;
//! * **fairness**: the arbiter starts its search after the last port it granted;
//! * **remote SRAM writes**: a granted `SramWrite` goes out on the target's SRAM write
//!   port instead of its receive queue, and the target then owes the sender a
//!   `SramWriteAck` (payload: the write's sequence) that the arbiter grants only after the
//!   write was presented to the SRAM; a write beyond the SRAM, or to a port that is not a
//!   member, is dropped without an ack;
//! * **port down after its last message**: when a member's link drops, the fabric stops
//!   taking that port's messages, grants the one it already took, then a `MemberDown`
//!   broadcast from it, so the departure is ordered after everything the port sent; a link
//!   that comes up is announced by `MemberUp` the same way, once no acknowledgement of an
//!   earlier card's write can still reach the port.
//!
//! Pipeline (every stage starts and ends at flip-flops; the 200 MHz target on the ECP5
//! leaves about three levels of LUT4 a cycle once routing is paid):
//!
//! 1. **take**: while a port's holding register is free (`tx_ready`, a flip-flop worked out
//!    the cycle before), it follows the port's pins, with the parts of the destination
//!    decoded on the way in (the target one-hot, broadcast, unicast, a write within the
//!    SRAM; stage 2 combines them); an offer then marks it held. Each port's request for the next cycle is registered: what it would
//!    send (an acknowledgement it owes, the message it holds, its departure, its arrival,
//!    one offer flag each) from the state the cycle leaves behind, masked by a registered
//!    "every queue has room" bit;
//! 2. **grant**: the round robin over the registered requests ([`RoundRobinSlot`]). Every
//!    state change the grant makes is one LUT after it. Beside it every port loads its
//!    send registers from its offer flags (granted or not), so the grant reaches none of
//!    the message's 200 bits. A port granted this cycle does not request the next (its
//!    request was worked out before the grant), so a port sends at most every other
//!    cycle, and the fabric grants one message a cycle;
//! 3. **load**: the granted port's send registers (an AND-OR over the one-hot grant), its
//!    SRAM offset from the holding register (which holds still until then), and its
//!    destinations masked by membership, into the bus register;
//! 4. **deliver**: the bus register goes into the destinations' receive queues
//!    ([`crate::receive_queue`]) or onto an SRAM port.
//!
//! The room bit is worked out two cycles ahead, assuming the worst: five messages in
//! flight (a grant in every cycle until the message lands), all of them going to every
//! port, no port taking anything. An eight-message queue makes that reckoning cost nothing
//! while a port keeps up. Inputs that need not be seen in the cycle they change are
//! registered where they enter (a port's link, for membership; the flags that gate a port,
//! `alive` and `tx_ready`, are worked out from the pin into flip-flops of their own) or
//! read a cycle later (an acknowledgement owed from a write that lands now is requested
//! from the next cycle), so no path starts far across the fabric. No carry chain is longer than 16 bits (the grant number is a
//! [`SequenceCounter`], the SRAM range check a mask): yosys's LUT mapper relaxes every path
//! to the slowest one it sees.
//!
//! SRAM writes go one at a time: a target owes at most one acknowledgement. Instead of
//! every write request looking at the whole fabric in the arbiter's cycle, a write token
//! goes round the ports (one port a cycle is asked) while no write or acknowledgement is in
//! flight; only the port holding it may request its write.
//!
//! Messages are single beats (kind, source, target, sequence, one 64-bit payload word, SRAM
//! offset): the frame format of `shared_regs::fabric` reduced to what the arbiter orders;
//! longer payloads are the DMA side's business. `sequence` is the grant number: the
//! position in the total order for broadcasts, and strictly increasing (not consecutive)
//! per sender-receiver pair for the rest.
use crate::receive_queue::ReceiveQueue;
use crate::round_robin::RoundRobinSlot;
use crate::sequence_counter::SequenceCounter;
use rust_hdl::prelude::*;
use shared_regs::fabric::MessageKind;

/// Most ports (the `FABRIC_MEMBERSHIP` bitmap and port numbers are 8 bits wide here).
pub const PORTS_MAX: usize = 8;

/// One port of the fabric, seen from the fabric.
#[derive(Debug, Default, LogicInterface)]
pub struct FabricPort {
    /// The port's link is up (its card is alive).
    pub link_up: Signal<In, Bit>,
    /// The port offers a message.
    pub tx_valid: Signal<In, Bit>,
    /// The fabric takes the offered message this cycle (a flip-flop; low until the second
    /// cycle after the port's `MemberUp` is granted; it falls the cycle after `link_up`
    /// does, so a message offered in the cycle the link falls is taken as the card's last;
    /// meaningless while `reset` is high: a port offers nothing then, its card being in
    /// reset with the fabric).
    pub tx_ready: Signal<Out, Bit>,
    /// A `MessageKind`: `Broadcast`, `Unicast` or `SramWrite` (others are the fabric's).
    pub tx_kind: Signal<In, Bits<8>>,
    /// Target port (ignored for broadcasts).
    pub tx_target: Signal<In, Bits<8>>,
    /// Payload word.
    pub tx_payload: Signal<In, Bits<64>>,
    /// Target SRAM byte offset (`SramWrite` only, 8-byte aligned).
    pub tx_sram_offset: Signal<In, Bits<32>>,
    /// A message is delivered.
    pub rx_valid: Signal<Out, Bit>,
    /// The port takes the delivered message this cycle.
    pub rx_ready: Signal<In, Bit>,
    /// Kind of the delivered message.
    pub rx_kind: Signal<Out, Bits<8>>,
    /// Sender of the delivered message.
    pub rx_source: Signal<Out, Bits<8>>,
    /// Grant number of the delivered message.
    pub rx_sequence: Signal<Out, Bits<64>>,
    /// Payload word of the delivered message.
    pub rx_payload: Signal<Out, Bits<64>>,
    /// A remote write into this port's SRAM, for one cycle.
    pub sram_write: Signal<Out, Bit>,
    /// Its byte offset.
    pub sram_offset: Signal<Out, Bits<32>>,
    /// Its data.
    pub sram_data: Signal<Out, Bits<64>>,
}

/// The fabric of `N` ports.
#[derive(Debug, LogicBlock)]
pub struct BroadcastFabric<const N: usize> {
    /// Clock of every register.
    pub clock: Signal<In, Clock>,
    /// Synchronous reset: no members, nothing in flight, sequence zero.
    pub reset: Signal<In, Bit>,
    /// The ports.
    pub ports: [FabricPort; N],
    /// Bit `p` set while port `p` is a member (for `FABRIC_MEMBERSHIP`).
    pub membership: Signal<Out, Bits<32>>,
    queue: [ReceiveQueue; N],
    dropping: [DFF<Bit>; N],
    turn: [RoundRobinSlot<N>; N],
    // Stage 1: the port's link, what it holds and owes, and what it requests next.
    link: [DFF<Bit>; N],
    alive: [DFF<Bit>; N],
    ready: [DFF<Bit>; N],
    held_valid: [DFF<Bit>; N],
    held_kind: [DFF<Bits<8>>; N],
    held_payload: [DFF<Bits<64>>; N],
    held_offset: [DFF<Bits<32>>; N],
    held_is_write: [DFF<Bit>; N],
    held_waiting: [DFF<Bit>; N],
    /// Holds a message it may send now: held and not waiting for the write token.
    held_sendable: [DFF<Bit>; N],
    /// The port the held message names, one-hot (none for a number beyond the ports).
    held_target: [DFF<Bits<32>>; N],
    held_is_broadcast: [DFF<Bit>; N],
    held_is_unicast: [DFF<Bit>; N],
    /// The held message is a write within the SRAM.
    held_write_lands: [DFF<Bit>; N],
    ack_pending: [DFF<Bit>; N],
    /// Owes an acknowledgement it may still send: `ack_pending` and `alive`.
    owes_ack: [DFF<Bit>; N],
    ack_to: [DFF<Bits<32>>; N],
    ack_sequence: [DFF<Bits<64>>; N],
    member: [DFF<Bit>; N],
    down_pending: [DFF<Bit>; N],
    may_join: [DFF<Bit>; N],
    /// May ask to arrive: not a member, the link up and `may_join`.
    joinable: [DFF<Bit>; N],
    write_owner: [DFF<Bit>; N],
    request: [DFF<Bit>; N],
    offers_ack: [DFF<Bit>; N],
    offers_held: [DFF<Bit>; N],
    offers_down: [DFF<Bit>; N],
    offers_up: [DFF<Bit>; N],
    write_turn: DFF<Bits<32>>,
    writes_idle: DFF<Bit>,
    all_room: DFF<Bit>,
    // Stage 2: the grant, and each port's message as the bus would take it.
    last_port: DFF<Bits<8>>,
    granted: [DFF<Bit>; N],
    send_kind: [DFF<Bits<8>>; N],
    send_payload: [DFF<Bits<64>>; N],
    send_deliver: [DFF<Bits<32>>; N],
    send_write_to: [DFF<Bits<32>>; N],
    send_is_write: [DFF<Bit>; N],
    loading: DFF<Bit>,
    grant_count: SequenceCounter,
    // Stage 3: the bus register.
    bus_kind: DFF<Bits<8>>,
    bus_source: DFF<Bits<8>>,
    bus_source_bit: DFF<Bits<32>>,
    bus_sequence: DFF<Bits<64>>,
    bus_payload: DFF<Bits<64>>,
    bus_offset: DFF<Bits<32>>,
    bus_is_write: DFF<Bit>,
    bus_deliver: [DFF<Bit>; N],
    bus_write_to: [DFF<Bit>; N],
    // Combinational.
    take: [Signal<Local, Bit>; N],
    take_is_write: [Signal<Local, Bit>; N],
    take_may_write: [Signal<Local, Bit>; N],
    take_to: [Signal<Local, Bits<32>>; N],
    down_next: [Signal<Local, Bit>; N],
    holds_next: [Signal<Local, Bit>; N],
    sendable_next: [Signal<Local, Bit>; N],
    other_next: [Signal<Local, Bit>; N],
    token: [Signal<Local, Bit>; N],
    grant: [Signal<Local, Bit>; N],
    broadcast_mask: [Signal<Local, Bits<32>>; N],
    unicast_mask: [Signal<Local, Bits<32>>; N],
    write_mask: [Signal<Local, Bits<32>>; N],
    ack_mask: [Signal<Local, Bits<64>>; N],
    held_mask: [Signal<Local, Bits<64>>; N],
    down_kind: [Signal<Local, Bits<8>>; N],
    up_kind: [Signal<Local, Bits<8>>; N],
    any_owner: Signal<Local, Bit>,
    any_ack_pending: Signal<Local, Bit>,
    any_token: Signal<Local, Bit>,
    ack_landing: [Signal<Local, Bit>; N],
    stays: [Signal<Local, Bit>; N],
    requests: Signal<Local, Bits<32>>,
    all_room_next: Signal<Local, Bit>,
    chosen_kind: Signal<Local, Bits<8>>,
    chosen_source: Signal<Local, Bits<8>>,
    chosen_source_bit: Signal<Local, Bits<32>>,
    chosen_payload: Signal<Local, Bits<64>>,
    chosen_offset: Signal<Local, Bits<32>>,
    chosen_deliver: Signal<Local, Bits<32>>,
    chosen_write_to: Signal<Local, Bits<32>>,
    chosen_is_write: Signal<Local, Bit>,
    // Constants.
    port_index: [Constant<Bits<8>>; N],
    port_bit: [Constant<Bits<32>>; N],
    last_port_index: Constant<Bits<8>>,
    all_ports: Constant<Bits<32>>,
    first_port_bit: Constant<Bits<32>>,
    wrap_shift: Constant<Bits<32>>,
    kind_broadcast: Constant<Bits<8>>,
    kind_unicast: Constant<Bits<8>>,
    kind_sram_write: Constant<Bits<8>>,
    write_kind_bits: Constant<Bits<8>>,
    kind_sram_write_ack: Constant<Bits<8>>,
    kind_member_down: Constant<Bits<8>>,
    kind_member_up: Constant<Bits<8>>,
    beyond_sram: Constant<Bits<32>>,
    room_limit: Constant<Bits<8>>,
    zero_8: Constant<Bits<8>>,
    zero_32: Constant<Bits<32>>,
    zero_64: Constant<Bits<64>>,
    ones_64: Constant<Bits<64>>,
}

fn kind(kind: MessageKind) -> Constant<Bits<8>> {
    Constant::new(u64::from(kind as u8).into())
}

/// Messages that may land in a queue after its `fill` is read and before a grant that
/// reading allows has landed: one in the bus register, one being loaded, this cycle's
/// grant, the next, and the one the room is for.
const IN_FLIGHT_MAX: usize = 5;

/// The bit of a queue's `fill` thermometer (bit `k` set while it holds more than `k`) that
/// must be clear for a grant two cycles later: the queue must hold at most
/// `DEPTH - IN_FLIGHT_MAX` messages. Assuming every message in flight is for it costs
/// nothing while its port keeps up (it then holds two or three) and keeps the check to one
/// bit per queue.
fn room_limit() -> Constant<Bits<8>> {
    let limit = crate::receive_queue::DEPTH - IN_FLIGHT_MAX;
    Constant::new((1_u64 << limit).into())
}

/// The low bits of `SramWrite`'s kind, which neither other kind a port may send has.
const WRITE_KIND_BITS: u8 = MessageKind::SramWrite as u8 & 0b11;
const _: () = assert!(
    MessageKind::Broadcast as u8 & 0b11 != WRITE_KIND_BITS
        && MessageKind::Unicast as u8 & 0b11 != WRITE_KIND_BITS
        && WRITE_KIND_BITS == 0b11
);

fn per_port<T: Default, const N: usize>() -> [T; N] {
    std::array::from_fn(|_| T::default())
}

impl<const N: usize> BroadcastFabric<N> {
    /// A fabric of `N` ports whose cards each have `sram_bytes` of SRAM.
    pub fn new(sram_bytes: u32) -> Self {
        assert!(
            (2..=PORTS_MAX).contains(&N),
            "{N} ports: the fabric takes 2 to {PORTS_MAX}"
        );
        // A power of two, so that the range check is a mask rather than a comparator (a
        // carry chain; see [`SequenceCounter`] for why the fabric avoids long ones).
        assert!(
            sram_bytes.is_power_of_two() && sram_bytes >= 8,
            "SRAM of {sram_bytes} bytes is not a power of two of whole words"
        );
        let index = |port: usize| u64::try_from(port).expect("port fits u64");
        Self {
            clock: Default::default(),
            reset: Default::default(),
            ports: per_port(),
            membership: Default::default(),
            queue: per_port(),
            dropping: per_port(),
            turn: std::array::from_fn(RoundRobinSlot::new),
            link: per_port(),
            alive: per_port(),
            ready: per_port(),
            held_valid: per_port(),
            held_kind: per_port(),
            held_payload: per_port(),
            held_offset: per_port(),
            held_is_write: per_port(),
            held_waiting: per_port(),
            held_sendable: per_port(),
            held_target: per_port(),
            held_is_broadcast: per_port(),
            held_is_unicast: per_port(),
            held_write_lands: per_port(),
            ack_pending: per_port(),
            owes_ack: per_port(),
            ack_to: per_port(),
            ack_sequence: per_port(),
            member: per_port(),
            down_pending: per_port(),
            may_join: per_port(),
            joinable: per_port(),
            write_owner: per_port(),
            request: per_port(),
            offers_ack: per_port(),
            offers_held: per_port(),
            offers_down: per_port(),
            offers_up: per_port(),
            write_turn: Default::default(),
            writes_idle: Default::default(),
            all_room: Default::default(),
            last_port: Default::default(),
            granted: per_port(),
            send_kind: per_port(),
            send_payload: per_port(),
            send_deliver: per_port(),
            send_write_to: per_port(),
            send_is_write: per_port(),
            loading: Default::default(),
            grant_count: Default::default(),
            bus_kind: Default::default(),
            bus_source: Default::default(),
            bus_source_bit: Default::default(),
            bus_sequence: Default::default(),
            bus_payload: Default::default(),
            bus_offset: Default::default(),
            bus_is_write: Default::default(),
            bus_deliver: per_port(),
            bus_write_to: per_port(),
            take: per_port(),
            take_is_write: per_port(),
            take_may_write: per_port(),
            take_to: per_port(),
            down_next: per_port(),
            holds_next: per_port(),
            sendable_next: per_port(),
            other_next: per_port(),
            token: per_port(),
            grant: per_port(),
            broadcast_mask: per_port(),
            unicast_mask: per_port(),
            write_mask: per_port(),
            ack_mask: per_port(),
            held_mask: per_port(),
            down_kind: per_port(),
            up_kind: per_port(),
            any_owner: Default::default(),
            any_ack_pending: Default::default(),
            any_token: Default::default(),
            ack_landing: per_port(),
            stays: per_port(),
            requests: Default::default(),
            all_room_next: Default::default(),
            chosen_kind: Default::default(),
            chosen_source: Default::default(),
            chosen_source_bit: Default::default(),
            chosen_payload: Default::default(),
            chosen_offset: Default::default(),
            chosen_deliver: Default::default(),
            chosen_write_to: Default::default(),
            chosen_is_write: Default::default(),
            port_index: std::array::from_fn(|port| Constant::new(index(port).into())),
            port_bit: std::array::from_fn(|port| Constant::new((1_u64 << port).into())),
            last_port_index: Constant::new(index(N - 1).into()),
            all_ports: Constant::new(((1_u64 << N) - 1).into()),
            first_port_bit: Constant::new(1_u64.into()),
            wrap_shift: Constant::new(index(N - 1).into()),
            kind_broadcast: kind(MessageKind::Broadcast),
            kind_unicast: kind(MessageKind::Unicast),
            kind_sram_write: kind(MessageKind::SramWrite),
            write_kind_bits: Constant::new(u64::from(WRITE_KIND_BITS).into()),
            kind_sram_write_ack: kind(MessageKind::SramWriteAck),
            kind_member_down: kind(MessageKind::MemberDown),
            kind_member_up: kind(MessageKind::MemberUp),
            beyond_sram: Constant::new(u64::from(!(sram_bytes - 1)).into()),
            room_limit: room_limit(),
            zero_8: Constant::new(0_u64.into()),
            zero_32: Constant::new(0_u64.into()),
            zero_64: Constant::new(0_u64.into()),
            ones_64: Constant::new(u64::MAX.into()),
        }
    }
}

impl<const N: usize> Logic for BroadcastFabric<N> {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self,
            clock,
            write_turn,
            writes_idle,
            all_room,
            loading,
            last_port,
            bus_kind,
            bus_source,
            bus_source_bit,
            bus_sequence,
            bus_payload,
            bus_offset,
            bus_is_write
        );
        // Every per-port register holds its value unless told otherwise.
        self.any_owner.next = false;
        self.any_ack_pending.next = false;
        self.membership.next = self.zero_32.val();
        for i in 0..N {
            self.link[i].clock.next = self.clock.val();
            self.alive[i].clock.next = self.clock.val();
            self.ready[i].clock.next = self.clock.val();
            self.held_valid[i].clock.next = self.clock.val();
            self.held_kind[i].clock.next = self.clock.val();
            self.held_kind[i].d.next = self.held_kind[i].q.val();
            self.held_payload[i].clock.next = self.clock.val();
            self.held_payload[i].d.next = self.held_payload[i].q.val();
            self.held_offset[i].clock.next = self.clock.val();
            self.held_offset[i].d.next = self.held_offset[i].q.val();
            self.held_is_write[i].clock.next = self.clock.val();
            self.held_is_write[i].d.next = self.held_is_write[i].q.val();
            self.held_waiting[i].clock.next = self.clock.val();
            self.held_sendable[i].clock.next = self.clock.val();
            self.held_target[i].clock.next = self.clock.val();
            self.held_target[i].d.next = self.held_target[i].q.val();
            self.held_is_broadcast[i].clock.next = self.clock.val();
            self.held_is_broadcast[i].d.next = self.held_is_broadcast[i].q.val();
            self.held_is_unicast[i].clock.next = self.clock.val();
            self.held_is_unicast[i].d.next = self.held_is_unicast[i].q.val();
            self.held_write_lands[i].clock.next = self.clock.val();
            self.held_write_lands[i].d.next = self.held_write_lands[i].q.val();
            self.ack_pending[i].clock.next = self.clock.val();
            self.owes_ack[i].clock.next = self.clock.val();
            self.ack_to[i].clock.next = self.clock.val();
            self.ack_to[i].d.next = self.ack_to[i].q.val();
            self.ack_sequence[i].clock.next = self.clock.val();
            self.ack_sequence[i].d.next = self.ack_sequence[i].q.val();
            self.member[i].clock.next = self.clock.val();
            self.down_pending[i].clock.next = self.clock.val();
            self.may_join[i].clock.next = self.clock.val();
            self.joinable[i].clock.next = self.clock.val();
            self.write_owner[i].clock.next = self.clock.val();
            self.request[i].clock.next = self.clock.val();
            self.offers_ack[i].clock.next = self.clock.val();
            self.offers_held[i].clock.next = self.clock.val();
            self.offers_down[i].clock.next = self.clock.val();
            self.offers_up[i].clock.next = self.clock.val();
            self.granted[i].clock.next = self.clock.val();
            self.send_kind[i].clock.next = self.clock.val();
            self.send_payload[i].clock.next = self.clock.val();
            self.send_deliver[i].clock.next = self.clock.val();
            self.send_write_to[i].clock.next = self.clock.val();
            self.send_is_write[i].clock.next = self.clock.val();
            self.bus_deliver[i].clock.next = self.clock.val();
            self.bus_write_to[i].clock.next = self.clock.val();
            self.queue[i].clock.next = self.clock.val();
            self.dropping[i].clock.next = self.clock.val();
            self.any_owner.next = self.any_owner.val() | self.write_owner[i].q.val();
            self.any_ack_pending.next = self.any_ack_pending.val() | self.ack_pending[i].q.val();
            if self.member[i].q.val() {
                self.membership.next = self.membership.val() | self.port_bit[i].val();
            }
        }

        // Stage 1, take: a port's offer into its empty holding register, while the port is
        // a member and alive, its destinations decoded from the pins on the way in. A kind
        // a port may not send gets no destinations (it is taken and dropped, so no port can
        // forge the fabric's own messages).
        for i in 0..N {
            // The port's link, registered where it enters, and two flags that the port's
            // logic reads instead of the link and its departure, one flip-flop each, worked
            // out from the link pin itself so that they fall in the edge after it does:
            // * alive: the link is up and no departure of it is pending (a cycle late after
            //   a departure is granted, never late after the link drops). A link that drops
            //   and comes back before its `MemberDown` is a new card, which sends nothing,
            //   is acknowledged nothing and hears nothing until then;
            // * ready (`tx_ready`): alive, a member, and the holding register empty once
            //   this cycle's take and grant are done (see stage 2).
            self.down_next[i].next =
                self.down_pending[i].q.val() | (self.member[i].q.val() & !self.link[i].q.val());
            self.link[i].d.next = self.ports[i].link_up.val();
            self.alive[i].d.next = self.ports[i].link_up.val() & !self.down_next[i].val();
            self.ports[i].tx_ready.next = self.ready[i].q.val();
            self.take[i].next = self.ports[i].tx_valid.val() & self.ports[i].tx_ready.val();
            self.take_is_write[i].next = self.ports[i].tx_kind.val() == self.kind_sram_write.val();
            // A message taken this cycle is told from a write by two bits of its kind, not
            // eight: a superset of writes (no other kind a port may send shares them), so a
            // write never goes without the token. Another kind with those bits (forged,
            // dropped anyway) waits for the token like a write and holds it until granted:
            // it costs the other ports' writes one token round, which only a misbehaving
            // card causes.
            self.take_may_write[i].next = (self.ports[i].tx_kind.val()
                & self.write_kind_bits.val())
                == self.write_kind_bits.val();
            self.take_to[i].next = self.zero_32.val();
            for j in 0..N {
                if self.ports[i].tx_target.val() == self.port_index[j].val() {
                    self.take_to[i].next = self.take_to[i].val() | self.port_bit[j].val();
                }
            }
            // The holding register follows the port's pins while it is free (`tx_ready`, a
            // flip-flop, is its enable; `held_valid` says whether it holds a message): the
            // take itself then reaches a handful of flip-flops, not 150.
            if self.ready[i].q.val() {
                self.held_kind[i].d.next = self.ports[i].tx_kind.val();
                self.held_payload[i].d.next = self.ports[i].tx_payload.val();
                self.held_offset[i].d.next = self.ports[i].tx_sram_offset.val();
                // What decides where the message goes, decoded from the pins in parts
                // that need not wait for one another; the send registers combine them
                // (stage 2).
                self.held_is_write[i].d.next = self.take_is_write[i].val();
                self.held_target[i].d.next = self.take_to[i].val();
                self.held_is_broadcast[i].d.next =
                    self.ports[i].tx_kind.val() == self.kind_broadcast.val();
                self.held_is_unicast[i].d.next =
                    self.ports[i].tx_kind.val() == self.kind_unicast.val();
                self.held_write_lands[i].d.next = self.take_is_write[i].val()
                    & !(self.ports[i].tx_sram_offset.val() & self.beyond_sram.val()).any();
            }

            // What the port is left with if it is not granted this cycle, and so what it
            // offers next, first to last: an acknowledgement it owes (void once it is not
            // alive), the message it holds (a write only with the token), its departure
            // (once nothing is held), its arrival. An acknowledgement owed from a write
            // landing this cycle is offered from the next: the bus register's write bits
            // sit across the fabric from the port. Only a member holds a message, and a
            // member with a departure pending takes none.
            self.holds_next[i].next = self.held_valid[i].q.val() | self.take[i].val();
            self.offers_ack[i].d.next = self.owes_ack[i].q.val();
            self.offers_held[i].d.next = !self.owes_ack[i].q.val() & self.holds_next[i].val();
            self.offers_down[i].d.next = !self.owes_ack[i].q.val()
                & !self.holds_next[i].val()
                & self.down_pending[i].q.val();
            self.offers_up[i].d.next = !self.owes_ack[i].q.val() & self.joinable[i].q.val();
            // A card joins only once no write of an earlier card on the port can still be
            // acknowledged: once writes have been idle (`writes_idle`: no write or owed
            // acknowledgement anywhere) since the port stopped being a member. An owed
            // acknowledgement is granted by then, and dropped, the port being no member;
            // otherwise a quick return could beat it and the new card would hear it.
            self.may_join[i].d.next =
                !self.member[i].q.val() & (self.may_join[i].q.val() | self.writes_idle.q.val());
            // The request in two parts of five and four inputs, ORed only in the flip-flop's own
            // LUT with the grant and the room: the message held (a write once it has the
            // token), and everything else. `held_sendable` and `joinable` are flip-flops
            // kept equal to the products they stand for, so that neither part needs a LUT
            // of its own in front.
            self.sendable_next[i].next = self.held_sendable[i].q.val()
                | (self.take[i].val() & !self.take_may_write[i].val());
            self.other_next[i].next = self.owes_ack[i].q.val()
                | (self.down_pending[i].q.val() & !self.held_valid[i].q.val())
                | self.joinable[i].q.val();
            self.ack_landing[i].next =
                self.bus_write_to[i].q.val() & self.member[i].q.val() & self.alive[i].q.val();
            self.stays[i].next =
                self.ports[i].link_up.val() & !self.down_next[i].val() & self.member[i].q.val();
        }

        // The write token: asked of one port a cycle (`write_turn`, one-hot), taken by a
        // port holding a write (or a kind that looks like one, above) while no write or
        // acknowledgement is anywhere in flight
        // (`writes_idle`, which a token given falls in the next cycle). The turn moves
        // only while the token is free to take, so the search after a write starts at the
        // port after its owner: had it moved every cycle, a write's fixed round trip could
        // bring it back to the same port each time.
        self.any_token.next = false;
        for i in 0..N {
            self.token[i].next = self.writes_idle.q.val()
                & (self.write_turn.q.val() & self.port_bit[i].val()).any()
                & self.held_waiting[i].q.val();
            self.any_token.next = self.any_token.val() | self.token[i].val();
            // A message taken with a write's low kind bits waits for the token (the same
            // superset as its request: one LUT from the port's pins).
            self.held_waiting[i].d.next = (self.take[i].val() & self.take_may_write[i].val())
                | (self.held_waiting[i].q.val() & !self.token[i].val());
        }
        if self.writes_idle.q.val() {
            self.write_turn.d.next = ((self.write_turn.q.val() << 1)
                | (self.write_turn.q.val() >> self.wrap_shift.val()))
                & self.all_ports.val();
        }

        // The room for a grant two cycles on (see the module's doc), into a flip-flop that
        // the requests of the next cycle are masked with.
        self.all_room_next.next = true;
        for i in 0..N {
            self.all_room_next.next = self.all_room_next.val()
                & !(self.queue[i].fill.val() & self.room_limit.val()).any();
        }
        self.all_room.d.next = self.all_room_next.val();

        // Stage 2, grant: round robin from the port after the last one granted
        // ([`RoundRobinSlot`]). Beside it, every port puts what it offers into its send
        // registers, granted or not, so that loading the bus is an AND-OR of flip-flops
        // over the one-hot grant; that choice reads the offer flags only, not the grant.
        self.requests.next = self.zero_32.val();
        for i in 0..N {
            if self.request[i].q.val() {
                self.requests.next = self.requests.val() | self.port_bit[i].val();
            }
        }
        self.loading.d.next = self.requests.val().any();
        for i in 0..N {
            self.turn[i].requests.next = self.requests.val();
            self.turn[i].last.next = self.last_port.q.val();
        }
        for i in 0..N {
            self.grant[i].next = self.request[i].q.val() & !self.turn[i].passed_over.val();
            if self.grant[i].val() {
                self.last_port.d.next = self.port_index[i].val();
            }
            self.granted[i].d.next = self.grant[i].val();
            // The room a grant needs is worked out two cycles ahead (see the module's doc)
            // and folded into the requests, so the arbiter does not wait for it.
            self.request[i].d.next = (self.sendable_next[i].val() | self.other_next[i].val())
                & !self.grant[i].val()
                & self.all_room.q.val();
            // What the grant changes, each written as one expression with the grant in
            // it (not as an `if` that sets a constant, which synthesis would route to the
            // flip-flop's set/reset input, behind a LUT of its own).
            // The holding register is free in the next cycle if it is now and nothing is
            // taken, or if its message is granted: `ready` is worked out here, so that
            // `tx_ready` is a flip-flop and a port's next take a LUT of two.
            self.held_valid[i].d.next = self.take[i].val()
                | (self.held_valid[i].q.val()
                    & !(self.grant[i].val() & self.offers_held[i].q.val()));
            // Sendable next: taken and no write, or still held and not granted, or given
            // the token (a waiting message is never granted: it requests nothing).
            self.held_sendable[i].d.next = (self.take[i].val() & !self.take_may_write[i].val())
                | (self.held_sendable[i].q.val()
                    & !(self.grant[i].val() & self.offers_held[i].q.val()))
                | self.token[i].val();
            self.ready[i].d.next = self.stays[i].val()
                & ((self.grant[i].val() & self.offers_held[i].q.val())
                    | (!self.held_valid[i].q.val() & !self.take[i].val()));
            self.write_owner[i].d.next = self.token[i].val()
                | (self.write_owner[i].q.val()
                    & !(self.grant[i].val() & self.offers_held[i].q.val()));
            self.ack_pending[i].d.next = self.ack_landing[i].val()
                | (self.owes_ack[i].q.val() & !(self.grant[i].val() & self.offers_ack[i].q.val()));
            self.owes_ack[i].d.next = self.ack_pending[i].d.val() & self.alive[i].d.val();
            self.down_pending[i].d.next =
                self.down_next[i].val() & !(self.grant[i].val() & self.offers_down[i].q.val());
            self.member[i].d.next = (self.member[i].q.val()
                & !(self.grant[i].val() & self.offers_down[i].q.val()))
                | (self.grant[i].val() & self.offers_up[i].q.val());
            // `joinable` after this edge: a member's `may_join` falls, and a port that is
            // not one stays out unless its arrival is granted.
            self.joinable[i].d.next = !self.member[i].q.val()
                & !(self.grant[i].val() & self.offers_up[i].q.val())
                & self.ports[i].link_up.val()
                & (self.may_join[i].q.val() | self.writes_idle.q.val());
            self.send_is_write[i].d.next =
                self.offers_held[i].q.val() & self.held_is_write[i].q.val();
            // The offer flags are one-hot while the port requests (and the registers are
            // read only then), so each field is an OR of masked candidates.
            self.ack_mask[i].next = self.zero_64.val();
            if self.offers_ack[i].q.val() {
                self.ack_mask[i].next = self.ones_64.val();
            }
            self.held_mask[i].next = self.zero_64.val();
            if self.offers_held[i].q.val() {
                self.held_mask[i].next = self.ones_64.val();
            }
            self.down_kind[i].next = self.zero_8.val();
            if self.offers_down[i].q.val() {
                self.down_kind[i].next = self.kind_member_down.val();
            }
            self.up_kind[i].next = self.zero_8.val();
            if self.offers_up[i].q.val() {
                self.up_kind[i].next = self.kind_member_up.val();
            }
            self.send_kind[i].d.next = (self.held_kind[i].q.val()
                & self.held_mask[i].val().get_bits::<8>(0))
                | (self.kind_sram_write_ack.val() & self.ack_mask[i].val().get_bits::<8>(0))
                | self.down_kind[i].val()
                | self.up_kind[i].val();
            self.send_payload[i].d.next = (self.held_payload[i].q.val() & self.held_mask[i].val())
                | (self.ack_sequence[i].q.val() & self.ack_mask[i].val());
            // Where the held message goes: every port for a broadcast, the target for a
            // unicast, the target's SRAM for a write within it, nowhere for a kind a port
            // may not send. Selections are ANDs with masks rather than `if`s that set zero:
            // synthesis turns a flip-flop input that is a constant under some condition
            // into its set/reset pin, behind a LUT of its own and a slower setup.
            self.broadcast_mask[i].next = self.zero_32.val();
            if self.held_is_broadcast[i].q.val() {
                self.broadcast_mask[i].next = self.all_ports.val();
            }
            self.unicast_mask[i].next = self.zero_32.val();
            if self.held_is_unicast[i].q.val() {
                self.unicast_mask[i].next = self.all_ports.val();
            }
            self.write_mask[i].next = self.zero_32.val();
            if self.held_write_lands[i].q.val() {
                self.write_mask[i].next = self.all_ports.val();
            }
            self.send_write_to[i].d.next = self.held_target[i].q.val()
                & self.write_mask[i].val()
                & self.held_mask[i].val().get_bits::<32>(0);
            self.send_deliver[i].d.next = ((self.broadcast_mask[i].val()
                | (self.held_target[i].q.val() & self.unicast_mask[i].val()))
                & self.held_mask[i].val().get_bits::<32>(0))
                | (self.ack_to[i].q.val() & self.ack_mask[i].val().get_bits::<32>(0))
                | (self.all_ports.val()
                    & !self.ack_mask[i].val().get_bits::<32>(0)
                    & !self.held_mask[i].val().get_bits::<32>(0));
        }

        // Stage 3, load: the granted port's message into the bus register, from its send
        // registers (loaded in the grant's cycle) and its SRAM offset, read from the
        // holding register, which holds still until the bus has taken it.
        self.chosen_kind.next = self.zero_8.val();
        self.chosen_source.next = self.zero_8.val();
        self.chosen_source_bit.next = self.zero_32.val();
        self.chosen_payload.next = self.zero_64.val();
        self.chosen_offset.next = self.zero_32.val();
        self.chosen_deliver.next = self.zero_32.val();
        self.chosen_write_to.next = self.zero_32.val();
        self.chosen_is_write.next = false;
        for i in 0..N {
            if self.granted[i].q.val() {
                self.chosen_source.next = self.chosen_source.val() | self.port_index[i].val();
                self.chosen_source_bit.next = self.chosen_source_bit.val() | self.port_bit[i].val();
                self.chosen_kind.next = self.chosen_kind.val() | self.send_kind[i].q.val();
                self.chosen_payload.next = self.chosen_payload.val() | self.send_payload[i].q.val();
                self.chosen_offset.next = self.chosen_offset.val() | self.held_offset[i].q.val();
                self.chosen_is_write.next =
                    self.chosen_is_write.val() | self.send_is_write[i].q.val();
                self.chosen_deliver.next = self.chosen_deliver.val() | self.send_deliver[i].q.val();
                self.chosen_write_to.next =
                    self.chosen_write_to.val() | self.send_write_to[i].q.val();
            }
        }
        self.bus_kind.d.next = self.chosen_kind.val();
        self.bus_source.d.next = self.chosen_source.val();
        self.bus_source_bit.d.next = self.chosen_source_bit.val();
        self.bus_payload.d.next = self.chosen_payload.val();
        self.bus_offset.d.next = self.chosen_offset.val();
        self.bus_is_write.d.next = self.chosen_is_write.val();
        self.grant_count.clock.next = self.clock.val();
        self.grant_count.reset.next = self.reset.val();
        self.grant_count.step.next = self.loading.q.val();
        self.bus_sequence.d.next = self.grant_count.value.val();
        for i in 0..N {
            // A joining port is a member by now: it hears its own arrival, where its view
            // of the order starts.
            self.bus_deliver[i].d.next =
                (self.chosen_deliver.val() & self.port_bit[i].val()).any() & self.member[i].q.val();
            self.bus_write_to[i].d.next = (self.chosen_write_to.val() & self.port_bit[i].val())
                .any()
                & self.member[i].q.val();
        }
        self.writes_idle.d.next = !self.any_owner.val()
            & !self.any_token.val()
            & !self.any_ack_pending.val()
            & !self.chosen_is_write.val()
            & !self.bus_is_write.q.val();

        // Stage 4, deliver: the bus register into receive queues and onto SRAM ports.
        for i in 0..N {
            self.ports[i].sram_write.next = self.bus_write_to[i].q.val();
            self.ports[i].sram_offset.next = self.bus_offset.q.val();
            self.ports[i].sram_data.next = self.bus_payload.q.val();
            // The acknowledgement's fields are taken on every write presented, owed or not:
            // they are read only while it is owed, and their enable is then a flip-flop.
            if self.bus_write_to[i].q.val() {
                self.ack_to[i].d.next = self.bus_source_bit.q.val();
                self.ack_sequence[i].d.next = self.bus_sequence.q.val();
            }
            self.queue[i].push.next = self.bus_deliver[i].q.val();
            self.queue[i].push_kind.next = self.bus_kind.q.val();
            self.queue[i].push_source.next = self.bus_source.q.val();
            self.queue[i].push_sequence.next = self.bus_sequence.q.val();
            self.queue[i].push_payload.next = self.bus_payload.q.val();
            // A port that is not a member, or not alive, holds nothing it could still take
            // (and a dead port's full queue must not hold up the fabric). The flush comes
            // from a flip-flop, a cycle late: what lands in that cycle is from before the
            // departure (or for a dead port) and goes with the flush, and a joining port's
            // queue is still flushed in the cycle before its own arrival lands.
            self.dropping[i].d.next =
                self.reset.val() | !self.alive[i].q.val() | !self.member[i].q.val();
            self.queue[i].flush.next = self.dropping[i].q.val();
            self.queue[i].ready.next = self.ports[i].rx_ready.val();
            self.ports[i].rx_valid.next = self.queue[i].valid.val();
            self.ports[i].rx_kind.next = self.queue[i].out_kind.val();
            self.ports[i].rx_source.next = self.queue[i].out_source.val();
            self.ports[i].rx_sequence.next = self.queue[i].out_sequence.val();
            self.ports[i].rx_payload.next = self.queue[i].out_payload.val();
        }

        if self.reset.val() {
            self.loading.d.next = false;
            // As if the last port had just been served: port 0 goes first.
            self.last_port.d.next = self.last_port_index.val();
            self.writes_idle.d.next = false;
            self.write_turn.d.next = self.first_port_bit.val();
            for i in 0..N {
                self.alive[i].d.next = false;
                self.ready[i].d.next = false;
                self.member[i].d.next = false;
                self.down_pending[i].d.next = false;
                self.may_join[i].d.next = false;
                self.joinable[i].d.next = false;
                self.ack_pending[i].d.next = false;
                self.owes_ack[i].d.next = false;
                self.held_valid[i].d.next = false;
                self.held_waiting[i].d.next = false;
                self.held_sendable[i].d.next = false;
                self.write_owner[i].d.next = false;
                self.request[i].d.next = false;
                self.granted[i].d.next = false;
                self.bus_deliver[i].d.next = false;
                self.bus_write_to[i].d.next = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{rising_edge, settle};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use shared_regs::fabric::PORT_BROADCAST;
    use std::collections::{HashMap, VecDeque};

    const SRAM_BYTES: u32 = 4096;

    /// A message a port offers.
    #[derive(Clone, Copy, Debug, PartialEq)]
    struct Sent {
        kind: MessageKind,
        target: u8,
        payload: u64,
        offset: u32,
    }

    /// A message a port took from its receive register.
    #[derive(Clone, Copy, Debug, PartialEq)]
    struct Received {
        kind: u8,
        source: u8,
        sequence: u64,
        payload: u64,
    }

    /// The fabric under test, its ports' queues and what they received.
    struct Bench<const N: usize> {
        uut: BroadcastFabric<N>,
        rng: ChaCha8Rng,
        outbox: [VecDeque<Sent>; N],
        accepted: [Vec<Sent>; N],
        inbox: [Vec<Received>; N],
        sram: [HashMap<u32, u64>; N],
        link_up: [bool; N],
        stalled: [bool; N],
    }

    impl<const N: usize> Bench<N> {
        fn new(seed: u64) -> Self {
            let mut uut = BroadcastFabric::<N>::new(SRAM_BYTES);
            uut.connect_all();
            let mut bench = Self {
                uut,
                rng: ChaCha8Rng::seed_from_u64(seed),
                outbox: std::array::from_fn(|_| VecDeque::new()),
                accepted: std::array::from_fn(|_| Vec::new()),
                inbox: std::array::from_fn(|_| Vec::new()),
                sram: std::array::from_fn(|_| HashMap::new()),
                link_up: [true; N],
                stalled: [false; N],
            };
            bench.uut.reset.next = true;
            rising_edge(&mut bench.uut, |u| &mut u.clock);
            bench.uut.reset.next = false;
            bench
        }

        /// Queues `count` random messages per port; SRAM offsets are unique per write, and
        /// one write in ten lands beyond the SRAM.
        fn queue_random_traffic(&mut self, count: usize) {
            let mut write_id = 0u32;
            for port in 0..N {
                for message in 0..count {
                    let payload = (port as u64) << 32 | message as u64;
                    let target = self.rng.gen_range(0..N) as u8;
                    let sent = match self.rng.gen_range(0..3) {
                        0 => Sent {
                            kind: MessageKind::Broadcast,
                            target: PORT_BROADCAST,
                            payload,
                            offset: 0,
                        },
                        1 => Sent {
                            kind: MessageKind::Unicast,
                            target,
                            payload,
                            offset: 0,
                        },
                        _ => {
                            write_id += 1;
                            let beyond = self.rng.gen_ratio(1, 10);
                            let offset = if beyond {
                                SRAM_BYTES + write_id * 8
                            } else {
                                write_id * 8
                            };
                            Sent {
                                kind: MessageKind::SramWrite,
                                target,
                                payload,
                                offset,
                            }
                        }
                    };
                    self.outbox[port].push_back(sent);
                }
            }
            assert!(write_id * 8 < SRAM_BYTES, "offsets must not wrap");
        }

        fn drive_inputs(&mut self) {
            for port in 0..N {
                let offer = self.outbox[port]
                    .front()
                    .copied()
                    .filter(|_| self.rng.gen_ratio(3, 4));
                let io = &mut self.uut.ports[port];
                io.link_up.next = self.link_up[port];
                io.tx_valid.next = offer.is_some();
                if let Some(sent) = offer {
                    io.tx_kind.next = u64::from(sent.kind as u8).into();
                    io.tx_target.next = u64::from(sent.target).into();
                    io.tx_payload.next = sent.payload.into();
                    io.tx_sram_offset.next = u64::from(sent.offset).into();
                }
                io.rx_ready.next = !self.stalled[port] && self.rng.gen_ratio(2, 3);
            }
        }

        fn observe_outputs(&mut self) {
            for port in 0..N {
                let io = &self.uut.ports[port];
                if io.tx_valid.val() && io.tx_ready.val() {
                    let sent = self.outbox[port]
                        .pop_front()
                        .expect("took a message never offered");
                    self.accepted[port].push(sent);
                }
                if io.rx_valid.val() && io.rx_ready.val() {
                    self.inbox[port].push(Received {
                        kind: io.rx_kind.val().to_u8(),
                        source: io.rx_source.val().to_u8(),
                        sequence: io.rx_sequence.val().to_u64(),
                        payload: io.rx_payload.val().to_u64(),
                    });
                }
                if io.sram_write.val() {
                    let offset = io.sram_offset.val().to_u32();
                    assert!(offset < SRAM_BYTES, "write beyond the SRAM presented");
                    self.sram[port].insert(offset, io.sram_data.val().to_u64());
                }
            }
        }

        /// The flip-flops kept equal to a product of others (so the request needs no LUT in
        /// front of it) are equal to it, every cycle of every test.
        fn check_kept_products(&self) {
            let uut = &self.uut;
            for port in 0..N {
                assert_eq!(
                    uut.held_sendable[port].q.val(),
                    uut.held_valid[port].q.val() && !uut.held_waiting[port].q.val(),
                    "port {port}: held_sendable"
                );
                assert_eq!(
                    uut.owes_ack[port].q.val(),
                    uut.ack_pending[port].q.val() && uut.alive[port].q.val(),
                    "port {port}: owes_ack"
                );
                assert_eq!(
                    uut.joinable[port].q.val(),
                    !uut.member[port].q.val()
                        && uut.link[port].q.val()
                        && uut.may_join[port].q.val(),
                    "port {port}: joinable"
                );
            }
        }

        fn cycle(&mut self) {
            self.drive_inputs();
            settle(&mut self.uut);
            self.check_kept_products();
            self.observe_outputs();
            rising_edge(&mut self.uut, |u| &mut u.clock);
        }

        fn run_until_quiet(&mut self, cycles_max: usize) {
            let mut quiet = 0;
            for _ in 0..cycles_max {
                let before: usize = self.inbox.iter().map(Vec::len).sum();
                self.cycle();
                let after: usize = self.inbox.iter().map(Vec::len).sum();
                let idle = self.outbox.iter().all(VecDeque::is_empty) && before == after;
                quiet = if idle { quiet + 1 } else { 0 };
                if quiet == 20 {
                    return;
                }
            }
            panic!("fabric still busy after {cycles_max} cycles");
        }

        /// The broadcasts (and announcements) `port` received, in order.
        fn broadcasts(&self, port: usize) -> Vec<Received> {
            let ordered = [
                MessageKind::Broadcast,
                MessageKind::MemberUp,
                MessageKind::MemberDown,
            ];
            self.inbox[port]
                .iter()
                .filter(|r| ordered.iter().any(|&k| r.kind == k as u8))
                .copied()
                .collect()
        }
    }

    fn is_kind(received: &Received, kind: MessageKind) -> bool {
        received.kind == kind as u8
    }

    #[test]
    fn every_port_sees_one_order_and_point_to_point_is_fifo() {
        let mut bench = Bench::<4>::new(7);
        bench.queue_random_traffic(60);
        bench.run_until_quiet(20_000);
        // Port 0 joined first (round robin from reset), so it saw the whole order; every
        // other port sees it from its own arrival on.
        let order = bench.broadcasts(0);
        let sent_broadcasts: usize = bench
            .accepted
            .iter()
            .map(|a| {
                a.iter()
                    .filter(|s| s.kind == MessageKind::Broadcast)
                    .count()
            })
            .sum();
        assert_eq!(
            order
                .iter()
                .filter(|r| is_kind(r, MessageKind::MemberUp))
                .count(),
            4
        );
        assert_eq!(
            order
                .iter()
                .filter(|r| is_kind(r, MessageKind::Broadcast))
                .count(),
            sent_broadcasts
        );
        for port in 1..4 {
            let arrival = order
                .iter()
                .position(|r| is_kind(r, MessageKind::MemberUp) && usize::from(r.source) == port)
                .expect("every port arrives");
            assert_eq!(
                bench.broadcasts(port),
                order[arrival..],
                "port {port} saw another order"
            );
        }
        for receiver in 0..4 {
            let sequences: Vec<u64> = bench.inbox[receiver].iter().map(|r| r.sequence).collect();
            assert!(
                sequences.is_sorted_by(|a, b| a < b),
                "sequences not increasing"
            );
            for sender in 0..4 {
                let expected: Vec<u64> = bench.accepted[sender]
                    .iter()
                    .filter(|s| s.kind == MessageKind::Unicast && usize::from(s.target) == receiver)
                    .map(|s| s.payload)
                    .collect();
                let got: Vec<u64> = bench.inbox[receiver]
                    .iter()
                    .filter(|r| is_kind(r, MessageKind::Unicast) && usize::from(r.source) == sender)
                    .map(|r| r.payload)
                    .collect();
                assert_eq!(got, expected, "unicasts {sender} -> {receiver}");
            }
        }
    }

    #[test]
    fn remote_writes_land_and_only_landed_writes_are_acknowledged() {
        let mut bench = Bench::<3>::new(8);
        bench.queue_random_traffic(60);
        bench.run_until_quiet(20_000);
        for sender in 0..3 {
            let acks = bench.inbox[sender]
                .iter()
                .filter(|r| is_kind(r, MessageKind::SramWriteAck))
                .count();
            let writes: Vec<&Sent> = bench.accepted[sender]
                .iter()
                .filter(|s| s.kind == MessageKind::SramWrite)
                .collect();
            let landed = writes.iter().filter(|w| w.offset < SRAM_BYTES).count();
            assert_eq!(
                acks, landed,
                "port {sender}: one ack per write within the SRAM"
            );
            for write in writes {
                let stored = bench.sram[usize::from(write.target)].get(&write.offset);
                if write.offset < SRAM_BYTES {
                    assert_eq!(stored, Some(&write.payload));
                } else {
                    assert_eq!(stored, None);
                }
            }
        }
    }

    /// The write token goes round: a port streaming writes does not keep it from another
    /// port's one write (it did while the turn moved every cycle: a write's round trip of
    /// eight cycles brought it back to the same port at four ports).
    #[test]
    fn the_write_token_goes_round_the_ports() {
        let mut bench = Bench::<4>::new(11);
        let write = |port: u32, index: u32, target: u8| Sent {
            kind: MessageKind::SramWrite,
            target,
            payload: u64::from(port << 16 | index),
            offset: (port * 100 + index) * 8,
        };
        bench.outbox[0].extend((0..40).map(|index| write(0, index, 2)));
        bench.outbox[1].push_back(write(1, 0, 3));
        bench.run_until_quiet(20_000);
        let ack_sequences = |port: usize| -> Vec<u64> {
            bench.inbox[port]
                .iter()
                .filter(|r| is_kind(r, MessageKind::SramWriteAck))
                .map(|r| r.sequence)
                .collect()
        };
        let streaming = ack_sequences(0);
        let single = ack_sequences(1);
        assert_eq!(
            (streaming.len(), single.len()),
            (40, 1),
            "every write acknowledged"
        );
        let before = streaming.iter().filter(|&&s| s < single[0]).count();
        assert!(
            before <= 2,
            "port 1's one write waited for {before} of port 0's"
        );
    }

    /// A link that drops and comes back while its departure cannot be granted yet (a
    /// port that takes nothing fills its queue and stops every grant) is a new card:
    /// nothing it offers is taken before its `MemberDown`, and the others hear nothing
    /// from it between that and its `MemberUp`.
    #[test]
    fn a_link_that_bounces_while_the_fabric_waits_is_a_departure_then_an_arrival() {
        let mut bench = Bench::<3>::new(12);
        bench.run_until_quiet(200);
        bench.stalled[2] = true;
        bench.outbox[0].extend((0..12).map(|payload| Sent {
            kind: MessageKind::Broadcast,
            target: PORT_BROADCAST,
            payload,
            offset: 0,
        }));
        for _ in 0..60 {
            bench.cycle();
        }
        // Port 2 stalled: the fabric grants nothing now. Port 1 bounces, and the new card
        // offers as soon as its link is up (a card whose link is down offers nothing: in
        // the cycle the pin falls, `tx_ready` may still be high and would take the offer
        // as the old card's last message).
        bench.link_up[1] = false;
        bench.cycle();
        bench.link_up[1] = true;
        bench.outbox[1].extend((0..4).map(|payload| Sent {
            kind: MessageKind::Broadcast,
            target: PORT_BROADCAST,
            payload: 1 << 40 | payload,
            offset: 0,
        }));
        for _ in 0..40 {
            bench.cycle();
        }
        bench.stalled[2] = false;
        bench.run_until_quiet(20_000);
        for port in [0, 2] {
            let inbox = &bench.inbox[port];
            let down = inbox
                .iter()
                .position(|r| is_kind(r, MessageKind::MemberDown) && r.source == 1)
                .expect("the drop is a departure");
            let up = inbox[down..]
                .iter()
                .position(|r| is_kind(r, MessageKind::MemberUp) && r.source == 1)
                .expect("the return is an arrival")
                + down;
            assert!(
                !inbox[..down]
                    .iter()
                    .any(|r| r.source == 1 && r.payload >> 40 == 1),
                "port {port} heard the new card before the old one's departure"
            );
            assert!(
                !inbox[down + 1..up].iter().any(|r| r.source == 1),
                "port {port} heard port 1 between its departure and its return"
            );
        }
        assert_eq!(
            bench.outbox[1].len(),
            0,
            "the new card sends after its arrival"
        );
        assert_eq!(bench.uut.membership.val().to_u32(), 0b111);
    }

    /// A writer whose link bounces while its write is still being acknowledged comes back
    /// as a new card: the acknowledgement of the old card's write must not reach it. Swept
    /// over when the bounce starts after the write is taken and how long it lasts.
    #[test]
    fn an_acknowledgement_never_reaches_the_writers_next_card() {
        for seed in 0..4 {
            for delay in 0..12 {
                for down_cycles in 1..4 {
                    let mut bench = Bench::<3>::new(seed);
                    bench.run_until_quiet(200);
                    // Port 2 keeps the arbiter busy, so the round robin's position moves
                    // between the departure and the acknowledgement.
                    bench.outbox[2].extend((0..40).map(|payload| Sent {
                        kind: MessageKind::Broadcast,
                        target: PORT_BROADCAST,
                        payload,
                        offset: 0,
                    }));
                    bench.outbox[0].push_back(Sent {
                        kind: MessageKind::SramWrite,
                        target: 1,
                        payload: 0xabc,
                        offset: 8,
                    });
                    while bench.accepted[0].is_empty() {
                        bench.cycle();
                    }
                    for _ in 0..delay {
                        bench.cycle();
                    }
                    bench.link_up[0] = false;
                    for _ in 0..down_cycles {
                        bench.cycle();
                    }
                    bench.link_up[0] = true;
                    bench.run_until_quiet(2_000);
                    let inbox = &bench.inbox[0];
                    let arrival = inbox
                        .iter()
                        .rposition(|r| is_kind(r, MessageKind::MemberUp) && r.source == 0)
                        .expect("port 0 arrives");
                    assert!(
                        !inbox[arrival..]
                            .iter()
                            .any(|r| is_kind(r, MessageKind::SramWriteAck)),
                        "seed {seed}, bounce {delay} cycles after the take for {down_cycles}: \
                         the new card heard the old card's acknowledgement"
                    );
                }
            }
        }
    }

    #[test]
    fn a_port_that_goes_down_is_announced_after_its_last_message() {
        let mut bench = Bench::<4>::new(9);
        bench.queue_random_traffic(40);
        for _ in 0..150 {
            bench.cycle();
        }
        bench.link_up[2] = false;
        bench.outbox[2].clear();
        bench.run_until_quiet(20_000);
        let accepted_from_2 = bench.accepted[2].len();
        for port in [0, 1, 3] {
            let inbox = &bench.inbox[port];
            let down = inbox
                .iter()
                .position(|r| is_kind(r, MessageKind::MemberDown))
                .expect("member down announced");
            assert_eq!(inbox[down].source, 2);
            assert!(
                !inbox[down + 1..].iter().any(|r| r.source == 2),
                "port {port} heard from port 2 after it went down: {:?}",
                &inbox[down..]
            );
            let broadcasts_from_2 = bench.accepted[2]
                .iter()
                .filter(|s| s.kind == MessageKind::Broadcast)
                .count();
            let heard = inbox[..down]
                .iter()
                .filter(|r| r.source == 2 && is_kind(r, MessageKind::Broadcast))
                .count();
            assert_eq!(
                heard, broadcasts_from_2,
                "port {port} missed a broadcast port 2 sent"
            );
        }
        assert!(
            accepted_from_2 > 0,
            "the drop came before port 2 sent anything"
        );
        assert_eq!(bench.uut.membership.val().to_u32(), 0b1011);
    }

    #[test]
    fn round_robin_serves_every_port_in_turn_at_one_message_a_cycle() {
        let mut bench = Bench::<4>::new(10);
        bench.run_until_quiet(100);
        let joined = bench.inbox[0].len();
        for port in 0..4 {
            bench.uut.ports[port].tx_kind.next = u64::from(MessageKind::Broadcast as u8).into();
            bench.uut.ports[port].rx_ready.next = true;
            bench.uut.ports[port].link_up.next = true;
        }
        for outbox in &mut bench.outbox {
            outbox.extend((0..50).map(|payload| Sent {
                kind: MessageKind::Broadcast,
                target: PORT_BROADCAST,
                payload,
                offset: 0,
            }));
        }
        let mut cycles = 0;
        while bench.inbox[0].len() < joined + 200 {
            cycles += 1;
            assert!(cycles < 1_000, "fabric stopped");
            for port in 0..4 {
                bench.uut.ports[port].tx_valid.next = !bench.outbox[port].is_empty();
            }
            settle(&mut bench.uut);
            bench.check_kept_products();
            bench.observe_outputs();
            rising_edge(&mut bench.uut, |u| &mut u.clock);
        }
        // Five cycles between a first offer and its delivery (take, grant, load, into the
        // queue's store, into its offer, then the port takes it), then one a cycle.
        assert!(cycles <= 200 + 5, "{cycles} cycles for 200 messages");
        let sources: Vec<u8> = bench.inbox[0][joined..].iter().map(|r| r.source).collect();
        for round in sources.chunks(4) {
            let mut ports = round.to_vec();
            ports.sort_unstable();
            assert_eq!(
                ports,
                [0, 1, 2, 3],
                "a round gave some port two turns: {round:?}"
            );
        }
    }

    #[test]
    #[should_panic(expected = "the fabric takes 2 to 8")]
    fn refuses_one_port() {
        let _ = BroadcastFabric::<1>::new(SRAM_BYTES);
    }
}
