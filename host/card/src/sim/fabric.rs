//! The sim card's fabric port: a link to `amf fabric` (or any `amf_fabric` server).
//!
//! [`super::SimCard::open_with_fabric`] joins the fabric as the card's `FABRIC_PORT_ID`
//! before the card powers on; a refused join (port in use, another array) is the open's
//! error. From then on three threads of the card's own run the link, as the port's logic
//! would on a real card:
//!
//! * the **reader** takes every frame the fabric sends. `SramWrite`s are applied to the
//!   card's SRAM by the card itself (whole, or not at all when the range leaves the SRAM)
//!   and acknowledged with a `SramWriteAck` carrying the write's sequence, sent only once
//!   the bytes are in the mapped SRAM file; the host never sees them. `MemberUp` and
//!   `MemberDown` update `FABRIC_MEMBERSHIP`. Everything else but heartbeats (broadcasts,
//!   unicasts, acks, membership changes) waits in the port's receive queue until the
//!   model copies it into a buffer the host posted on `FABRIC_RX_SQ`. The `Welcome` is the
//!   first frame of that queue, so the host learns the join order.
//! * the **writer** sends what the model took from `FABRIC_TX_SQ`, and the acks, in one
//!   queue: what this port sends one peer leaves in the order it was produced;
//! * the **heartbeat** beats at the interval the fabric asked for.
//!
//! When the link fails (the fabric closed it, went silent, or refused the port later),
//! `STATUS_FABRIC_LINK_UP` and `FABRIC_MEMBERSHIP` clear, `IRQ_FABRIC_LINK` rises, and the
//! transmit ring stops being consumed; the reason is kept ([`super::SimCard::fabric_link_error`]). The link survives
//! `CONTROL_RESET` (it is the card's cable, not its registers) and ends when the card is
//! dropped, which the fabric announces to the other ports as `MemberDown`.
//!
//! **Leaving.** A card its host drops deliberately (not while a panic unwinds) with its
//! link up says `Leave` and waits (at most the link's silence limit) for the fabric to
//! close the link: the fabric then announces the port down without fencing it. Dropping
//! the card is the host's word that it has stopped every member write. A link that dies
//! any other way (the process killed, the fabric gone, a panic) sends no `Leave`, and the
//! fabric fences the port (kills its process) before announcing it down.

use super::{Shared, SimError};
use amf_fabric::client::{self, HeartbeatGuard, LinkCloser, LinkReader, LinkWriter};
use amf_fabric::{Address, OwnedFrame};
use shared_regs::fabric::{MessageKind, WelcomePayload};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

/// Frames the port holds for the host at most; the reader waits (and so, through the
/// socket, the fabric) while the host does not post receive buffers.
pub const INCOMING_FRAMES_MAX: usize = 1024;
/// Frames waiting for the writer at most; the model stops taking transmit descriptors
/// while it is full.
pub const OUTGOING_FRAMES_MAX: usize = 256;

/// Where a sim card's fabric port connects, and as what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimFabric {
    /// The fabric's address.
    pub address: Address,
    /// The array this card's host serves; the fabric refuses a port of another array.
    pub array_uuid: [u8; 16],
    /// How long the join may take.
    pub join_timeout_ms: u32,
}

impl SimFabric {
    /// A port of `array_uuid` at `address`, with a 10 s join timeout.
    pub fn new(address: Address, array_uuid: [u8; 16]) -> Self {
        Self {
            address,
            array_uuid,
            join_timeout_ms: 10_000,
        }
    }
}

/// The port's state, kept in the model under the card's mutex.
#[derive(Debug)]
pub struct PortState {
    link_up: bool,
    membership: u32,
    incoming: VecDeque<Vec<u8>>,
    outgoing: Option<SyncSender<Vec<u8>>>,
    sram_writes_refused: u64,
    link_error: Option<String>,
    /// The host closed the card while the link was up: say `Leave` on the way out.
    leaving: bool,
}

/// The outgoing queue is full (or gone): try again once the writer took something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stalled;

impl PortState {
    fn new(
        welcome: &WelcomePayload,
        welcome_frame: &OwnedFrame,
        outgoing: SyncSender<Vec<u8>>,
    ) -> Self {
        let membership = welcome
            .live_ports()
            .fold(0u32, |bits, port| bits | 1 << port);
        Self {
            link_up: true,
            membership,
            incoming: VecDeque::from([welcome_frame.encode()]),
            outgoing: Some(outgoing),
            sram_writes_refused: 0,
            link_error: None,
            leaving: false,
        }
    }

    /// `STATUS_FABRIC_LINK_UP`.
    pub fn link_up(&self) -> bool {
        self.link_up
    }

    /// `FABRIC_MEMBERSHIP`: live ports as the card last heard.
    pub fn membership(&self) -> u32 {
        self.membership
    }

    /// Frames waiting for a receive buffer.
    pub fn incoming_len(&self) -> usize {
        self.incoming.len()
    }

    /// The oldest frame waiting for a receive buffer.
    pub fn pop_incoming(&mut self) -> Option<Vec<u8>> {
        self.incoming.pop_front()
    }

    /// Hands an encoded frame to the writer without waiting.
    pub fn try_send(&mut self, bytes: Vec<u8>) -> Result<(), Stalled> {
        let outgoing = self.outgoing.as_ref().ok_or(Stalled)?;
        match outgoing.try_send(bytes) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Stalled),
        }
    }

    /// Remote SRAM writes refused (their range left the SRAM); never acknowledged.
    pub fn sram_writes_refused(&self) -> u64 {
        self.sram_writes_refused
    }

    /// Why the link went down, once it did.
    pub fn link_error(&self) -> Option<&str> {
        self.link_error.as_deref()
    }

    pub(super) fn link_lost(&mut self, reason: String) {
        self.link_up = false;
        self.membership = 0;
        self.outgoing = None;
        self.link_error.get_or_insert(reason);
    }
}

/// The link's threads; dropping this closes the link and joins them.
#[derive(Debug)]
pub(super) struct LinkThreads {
    shared: Arc<Shared>,
    /// Says `Leave` when the host closes the card.
    leaver: LinkWriter,
    closer: LinkCloser,
    reader: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
    _heartbeat: HeartbeatGuard,
}

/// A joined link not yet running: the port state for the model, and the link for the
/// threads.
#[derive(Debug)]
pub(super) struct Joined {
    pub(super) port: PortState,
    pub(super) link: PendingLink,
}

/// What the link's threads will run on.
#[derive(Debug)]
pub(super) struct PendingLink {
    link: client::Joined,
    outgoing: Receiver<Vec<u8>>,
    /// The reader's way into the same queue, for acks: they leave in order with the
    /// frames the host sent before them, as from one port.
    acks: SyncSender<Vec<u8>>,
}

/// Joins the fabric as `port`.
pub(super) fn join(fabric: &SimFabric, port: u8) -> Result<Joined, SimError> {
    let timeout = Duration::from_millis(u64::from(fabric.join_timeout_ms.max(1)));
    let link = client::join(&fabric.address, port, fabric.array_uuid, timeout)
        .map_err(SimError::Fabric)?;
    let (sender, outgoing) = sync_channel(OUTGOING_FRAMES_MAX);
    let acks = sender.clone();
    let port = PortState::new(&link.welcome, &link.welcome_frame, sender);
    Ok(Joined {
        port,
        link: PendingLink {
            link,
            outgoing,
            acks,
        },
    })
}

/// Starts the link's threads once the model holds the port state.
pub(super) fn start(shared: &Arc<Shared>, pending: PendingLink) -> Result<LinkThreads, SimError> {
    let PendingLink {
        link,
        outgoing,
        acks,
    } = pending;
    let interval = Duration::from_millis(u64::from(link.welcome.heartbeat_interval_ms.get()));
    let heartbeat = link
        .writer
        .start_heartbeat(interval)
        .map_err(SimError::Spawn)?;
    let closer = link.reader.closer().map_err(SimError::Fabric)?;
    let writer = spawn("amf-sim-fabric-tx", {
        let shared = Arc::clone(shared);
        let link_writer = link.writer.clone();
        move || run_writer(&shared, link_writer, &outgoing)
    })?;
    let reader = spawn("amf-sim-fabric-rx", {
        let shared = Arc::clone(shared);
        let link_reader = link.reader;
        move || run_reader(&shared, link_reader, &acks)
    })?;
    Ok(LinkThreads {
        shared: Arc::clone(shared),
        leaver: link.writer.clone(),
        closer,
        reader: Some(reader),
        writer: Some(writer),
        _heartbeat: heartbeat,
    })
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, SimError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .map_err(SimError::Spawn)
}

impl Drop for LinkThreads {
    fn drop(&mut self) {
        let leaving = self
            .shared
            .model
            .lock()
            .is_ok_and(|model| model.fabric().is_some_and(|port| port.leaving));
        if leaving && self.leaver.leave().is_ok() {
            // The fabric closes the link once it took the Leave; the reader returns then
            // (or at the link's silence limit), so the Leave is never cut off by a reset.
            if let Some(reader) = self.reader.take() {
                let _ = reader.join();
            }
            tracing::info!(port = self.leaver.port(), "sim card left the fabric");
        }
        self.closer.close();
        // The reader returns on the closed socket; the writer once the model's sender
        // (dropped with the model, or at link loss) and the reader's are gone, or on its
        // next write to the closed socket.
        for handle in [self.reader.take(), self.writer.take()]
            .into_iter()
            .flatten()
        {
            let _ = handle.join();
        }
    }
}

/// Sends what the model and the reader queue, waking the model after each frame (a full
/// queue may have stalled its transmit ring).
fn run_writer(shared: &Shared, mut link: LinkWriter, outgoing: &Receiver<Vec<u8>>) {
    while let Ok(bytes) = outgoing.recv() {
        if let Err(error) = link.send_bytes(&bytes) {
            lose_link(shared, format!("sending to the fabric failed: {error}"));
            return;
        }
        shared.work.notify_one();
    }
}

fn run_reader(shared: &Shared, mut link: LinkReader, acks: &SyncSender<Vec<u8>>) {
    loop {
        let frame = match link.recv() {
            Ok(frame) => frame,
            Err(error) => {
                lose_link(shared, error.to_string());
                return;
            }
        };
        if frame.kind() == MessageKind::SramWrite {
            // A full queue waits for the writer, which always drains into the fabric.
            if let Some(ack) = apply_sram_write(shared, &frame)
                && acks.send(ack.encode()).is_err()
            {
                // The writer is gone, and has reported why.
                return;
            }
            continue;
        }
        if !queue_for_host(shared, &frame) {
            return;
        }
    }
}

/// Applies a remote write to the SRAM, whole or not at all; the ack to send once it is
/// there, or `None` when its range leaves the SRAM.
fn apply_sram_write(shared: &Shared, frame: &OwnedFrame) -> Option<OwnedFrame> {
    let Ok(mut model) = shared.model.lock() else {
        return None;
    };
    let start = u64::from(frame.sram_offset());
    let end = start + frame.payload().len() as u64;
    let applied = model.sram_apply_remote(start, frame.payload());
    let port = model.fabric_mut().expect("a linked card has a port");
    if !applied {
        port.sram_writes_refused += 1;
        tracing::warn!(
            writer = frame.source_port(),
            start,
            end,
            "refused a remote SRAM write beyond the SRAM"
        );
        return None;
    }
    let sequence = frame.sequence().to_le_bytes().to_vec();
    let (writer, target) = (frame.source_port(), frame.target_port());
    Some(OwnedFrame::new(
        MessageKind::SramWriteAck,
        target,
        writer,
        0,
        sequence,
    ))
}

/// Queues a frame for the host, waiting while the queue is full; false when the card is
/// going away.
fn queue_for_host(shared: &Shared, frame: &OwnedFrame) -> bool {
    let Ok(mut model) = shared.model.lock() else {
        return false;
    };
    loop {
        if shared.shutdown.load(std::sync::atomic::Ordering::SeqCst) {
            return false;
        }
        let port = model.fabric_mut().expect("a linked card has a port");
        if port.incoming.len() < INCOMING_FRAMES_MAX {
            let bit = 1u32 << frame.source_port();
            match frame.kind() {
                MessageKind::MemberUp => port.membership |= bit,
                MessageKind::MemberDown => port.membership &= !bit,
                _ => {}
            }
            port.incoming.push_back(frame.encode());
            shared.work.notify_one();
            shared.progress.notify_all();
            return true;
        }
        // The host takes frames as it posts buffers; every model step signals progress.
        model = match shared
            .progress
            .wait_timeout(model, Duration::from_millis(100))
        {
            Ok((model, _)) => model,
            Err(_) => return false,
        };
    }
}

fn lose_link(shared: &Shared, reason: String) {
    if let Ok(mut model) = shared.model.lock() {
        if model.fabric().is_some_and(PortState::link_up) {
            tracing::warn!(%reason, "sim card's fabric link is down");
        }
        model.fabric_link_lost(reason);
    }
    shared.work.notify_one();
    shared.progress.notify_all();
}

/// Ends the card's side of the link before its threads are joined: the model stops
/// queueing frames for the writer, which then ends once its queue is empty.
pub(super) fn detach(shared: &Shared) {
    if let Ok(mut model) = shared.model.lock() {
        // A card dropped while a panic unwinds is not a deliberate close: its host may
        // still be writing; let the fabric fence it.
        let deliberate = !std::thread::panicking();
        if let Some(port) = model.fabric_mut()
            && port.link_up()
            && deliberate
        {
            port.leaving = true;
        }
        model.fabric_link_lost("the card was closed".into());
    }
}
