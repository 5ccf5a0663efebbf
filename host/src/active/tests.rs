//! Two cores through the real arbiter (`amf_fabric::Arbiter`, sans-IO), with cards faked
//! as the sim card behaves: SRAM writes applied by the "card" and acked, everything else
//! delivered to its node.

use super::*;
use amf_coherency::{Config, Event, MemberOutcome, MemberRequest, Request, Sram};
use amf_fabric::{Arbiter, ArbiterConfig, Output, OwnedFrame};
use shared_regs::fabric::{JoinPayload, MessageKind, PORT_BROADCAST};
use shared_regs::intent::Intent;
use std::collections::VecDeque;
use zerocopy::IntoBytes;

const BLOCK: usize = 4096;
/// Bound on the quiescence loop: far above what two AMFs need.
const ROUNDS_MAX: usize = 10_000;

#[derive(Debug)]
struct VecSram(Vec<u8>);

impl Sram for VecSram {
    fn read(&self, offset: u32, bytes: &mut [u8]) {
        let start = offset as usize;
        bytes.copy_from_slice(&self.0[start..start + bytes.len()]);
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) {
        let start = offset as usize;
        self.0[start..start + bytes.len()].copy_from_slice(bytes);
    }
}

/// A port that keeps what it is given.
#[derive(Debug, Default)]
struct Outbox(Vec<OutFrame>);

impl FabricPort for Outbox {
    type Error = std::convert::Infallible;

    fn send(&mut self, frame: &OutFrame) -> Result<(), Self::Error> {
        self.0.push(frame.clone());
        Ok(())
    }

    fn write_own_sram(&mut self, _offset: u32, _bytes: &[u8]) -> Result<(), Self::Error> {
        Ok(())
    }
}

fn config(port: u8) -> Config {
    Config {
        port,
        incarnation: 0,
        live_ports: vec![port],
        stripe_count: 8,
        stripe_data_blocks: 4,
        array_generation: 1,
        failed_members: 0,
        intent_slots: 4,
        parity_count: 2,
        cache_blocks_max: 1024,
        mutation: Default::default(),
    }
}

#[derive(Debug)]
struct FakeCard {
    port: u8,
    sram: VecSram,
    node: Option<ActiveNode>,
    inbox: VecDeque<OwnedFrame>,
    events: Vec<Event>,
    /// Member I/O held back (the AMF is "mid-write").
    held: Vec<MemberRequest>,
    hold_member_io: bool,
}

#[derive(Debug)]
struct Cluster {
    arbiter: Arbiter,
    cards: Vec<FakeCard>,
    now: u64,
    /// (writer, target, offset, bytes) of every SRAM write a card applied.
    applied: Vec<(u8, u8, u32, Vec<u8>)>,
}

impl Cluster {
    fn new(ports: u8) -> Cluster {
        let cards = (0..ports)
            .map(|port| FakeCard {
                port,
                sram: VecSram(vec![0; config(port).sram_bytes() as usize]),
                node: None,
                inbox: VecDeque::new(),
                events: Vec::new(),
                held: Vec::new(),
                hold_member_io: false,
            })
            .collect();
        let mut cluster = Cluster {
            arbiter: Arbiter::new(ArbiterConfig::default()),
            cards,
            now: 0,
            applied: Vec::new(),
        };
        for port in 0..ports {
            let link = u64::from(port);
            cluster.arbiter.handle_connect(0, link);
            let join = JoinPayload {
                array_uuid: [1; 16],
            }
            .as_bytes()
            .to_vec();
            let frame = OwnedFrame::new(MessageKind::Join, port, PORT_BROADCAST, 0, join);
            cluster.arbiter.handle_frame(0, link, frame);
            cluster.run();
        }
        cluster
    }

    fn node(&mut self, port: u8) -> &mut ActiveNode {
        self.cards[port as usize].node.as_mut().expect("joined")
    }

    /// Routes the arbiter's outputs as cards would take them.
    fn route(&mut self) -> bool {
        let mut moved = false;
        while let Some(output) = self.arbiter.poll_output() {
            moved = true;
            let Output::Send { link, bytes } = output else {
                continue;
            };
            let frame = OwnedFrame::parse(&bytes).unwrap();
            let card = &mut self.cards[link as usize];
            match frame.kind() {
                MessageKind::Heartbeat => {}
                MessageKind::SramWrite => {
                    card.sram.write(frame.sram_offset(), frame.payload());
                    let (writer, target) = (frame.source_port(), card.port);
                    let entry = (
                        writer,
                        target,
                        frame.sram_offset(),
                        frame.payload().to_vec(),
                    );
                    self.applied.push(entry);
                    let sequence = frame.sequence().to_le_bytes().to_vec();
                    let ack =
                        OwnedFrame::new(MessageKind::SramWriteAck, target, writer, 0, sequence);
                    self.arbiter.handle_frame(self.now, link, ack);
                }
                _ => card.inbox.push_back(frame),
            }
        }
        moved
    }

    /// One pass over every card: deliver its frames, send its transmits, run its member
    /// I/O, collect its events.
    fn pass(&mut self) -> bool {
        let mut moved = self.route();
        for index in 0..self.cards.len() {
            self.now += 1;
            let now = self.now;
            let card = &mut self.cards[index];
            while let Some(frame) = card.inbox.pop_front() {
                moved = true;
                match card.node.as_mut() {
                    None => {
                        let node =
                            ActiveNode::from_welcome(config(card.port), frame, &mut card.sram);
                        card.node = Some(node.unwrap());
                    }
                    Some(node) => node.deliver(now, frame, &mut card.sram).unwrap(),
                }
            }
            let Some(node) = card.node.as_mut() else {
                continue;
            };
            let mut outbox = Outbox::default();
            node.transmit(&mut outbox).unwrap();
            while let Some(request) = node.amf_mut().poll_member_io() {
                moved = true;
                if card.hold_member_io {
                    card.held.push(request);
                } else {
                    complete(node, now, request);
                }
            }
            while let Some(event) = node.amf_mut().poll_event() {
                card.events.push(event);
            }
            for frame in outbox.0 {
                moved = true;
                let owned = OwnedFrame::new(
                    frame.kind,
                    card.port,
                    frame.target,
                    frame.sram_offset,
                    frame.payload,
                );
                self.arbiter.handle_frame(now, u64::from(card.port), owned);
            }
        }
        moved
    }

    fn run(&mut self) {
        for _ in 0..ROUNDS_MAX {
            if !self.pass() {
                return;
            }
        }
        panic!("the cluster did not settle");
    }
}

fn complete(node: &mut ActiveNode, now: u64, request: MemberRequest) {
    let (io, outcome) = match request {
        MemberRequest::Read {
            io, block_count, ..
        } => (
            io,
            MemberOutcome::Read(vec![0; block_count as usize * BLOCK]),
        ),
        MemberRequest::Write { io, .. }
        | MemberRequest::Replay { io, .. }
        | MemberRequest::Rebuild { io, .. }
        | MemberRequest::Scrub { io, .. } => (io, MemberOutcome::Written),
    };
    node.amf_mut().handle_member_completion(now, io, outcome);
}

fn write_block(cluster: &mut Cluster, port: u8, id: u64, byte: u8) {
    let now = cluster.now;
    let request = Request::Write {
        first_block: 0,
        data: vec![byte; BLOCK],
    };
    cluster
        .node(port)
        .amf_mut()
        .handle_request(now, id, request)
        .unwrap();
    cluster.run();
}

#[test]
fn a_write_replicates_its_record_to_the_peer_and_completes() {
    let mut cluster = Cluster::new(2);
    write_block(&mut cluster, 0, 1, 0xAB);
    assert_eq!(
        cluster.cards[0].events,
        vec![Event::Completed { id: 1, data: None }]
    );
    let (writer, target, offset, record) = cluster.applied[0].clone();
    assert_eq!((writer, target), (0, 1));
    assert!((0..4).any(|slot| config(0).slot_offset(0, slot) == offset));
    let (intent, _) = Intent::decode(&record).unwrap();
    assert_eq!((intent.owner_port, intent.stripe), (0, 0));
    assert_eq!(cluster.node(0).writes_outstanding(), 0, "every write acked");
    let mut magic = [0xFFu8; 4];
    cluster.cards[1].sram.read(offset, &mut magic);
    assert_eq!(magic, [0; 4], "the Retire broadcast freed the peer's copy");
    assert!(cluster.node(0).amf().counters().broadcasts >= 1);
}

#[test]
fn the_survivor_completes_a_dead_owners_write_from_its_sram() {
    let mut cluster = Cluster::new(2);
    cluster.cards[0].hold_member_io = true;
    write_block(&mut cluster, 0, 1, 0xCD);
    assert_eq!(cluster.cards[0].held.len(), 1, "the owner is mid-write");
    assert!(cluster.cards[0].events.is_empty());
    // Port 0's process dies: its link closes.
    cluster.cards[1].hold_member_io = true;
    cluster.arbiter.handle_closed(cluster.now, 0);
    // The fabric announces it down once it is fenced (its process is gone).
    cluster.arbiter.handle_fenced(cluster.now, 0);
    cluster.run();
    let replay = cluster.cards[1]
        .held
        .iter()
        .find_map(|request| match request {
            MemberRequest::Replay { stripe, data, .. } => Some((*stripe, data.clone())),
            _ => None,
        });
    let (stripe, data) = replay.expect("the survivor replays the dead owner's record");
    assert_eq!(stripe, 0);
    assert_eq!(&data[..BLOCK], &[0xCD; BLOCK][..]);
}
