//! The Verilated fabrics (4 and 8 ports) under random traffic into every port: one order of
//! broadcasts, nothing lost, duplicated or reordered point to point, remote SRAM writes that
//! land and are acknowledged after they landed, and a port's departure ordered after its
//! last message, then its return.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shared_regs::fabric::{MessageKind, PORT_BROADCAST};
use std::collections::BTreeMap;
use testbench::fabric::{Delivered, FabricModel, FabricPacing, Message, Traffic};

/// The card SRAM behind every fabric model (hdl::verilog::CARD_SRAM_WORDS_LOG2 words).
const SRAM_BYTES: u32 = 8 << hdl::verilog::CARD_SRAM_WORDS_LOG2;
const MESSAGES_PER_PORT: usize = 400;
const PACING: FabricPacing = FabricPacing {
    offer_percent: 70,
    ready_percent: 60,
};

/// Kinds that travel in the one total order.
const ORDERED: [MessageKind; 3] = [
    MessageKind::Broadcast,
    MessageKind::MemberUp,
    MessageKind::MemberDown,
];

fn is_ordered(delivered: &Delivered) -> bool {
    ORDERED.iter().any(|&kind| delivered.is(kind))
}

/// Random messages for every port; every SRAM write has its own offset, one in ten lands
/// beyond the SRAM, and none targets `departing` (whose acknowledgements its departure
/// voids: the check would have to guess which).
fn random_traffic(ports: usize, departing: usize, rng: &mut ChaCha8Rng) -> Traffic {
    let mut traffic = Traffic::new(ports);
    let mut write_id = 0_u32;
    for (port, outbox) in traffic.outbox.iter_mut().enumerate() {
        for message in 0..MESSAGES_PER_PORT {
            let payload = (port as u64) << 32 | message as u64;
            let target = rng.gen_range(0..ports) as u8;
            outbox.push_back(match rng.gen_range(0..3) {
                0 => Message {
                    kind: MessageKind::Broadcast,
                    target: PORT_BROADCAST,
                    payload,
                    sram_offset: 0,
                },
                1 => Message {
                    kind: MessageKind::Unicast,
                    target,
                    payload,
                    sram_offset: 0,
                },
                _ if usize::from(target) != departing => {
                    write_id += 1;
                    let beyond = if rng.gen_ratio(1, 10) { SRAM_BYTES } else { 0 };
                    Message {
                        kind: MessageKind::SramWrite,
                        target,
                        payload,
                        sram_offset: beyond + write_id * 8,
                    }
                }
                _ => Message {
                    kind: MessageKind::Unicast,
                    target,
                    payload,
                    sram_offset: 0,
                },
            });
        }
    }
    assert!(write_id * 8 < SRAM_BYTES, "offsets must not wrap");
    traffic
}

/// Every ordered message any port received, by sequence: each sequence names one message.
fn global_order(traffic: &Traffic) -> BTreeMap<u64, (u8, u8, u64)> {
    let mut order = BTreeMap::new();
    for delivered in traffic.inbox.iter().flatten().filter(|d| is_ordered(d)) {
        let message = (delivered.kind, delivered.source, delivered.payload);
        let previous = order.insert(delivered.sequence, message);
        assert!(
            previous.is_none_or(|p| p == message),
            "sequence {} names two messages",
            delivered.sequence
        );
    }
    order
}

/// The sequences of the ordered messages during each of `port`'s memberships: from its
/// `MemberUp` to its `MemberDown`.
fn memberships(order: &BTreeMap<u64, (u8, u8, u64)>, port: usize) -> Vec<Vec<u64>> {
    let mut periods: Vec<Vec<u64>> = Vec::new();
    let mut member = false;
    for (&sequence, &(kind, source, _)) in order {
        let own = usize::from(source) == port;
        if own && kind == MessageKind::MemberUp as u8 {
            member = true;
            periods.push(Vec::new());
        }
        if own && kind == MessageKind::MemberDown as u8 {
            member = false;
        }
        if member {
            periods.last_mut().expect("a period is open").push(sequence);
        }
    }
    periods
}

/// Each port saw the ordered messages of its memberships, in order, none twice and none
/// from outside them: all of them if it stayed up, a prefix of each membership if it lost
/// its link in one (a port whose link is down receives nothing).
fn check_one_order(traffic: &Traffic, stayed_up: &[bool]) {
    let order = global_order(traffic);
    for (port, inbox) in traffic.inbox.iter().enumerate() {
        let seen: Vec<u64> = inbox
            .iter()
            .filter(|d| is_ordered(d))
            .map(|d| d.sequence)
            .collect();
        let periods = memberships(&order, port);
        assert!(!periods.is_empty(), "port {port} never joined");
        let mut rest = seen.as_slice();
        for period in &periods {
            let taken = rest.iter().take_while(|s| period.contains(s)).count();
            let (in_period, after) = rest.split_at(taken);
            if stayed_up[port] {
                assert_eq!(
                    in_period,
                    period.as_slice(),
                    "port {port} missed or reordered a broadcast"
                );
            } else {
                assert!(
                    period.starts_with(in_period),
                    "port {port} saw a gap in its membership"
                );
            }
            rest = after;
        }
        assert!(
            rest.is_empty(),
            "port {port} heard broadcasts outside its memberships: {rest:?}"
        );
        let sequences: Vec<u64> = inbox.iter().map(|d| d.sequence).collect();
        assert!(
            sequences.is_sorted_by(|a, b| a < b),
            "port {port}: sequences not increasing"
        );
    }
}

/// Unicasts from each sender reach each receiver that stayed up exactly once, in order.
fn check_point_to_point(traffic: &Traffic, stayed_up: &[bool]) {
    for (receiver, inbox) in traffic
        .inbox
        .iter()
        .enumerate()
        .filter(|(r, _)| stayed_up[*r])
    {
        for (sender, accepted) in traffic
            .accepted
            .iter()
            .enumerate()
            .filter(|(s, _)| stayed_up[*s])
        {
            let sent: Vec<u64> = accepted
                .iter()
                .filter(|m| m.kind == MessageKind::Unicast && usize::from(m.target) == receiver)
                .map(|m| m.payload)
                .collect();
            let received: Vec<u64> = inbox
                .iter()
                .filter(|d| d.is(MessageKind::Unicast) && usize::from(d.source) == sender)
                .map(|d| d.payload)
                .collect();
            assert_eq!(received, sent, "unicasts {sender} -> {receiver}");
        }
    }
}

/// Every write within the SRAM to a target that stayed up landed once with its data, and
/// its sender got one acknowledgement from the target after the write was presented;
/// writes beyond the SRAM never landed.
fn check_remote_writes(traffic: &Traffic, stayed_up: &[bool]) {
    for (sender, accepted) in traffic
        .accepted
        .iter()
        .enumerate()
        .filter(|(s, _)| stayed_up[*s])
    {
        let mut acks = traffic.inbox[sender]
            .iter()
            .filter(|d| d.is(MessageKind::SramWriteAck));
        for write in accepted.iter().filter(|m| m.kind == MessageKind::SramWrite) {
            let target = usize::from(write.target);
            let landed: Vec<_> = traffic.sram_writes[target]
                .iter()
                .filter(|w| w.offset == write.sram_offset)
                .collect();
            if write.sram_offset >= SRAM_BYTES {
                assert!(landed.is_empty(), "a write beyond the SRAM landed");
                continue;
            }
            assert!(
                stayed_up[target],
                "the traffic sends no write to the departing port"
            );
            assert_eq!(
                landed.len(),
                1,
                "write to {target} at {:#x} landed {} times",
                write.sram_offset,
                landed.len()
            );
            assert_eq!(landed[0].data, write.payload);
            let ack = acks.next().expect("an acknowledgement per landed write");
            assert_eq!(
                usize::from(ack.source),
                target,
                "acknowledgements come in write order"
            );
            assert!(
                ack.cycle > landed[0].cycle,
                "acknowledged before the write was presented"
            );
        }
    }
}

/// Port `down` loses its link mid-traffic and comes back: everyone hears its departure after
/// everything it sent, nothing from it until its return, and its return.
fn check_departure(traffic: &Traffic, down: usize, accepted_before_drop: usize) {
    let broadcasts_sent = traffic.accepted[down][..accepted_before_drop]
        .iter()
        .filter(|m| m.kind == MessageKind::Broadcast)
        .count();
    for (port, inbox) in traffic.inbox.iter().enumerate().filter(|(p, _)| *p != down) {
        let from_down = |d: &&Delivered| usize::from(d.source) == down;
        let departure = inbox
            .iter()
            .position(|d| d.is(MessageKind::MemberDown) && usize::from(d.source) == down)
            .expect("departure announced");
        let return_at = inbox
            .iter()
            .position(|d| {
                d.is(MessageKind::MemberUp)
                    && usize::from(d.source) == down
                    && d.sequence > inbox[departure].sequence
            })
            .expect("return announced");
        assert!(
            !inbox[departure + 1..return_at]
                .iter()
                .any(|d| from_down(&d)),
            "port {port} heard a departed port"
        );
        let heard = inbox[..departure]
            .iter()
            .filter(|d| from_down(d) && d.is(MessageKind::Broadcast))
            .count();
        assert_eq!(
            heard, broadcasts_sent,
            "port {port} missed a broadcast sent before the departure"
        );
    }
}

fn run(ports: usize, seed: u64) {
    let mut fabric = FabricModel::new(ports).unwrap_or_else(|error| panic!("{error}"));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let down = ports - 1;
    let mut traffic = random_traffic(ports, down, &mut rng);
    for _ in 0..800 {
        fabric.cycle(&mut traffic, PACING, &mut rng);
    }
    let accepted_before_drop = traffic.accepted[down].len();
    assert!(
        accepted_before_drop > 0,
        "the drop came before the port sent anything"
    );
    traffic.link_up[down] = false;
    traffic.outbox[down].clear();
    for _ in 0..200 {
        fabric.cycle(&mut traffic, PACING, &mut rng);
    }
    let all_but_down = ((1_u32 << ports) - 1) & !(1 << down);
    assert_eq!(fabric.membership(), all_but_down);
    traffic.link_up[down] = true;
    fabric.run_until_quiet(&mut traffic, PACING, &mut rng, 50, 200_000);
    assert_eq!(fabric.membership(), (1_u32 << ports) - 1);

    let mut stayed_up = vec![true; ports];
    stayed_up[down] = false;
    check_one_order(&traffic, &stayed_up);
    check_point_to_point(&traffic, &stayed_up);
    check_remote_writes(&traffic, &stayed_up);
    check_departure(&traffic, down, accepted_before_drop);
    let delivered: usize = traffic.inbox.iter().map(Vec::len).sum();
    assert!(
        delivered > ports * MESSAGES_PER_PORT / 2,
        "too little traffic to prove anything: {delivered}"
    );
}

#[test]
fn four_ports_keep_every_guarantee_under_random_traffic() {
    for seed in 1..=3 {
        run(4, seed);
    }
}

#[test]
fn eight_ports_keep_every_guarantee_under_random_traffic() {
    for seed in 11..=13 {
        run(8, seed);
    }
}
