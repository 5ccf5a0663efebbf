//! The broadcast fabric: `N` ports (2..=8), one arbiter, one order.
//!
//! Every message crosses one round-robin arbiter that grants at most one message a cycle,
//! so the grant order *is* the fabric's order, and the guarantees of DESIGN.md follow from
//! it:
//!
//! * **one total order of broadcasts**: a granted message goes on the fabric's bus, and
//!   from the bus into the receive queue of every destination in the same cycle; nothing is
//!   granted unless every member's queue has room for it, so every port sees broadcasts
//!   in grant order;
//! * **FIFO per sender-receiver pair**: a port's messages are granted in the order it
//!   offers them;
//! * **fairness**: the arbiter starts its search after the last port it granted;
//! * **remote SRAM writes**: a granted `SramWrite` goes out on the target's SRAM write
//!   port instead of its receive queue, and the target then owes the sender a
//!   `SramWriteAck` (payload: the write's sequence) that the arbiter grants only after the
//!   write was presented to the SRAM; a write beyond the SRAM is dropped without an ack;
//! * **port down after its last message**: when a member's link drops, the fabric stops
//!   taking that port's messages, grants the one it already took, then a `MemberDown`
//!   broadcast from it, so the departure is ordered after everything the port sent; a link
//!   that comes up is announced by `MemberUp` the same way.
//!
//! Pipeline, so that every stage starts from flip-flops (the arbiter's clock was limited
//! by one combinational path from a port's offer through the arbiter into every receive
//! register): a port's offer is taken into its holding register (`tx_ready` is that
//! register being empty); the arbiter grants among holding registers and the fabric's
//! own announcements into the bus register; the bus register is written into the receive
//! queues (two entries per port) or onto an SRAM port. A port sends at most every other
//! cycle; the fabric grants one message a cycle.
//!
//! Messages are single beats (kind, source, target, sequence, one 64-bit payload word, SRAM
//! offset): the frame format of `shared_regs::fabric` reduced to what the arbiter orders;
//! longer payloads are the DMA side's business. `sequence` is the grant number: the
//! position in the total order for broadcasts, and strictly increasing (not consecutive)
//! per sender-receiver pair for the rest.
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
    /// The fabric takes the offered message this cycle.
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
    held_valid: [DFF<Bit>; N],
    held_kind: [DFF<Bits<8>>; N],
    held_payload: [DFF<Bits<64>>; N],
    held_offset: [DFF<Bits<32>>; N],
    held_is_write: [DFF<Bit>; N],
    held_is_broadcast: [DFF<Bit>; N],
    held_forged: [DFF<Bit>; N],
    held_in_range: [DFF<Bit>; N],
    held_to: [DFF<Bits<32>>; N],
    ack_to: [DFF<Bits<32>>; N],
    member: [DFF<Bit>; N],
    down_pending: [DFF<Bit>; N],
    ack_pending: [DFF<Bit>; N],
    ack_sequence: [DFF<Bits<64>>; N],
    rx_filled0: [DFF<Bit>; N],
    rx_filled1: [DFF<Bit>; N],
    rx_write_slot: [DFF<Bit>; N],
    rx_read_slot: [DFF<Bit>; N],
    rx_valid_reg: [DFF<Bit>; N],
    rx0_kind: [DFF<Bits<8>>; N],
    rx0_source: [DFF<Bits<8>>; N],
    rx0_sequence: [DFF<Bits<64>>; N],
    rx0_payload: [DFF<Bits<64>>; N],
    rx1_kind: [DFF<Bits<8>>; N],
    rx1_source: [DFF<Bits<8>>; N],
    rx1_sequence: [DFF<Bits<64>>; N],
    rx1_payload: [DFF<Bits<64>>; N],
    bus_deliver: [DFF<Bit>; N],
    bus_write_to: [DFF<Bit>; N],
    last_granted: [DFF<Bit>; N],
    granted: [DFF<Bit>; N],
    bus_valid: DFF<Bit>,
    took_ack: DFF<Bit>,
    writes_blocked: DFF<Bit>,
    took_held: DFF<Bit>,
    took_down: DFF<Bit>,
    bus_kind: Signal<Local, Bits<8>>,
    bus_source: Signal<Local, Bits<8>>,
    bus_source_bit: Signal<Local, Bits<32>>,
    bus_payload: Signal<Local, Bits<64>>,
    bus_offset: Signal<Local, Bits<32>>,
    bus_sequence: DFF<Bits<64>>,
    bus_is_write: DFF<Bit>,
    next_sequence: DFF<Bits<64>>,
    request: [Signal<Local, Bit>; N],
    from_tx: [Signal<Local, Bit>; N],
    grant: [Signal<Local, Bit>; N],
    grant_any: [Signal<Local, Bit>; N],
    grant_after_last: [Signal<Local, Bit>; N],
    candidate_is_write: [Signal<Local, Bit>; N],
    candidate_is_ack: [Signal<Local, Bit>; N],
    candidate_is_down: [Signal<Local, Bit>; N],
    candidate_is_broadcast: [Signal<Local, Bit>; N],
    candidate_forged: [Signal<Local, Bit>; N],
    candidate_in_range: [Signal<Local, Bit>; N],
    candidate_to: [Signal<Local, Bits<32>>; N],
    space: [Signal<Local, Bit>; N],
    pop: [Signal<Local, Bit>; N],
    filled0_next: [Signal<Local, Bit>; N],
    filled1_next: [Signal<Local, Bit>; N],
    read_next: [Signal<Local, Bit>; N],
    all_space: Signal<Local, Bit>,
    any_ack_pending: Signal<Local, Bit>,
    write_in_flight: Signal<Local, Bit>,
    found_after_last: Signal<Local, Bit>,
    passed_last: Signal<Local, Bit>,
    found_any: Signal<Local, Bit>,
    chosen_is_write: Signal<Local, Bit>,
    chosen_is_ack: Signal<Local, Bit>,
    chosen_from_tx: Signal<Local, Bit>,
    chosen_is_down: Signal<Local, Bit>,
    chosen_in_range: Signal<Local, Bit>,
    chosen_to: Signal<Local, Bits<32>>,
    target_to: Signal<Local, Bits<32>>,
    granting: Signal<Local, Bit>,
    chosen_forged: Signal<Local, Bit>,
    is_broadcast: Signal<Local, Bit>,
    port_index: [Constant<Bits<8>>; N],
    port_bit: [Constant<Bits<32>>; N],
    is_last_port: [Constant<Bit>; N],
    kind_broadcast: Constant<Bits<8>>,
    kind_unicast: Constant<Bits<8>>,
    kind_sram_write: Constant<Bits<8>>,
    kind_sram_write_ack: Constant<Bits<8>>,
    kind_member_down: Constant<Bits<8>>,
    kind_member_up: Constant<Bits<8>>,
    sram_bytes: Constant<Bits<32>>,
    sequence_step: Constant<Bits<64>>,
    zero_payload: Constant<Bits<64>>,
    zero_offset: Constant<Bits<32>>,
    no_ports: Constant<Bits<8>>,
    no_members: Constant<Bits<32>>,
}

fn kind(kind: MessageKind) -> Constant<Bits<8>> {
    Constant::new(u64::from(kind as u8).into())
}

impl<const N: usize> BroadcastFabric<N> {
    /// A fabric of `N` ports whose cards each have `sram_bytes` of SRAM.
    pub fn new(sram_bytes: u32) -> Self {
        assert!(
            (2..=PORTS_MAX).contains(&N),
            "{N} ports: the fabric takes 2 to {PORTS_MAX}"
        );
        assert!(
            sram_bytes.is_multiple_of(8),
            "SRAM of {sram_bytes} bytes is not whole words"
        );
        let index = |port: usize| u64::try_from(port).expect("port fits u64");
        Self {
            clock: Default::default(),
            reset: Default::default(),
            ports: std::array::from_fn(|_| FabricPort::default()),
            membership: Default::default(),
            held_valid: std::array::from_fn(|_| Default::default()),
            held_kind: std::array::from_fn(|_| Default::default()),
            held_payload: std::array::from_fn(|_| Default::default()),
            held_offset: std::array::from_fn(|_| Default::default()),
            held_is_write: std::array::from_fn(|_| Default::default()),
            held_is_broadcast: std::array::from_fn(|_| Default::default()),
            held_forged: std::array::from_fn(|_| Default::default()),
            held_in_range: std::array::from_fn(|_| Default::default()),
            held_to: std::array::from_fn(|_| Default::default()),
            ack_to: std::array::from_fn(|_| Default::default()),
            member: std::array::from_fn(|_| Default::default()),
            down_pending: std::array::from_fn(|_| Default::default()),
            ack_pending: std::array::from_fn(|_| Default::default()),
            ack_sequence: std::array::from_fn(|_| Default::default()),
            rx_filled0: std::array::from_fn(|_| Default::default()),
            rx_filled1: std::array::from_fn(|_| Default::default()),
            rx_write_slot: std::array::from_fn(|_| Default::default()),
            rx_read_slot: std::array::from_fn(|_| Default::default()),
            rx_valid_reg: std::array::from_fn(|_| Default::default()),
            rx0_kind: std::array::from_fn(|_| Default::default()),
            rx0_source: std::array::from_fn(|_| Default::default()),
            rx0_sequence: std::array::from_fn(|_| Default::default()),
            rx0_payload: std::array::from_fn(|_| Default::default()),
            rx1_kind: std::array::from_fn(|_| Default::default()),
            rx1_source: std::array::from_fn(|_| Default::default()),
            rx1_sequence: std::array::from_fn(|_| Default::default()),
            rx1_payload: std::array::from_fn(|_| Default::default()),
            bus_deliver: std::array::from_fn(|_| Default::default()),
            bus_write_to: std::array::from_fn(|_| Default::default()),
            last_granted: std::array::from_fn(|_| Default::default()),
            granted: std::array::from_fn(|_| Default::default()),
            request: std::array::from_fn(|_| Default::default()),
            from_tx: std::array::from_fn(|_| Default::default()),
            grant: std::array::from_fn(|_| Default::default()),
            grant_any: std::array::from_fn(|_| Default::default()),
            grant_after_last: std::array::from_fn(|_| Default::default()),
            candidate_is_write: std::array::from_fn(|_| Default::default()),
            candidate_is_ack: std::array::from_fn(|_| Default::default()),
            candidate_is_down: std::array::from_fn(|_| Default::default()),
            candidate_is_broadcast: std::array::from_fn(|_| Default::default()),
            candidate_forged: std::array::from_fn(|_| Default::default()),
            candidate_in_range: std::array::from_fn(|_| Default::default()),
            candidate_to: std::array::from_fn(|_| Default::default()),
            space: std::array::from_fn(|_| Default::default()),
            pop: std::array::from_fn(|_| Default::default()),
            filled0_next: std::array::from_fn(|_| Default::default()),
            filled1_next: std::array::from_fn(|_| Default::default()),
            read_next: std::array::from_fn(|_| Default::default()),
            bus_valid: Default::default(),
            took_ack: Default::default(),
            writes_blocked: Default::default(),
            took_held: Default::default(),
            took_down: Default::default(),
            bus_kind: Default::default(),
            bus_source: Default::default(),
            bus_source_bit: Default::default(),
            bus_payload: Default::default(),
            bus_offset: Default::default(),
            bus_sequence: Default::default(),
            bus_is_write: Default::default(),
            next_sequence: Default::default(),
            all_space: Default::default(),
            any_ack_pending: Default::default(),
            write_in_flight: Default::default(),
            found_after_last: Default::default(),
            passed_last: Default::default(),
            found_any: Default::default(),
            chosen_is_write: Default::default(),
            chosen_is_ack: Default::default(),
            chosen_from_tx: Default::default(),
            chosen_is_down: Default::default(),
            chosen_in_range: Default::default(),
            chosen_to: Default::default(),
            target_to: Default::default(),
            granting: Default::default(),
            chosen_forged: Default::default(),
            is_broadcast: Default::default(),
            port_index: std::array::from_fn(|port| Constant::new(index(port).into())),
            port_bit: std::array::from_fn(|port| Constant::new((1_u64 << port).into())),
            is_last_port: std::array::from_fn(|port| Constant::new(port == N - 1)),
            kind_broadcast: kind(MessageKind::Broadcast),
            kind_unicast: kind(MessageKind::Unicast),
            kind_sram_write: kind(MessageKind::SramWrite),
            kind_sram_write_ack: kind(MessageKind::SramWriteAck),
            kind_member_down: kind(MessageKind::MemberDown),
            kind_member_up: kind(MessageKind::MemberUp),
            sram_bytes: Constant::new(u64::from(sram_bytes).into()),
            sequence_step: Constant::new(1_u64.into()),
            zero_payload: Constant::new(0_u64.into()),
            zero_offset: Constant::new(0_u64.into()),
            no_ports: Constant::new(0_u64.into()),
            no_members: Constant::new(0_u64.into()),
        }
    }
}

impl<const N: usize> Logic for BroadcastFabric<N> {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self,
            clock,
            bus_valid,
            writes_blocked,
            took_ack,
            took_held,
            took_down,
            bus_sequence,
            bus_is_write,
            next_sequence
        );
        // Every per-port register holds its value unless told otherwise; the arbiter may
        // grant only if every member's receive queue, after what its port takes this
        // cycle, has room for what the bus brings it now and what the grant brings next.
        self.all_space.next = true;
        self.any_ack_pending.next = false;
        self.membership.next = self.no_members.val();
        for i in 0..N {
            self.held_valid[i].clock.next = self.clock.val();
            self.held_valid[i].d.next = self.held_valid[i].q.val();
            self.held_kind[i].clock.next = self.clock.val();
            self.held_kind[i].d.next = self.held_kind[i].q.val();
            self.held_payload[i].clock.next = self.clock.val();
            self.held_payload[i].d.next = self.held_payload[i].q.val();
            self.held_offset[i].clock.next = self.clock.val();
            self.held_offset[i].d.next = self.held_offset[i].q.val();
            self.held_is_write[i].clock.next = self.clock.val();
            self.held_is_write[i].d.next = self.held_is_write[i].q.val();
            self.held_is_broadcast[i].clock.next = self.clock.val();
            self.held_is_broadcast[i].d.next = self.held_is_broadcast[i].q.val();
            self.held_forged[i].clock.next = self.clock.val();
            self.held_forged[i].d.next = self.held_forged[i].q.val();
            self.held_in_range[i].clock.next = self.clock.val();
            self.held_in_range[i].d.next = self.held_in_range[i].q.val();
            self.held_to[i].clock.next = self.clock.val();
            self.held_to[i].d.next = self.held_to[i].q.val();
            self.ack_to[i].clock.next = self.clock.val();
            self.ack_to[i].d.next = self.ack_to[i].q.val();
            self.member[i].clock.next = self.clock.val();
            self.member[i].d.next = self.member[i].q.val();
            self.down_pending[i].clock.next = self.clock.val();
            self.down_pending[i].d.next = self.down_pending[i].q.val();
            self.ack_pending[i].clock.next = self.clock.val();
            self.ack_pending[i].d.next = self.ack_pending[i].q.val();
            self.ack_sequence[i].clock.next = self.clock.val();
            self.ack_sequence[i].d.next = self.ack_sequence[i].q.val();
            self.rx_filled0[i].clock.next = self.clock.val();
            self.rx_filled0[i].d.next = self.rx_filled0[i].q.val();
            self.rx_filled1[i].clock.next = self.clock.val();
            self.rx_filled1[i].d.next = self.rx_filled1[i].q.val();
            self.rx_write_slot[i].clock.next = self.clock.val();
            self.rx_write_slot[i].d.next = self.rx_write_slot[i].q.val();
            self.rx_read_slot[i].clock.next = self.clock.val();
            self.rx_read_slot[i].d.next = self.rx_read_slot[i].q.val();
            self.rx_valid_reg[i].clock.next = self.clock.val();
            self.rx_valid_reg[i].d.next = self.rx_valid_reg[i].q.val();
            self.rx0_kind[i].clock.next = self.clock.val();
            self.rx0_kind[i].d.next = self.rx0_kind[i].q.val();
            self.rx0_source[i].clock.next = self.clock.val();
            self.rx0_source[i].d.next = self.rx0_source[i].q.val();
            self.rx0_sequence[i].clock.next = self.clock.val();
            self.rx0_sequence[i].d.next = self.rx0_sequence[i].q.val();
            self.rx0_payload[i].clock.next = self.clock.val();
            self.rx0_payload[i].d.next = self.rx0_payload[i].q.val();
            self.rx1_kind[i].clock.next = self.clock.val();
            self.rx1_kind[i].d.next = self.rx1_kind[i].q.val();
            self.rx1_source[i].clock.next = self.clock.val();
            self.rx1_source[i].d.next = self.rx1_source[i].q.val();
            self.rx1_sequence[i].clock.next = self.clock.val();
            self.rx1_sequence[i].d.next = self.rx1_sequence[i].q.val();
            self.rx1_payload[i].clock.next = self.clock.val();
            self.rx1_payload[i].d.next = self.rx1_payload[i].q.val();
            self.bus_deliver[i].clock.next = self.clock.val();
            self.bus_deliver[i].d.next = self.bus_deliver[i].q.val();
            self.bus_write_to[i].clock.next = self.clock.val();
            self.bus_write_to[i].d.next = self.bus_write_to[i].q.val();
            self.last_granted[i].clock.next = self.clock.val();
            self.last_granted[i].d.next = self.last_granted[i].q.val();
            self.granted[i].clock.next = self.clock.val();
            self.pop[i].next = self.rx_valid_reg[i].q.val() & self.ports[i].rx_ready.val();
            self.filled0_next[i].next =
                self.rx_filled0[i].q.val() & !(self.pop[i].val() & !self.rx_read_slot[i].q.val());
            self.filled1_next[i].next =
                self.rx_filled1[i].q.val() & !(self.pop[i].val() & self.rx_read_slot[i].q.val());
            self.space[i].next = !(self.filled0_next[i].val() & self.filled1_next[i].val())
                & !(self.bus_deliver[i].q.val()
                    & (self.filled0_next[i].val() | self.filled1_next[i].val()));
            self.all_space.next =
                self.all_space.val() & (self.space[i].val() | !self.member[i].q.val());
            self.any_ack_pending.next = self.any_ack_pending.val() | self.ack_pending[i].q.val();
            if self.member[i].q.val() {
                self.membership.next = self.membership.val() | self.port_bit[i].val();
            }
        }
        self.write_in_flight.next = self.bus_valid.q.val() & self.bus_is_write.q.val();

        // What each port would send: an acknowledgement it owes, then the message it holds,
        // then its departure, then its arrival.
        for i in 0..N {
            self.from_tx[i].next = false;
            self.request[i].next = true;
            // What the bus needs of the message, worked out when it was taken: the arbiter
            // only selects (kind compares, the target decode and the SRAM range check would
            // otherwise sit after the grant, on the arbiter's path).
            self.candidate_is_write[i].next = false;
            self.candidate_is_ack[i].next = false;
            self.candidate_is_down[i].next = false;
            self.candidate_is_broadcast[i].next = true;
            self.candidate_forged[i].next = false;
            self.candidate_in_range[i].next = false;
            self.candidate_to[i].next = self.no_members.val();
            if self.ack_pending[i].q.val() {
                self.candidate_is_ack[i].next = true;
                self.candidate_is_broadcast[i].next = false;
                self.candidate_to[i].next = self.ack_to[i].q.val();
            } else if self.held_valid[i].q.val() & self.member[i].q.val() {
                self.from_tx[i].next = true;
                self.candidate_is_write[i].next = self.held_is_write[i].q.val();
                self.candidate_is_broadcast[i].next = self.held_is_broadcast[i].q.val();
                self.candidate_forged[i].next = self.held_forged[i].q.val();
                self.candidate_in_range[i].next = self.held_in_range[i].q.val();
                self.candidate_to[i].next = self.held_to[i].q.val();
                // An SRAM write waits while any acknowledgement is owed or about to be, so
                // one target never owes two.
                self.request[i].next =
                    !(self.held_is_write[i].q.val() & self.writes_blocked.q.val());
            } else if self.down_pending[i].q.val() {
                self.candidate_is_down[i].next = true;
            } else {
                self.request[i].next = self.ports[i].link_up.val() & !self.member[i].q.val();
            }
        }

        // Round robin, one-hot: the first requester after the last grant, else the first
        // of all.
        self.found_after_last.next = false;
        self.passed_last.next = false;
        self.found_any.next = false;
        for i in 0..N {
            self.grant_any[i].next = self.request[i].val() & !self.found_any.val();
            self.grant_after_last[i].next =
                self.request[i].val() & !self.found_after_last.val() & self.passed_last.val();
            self.found_any.next = self.found_any.val() | self.request[i].val();
            self.found_after_last.next =
                self.found_after_last.val() | self.grant_after_last[i].val();
            self.passed_last.next = self.passed_last.val() | self.last_granted[i].q.val();
        }
        self.granting.next = self.found_any.val() & self.all_space.val() & !self.reset.val();

        // The granted message: an AND-OR over the one-hot grant.
        self.chosen_forged.next = false;
        self.chosen_is_write.next = false;
        self.chosen_is_ack.next = false;
        self.chosen_from_tx.next = false;
        self.chosen_is_down.next = false;
        self.is_broadcast.next = false;
        self.chosen_in_range.next = false;
        self.chosen_to.next = self.no_members.val();
        for i in 0..N {
            self.grant[i].next = self.granting.val() & self.grant_any[i].val();
            if self.found_after_last.val() {
                self.grant[i].next = self.granting.val() & self.grant_after_last[i].val();
            }
            self.granted[i].d.next = self.grant[i].val();
            if self.grant[i].val() {
                self.chosen_forged.next = self.candidate_forged[i].val();
                self.chosen_is_write.next = self.candidate_is_write[i].val();
                self.chosen_is_ack.next = self.candidate_is_ack[i].val();
                self.chosen_from_tx.next = self.from_tx[i].val();
                self.chosen_is_down.next = self.candidate_is_down[i].val();
                self.is_broadcast.next = self.candidate_is_broadcast[i].val();
                self.chosen_in_range.next = self.candidate_in_range[i].val();
                self.chosen_to.next = self.candidate_to[i].val();
            }
        }

        // Grant: onto the bus, with where it goes. The message itself is read next cycle,
        // from the granted port's registers (which hold still for that cycle: a port's
        // holding register refills at the earliest one cycle after its grant, and no
        // acknowledgement is owed anew while one is being sent).
        self.bus_valid.d.next = self.granting.val() & !self.chosen_forged.val();
        self.took_ack.d.next = self.chosen_is_ack.val();
        // Next cycle's write block, a cycle early (a superset: an acknowledgement granted
        // now still blocks next cycle), so the arbiter reads it from a flip-flop.
        self.writes_blocked.d.next = self.any_ack_pending.val()
            | self.write_in_flight.val()
            | (self.granting.val() & self.chosen_is_write.val());
        self.took_held.d.next = self.chosen_from_tx.val();
        self.took_down.d.next = self.chosen_is_down.val();
        self.bus_sequence.d.next = self.next_sequence.q.val();
        self.bus_is_write.d.next = self.chosen_is_write.val();
        if self.granting.val() {
            self.next_sequence.d.next = self.next_sequence.q.val() + self.sequence_step.val();
        }
        for i in 0..N {
            // A joining port hears its own arrival: that is where its view of the order
            // starts.
            self.bus_deliver[i].d.next = self.granting.val()
                & !self.chosen_forged.val()
                & (self.member[i].q.val() | (self.grant[i].val() & !self.from_tx[i].val()))
                & (self.is_broadcast.val()
                    | ((self.chosen_to.val() & self.port_bit[i].val()).any()
                        & !self.chosen_is_write.val()));
            self.bus_write_to[i].d.next = self.granting.val()
                & !self.chosen_forged.val()
                & self.chosen_is_write.val()
                & (self.chosen_to.val() & self.port_bit[i].val()).any()
                & self.member[i].q.val()
                & self.chosen_in_range.val();
            if self.granting.val() {
                self.last_granted[i].d.next = self.grant[i].val();
            }
            // A member whose link dropped departs (until its departure is granted, below);
            // an acknowledgement it owed is void.
            if self.member[i].q.val() & !self.ports[i].link_up.val() {
                self.down_pending[i].d.next = true;
                self.ack_pending[i].d.next = false;
            }
            if self.grant[i].val() {
                if self.from_tx[i].val() {
                    self.held_valid[i].d.next = false;
                } else if self.candidate_is_down[i].val() {
                    self.down_pending[i].d.next = false;
                    self.member[i].d.next = false;
                } else if self.candidate_is_ack[i].val() {
                    self.ack_pending[i].d.next = false;
                } else {
                    self.member[i].d.next = true;
                }
            }
            // Taking a port's offer: into its empty holding register, while its link is up.
            self.target_to.next = self.no_members.val();
            for j in 0..N {
                if self.ports[i].tx_target.val() == self.port_index[j].val() {
                    self.target_to.next = self.target_to.val() | self.port_bit[j].val();
                }
            }
            self.ports[i].tx_ready.next = !self.held_valid[i].q.val() & self.ports[i].link_up.val();
            if self.ports[i].tx_valid.val() & self.ports[i].tx_ready.val() {
                self.held_valid[i].d.next = true;
                self.held_kind[i].d.next = self.ports[i].tx_kind.val();
                self.held_payload[i].d.next = self.ports[i].tx_payload.val();
                self.held_offset[i].d.next = self.ports[i].tx_sram_offset.val();
                self.held_is_write[i].d.next =
                    self.ports[i].tx_kind.val() == self.kind_sram_write.val();
                self.held_is_broadcast[i].d.next =
                    self.ports[i].tx_kind.val() == self.kind_broadcast.val();
                // A port may send broadcasts, unicasts and SRAM writes; any other kind it
                // sends is taken and dropped, so no port can forge the fabric's own messages.
                self.held_forged[i].d.next = (self.ports[i].tx_kind.val()
                    != self.kind_broadcast.val())
                    & (self.ports[i].tx_kind.val() != self.kind_unicast.val())
                    & (self.ports[i].tx_kind.val() != self.kind_sram_write.val());
                self.held_in_range[i].d.next =
                    self.ports[i].tx_sram_offset.val() < self.sram_bytes.val();
                self.held_to[i].d.next = self.target_to.val();
            }
        }

        // The bus: the granted message, into receive queues and onto SRAM ports.
        self.bus_kind.next = self.kind_member_up.val();
        self.bus_source.next = self.no_ports.val();
        self.bus_source_bit.next = self.no_members.val();
        self.bus_payload.next = self.zero_payload.val();
        self.bus_offset.next = self.zero_offset.val();
        for i in 0..N {
            if self.granted[i].q.val() {
                self.bus_source.next = self.port_index[i].val();
                self.bus_source_bit.next = self.port_bit[i].val();
                if self.took_ack.q.val() {
                    self.bus_kind.next = self.kind_sram_write_ack.val();
                    self.bus_payload.next = self.ack_sequence[i].q.val();
                } else if self.took_held.q.val() {
                    self.bus_kind.next = self.held_kind[i].q.val();
                    self.bus_payload.next = self.held_payload[i].q.val();
                    self.bus_offset.next = self.held_offset[i].q.val();
                } else if self.took_down.q.val() {
                    self.bus_kind.next = self.kind_member_down.val();
                }
            }
        }
        for i in 0..N {
            self.ports[i].sram_write.next = self.bus_valid.q.val() & self.bus_write_to[i].q.val();
            self.ports[i].sram_offset.next = self.bus_offset.val();
            self.ports[i].sram_data.next = self.bus_payload.val();
            if self.bus_valid.q.val() & self.bus_write_to[i].q.val() {
                self.ack_pending[i].d.next = true;
                self.ack_to[i].d.next = self.bus_source_bit.val();
                self.ack_sequence[i].d.next = self.bus_sequence.q.val();
            }
            if self.bus_valid.q.val() & self.bus_deliver[i].q.val() & self.ports[i].link_up.val() {
                self.rx_write_slot[i].d.next = !self.rx_write_slot[i].q.val();
                if self.rx_write_slot[i].q.val() {
                    self.filled1_next[i].next = true;
                    self.rx1_kind[i].d.next = self.bus_kind.val();
                    self.rx1_source[i].d.next = self.bus_source.val();
                    self.rx1_sequence[i].d.next = self.bus_sequence.q.val();
                    self.rx1_payload[i].d.next = self.bus_payload.val();
                } else {
                    self.filled0_next[i].next = true;
                    self.rx0_kind[i].d.next = self.bus_kind.val();
                    self.rx0_source[i].d.next = self.bus_source.val();
                    self.rx0_sequence[i].d.next = self.bus_sequence.q.val();
                    self.rx0_payload[i].d.next = self.bus_payload.val();
                }
            }
            self.read_next[i].next = self.rx_read_slot[i].q.val() ^ self.pop[i].val();
            // A port that is not a member holds nothing it could still take.
            if !self.member[i].q.val() & !self.bus_deliver[i].q.val() {
                self.filled0_next[i].next = false;
                self.filled1_next[i].next = false;
                self.read_next[i].next = self.rx_write_slot[i].q.val();
            }
            self.rx_filled0[i].d.next = self.filled0_next[i].val();
            self.rx_filled1[i].d.next = self.filled1_next[i].val();
            self.rx_read_slot[i].d.next = self.read_next[i].val();
            self.rx_valid_reg[i].d.next = self.filled0_next[i].val();
            if self.read_next[i].val() {
                self.rx_valid_reg[i].d.next = self.filled1_next[i].val();
            }
            self.ports[i].rx_valid.next = self.rx_valid_reg[i].q.val();
            self.ports[i].rx_kind.next = self.rx0_kind[i].q.val();
            self.ports[i].rx_source.next = self.rx0_source[i].q.val();
            self.ports[i].rx_sequence.next = self.rx0_sequence[i].q.val();
            self.ports[i].rx_payload.next = self.rx0_payload[i].q.val();
            if self.rx_read_slot[i].q.val() {
                self.ports[i].rx_kind.next = self.rx1_kind[i].q.val();
                self.ports[i].rx_source.next = self.rx1_source[i].q.val();
                self.ports[i].rx_sequence.next = self.rx1_sequence[i].q.val();
                self.ports[i].rx_payload.next = self.rx1_payload[i].q.val();
            }
        }

        if self.reset.val() {
            self.next_sequence.d.next = self.zero_payload.val();
            self.bus_valid.d.next = false;
            for i in 0..N {
                // As if the last port had just been served: port 0 goes first.
                self.last_granted[i].d.next = self.is_last_port[i].val();
                self.member[i].d.next = false;
                self.down_pending[i].d.next = false;
                self.ack_pending[i].d.next = false;
                self.held_valid[i].d.next = false;
                self.rx_filled0[i].d.next = false;
                self.rx_filled1[i].d.next = false;
                self.rx_write_slot[i].d.next = false;
                self.rx_read_slot[i].d.next = false;
                self.rx_valid_reg[i].d.next = false;
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
                io.rx_ready.next = self.rng.gen_ratio(2, 3);
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

        fn cycle(&mut self) {
            self.drive_inputs();
            settle(&mut self.uut);
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
            bench.observe_outputs();
            rising_edge(&mut bench.uut, |u| &mut u.clock);
        }
        // Four pipeline stages between a first offer and its delivery, then one a cycle.
        assert!(cycles <= 200 + 4, "{cycles} cycles for 200 messages");
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
