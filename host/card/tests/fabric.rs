//! Two sim cards linked through a real `amf-fabric` server: frames through the rings,
//! remote SRAM writes applied by the target card itself, registers, refusals, and a
//! `MemberDown` when the process holding a card is killed.

mod common;

use amf_card::{Card, CardConfig, CardError, Execution, SimCard, SimConfig, SimError, SimFabric};
use amf_fabric::server::BackgroundFabric;
use amf_fabric::{Address, ClientError, OwnedFrame, ServerConfig};
use shared_regs::fabric::{MessageKind, PORT_BROADCAST, RefusalReason, WelcomePayload};
use shared_regs::regs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use tempfile::TempDir;
use zerocopy::FromBytes;

const ARRAY: [u8; 16] = [0x77; 16];
const WAIT_MS: u32 = 10_000;
/// Set in the child process of the kill test: the fabric address to join as port 1.
const CHILD_FABRIC_VARIABLE: &str = "AMF_CARD_TEST_CHILD_FABRIC";
/// The SRAM file the child's card uses.
const CHILD_SRAM_VARIABLE: &str = "AMF_CARD_TEST_CHILD_SRAM";

fn fabric() -> BackgroundFabric {
    BackgroundFabric::start(&"127.0.0.1:0".parse().unwrap(), ServerConfig::default()).unwrap()
}

fn sim_on_fabric(
    sram: &Path,
    port: u8,
    execution: Execution,
    address: &Address,
) -> Result<SimCard, SimError> {
    let config = SimConfig {
        execution,
        fabric_port_id: port,
        ..SimConfig::new(common::SRAM_BYTES)
    };
    SimCard::open_with_fabric(sram, config, &SimFabric::new(address.clone(), ARRAY))
}

fn card_on_fabric(
    directory: &TempDir,
    port: u8,
    execution: Execution,
    address: &Address,
) -> Card<SimCard> {
    let sram = directory.path().join(format!("card{port}.sram"));
    let sim = sim_on_fabric(&sram, port, execution, address).unwrap();
    let config = CardConfig {
        fabric_ring_entries: 4,
        // Cross the index wrap within the test.
        ring_index_start: u32::MAX - 2,
        ..CardConfig::default()
    };
    Card::open(sim, config).unwrap()
}

fn recv(card: &mut Card<SimCard>) -> OwnedFrame {
    card.fabric_recv(WAIT_MS).unwrap().expect("a frame in time")
}

/// The next frame of `kind`, skipping others.
fn recv_kind(card: &mut Card<SimCard>, kind: MessageKind) -> OwnedFrame {
    loop {
        let frame = recv(card);
        if frame.kind() == kind {
            return frame;
        }
    }
}

#[test]
fn frames_go_through_the_rings_both_ways() {
    for execution in common::EXECUTIONS {
        let server = fabric();
        let directory = tempfile::tempdir().unwrap();
        let mut first = card_on_fabric(&directory, 2, execution, server.address());
        assert_ne!(first.identity().caps & regs::CAP_FABRIC, 0);
        assert!(first.fabric_link_up().unwrap());
        let welcome = recv(&mut first);
        assert_eq!(welcome.kind(), MessageKind::Welcome);
        let payload = WelcomePayload::read_from_bytes(welcome.payload()).unwrap();
        assert_eq!(payload.live_ports().collect::<Vec<_>>(), vec![2]);
        assert_eq!(recv(&mut first).kind(), MessageKind::MemberUp);
        let mut second = card_on_fabric(&directory, 5, execution, server.address());
        let up = recv_kind(&mut first, MessageKind::MemberUp);
        assert_eq!(up.source_port(), 5);
        assert_eq!(first.fabric_membership().unwrap(), 1 << 2 | 1 << 5);
        // More frames than ring entries, so buffers are reposted and indices wrap.
        for round in 0u8..10 {
            first
                .fabric_send(
                    MessageKind::Broadcast,
                    PORT_BROADCAST,
                    0,
                    &[round; 100],
                    WAIT_MS,
                )
                .unwrap();
            second
                .fabric_send(MessageKind::Unicast, 2, 0, &[round, 1], WAIT_MS)
                .unwrap();
        }
        // A stepped card sends only while its host waits on it.
        first.fabric_flush(WAIT_MS).unwrap();
        second.fabric_flush(WAIT_MS).unwrap();
        let at_second: Vec<OwnedFrame> = (0..10)
            .map(|_| recv_kind(&mut second, MessageKind::Broadcast))
            .collect();
        let (mut at_first, mut unicasts) = (Vec::new(), Vec::new());
        while at_first.len() < 10 || unicasts.len() < 10 {
            let frame = recv(&mut first);
            match frame.kind() {
                MessageKind::Broadcast => at_first.push(frame),
                MessageKind::Unicast => {
                    assert_eq!(frame.source_port(), 5);
                    unicasts.push(frame.payload()[0]);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(at_first, at_second, "one frame, one stamp, everywhere");
        for (round, frame) in at_first.iter().enumerate() {
            assert_eq!(frame.payload(), &[round as u8; 100]);
        }
        assert!(
            at_first
                .windows(2)
                .all(|pair| pair[0].sequence() < pair[1].sequence())
        );
        assert_eq!(unicasts, (0..10).collect::<Vec<u8>>(), "{execution:?}");
        second.close().unwrap();
    }
}

#[test]
fn a_remote_sram_write_lands_in_the_target_card_and_is_acked() {
    let server = fabric();
    let directory = tempfile::tempdir().unwrap();
    let mut writer = card_on_fabric(&directory, 0, Execution::Threaded, server.address());
    let mut target = card_on_fabric(&directory, 1, Execution::Stepped, server.address());
    let record = common::pattern(5, 3000);
    let offset = 64 * 1024 - 512; // across a window page boundary
    writer
        .fabric_send(MessageKind::SramWrite, 1, offset, &record, WAIT_MS)
        .unwrap();
    let ack = recv_kind(&mut writer, MessageKind::SramWriteAck);
    assert_eq!(ack.source_port(), 1);
    assert_eq!(
        ack.payload(),
        &1u64.to_le_bytes(),
        "the writer's first point-to-point frame"
    );
    // The target's host did nothing but read its SRAM back.
    let mut landed = vec![0u8; record.len()];
    target.sram_read(u64::from(offset), &mut landed).unwrap();
    assert_eq!(landed, record);
    // Beyond the SRAM: refused whole, never acked; the next write still is.
    let past_end = u32::try_from(common::SRAM_BYTES).unwrap() - 8;
    writer
        .fabric_send(MessageKind::SramWrite, 1, past_end, &[0xAB; 16], WAIT_MS)
        .unwrap();
    writer
        .fabric_send(MessageKind::SramWrite, 1, 0, &[0xCD; 8], WAIT_MS)
        .unwrap();
    let ack = recv_kind(&mut writer, MessageKind::SramWriteAck);
    assert_eq!(ack.payload(), &3u64.to_le_bytes(), "write 2 was not acked");
    assert_eq!(target.backend().fabric_sram_writes_refused().unwrap(), 1);
    let mut tail = [0u8; 8];
    target.sram_read(common::SRAM_BYTES - 8, &mut tail).unwrap();
    assert_eq!(tail, [0; 8], "nothing of the refused write landed");
    // The target's host saw membership only, never the writes.
    while let Some(frame) = target.fabric_poll().unwrap() {
        assert!(!matches!(
            frame.kind(),
            MessageKind::SramWrite | MessageKind::SramWriteAck
        ));
    }
}

#[test]
fn a_port_in_use_or_a_foreign_array_is_refused_at_open() {
    let server = fabric();
    let directory = tempfile::tempdir().unwrap();
    let _holder = card_on_fabric(&directory, 3, Execution::Threaded, server.address());
    let sram = directory.path().join("other.sram");
    let refused = sim_on_fabric(&sram, 3, Execution::Threaded, server.address());
    assert!(
        matches!(
            refused,
            Err(SimError::Fabric(ClientError::Refused {
                reason: RefusalReason::PortInUse,
                ..
            }))
        ),
        "{refused:?}"
    );
    let config = SimConfig {
        fabric_port_id: 4,
        ..SimConfig::new(common::SRAM_BYTES)
    };
    let foreign = SimFabric::new(server.address().clone(), [0; 16]);
    let refused = SimCard::open_with_fabric(&sram, config, &foreign);
    assert!(matches!(
        refused,
        Err(SimError::Fabric(ClientError::Refused {
            reason: RefusalReason::WrongArray,
            ..
        }))
    ));
}

#[test]
fn the_link_going_down_clears_status_and_membership() {
    let server = fabric();
    let directory = tempfile::tempdir().unwrap();
    let mut card = card_on_fabric(&directory, 0, Execution::Threaded, server.address());
    assert_eq!(card.fabric_membership().unwrap(), 1);
    drop(server);
    loop {
        match card.fabric_recv(WAIT_MS) {
            Ok(Some(_)) => continue,
            Err(CardError::FabricLinkDown) => break,
            other => panic!("expected the link to go down, got {other:?}"),
        }
    }
    assert!(!card.fabric_link_up().unwrap());
    assert_eq!(card.fabric_membership().unwrap(), 0);
    let error = card.backend().fabric_link_error().unwrap().unwrap();
    assert!(error.contains("ShuttingDown"), "{error}");
    assert!(matches!(
        card.fabric_send(MessageKind::Broadcast, PORT_BROADCAST, 0, b"x", WAIT_MS),
        Err(CardError::FabricLinkDown)
    ));
}

#[test]
fn frames_the_card_refuses_are_reported() {
    let server = fabric();
    let directory = tempfile::tempdir().unwrap();
    let mut card = card_on_fabric(&directory, 0, Execution::Threaded, server.address());
    let oversized = vec![0u8; shared_regs::limits::FABRIC_PAYLOAD_BYTES_MAX as usize + 1];
    assert!(matches!(
        card.fabric_send(
            MessageKind::Broadcast,
            PORT_BROADCAST,
            0,
            &oversized,
            WAIT_MS
        ),
        Err(CardError::FabricFrame(_))
    ));
    // A broadcast addressed to one port: the card completes it BadFrame. The threaded card
    // may complete it before the send returns, and then the send reaps and reports it.
    let flushed = card
        .fabric_send(MessageKind::Broadcast, 1, 0, b"x", WAIT_MS)
        .and_then(|()| card.fabric_flush(WAIT_MS));
    assert!(
        matches!(
            flushed,
            Err(CardError::FabricCompletion {
                ring: "transmit",
                status: 6,
                ..
            })
        ),
        "{flushed:?}"
    );
    card.fabric_send(MessageKind::Broadcast, PORT_BROADCAST, 0, b"fine", WAIT_MS)
        .unwrap();
    card.fabric_flush(WAIT_MS).unwrap();
    let frame = recv_kind(&mut card, MessageKind::Broadcast);
    assert_eq!(frame.payload(), b"fine", "the port carries on");
}

#[test]
fn a_card_without_a_fabric_has_no_fabric_api() {
    let (mut card, _directory) = common::card(Execution::Stepped, CardConfig::default());
    assert_eq!(card.identity().caps & regs::CAP_FABRIC, 0);
    assert!(!card.fabric_link_up().unwrap());
    assert!(matches!(
        card.fabric_poll(),
        Err(CardError::MissingCapability { .. })
    ));
}

/// In the child process of [`member_down_when_the_process_holding_a_card_is_killed`]:
/// hold card 1 on the fabric until killed. Does nothing in a normal test run.
#[test]
fn child_holds_a_card_until_killed() {
    let Ok(address) = std::env::var(CHILD_FABRIC_VARIABLE) else {
        return;
    };
    let sram = std::env::var(CHILD_SRAM_VARIABLE).unwrap();
    let sim = sim_on_fabric(
        Path::new(&sram),
        1,
        Execution::Threaded,
        &address.parse().unwrap(),
    )
    .unwrap();
    let _card = Card::open(sim, CardConfig::default()).unwrap();
    println!("child card ready");
    std::thread::sleep(std::time::Duration::from_secs(600));
}

#[test]
fn member_down_when_the_process_holding_a_card_is_killed() {
    let server = fabric();
    let directory = tempfile::tempdir().unwrap();
    let child_sram = directory.path().join("child.sram");
    let mut survivor = card_on_fabric(&directory, 0, Execution::Threaded, server.address());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_holds_a_card_until_killed", "--nocapture"])
        .env(CHILD_FABRIC_VARIABLE, server.address().to_string())
        .env(CHILD_SRAM_VARIABLE, &child_sram)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines
        .map_while(Result::ok)
        .any(|line| line.contains("child card ready"));
    assert!(ready, "the child opened its card");
    assert_eq!(
        recv_kind(&mut survivor, MessageKind::MemberUp).source_port(),
        0
    );
    assert_eq!(
        recv_kind(&mut survivor, MessageKind::MemberUp).source_port(),
        1
    );
    // A record replicated into the child's card before it dies.
    let record = common::pattern(9, 4096);
    survivor
        .fabric_send(MessageKind::SramWrite, 1, 8192, &record, WAIT_MS)
        .unwrap();
    recv_kind(&mut survivor, MessageKind::SramWriteAck);
    child.kill().unwrap(); // SIGKILL: no destructor runs in the child
    child.wait().unwrap();
    let down = recv_kind(&mut survivor, MessageKind::MemberDown);
    assert_eq!(down.source_port(), 1);
    assert_eq!(survivor.fabric_membership().unwrap(), 1);
    // The acked record outlived the process, in the card's SRAM file.
    let restarted = SimCard::open(&child_sram, SimConfig::new(common::SRAM_BYTES)).unwrap();
    let mut card = Card::open(restarted, CardConfig::default()).unwrap();
    let mut kept = vec![0u8; record.len()];
    card.sram_read(8192, &mut kept).unwrap();
    assert_eq!(kept, record);
}
