//! Two AMFs over an immediate, in-order fabric and a block map for members: the claims'
//! steps one at a time, each checked by what went over the fabric.

use std::collections::BTreeMap;

use amf_coherency::{
    Amf, Config, Event, MemberOutcome, MemberRequest, MembershipEvent, Message, Mode, Mutation,
    RebuildId, RebuildRefusal, RebuildView, Request, Sram, Transmit,
};

const BLOCK: usize = 4096;
const STRIPE_BLOCKS: u32 = 4;

struct VecSram(Vec<u8>);

impl Sram for VecSram {
    fn read(&self, offset: u32, bytes: &mut [u8]) {
        bytes.copy_from_slice(&self.0[offset as usize..][..bytes.len()]);
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) {
        self.0[offset as usize..][..bytes.len()].copy_from_slice(bytes);
    }
}

fn config(port: u8) -> Config {
    Config {
        port,
        incarnation: 0,
        live_ports: vec![0, 1],
        stripe_count: 4,
        stripe_data_blocks: STRIPE_BLOCKS,
        array_generation: 1,
        intent_slots: 4,
        parity_count: 1,
        cache_blocks_max: 1024,
        failed_members: 0,
        mutation: Mutation::None,
    }
}

struct Pair {
    amfs: Vec<Amf>,
    srams: Vec<VecSram>,
    /// Volume block -> bytes.
    members: BTreeMap<u64, Vec<u8>>,
    member_reads: [u32; 2],
    /// Member I/O each AMF issued but that this harness holds back (`hold`).
    held: Vec<(usize, MemberRequest)>,
    hold: [bool; 2],
    /// Every member I/O performed, in order, by AMF.
    performed: Vec<(usize, MemberRequest)>,
    completed: Vec<(usize, Event)>,
    sent: Vec<(usize, Message)>,
    clock: u64,
    dead: [bool; 2],
}

impl Pair {
    fn new() -> Pair {
        let mut srams = Vec::new();
        let mut amfs = Vec::new();
        for port in 0..2 {
            let config = config(port);
            let mut sram = VecSram(vec![0; config.sram_bytes() as usize]);
            amfs.push(Amf::new(config, &mut sram));
            srams.push(sram);
        }
        Pair {
            amfs,
            srams,
            members: BTreeMap::new(),
            member_reads: [0; 2],
            held: Vec::new(),
            hold: [false; 2],
            performed: Vec::new(),
            completed: Vec::new(),
            sent: Vec::new(),
            clock: 0,
            dead: [false; 2],
        }
    }

    fn alive(&self) -> Vec<usize> {
        (0..2).filter(|&index| !self.dead[index]).collect()
    }

    fn now(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn request(&mut self, amf: usize, id: u64, request: Request) {
        let now = self.now();
        self.amfs[amf].handle_request(now, id, request).unwrap();
        self.drive();
    }

    fn drive(&mut self) {
        for _ in 0..10_000 {
            let mut progressed = false;
            for index in self.alive() {
                while let Some(transmit) = self.amfs[index].poll_transmit() {
                    progressed = true;
                    self.deliver(index, transmit);
                }
                while let Some(write) = self.amfs[index].poll_local_write() {
                    progressed = true;
                    self.srams[index].write(write.offset, &write.bytes);
                }
                while let Some(request) = self.amfs[index].poll_member_io() {
                    progressed = true;
                    if self.hold[index] {
                        self.held.push((index, request));
                    } else {
                        self.perform(index, request);
                    }
                }
                while let Some(event) = self.amfs[index].poll_event() {
                    progressed = true;
                    self.completed.push((index, event));
                }
            }
            if !progressed {
                return;
            }
        }
        panic!("the pair did not settle");
    }

    fn deliver(&mut self, from: usize, transmit: Transmit) {
        match transmit {
            Transmit::Broadcast { payload } => {
                self.sent.push((from, Message::decode(&payload).unwrap()));
                for index in self.alive() {
                    let now = self.now();
                    self.amfs[index]
                        .handle_broadcast(now, from as u8, &payload, &mut self.srams[index])
                        .unwrap();
                }
            }
            Transmit::Unicast { target, payload } => {
                self.sent.push((from, Message::decode(&payload).unwrap()));
                let now = self.now();
                self.amfs[target as usize]
                    .handle_unicast(now, from as u8, &payload)
                    .unwrap();
            }
            Transmit::SramWrite {
                target,
                offset,
                bytes,
            } => {
                self.srams[target as usize].write(offset, &bytes);
                let now = self.now();
                self.amfs[from].handle_sram_ack(now, target, offset);
            }
        }
    }

    fn perform(&mut self, index: usize, request: MemberRequest) {
        self.performed.push((index, request.clone()));
        let base = |stripe: u64, block: u32| stripe * u64::from(STRIPE_BLOCKS) + u64::from(block);
        let (io, outcome) = match request {
            MemberRequest::Read {
                io,
                stripe,
                first_block,
                block_count,
                ..
            } => {
                self.member_reads[index] += 1;
                let mut data = Vec::new();
                for block in first_block..first_block + block_count {
                    let bytes = self.members.get(&base(stripe, block)).cloned();
                    data.extend(bytes.unwrap_or_else(|| vec![0; BLOCK]));
                }
                (io, MemberOutcome::Read(data))
            }
            MemberRequest::Write {
                io,
                stripe,
                first_block,
                data,
                ..
            }
            | MemberRequest::Replay {
                io,
                stripe,
                first_block,
                data,
                ..
            } => {
                for (offset, bytes) in data.chunks_exact(BLOCK).enumerate() {
                    self.members
                        .insert(base(stripe, first_block + offset as u32), bytes.to_vec());
                }
                (io, MemberOutcome::Written)
            }
            // The data blocks stay as they are.
            MemberRequest::Rebuild { io, .. } | MemberRequest::Scrub { io, .. } => {
                (io, MemberOutcome::Written)
            }
        };
        let now = self.now();
        self.amfs[index].handle_member_completion(now, io, outcome);
    }

    fn acquires(&self) -> usize {
        self.sent
            .iter()
            .filter(|(_, message)| matches!(message, Message::Acquire { .. }))
            .count()
    }
}

fn block(value: u8) -> Vec<u8> {
    vec![value; BLOCK]
}

#[test]
fn an_owner_writes_again_without_a_broadcast() {
    let mut pair = Pair::new();
    pair.request(
        0,
        1,
        Request::Write {
            first_block: 0,
            data: block(1),
        },
    );
    assert_eq!(pair.acquires(), 1);
    assert_eq!(pair.amfs[0].holding(0), Some(Mode::Exclusive));
    pair.request(
        0,
        2,
        Request::Write {
            first_block: 1,
            data: block(2),
        },
    );
    pair.request(
        0,
        3,
        Request::Read {
            first_block: 0,
            block_count: 2,
        },
    );
    assert_eq!(
        pair.acquires(),
        1,
        "claims 10, 11, 16: held exclusively, nothing to ask"
    );
    assert_eq!(pair.amfs[0].counters().broadcasts_avoided, 2);
    assert_eq!(pair.completed.len(), 3);
    let Event::Completed { data, .. } = &pair.completed[2].1 else {
        panic!("completed");
    };
    assert_eq!(data.as_deref(), Some(&[block(1), block(2)].concat()[..]));
}

#[test]
fn a_read_is_forwarded_from_the_owner_and_a_write_invalidates_it() {
    let mut pair = Pair::new();
    pair.request(
        0,
        1,
        Request::Write {
            first_block: 4,
            data: block(7),
        },
    );
    pair.request(
        1,
        2,
        Request::Read {
            first_block: 4,
            block_count: 1,
        },
    );
    assert_eq!(
        pair.member_reads[1], 0,
        "claims 8, 9: the owner forwarded the block"
    );
    assert_eq!(pair.amfs[1].counters().forwards, 1);
    assert_eq!(pair.amfs[0].holding(1), Some(Mode::Shared));
    assert_eq!(pair.amfs[1].holding(1), Some(Mode::Shared));
    let Event::Completed { data, .. } = &pair.completed[1].1 else {
        panic!("completed");
    };
    assert_eq!(data.as_deref(), Some(&block(7)[..]));

    pair.request(
        0,
        3,
        Request::Write {
            first_block: 4,
            data: block(8),
        },
    );
    assert_eq!(
        pair.amfs[1].holding(1),
        None,
        "claims 3, 14: the reader's copy is gone"
    );
    assert_eq!(pair.amfs[1].cached_blocks(1), 0);
    assert_eq!(pair.amfs[1].counters().invalidations, 1);
    pair.request(
        1,
        4,
        Request::Read {
            first_block: 4,
            block_count: 1,
        },
    );
    let Event::Completed { data, .. } = &pair.completed[3].1 else {
        panic!("completed");
    };
    assert_eq!(data.as_deref(), Some(&block(8)[..]));
}

#[test]
fn a_read_nobody_caches_goes_to_the_members() {
    let mut pair = Pair::new();
    pair.request(
        1,
        1,
        Request::Read {
            first_block: 9,
            block_count: 2,
        },
    );
    assert_eq!(pair.member_reads[1], 1, "claim 7: no peer had it");
    assert_eq!(pair.amfs[1].counters().forwards, 0);
}

#[test]
fn the_write_is_acknowledged_only_after_its_record_is_in_the_peer() {
    let mut pair = Pair::new();
    pair.hold[0] = true;
    pair.request(
        0,
        1,
        Request::Write {
            first_block: 0,
            data: block(5),
        },
    );
    assert_eq!(
        pair.held.len(),
        1,
        "the member write was issued after the SRAM ack"
    );
    assert!(
        pair.completed.is_empty(),
        "not durable yet: no acknowledgement"
    );
    let offset = config(0).slot_offset(0, 0) as usize;
    let (intent, payload) =
        shared_regs::intent::Intent::decode(&pair.srams[1].0[offset..]).unwrap();
    assert_eq!(
        (intent.owner_port, intent.stripe, intent.block_count),
        (0, 0, 1)
    );
    assert_eq!(payload, &block(5)[..]);
}

/// Amf 0 dies with its write's member I/O issued and not done; amf 1 holds the record.
fn die_mid_write(corrupt: bool) -> Pair {
    let mut pair = Pair::new();
    pair.hold[0] = true;
    pair.request(
        0,
        1,
        Request::Write {
            first_block: 2,
            data: block(9),
        },
    );
    assert_eq!(pair.held.len(), 1);
    pair.held.clear();
    if corrupt {
        let offset = config(0).slot_offset(0, 0) as usize;
        pair.srams[1].0[offset + 100] ^= 1;
    }
    pair.dead[0] = true;
    let now = pair.now();
    let (survivor, sram) = (&mut pair.amfs[1], &mut pair.srams[1]);
    survivor.handle_member_down(now, 0, sram);
    pair.drive();
    pair
}

#[test]
fn a_survivor_completes_a_dead_owners_write_from_its_record() {
    let pair = die_mid_write(false);
    assert_eq!(pair.amfs[1].counters().replays, 1);
    assert_eq!(
        pair.members.get(&2),
        Some(&block(9)),
        "claims 1, 11, 15, 16"
    );
    assert!(!pair.amfs[1].recovering(), "retired and recovered");
}

#[test]
fn a_corrupt_record_is_refused_never_replayed() {
    let pair = die_mid_write(true);
    assert_eq!(pair.amfs[1].counters().records_corrupt, 1);
    assert_eq!(pair.amfs[1].counters().replays, 0);
    assert_eq!(pair.members.get(&2), None);
    assert!(!pair.amfs[1].recovering());
}

#[test]
fn bad_requests_are_refused_with_a_reason() {
    let mut pair = Pair::new();
    let amf = &mut pair.amfs[0];
    assert!(
        amf.handle_request(
            1,
            1,
            Request::Read {
                first_block: 16,
                block_count: 1
            }
        )
        .is_err()
    );
    assert!(
        amf.handle_request(
            1,
            1,
            Request::Read {
                first_block: 0,
                block_count: 0
            }
        )
        .is_err()
    );
    assert!(
        amf.handle_request(
            1,
            1,
            Request::Write {
                first_block: 0,
                data: vec![0; 10]
            }
        )
        .is_err()
    );
    amf.handle_request(
        1,
        1,
        Request::Read {
            first_block: 0,
            block_count: 1,
        },
    )
    .unwrap();
    assert!(
        amf.handle_request(
            1,
            1,
            Request::Read {
                first_block: 0,
                block_count: 1
            }
        )
        .is_err()
    );
}

#[test]
fn a_member_io_error_is_ordered_then_redone_degraded_or_failed_beyond_the_parity() {
    let mut pair = Pair::new();
    pair.hold[0] = true;
    pair.request(
        0,
        1,
        Request::Write {
            first_block: 0,
            data: block(1),
        },
    );
    let (index, request) = pair.held.pop().expect("the write's member I/O");
    let MemberRequest::Write {
        io, failed_members, ..
    } = request
    else {
        panic!("a write");
    };
    assert_eq!(failed_members, 0);
    let now = pair.now();
    pair.amfs[index].handle_member_completion(now, io, MemberOutcome::Failed { member: 2 });
    pair.drive();
    assert!(
        pair.sent
            .iter()
            .any(|(from, message)| *from == 0 && *message == Message::MemberFailed { member: 2 })
    );
    assert_eq!(pair.amfs[0].failed_members(), 1 << 2);
    assert_eq!(
        pair.amfs[1].failed_members(),
        1 << 2,
        "ordered for every AMF"
    );
    assert!(
        pair.completed.is_empty(),
        "not acknowledged before it is redone"
    );
    // The stripe is degraded now: the redo first reads the whole stripe, records all of
    // it (so a replay never rebuilds the lost chunk from parity a tear left stale), and
    // writes it whole.
    let (index, request) = pair.held.pop().expect("the whole-stripe read");
    let MemberRequest::Read {
        first_block,
        block_count,
        failed_members,
        ..
    } = &request
    else {
        panic!("a read of the whole stripe, got {request:?}");
    };
    assert_eq!((*first_block, *block_count), (0, STRIPE_BLOCKS));
    assert_eq!(*failed_members, 1 << 2, "degraded around the failed member");
    pair.perform(index, request);
    pair.drive();
    let (index, request) = pair.held.pop().expect("the write, redone");
    let MemberRequest::Write {
        first_block,
        data,
        failed_members,
        ..
    } = &request
    else {
        panic!("a write");
    };
    assert_eq!(*failed_members, 1 << 2, "degraded around the failed member");
    assert_eq!(*first_block, 0);
    assert_eq!(
        data.len(),
        STRIPE_BLOCKS as usize * BLOCK,
        "the whole stripe"
    );
    assert_eq!(data[..BLOCK], block(1)[..]);
    assert_eq!(pair.amfs[0].counters().widened, 1);
    pair.perform(index, request);
    pair.drive();
    assert_eq!(pair.completed.len(), 1);
    assert!(matches!(
        pair.completed[0].1,
        Event::Completed { id: 1, .. }
    ));

    // A second member beyond RAID-5's one parity: the read (of another stripe, nothing
    // cached) fails cleanly, no data.
    pair.request(
        0,
        2,
        Request::Read {
            first_block: u64::from(STRIPE_BLOCKS),
            block_count: 1,
        },
    );
    let (index, request) = pair.held.pop().expect("the read's member I/O");
    let MemberRequest::Read { io, .. } = request else {
        panic!("a read");
    };
    let now = pair.now();
    pair.amfs[index].handle_member_completion(now, io, MemberOutcome::Failed { member: 3 });
    pair.drive();
    assert!(pair.held.is_empty(), "not redone beyond the parity");
    assert_eq!(pair.completed.len(), 2);
    assert_eq!(pair.completed[1].1, Event::Failed { id: 2 });
    assert_eq!(pair.amfs[0].counters().ops_failed, 1);
    assert_eq!(pair.amfs[0].counters().member_errors, 2);
}

#[test]
fn an_online_rebuild_puts_the_member_back_while_the_peer_writes() {
    let mut pair = pair_with_member_1_failed();
    let refused = pair.amfs[0].start_rebuild(pair.clock, 0, b"/new".to_vec());
    assert_eq!(refused, Err(RebuildRefusal::NotFailed(0)));
    pair.hold[0] = true;
    let now = pair.now();
    pair.amfs[0]
        .start_rebuild(now, 1, b"/new".to_vec())
        .unwrap();
    pair.drive();
    let begun = |index: usize| {
        pair.completed.iter().any(|(at, event)| {
            *at == index
                && matches!(event, Event::Membership(MembershipEvent::RebuildBegun { member: 1, driving, .. }) if *driving == (index == 0))
        })
    };
    assert!(begun(0) && begun(1), "both AMFs take the rebuild's start");
    assert_eq!(
        pair.amfs[0].start_rebuild(pair.clock, 1, b"/new".to_vec()),
        Err(RebuildRefusal::Busy(1))
    );
    // AMF 1 writes every stripe while AMF 0 holds its rebuild's first stripes.
    for stripe in 0..4u64 {
        pair.request(
            1,
            10 + stripe,
            Request::Write {
                first_block: stripe * u64::from(STRIPE_BLOCKS),
                data: block(stripe as u8 + 1),
            },
        );
    }
    pair.hold[0] = false;
    for (index, request) in std::mem::take(&mut pair.held) {
        pair.perform(index, request);
    }
    pair.drive();
    for stripe in 0..4u64 {
        pair.request(
            1,
            20 + stripe,
            Request::Write {
                first_block: stripe * u64::from(STRIPE_BLOCKS) + 1,
                data: block(9),
            },
        );
    }
    // After a stripe's chunk was rebuilt, no write of it skips the replacement.
    let mut rebuilt = BTreeMap::new();
    for (position, (_, request)) in pair.performed.iter().enumerate() {
        match request {
            MemberRequest::Rebuild {
                stripe,
                member: 1,
                failed_members,
                ..
            } => {
                assert_ne!(failed_members & 0b10, 0, "the replacement is not read");
                rebuilt.insert(*stripe, position);
            }
            MemberRequest::Write {
                stripe,
                failed_members,
                ..
            } if rebuilt.contains_key(stripe) => {
                assert_eq!(
                    failed_members & 0b10,
                    0,
                    "write of rebuilt stripe {stripe} skipped the replacement"
                );
            }
            _ => {}
        }
    }
    assert_eq!(rebuilt.len(), 4, "every stripe rebuilt once");
    for amf in &pair.amfs {
        assert_eq!(amf.failed_members(), 0, "member 1 back in service");
        assert_eq!(amf.rebuild_progress(), None);
    }
    let done = pair.completed.iter().filter(|(_, event)| {
        matches!(
            event,
            Event::Membership(MembershipEvent::RebuildProgress {
                member: 1,
                next_stripe: 4,
                ..
            })
        )
    });
    assert_eq!(
        done.count(),
        2,
        "both AMFs see the member back at the same point"
    );
}

/// A pair with member 1 failed at both AMFs (as their superblocks said at start).
fn pair_with_member_1_failed() -> Pair {
    let mut pair = Pair::new();
    for (index, amf) in pair.amfs.iter_mut().enumerate() {
        let mut config = config(index as u8);
        config.failed_members = 0b10;
        *amf = Amf::new(config, &mut pair.srams[index]);
    }
    pair
}

#[test]
fn the_replacement_failing_under_its_rebuild_stops_it_at_every_amf() {
    let mut pair = pair_with_member_1_failed();
    pair.hold[0] = true;
    let now = pair.now();
    pair.amfs[0]
        .start_rebuild(now, 1, b"/new".to_vec())
        .unwrap();
    pair.drive();
    let (index, request) = pair.held.remove(0);
    let MemberRequest::Rebuild { io, member: 1, .. } = request else {
        panic!("the rebuild's first stripe, got {request:?}");
    };
    let now = pair.now();
    pair.amfs[index].handle_member_completion(now, io, MemberOutcome::Failed { member: 1 });
    pair.hold[0] = false;
    for (index, request) in std::mem::take(&mut pair.held) {
        pair.perform(index, request);
    }
    pair.drive();
    let failed = pair
        .sent
        .iter()
        .filter(|(_, message)| matches!(message, Message::MemberFailed { member: 1 }))
        .count();
    assert_eq!(failed, 1, "the error on the replacement is ordered, once");
    for (index, amf) in pair.amfs.iter().enumerate() {
        assert_eq!(
            amf.rebuild_progress(),
            None,
            "AMF {index} stopped the rebuild"
        );
        assert_eq!(amf.failed_members(), 0b10, "member 1 stays failed");
        assert!(
            pair.completed.iter().any(|(at, event)| *at == index
                && matches!(
                    event,
                    Event::Membership(MembershipEvent::RebuildStopped {
                        member: 1,
                        restarting: false,
                        ..
                    })
                )),
            "AMF {index} tells its shell"
        );
    }
    assert!(
        pair.held.is_empty(),
        "nothing is redone onto the replacement"
    );
    assert!(pair.amfs.iter().all(Amf::is_quiet), "no op is left behind");
    // The member can be rebuilt again, onto another device.
    let now = pair.now();
    pair.amfs[1]
        .start_rebuild(now, 1, b"/other".to_vec())
        .unwrap();
    pair.drive();
    assert!(pair.amfs.iter().all(|amf| amf.failed_members() == 0));
}

#[test]
fn a_scrub_holds_its_stripe_and_completes() {
    let mut pair = Pair::new();
    pair.request(
        0,
        1,
        Request::Write {
            first_block: 0,
            data: block(3),
        },
    );
    pair.request(
        1,
        2,
        Request::Scrub {
            stripe: 0,
            repair: true,
        },
    );
    assert_eq!(pair.amfs[1].holding(0), Some(Mode::Exclusive));
    assert_eq!(
        pair.amfs[0].holding(0),
        None,
        "a repair takes the stripe whole"
    );
    pair.request(
        0,
        3,
        Request::Scrub {
            stripe: 0,
            repair: false,
        },
    );
    assert_eq!(pair.amfs[0].holding(0), Some(Mode::Shared));
    assert!(
        pair.completed
            .iter()
            .any(|(_, event)| matches!(event, Event::Completed { id: 3, data: None }))
    );
    let scrubs = pair
        .performed
        .iter()
        .filter(|(_, request)| matches!(request, MemberRequest::Scrub { .. }));
    assert_eq!(scrubs.count(), 2);
}

/// Seed 2376 of the simulator: a peer's `Reply` named member 1 failed, which this AMF had
/// not taken yet; it took the `MemberFailed`, then a rebuild put the member back before
/// the last `Reply` came. The grant then waited for a `MemberFailed` that never comes:
/// the failure it waited for was taken already.
#[test]
fn a_failure_taken_for_a_grant_is_not_awaited_again_once_a_rebuild_restores_it() {
    let mut config = config(0);
    config.live_ports = vec![0, 1, 2];
    let mut sram = VecSram(vec![0; config.sram_bytes() as usize]);
    let mut amf = Amf::new(config, &mut sram);
    let read = Request::Read {
        first_block: 0,
        block_count: 1,
    };
    amf.handle_request(1, 1, read).unwrap();
    let Some(Transmit::Broadcast { payload }) = amf.poll_transmit() else {
        panic!("the read's acquire");
    };
    let Ok(Message::Acquire { acquire_id, .. }) = Message::decode(&payload) else {
        panic!("an acquire");
    };
    amf.handle_broadcast(2, 0, &payload, &mut sram).unwrap();
    let reply = |failed_members, membership| {
        Message::Reply {
            stripe: 0,
            acquire_id,
            first_block: 0,
            failed_members,
            membership,
            data: Vec::new(),
        }
        .encode()
    };
    amf.handle_unicast(3, 2, &reply(0b10, RebuildView::default()))
        .unwrap();
    let member_failed = Message::MemberFailed { member: 1 }.encode();
    amf.handle_broadcast(4, 2, &member_failed, &mut sram)
        .unwrap();
    let begin = Message::RebuildBegin {
        op_id: 7,
        member: 1,
        replacement: b"/new".to_vec(),
    };
    amf.handle_broadcast(5, 1, &begin.encode(), &mut sram)
        .unwrap();
    let rebuild = RebuildId { port: 1, op_id: 7 };
    let progress = Message::RebuildProgress {
        rebuild,
        member: 1,
        next_stripe: 4,
    };
    amf.handle_broadcast(6, 1, &progress.encode(), &mut sram)
        .unwrap();
    assert_eq!(amf.failed_members(), 0, "member 1 back in service");
    let restored = RebuildView {
        rebuilding: None,
        restored: Some((rebuild, 1)),
    };
    amf.handle_unicast(7, 1, &reply(0, restored)).unwrap();
    let member_io = std::iter::from_fn(|| amf.poll_member_io()).next();
    assert!(
        matches!(
            member_io,
            Some(MemberRequest::Read {
                stripe: 0,
                failed_members: 0,
                ..
            })
        ),
        "granted, the read goes to the members: {member_io:?}"
    );
}
