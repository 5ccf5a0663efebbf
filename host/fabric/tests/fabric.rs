//! The fabric over real sockets, with ports on threads of their own.

mod support;

use amf_fabric::client;
use amf_fabric::server::BackgroundFabric;
use amf_fabric::{ArbiterConfig, ClientError, FenceAgent, OwnedFrame, ServerConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shared_regs::fabric::{MessageKind, PORT_BROADCAST, RefusalReason};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Barrier};
use support::{ARRAY, Fabric, Port, TIMEOUT};

const PORTS: u8 = 4;
const MESSAGES_PER_PORT: u32 = 300;

/// What one port saw: broadcasts as (sequence, source, payload), and the payloads of
/// unicasts per sender.
#[derive(Debug, Default)]
struct Seen {
    broadcasts: Vec<(u64, u8, Vec<u8>)>,
    unicasts: BTreeMap<u8, Vec<(u64, Vec<u8>)>>,
}

/// Each port sends a random mix of broadcasts and unicasts (payload: sender, counter),
/// then a final broadcast; it receives until it has every port's final broadcast.
fn run_port(mut port: Port, seed: u64, start: Arc<Barrier>) -> Seen {
    let me = port.port();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut writer = port.joined.writer.clone();
    start.wait();
    let sender = std::thread::spawn(move || {
        for counter in 0..MESSAGES_PER_PORT {
            let mut payload = vec![me];
            payload.extend_from_slice(&counter.to_le_bytes());
            payload.resize(5 + rng.gen_range(0..2000), 0xEE);
            let kind = if rng.gen_bool(0.5) {
                MessageKind::Broadcast
            } else {
                MessageKind::Unicast
            };
            let target = match kind {
                MessageKind::Broadcast => PORT_BROADCAST,
                _ => rng.gen_range(0..PORTS),
            };
            writer
                .send(&OwnedFrame::new(kind, me, target, 0, payload))
                .unwrap();
        }
        let last = OwnedFrame::new(MessageKind::Broadcast, me, PORT_BROADCAST, 0, vec![me]);
        writer.send(&last).unwrap();
    });
    let mut seen = Seen::default();
    let mut finished = 0;
    while finished < PORTS {
        let frame = port.recv().unwrap();
        let source = frame.source_port();
        match frame.kind() {
            MessageKind::Broadcast => {
                if frame.payload().len() == 1 {
                    finished += 1;
                }
                seen.broadcasts
                    .push((frame.sequence(), source, frame.payload().to_vec()));
            }
            MessageKind::Unicast => seen
                .unicasts
                .entry(source)
                .or_default()
                .push((frame.sequence(), frame.into_payload())),
            MessageKind::MemberUp => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    sender.join().unwrap();
    seen
}

fn counter_of(payload: &[u8]) -> u32 {
    u32::from_le_bytes(payload[1..5].try_into().unwrap())
}

#[test]
fn every_port_sees_one_order_and_fifo_unicasts_under_concurrent_traffic() {
    let fabric = Fabric::tcp();
    let ports: Vec<Port> = (0..PORTS).map(|port| fabric.join(port)).collect();
    let start = Arc::new(Barrier::new(PORTS as usize));
    let threads: Vec<_> = ports
        .into_iter()
        .enumerate()
        .map(|(index, port)| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || run_port(port, index as u64, start))
        })
        .collect();
    let seen: Vec<Seen> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let reference = &seen[0].broadcasts;
    assert!(
        reference.len() > PORTS as usize * 50,
        "traffic was exchanged"
    );
    for (port, other) in seen.iter().enumerate() {
        assert_eq!(&other.broadcasts, reference, "port {port}'s order differs");
    }
    assert!(reference.windows(2).all(|pair| pair[0].0 < pair[1].0));
    for source in 0..PORTS {
        let counters: Vec<u32> = reference
            .iter()
            .filter(|(_, from, payload)| *from == source && payload.len() > 1)
            .map(|(_, _, payload)| counter_of(payload))
            .collect();
        assert!(
            counters.windows(2).all(|pair| pair[0] < pair[1]),
            "sender order kept"
        );
    }
    for (target, other) in seen.iter().enumerate() {
        for (source, unicasts) in &other.unicasts {
            assert!(unicasts.iter().all(|(_, payload)| payload[0] == *source));
            let fifo = unicasts.windows(2).all(|pair| {
                pair[0].0 < pair[1].0 && counter_of(&pair[0].1) < counter_of(&pair[1].1)
            });
            assert!(fifo, "unicasts {source} -> {target} out of order");
        }
    }
}

#[test]
fn member_down_comes_after_the_dead_ports_last_messages() {
    let directory = tempfile::tempdir().unwrap();
    let socket = format!("unix:{}", directory.path().join("fabric.sock").display());
    let fabric = Fabric::start(&socket, ArbiterConfig::default());
    let mut survivor = fabric.join(1);
    let mut doomed = fabric.join(2);
    for counter in 0u8..50 {
        doomed.broadcast(vec![counter]);
        doomed.unicast(1, vec![counter]);
    }
    // The process dies: the socket closes with no goodbye.
    drop(doomed);
    let mut broadcasts = Vec::new();
    let mut unicasts = Vec::new();
    loop {
        let frame = survivor.recv().unwrap();
        match frame.kind() {
            MessageKind::Broadcast => broadcasts.push(frame.payload()[0]),
            MessageKind::Unicast => unicasts.push(frame.payload()[0]),
            MessageKind::MemberUp => {}
            MessageKind::MemberDown => {
                assert_eq!(frame.source_port(), 2);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let all: Vec<u8> = (0..50).collect();
    assert_eq!(broadcasts, all);
    assert_eq!(unicasts, all);
}

#[test]
fn a_port_that_stops_beating_is_declared_down() {
    let config = ArbiterConfig {
        heartbeat_interval_ms: 20,
        heartbeat_misses_max: 3,
        ..ArbiterConfig::default()
    };
    let fabric = Fabric::start("127.0.0.1:0", config);
    let mut watcher = fabric.join(0);
    // Joined, but never beats: a host that hangs.
    let mut silent = client::join(&fabric.address, 5, ARRAY, TIMEOUT).unwrap();
    let down = watcher.recv_kind(MessageKind::MemberDown);
    assert_eq!(down.source_port(), 5);
    match support::link_error(&mut silent.reader) {
        ClientError::Refused { reason, .. } => {
            assert_eq!(reason, RefusalReason::HeartbeatTimeout);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn duplicate_port_and_wrong_array_are_refused_with_a_reason() {
    let fabric = Fabric::tcp();
    let mut holder = fabric.join(3);
    match client::join(&fabric.address, 3, ARRAY, TIMEOUT) {
        Err(ClientError::Refused {
            port,
            reason,
            detail,
        }) => {
            assert_eq!((port, reason), (3, RefusalReason::PortInUse));
            assert!(detail.contains("port 3"), "{detail}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    match client::join(&fabric.address, 4, [0; 16], TIMEOUT) {
        Err(ClientError::Refused { reason, detail, .. }) => {
            assert_eq!(reason, RefusalReason::WrongArray);
            assert!(detail.contains(&"42".repeat(16)), "{detail}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    holder.broadcast(vec![9]);
    let frame = holder.recv_kind(MessageKind::Broadcast);
    assert_eq!(frame.payload(), &[9], "the holder is still served");
}

#[test]
fn garbage_on_one_link_leaves_the_others_served() {
    let fabric = Fabric::tcp();
    let mut left = fabric.join(0);
    let mut right = fabric.join(1);
    let mut vandal = fabric.join(2);
    let _ = left.recv_kind(MessageKind::MemberUp);
    // A frame with its checksum broken, then noise.
    let mut bytes =
        OwnedFrame::new(MessageKind::Broadcast, 2, PORT_BROADCAST, 0, vec![1; 40]).encode();
    bytes[40] ^= 0xFF;
    bytes.extend_from_slice(b"not a frame at all");
    vandal.joined.writer.send_bytes(&bytes).unwrap();
    match support::link_error(&mut vandal.joined.reader) {
        ClientError::Refused { reason, detail, .. } => {
            assert_eq!(reason, RefusalReason::Malformed);
            assert!(detail.contains("checksum"), "{detail}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(left.recv_kind(MessageKind::MemberDown).source_port(), 2);
    // A raw connection that never joins and sends noise.
    let address = match &fabric.address {
        amf_fabric::Address::Tcp(host_port) => host_port.clone(),
        amf_fabric::Address::Unix(_) => unreachable!(),
    };
    let mut raw = std::net::TcpStream::connect(address).unwrap();
    raw.write_all(&[0xFF; 100]).unwrap();
    left.broadcast(vec![7]);
    right.unicast(0, vec![8]);
    assert_eq!(right.recv_kind(MessageKind::Broadcast).payload(), &[7]);
    assert_eq!(left.recv_kind(MessageKind::Unicast).payload(), &[8]);
}

#[test]
fn sram_writes_reach_their_target_and_acks_come_back_by_sequence() {
    let fabric = Fabric::tcp();
    let mut writer = fabric.join(0);
    let mut target = fabric.join(1);
    for offset in [0u32, 8, 4096] {
        let frame = OwnedFrame::new(MessageKind::SramWrite, 0, 1, offset, vec![offset as u8; 64]);
        writer.joined.writer.send(&frame).unwrap();
    }
    let mut sequences = Vec::new();
    for offset in [0u32, 8, 4096] {
        let write = target.recv_kind(MessageKind::SramWrite);
        assert_eq!(write.sram_offset(), offset);
        sequences.push(write.sequence());
        let ack = OwnedFrame::new(
            MessageKind::SramWriteAck,
            1,
            0,
            0,
            write.sequence().to_le_bytes().to_vec(),
        );
        target.joined.writer.send(&ack).unwrap();
    }
    assert_eq!(sequences, vec![1, 2, 3], "the writer's own numbering");
    for sequence in sequences {
        let ack = writer.recv_kind(MessageKind::SramWriteAck);
        assert_eq!(ack.payload(), &sequence.to_le_bytes());
        assert_eq!(ack.source_port(), 1);
    }
}

#[test]
fn a_port_that_leaves_is_announced_after_its_last_frame_and_its_port_is_free_again() {
    let fabric = Fabric::tcp();
    let mut survivor = fabric.join(1);
    let mut leaving = fabric.join(2);
    leaving.broadcast(vec![7]);
    leaving.joined.writer.leave().unwrap();
    assert!(
        matches!(
            support::link_error(&mut leaving.joined.reader),
            ClientError::Closed
        ),
        "the fabric closes a left link without a refusal"
    );
    let mut seen = Vec::new();
    loop {
        let frame = survivor.recv().unwrap();
        seen.push((frame.kind(), frame.source_port()));
        if frame.kind() == MessageKind::MemberDown {
            break;
        }
    }
    assert_eq!(
        &seen[seen.len() - 2..],
        &[(MessageKind::Broadcast, 2), (MessageKind::MemberDown, 2)]
    );
    let again = fabric.join(2);
    assert_eq!(
        again.joined.welcome.live_ports().collect::<Vec<_>>(),
        vec![1, 2]
    );
}

#[test]
fn a_peer_in_the_fabrics_own_process_is_fenced_without_the_agent() {
    let directory = tempfile::tempdir().unwrap();
    let attempts = directory.path().join("attempts");
    let config = ServerConfig {
        fence: FenceAgent::Command {
            command: format!("echo attempt >>{}; false", attempts.display()),
            timeout_ms: 5_000,
        },
        ..ServerConfig::default()
    };
    let server = BackgroundFabric::start(&"127.0.0.1:0".parse().unwrap(), config).unwrap();
    let address = server.address().clone();
    let mut survivor = Port::beating(client::join(&address, 1, ARRAY, TIMEOUT).unwrap());
    let doomed = client::join(&address, 2, ARRAY, TIMEOUT).unwrap();
    drop(doomed);
    let down = survivor.recv_kind(MessageKind::MemberDown);
    assert_eq!(down.source_port(), 2);
    assert!(
        !attempts.exists(),
        "a peer in the fabric's own process cannot be fenced but by closing its link"
    );
}
