//! Two Verilated cards over the Verilated fabric (`testbench::rtl_pair`), first on their
//! own and then under two real coherency cores (`amf_coherency::Amf`, ports 0 and 1):
//! every broadcast, unicast and SRAM write between the cores crosses the RTL fabric, the
//! intent record AMF 0 writes lands in card 1's SRAM through the RTL, and when AMF 0 dies
//! mid-write (its link dropped, the RTL fabric announcing the departure), AMF 1 reads the
//! record back from card 1's Verilated SRAM and replays AMF 0's data.
use amf_card::Card;
use amf_coherency::{Amf, Config, Event, MemberOutcome, MemberRequest, Request, Sram, Transmit};
use shared_regs::intent::{Intent, IntentPhase};
use shared_regs::limits::BLOCK_BYTES;
use std::cell::RefCell;
use testbench::backend::RtlCard;
use testbench::fabric::FabricPacing;
use testbench::rtl_pair::{Delivery, PAIR_PORTS, PairError, RtlPair, WORD_BYTES};

/// Every port offers and takes whenever it can.
const FULL_PACE: FabricPacing = FabricPacing {
    offer_percent: 100,
    ready_percent: 100,
};
/// Ports pausing at random, so queues fill and messages interleave.
const RANDOM_PACE: FabricPacing = FabricPacing {
    offer_percent: 60,
    ready_percent: 50,
};
/// Bound on any wait below: far above what a few thousand fabric words take.
const CYCLES_MAX: u64 = 200_000;
const BLOCK: usize = BLOCK_BYTES as usize;

fn pair(pacing: FabricPacing, seed: u64) -> RtlPair {
    RtlPair::new(pacing, seed).unwrap_or_else(|error| panic!("{error}: {error:?}"))
}

/// Deterministic bytes, different per `seed`.
fn pattern(seed: u64, length: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Runs the pair until `done`; panics after [`CYCLES_MAX`].
fn run_pair_until(pair: &mut RtlPair, mut done: impl FnMut(&mut RtlPair) -> bool) {
    let start = pair.cycles();
    while !done(pair) {
        assert!(
            pair.cycles() - start < CYCLES_MAX,
            "pair still waiting after {CYCLES_MAX} cycles"
        );
        pair.cycle();
    }
}

/// Brings both links up, one after the other, and drains the announcements.
fn join_both(pair: &mut RtlPair) {
    for port in 0..PAIR_PORTS as u8 {
        pair.raise_link(port);
        run_pair_until(pair, |pair| pair.membership() & 1 << port != 0);
    }
    for _ in 0..16 {
        pair.cycle();
    }
    for port in 0..PAIR_PORTS as u8 {
        while pair.poll_delivery(port).is_some() {}
    }
}

/// `got == want`, reporting the first differing byte rather than both buffers.
fn assert_same_bytes(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(at) = got.iter().zip(want).position(|(g, w)| g != w) {
        panic!(
            "{what}: byte {at} is {:#04x}, expected {:#04x}",
            got[at], want[at]
        );
    }
}

fn sram_read(card: &mut Card<RtlCard>, offset: u32, length_bytes: usize) -> Vec<u8> {
    let mut bytes = vec![0; length_bytes];
    card.sram_read(u64::from(offset), &mut bytes)
        .unwrap_or_else(|error| panic!("SRAM read at {offset:#x}: {error}"));
    bytes
}

#[test]
fn an_sram_write_lands_in_the_target_card_alone_and_is_acked_once_whole() {
    let mut pair = pair(RANDOM_PACE, 1);
    join_both(&mut pair);
    let record = pattern(7, 65 * WORD_BYTES);
    let offset = 70_000; // on the SRAM's second window page
    pair.sram_write(0, 1, offset, &record).unwrap();
    let mut acks = Vec::new();
    run_pair_until(&mut pair, |pair| {
        acks.extend(std::iter::from_fn(|| pair.poll_delivery(0)));
        pair.sent_all()
    });
    for _ in 0..64 {
        pair.cycle();
    }
    acks.extend(std::iter::from_fn(|| pair.poll_delivery(0)));
    assert_eq!(acks, [Delivery::SramWriteAcked { target: 1, offset }]);
    assert_eq!(pair.poll_delivery(1), None, "a remote write is no message");
    assert_eq!(pair.sram_words_presented(1), record.len() / WORD_BYTES);
    assert_eq!(pair.sram_words_presented(0), 0);
    let landed = sram_read(pair.card_mut(1), offset, record.len());
    assert_same_bytes(&landed, &record, "card 1's SRAM");
    assert_ne!(sram_read(pair.card_mut(0), offset, record.len()), record);
}

#[test]
fn an_sram_write_of_part_words_is_refused_before_the_fabric() {
    let mut pair = pair(FULL_PACE, 2);
    for (offset, length_bytes) in [(4, 8), (8, 12), (8, 0), (u32::MAX - 7, 16)] {
        let refused = pair.sram_write(0, 1, offset, &vec![1; length_bytes]);
        assert!(
            matches!(refused, Err(PairError::Unaligned { .. })),
            "{length_bytes} bytes at {offset:#x}: {refused:?}"
        );
    }
    assert!(pair.sent_all(), "nothing was queued");
}

/// Both ports broadcast and unicast payloads of many lengths at once, with random pacing:
/// each payload arrives whole at each receiver, unicasts at their target only, and both
/// ports see the broadcasts (their own included) in one order.
#[test]
fn payloads_longer_than_a_word_arrive_whole_and_broadcasts_in_one_order() {
    let mut pair = pair(RANDOM_PACE, 3);
    join_both(&mut pair);
    let mut sent_unicasts = vec![Vec::new(); PAIR_PORTS];
    let mut sent_broadcasts = Vec::new();
    for round in 0..12_u64 {
        for from in 0..PAIR_PORTS as u8 {
            let to = 1 - from;
            let payload = pattern(round * 2 + u64::from(from), (round as usize * 13) % 97);
            pair.broadcast(from, &payload);
            sent_broadcasts.push((from, payload.clone()));
            let payload = pattern(1000 + round, round as usize * 5);
            pair.unicast(from, to, &payload);
            sent_unicasts[usize::from(to)].push((from, payload));
        }
    }
    let mut received = vec![Vec::new(); PAIR_PORTS];
    run_pair_until(&mut pair, |pair| {
        for (port, got) in received.iter_mut().enumerate() {
            got.extend(std::iter::from_fn(|| pair.poll_delivery(port as u8)));
        }
        received.iter().flatten().count() == 3 * sent_broadcasts.len()
    });
    let broadcasts = |port: usize| -> Vec<(u8, Vec<u8>)> {
        received[port]
            .iter()
            .filter_map(|delivery| match delivery {
                Delivery::Broadcast { from, payload } => Some((*from, payload.clone())),
                _ => None,
            })
            .collect()
    };
    assert_eq!(broadcasts(0), broadcasts(1), "one order of broadcasts");
    let mut seen = broadcasts(0);
    seen.sort();
    sent_broadcasts.sort();
    assert_eq!(seen, sent_broadcasts, "every broadcast, whole, once");
    for (port, sent) in sent_unicasts.iter().enumerate() {
        let unicasts: Vec<(u8, Vec<u8>)> = received[port]
            .iter()
            .filter_map(|delivery| match delivery {
                Delivery::Unicast { from, payload } => Some((*from, payload.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            &unicasts, sent,
            "port {port}'s unicasts, whole and in order"
        );
    }
}

/// Card `port`'s SRAM, read and written through the host driver's SRAM window, as the
/// core's `Sram` (whose reads take `&self`, hence the cell).
struct CardSram<'a>(RefCell<&'a mut Card<RtlCard>>);

impl Sram for CardSram<'_> {
    fn read(&self, offset: u32, bytes: &mut [u8]) {
        self.0
            .borrow_mut()
            .sram_read(u64::from(offset), bytes)
            .unwrap_or_else(|error| panic!("SRAM read at {offset:#x}: {error}"));
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) {
        self.0
            .get_mut()
            .sram_write(u64::from(offset), bytes)
            .unwrap_or_else(|error| panic!("SRAM write at {offset:#x}: {error}"));
    }
}

/// The cores' layout, sized for the card: one slot per owner, records of two blocks
/// (8 owners x 1 slot x (64 + 8192) bytes = 66048 bytes of the card's 131072).
fn config(port: u8, live_ports: Vec<u8>) -> Config {
    Config {
        port,
        incarnation: 0,
        live_ports,
        stripe_count: 8,
        stripe_data_blocks: 2,
        array_generation: 1,
        failed_members: 0,
        intent_slots: 1,
        parity_count: 2,
        cache_blocks_max: 1024,
        mutation: Default::default(),
    }
}

/// An SRAM write a core asked for: (writer, target, offset, bytes).
type SentWrite = (u8, u8, u32, Vec<u8>);

/// Two coherency cores on the pair: every transmit onto the RTL fabric, every delivery
/// into the core of the port that received it. Member I/O is held (a core with a held
/// write is mid-write) unless `serving`, when it runs at once on `members`.
struct Cluster {
    pair: RtlPair,
    amfs: Vec<Option<Amf>>,
    member_io: Vec<Vec<(u64, MemberRequest)>>,
    serving: bool,
    members: Members,
    events: Vec<Vec<Event>>,
    sram_writes: Vec<SentWrite>,
    /// (cycle, writer, target, offset) of every whole-write ack a core was given.
    acks: Vec<(u64, u8, u8, u32)>,
}

impl Cluster {
    /// Port 0's link comes up and AMF 0 starts at its own arrival, then port 1's and
    /// AMF 1 (which joined after 0, so sees [0, 1]).
    fn new(pacing: FabricPacing, seed: u64) -> Cluster {
        let mut cluster = Cluster {
            pair: pair(pacing, seed),
            amfs: (0..PAIR_PORTS).map(|_| None).collect(),
            member_io: vec![Vec::new(); PAIR_PORTS],
            serving: false,
            members: Members::default(),
            events: vec![Vec::new(); PAIR_PORTS],
            sram_writes: Vec::new(),
            acks: Vec::new(),
        };
        for port in 0..PAIR_PORTS as u8 {
            cluster.pair.raise_link(port);
            cluster.run_until(|cluster| cluster.amfs[usize::from(port)].is_some());
        }
        // AMF 0 learns of port 1 when it takes port 1's arrival, maybe cycles later.
        cluster.run_until(|cluster| {
            let knows_all = |amf: &Amf| amf.live_ports().len() == PAIR_PORTS;
            cluster.amfs.iter().flatten().all(knows_all)
        });
        let card_sram_bytes = cluster.pair.card_mut(0).identity().sram_bytes;
        assert!(config(0, vec![0]).sram_bytes() <= card_sram_bytes);
        cluster
    }

    fn amf(&mut self, port: u8) -> &mut Amf {
        self.amfs[usize::from(port)].as_mut().expect("AMF is alive")
    }

    fn run_until(&mut self, mut done: impl FnMut(&mut Cluster) -> bool) {
        let start = self.pair.cycles();
        while !done(self) {
            assert!(
                self.pair.cycles() - start < CYCLES_MAX,
                "cluster still waiting after {CYCLES_MAX} cycles"
            );
            self.step();
        }
    }

    /// Runs until every live core is quiet and everything they sent has crossed the
    /// fabric (a few dozen cycles after the last offer).
    fn settle(&mut self) {
        let quiet = |cluster: &mut Cluster| {
            cluster.pair.sent_all() && cluster.amfs.iter().flatten().all(Amf::is_quiet)
        };
        self.run_until(quiet);
        for _ in 0..64 {
            self.step();
        }
        assert!(quiet(self), "a core woke up after it was quiet");
    }

    /// One cycle of the RTL, then every core takes its port's deliveries and hands over
    /// what they made it want.
    fn step(&mut self) {
        self.pair.cycle();
        for port in 0..PAIR_PORTS as u8 {
            while let Some(delivery) = self.pair.poll_delivery(port) {
                self.deliver(port, delivery);
            }
            self.drain(port);
            while self.serving && !self.member_io[usize::from(port)].is_empty() {
                self.serve(port);
                self.drain(port);
            }
        }
    }

    /// Runs `port`'s held member I/O on the members and completes it.
    fn serve(&mut self, port: u8) {
        let now = self.pair.cycles();
        for (_, request) in std::mem::take(&mut self.member_io[usize::from(port)]) {
            let outcome = self.members.perform(&request);
            self.amf(port)
                .handle_member_completion(now, request.io(), outcome);
        }
    }

    fn deliver(&mut self, port: u8, delivery: Delivery) {
        match delivery {
            Delivery::MemberUp { port: joined, .. } if joined == port => self.start_amf(port),
            delivery => self.deliver_to_core(port, delivery),
        }
    }

    fn deliver_to_core(&mut self, port: u8, delivery: Delivery) {
        let now = self.pair.cycles();
        let Some(amf) = self.amfs[usize::from(port)].as_mut() else {
            return; // a dead AMF hears nothing
        };
        let mut sram = CardSram(RefCell::new(self.pair.card_mut(port)));
        match delivery {
            Delivery::MemberUp { port: joined, .. } => amf.handle_member_up(now, joined),
            Delivery::MemberDown { port: left } => amf.handle_member_down(now, left, &mut sram),
            Delivery::Broadcast { from, payload } => {
                amf.handle_broadcast(now, from, &payload, &mut sram)
                    .expect("a coherency message");
            }
            Delivery::Unicast { from, payload } => {
                amf.handle_unicast(now, from, &payload)
                    .expect("a coherency reply");
            }
            Delivery::SramWriteAcked { target, offset } => {
                amf.handle_sram_ack(now, target, offset);
                self.acks.push((now, port, target, offset));
            }
        }
    }

    /// `port` heard its own arrival: its core starts with the ports live before it.
    fn start_amf(&mut self, port: u8) {
        let live = (0..=port).collect();
        let mut sram = CardSram(RefCell::new(self.pair.card_mut(port)));
        self.amfs[usize::from(port)] = Some(Amf::new(config(port, live), &mut sram));
    }

    fn drain(&mut self, port: u8) {
        let now = self.pair.cycles();
        let Some(amf) = self.amfs[usize::from(port)].as_mut() else {
            return;
        };
        while let Some(transmit) = amf.poll_transmit() {
            match transmit {
                Transmit::Broadcast { payload } => self.pair.broadcast(port, &payload),
                Transmit::Unicast { target, payload } => {
                    self.pair.unicast(port, target, &payload);
                }
                Transmit::SramWrite {
                    target,
                    offset,
                    bytes,
                } => {
                    self.pair
                        .sram_write(port, target, offset, &bytes)
                        .expect("intent records are whole words");
                    self.sram_writes.push((port, target, offset, bytes));
                }
            }
        }
        while let Some(write) = amf.poll_local_write() {
            let mut sram = CardSram(RefCell::new(self.pair.card_mut(port)));
            sram.write(write.offset, &write.bytes);
        }
        self.member_io[usize::from(port)].extend(amf.poll_member_io().map(|io| (now, io)));
        self.events[usize::from(port)].extend(std::iter::from_fn(|| amf.poll_event()));
    }

    /// AMF `port` dies: its core is gone and its card's link drops.
    fn kill(&mut self, port: u8) {
        self.amfs[usize::from(port)] = None;
        self.pair.drop_link(port);
    }
}

/// The stripes' data blocks, as the RAID path would leave them (parity is not the
/// coherency core's business), and the order blocks were written in.
#[derive(Debug, Default)]
struct Members {
    blocks: std::collections::BTreeMap<(u64, u32), Vec<u8>>,
    written: Vec<(u64, u32, Vec<u8>)>,
}

impl Members {
    fn perform(&mut self, request: &MemberRequest) -> MemberOutcome {
        match request {
            MemberRequest::Read {
                stripe,
                first_block,
                block_count,
                ..
            } => MemberOutcome::Read(
                (*first_block..first_block + block_count)
                    .flat_map(|block| self.block(*stripe, block))
                    .collect(),
            ),
            MemberRequest::Write {
                stripe,
                first_block,
                data,
                ..
            }
            | MemberRequest::Replay {
                stripe,
                first_block,
                data,
                ..
            } => {
                for (block, bytes) in (*first_block..).zip(data.chunks_exact(BLOCK)) {
                    self.blocks.insert((*stripe, block), bytes.to_vec());
                    self.written.push((*stripe, block, bytes.to_vec()));
                }
                MemberOutcome::Written
            }
            MemberRequest::Rebuild { .. } | MemberRequest::Scrub { .. } => {
                unreachable!("no member failed and nobody scrubs here: {request:?}")
            }
        }
    }

    fn block(&self, stripe: u64, block: u32) -> Vec<u8> {
        self.blocks
            .get(&(stripe, block))
            .cloned()
            .unwrap_or_else(|| vec![0; BLOCK])
    }
}

/// Stripe 1 of two-block stripes, its second block: where AMF 0 writes.
const WRITTEN_BLOCK: u64 = 3;
const WRITTEN_STRIPE: u64 = 1;
const WRITTEN_BLOCK_IN_STRIPE: u32 = 1;

/// AMF 0 takes a one-block write and runs until its member write is issued (and held: it
/// is mid-write). Returns the block written.
fn amf0_mid_write(cluster: &mut Cluster) -> Vec<u8> {
    let data = pattern(42 + cluster.pair.cycles(), BLOCK);
    let request = Request::Write {
        first_block: WRITTEN_BLOCK,
        data: data.clone(),
    };
    let now = cluster.pair.cycles();
    cluster.amf(0).handle_request(now, 7, request).unwrap();
    cluster.run_until(|cluster| !cluster.member_io[0].is_empty());
    data
}

/// AMF 0 writes one block: its acquire and AMF 1's reply cross the RTL fabric, its intent
/// record crosses it as SRAM writes into card 1, and only the fabric's ack of the last
/// word lets its member write start. The record read back from card 1's SRAM through the
/// host driver is the record AMF 0 wrote. AMF 0 then dies before its member write
/// completes; the RTL fabric announces it, AMF 1 reads the record out of card 1's
/// Verilated SRAM and replays exactly AMF 0's data, and finishes recovery. Once with every
/// port at full pace, then with random pacing under several seeds.
#[test]
fn an_intent_record_lands_in_the_peer_card_and_the_survivor_replays_it() {
    write_land_kill_replay(FULL_PACE, 4);
    for seed in 5..9 {
        write_land_kill_replay(RANDOM_PACE, seed);
    }
}

fn write_land_kill_replay(pacing: FabricPacing, seed: u64) {
    let mut cluster = Cluster::new(pacing, seed);
    assert_eq!(cluster.amf(0).live_ports(), [0, 1]);
    assert_eq!(cluster.amf(1).live_ports(), [0, 1]);
    let data = amf0_mid_write(&mut cluster);
    let (issued_at, write) = cluster.member_io[0][0].clone();
    let MemberRequest::Write {
        stripe: WRITTEN_STRIPE,
        first_block: WRITTEN_BLOCK_IN_STRIPE,
        data: written,
        ..
    } = write
    else {
        panic!("AMF 0 should write stripe 1's second block");
    };
    assert_same_bytes(&written, &data, "AMF 0's member write");
    let (offset, record) = check_record_sent_and_acked(&cluster, &data, issued_at);

    // The record is in card 1's SRAM, word for word, through the fabric; card 0 holds
    // its own local copy, written by its host through the SRAM window (the fabric
    // presented nothing to card 0).
    assert_eq!(
        cluster.pair.sram_words_presented(1),
        record.len() / WORD_BYTES
    );
    assert_eq!(cluster.pair.sram_words_presented(0), 0);
    let landed = sram_read(cluster.pair.card_mut(1), offset, record.len());
    assert_same_bytes(&landed, &record, "the record in card 1's SRAM");
    let local = sram_read(cluster.pair.card_mut(0), offset, record.len());
    assert_same_bytes(&local, &record, "AMF 0's local copy in card 0's SRAM");
    assert!(
        cluster.events[0].is_empty(),
        "not acknowledged before durable"
    );

    cluster.kill(0);
    cluster.run_until(|cluster| !cluster.member_io[1].is_empty());
    let (_, replay) = cluster.member_io[1].remove(0);
    let MemberRequest::Replay {
        stripe,
        first_block,
        data: replayed,
        ..
    } = &replay
    else {
        panic!("AMF 1 should replay AMF 0's write, not {replay:?}");
    };
    assert_eq!(
        (*stripe, *first_block),
        (WRITTEN_STRIPE, WRITTEN_BLOCK_IN_STRIPE)
    );
    assert_same_bytes(
        replayed,
        &data,
        "the replay's data (what AMF 0 was writing)",
    );
    assert_eq!(cluster.amf(1).live_ports(), [1]);
    assert_eq!(cluster.amf(1).counters().replays, 1);
    assert_eq!(
        sram_read(cluster.pair.card_mut(1), offset, 4),
        [0; 4],
        "the survivor freed the dead owner's slot in card 1"
    );

    let now = cluster.pair.cycles();
    cluster
        .amf(1)
        .handle_member_completion(now, replay.io(), MemberOutcome::Written);
    cluster.settle();
    assert!(!cluster.amf(1).recovering());
    assert!(cluster.amf(1).dead_records().is_empty());
}

/// AMF 0 sent one intent record, to port 1, in its slot, for the block it writes, and
/// was given one ack for it, before its member write was issued at `issued_at`. Returns
/// the record's offset and bytes.
fn check_record_sent_and_acked(cluster: &Cluster, data: &[u8], issued_at: u64) -> (u32, Vec<u8>) {
    let [(writer, target, offset, record)] = &cluster.sram_writes[..] else {
        panic!("one intent record to one peer: {:?}", cluster.sram_writes);
    };
    let (writer, target, offset) = (*writer, *target, *offset);
    assert_eq!(
        (writer, target, offset),
        (0, 1, config(0, vec![0]).slot_offset(0, 0))
    );
    let (intent, payload) = Intent::decode(record).expect("the record decodes");
    assert_eq!(
        (
            intent.owner_port,
            intent.stripe,
            intent.first_block,
            intent.block_count
        ),
        (0, WRITTEN_STRIPE, WRITTEN_BLOCK_IN_STRIPE, 1)
    );
    assert_eq!(intent.phase, IntentPhase::Prepared);
    assert_same_bytes(payload, data, "the record's payload");
    let [(acked_at, ack_writer, ack_target, ack_offset)] = cluster.acks[..] else {
        panic!("one ack, for the record's last word: {:?}", cluster.acks);
    };
    assert_eq!((ack_writer, ack_target, ack_offset), (0, 1, offset));
    assert!(
        acked_at <= issued_at,
        "member write before the record was acked"
    );
    (offset, record.clone())
}

/// The same write and death with card 1's fabric SRAM port unwired: the fabric still
/// acknowledges the record, but it never reaches card 1's SRAM, so the survivor finds
/// nothing there to replay. The replay above came from the card's SRAM, through the RTL.
#[test]
fn with_card_1s_sram_port_unwired_the_survivor_has_nothing_to_replay() {
    let mut cluster = Cluster::new(FULL_PACE, 9);
    cluster.pair.unwire_sram_port(1);
    let data = amf0_mid_write(&mut cluster);
    let issued_at = cluster.member_io[0][0].0;
    let (offset, _) = check_record_sent_and_acked(&cluster, &data, issued_at);
    assert_eq!(sram_read(cluster.pair.card_mut(1), offset, 4), [0; 4]);

    cluster.kill(0);
    cluster.settle();
    assert!(
        cluster.member_io[1].is_empty(),
        "{:?}",
        cluster.member_io[1]
    );
    assert_eq!(cluster.amf(1).counters().replays, 0);
    assert!(!cluster.amf(1).recovering());
}

/// Both cores write the same block at once, with random pacing (several seeds): their exclusive acquires
/// are ordered by the RTL fabric, each places its record in the other's card and waits for
/// the ack, both writes complete, the block holds the one written last, a read through
/// AMF 0 returns it, and each retire freed the writer's slot in the peer's card.
#[test]
fn two_cores_writing_one_block_at_once_over_the_rtl_both_complete_coherently() {
    for seed in 10..14 {
        two_writers_one_block(seed);
    }
}

fn two_writers_one_block(seed: u64) {
    let mut cluster = Cluster::new(RANDOM_PACE, seed);
    cluster.serving = true;
    let data = [pattern(100, BLOCK), pattern(200, BLOCK)];
    let now = cluster.pair.cycles();
    for port in 0..PAIR_PORTS as u8 {
        let request = Request::Write {
            first_block: 4,
            data: data[usize::from(port)].clone(),
        };
        cluster.amf(port).handle_request(now, 10, request).unwrap();
    }
    cluster.settle();
    for port in 0..PAIR_PORTS {
        assert_eq!(
            cluster.events[port],
            [Event::Completed { id: 10, data: None }]
        );
    }
    let mut records: Vec<(u8, u8)> = cluster
        .sram_writes
        .iter()
        .map(|(writer, target, ..)| (*writer, *target))
        .collect();
    records.sort_unstable();
    assert_eq!(records, [(0, 1), (1, 0)], "one record each, into the peer");
    assert_eq!(cluster.acks.len(), 2, "each record acked once");
    let written: Vec<&Vec<u8>> = cluster.members.written.iter().map(|(.., b)| b).collect();
    assert_eq!(written.len(), 2);
    assert_ne!(written[0], written[1], "both writes ran");
    assert!(data.contains(written[1]));
    let last = written[1].clone();

    let now = cluster.pair.cycles();
    let read = Request::Read {
        first_block: 4,
        block_count: 1,
    };
    cluster.amf(0).handle_request(now, 11, read).unwrap();
    cluster.settle();
    assert_eq!(
        cluster.events[0][1],
        Event::Completed {
            id: 11,
            data: Some(last)
        }
    );
    for (writer, target, offset, _) in cluster.sram_writes.clone() {
        let freed = sram_read(cluster.pair.card_mut(target), offset, 4);
        assert_eq!(
            freed, [0; 4],
            "AMF {writer}'s slot in card {target} retired"
        );
    }
}
