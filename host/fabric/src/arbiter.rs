//! The arbiter: the fabric's ordering and routing, as a state machine without I/O.
//!
//! The server ([`crate::server`]) feeds it what happens on the links, one event at a
//! time, and sends what it asks for ([`Output`]). Because one arbiter sees every event in
//! one sequence, whatever order it stamps is the total order: every broadcast goes into
//! every live link's queue at the same point, and a port's `MemberDown` goes in after
//! everything the arbiter took from that port. Time is passed in (`now_ms`), so tests
//! drive heartbeat expiry without a clock.
//!
//! The rules (also in `docs/PROTOCOL.md`, "Software fabric"):
//!
//! * A link's first frame must be a `Join`. A port already held by a live link, or an
//!   array uuid other than the fabric's, is refused (`Refused` frame, then close). A
//!   fabric started without an array adopts the first joiner's.
//! * Joining sends the joiner a `Welcome` (join order, heartbeat rules) and broadcasts
//!   `MemberUp`, the joiner included, in the total order.
//! * Broadcasts, `MemberUp` and `MemberDown` are stamped from one counter and queued to
//!   every live link, the sender included. Point-to-point frames are stamped with the
//!   sender's own counter and queued to their target only, or dropped if it is not live
//!   (its death is, or will be, announced).
//! * A frame that fails its checks, a kind ports may not send, a `source_port` other than
//!   the link's, a second `Join`: the link is refused and closed, and if it had joined its
//!   port goes down. No other link is touched.
//! * Every tick (one heartbeat interval) the arbiter beats on every link and closes those
//!   silent for more than `heartbeat_misses_max` intervals.
//! * **Fencing.** When a joined link ends for any reason but a `Leave`, its port is not
//!   announced down at once: the peer may only be paused (SIGSTOP, a partition) and would
//!   write old data over what a survivor replays. The arbiter asks the shell to fence it
//!   ([`Output::Fence`]), keeps the port reserved (a `Join` for it is refused "port in
//!   use", it stays in the join order, frames for it are dropped), and broadcasts
//!   `MemberDown` only at [`Arbiter::handle_fenced`]. A failed fence
//!   ([`Arbiter::handle_fence_failed`]) is asked again after a back-off, for ever: an
//!   unfenced port is never announced down. A `Leave` (the port's host stopped every
//!   member write) is announced down at once, unfenced. A link whose peer the shell cannot
//!   fence ([`Arbiter::handle_unfenceable`]) is refused at its `Join`.

use crate::codec::OwnedFrame;
use shared_regs::fabric::{
    JoinPayload, MessageKind, PORT_BROADCAST, REFUSAL_TEXT_BYTES_MAX, RefusalReason, WelcomePayload,
};
use shared_regs::limits::FABRIC_PORTS_MAX;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, IntoBytes};

/// The server's name for one connection.
pub type LinkId = u64;

const PORTS: usize = FABRIC_PORTS_MAX as usize;
/// Wait before the first retry of a failed fence; it doubles with each failure.
pub const FENCE_RETRY_MS_FIRST: u64 = 250;
/// Longest wait between two fence attempts.
pub const FENCE_RETRY_MS_MAX: u64 = 8_000;

/// How the arbiter judges liveness and which array it serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArbiterConfig {
    /// The array every port must serve; `None`: the first joiner's.
    pub array_uuid: Option<[u8; 16]>,
    /// How often the fabric beats, and expects beats.
    pub heartbeat_interval_ms: u32,
    /// Intervals of silence after which a link is declared dead.
    pub heartbeat_misses_max: u32,
}

impl Default for ArbiterConfig {
    fn default() -> Self {
        Self {
            array_uuid: None,
            heartbeat_interval_ms: 200,
            // Two seconds: a dead process closes its socket at once; this only catches a
            // hung one, and must not catch one starved of CPU on a busy machine.
            heartbeat_misses_max: 10,
        }
    }
}

impl ArbiterConfig {
    /// Silence after which a link is dead.
    pub fn silence_ms_max(&self) -> u64 {
        u64::from(self.heartbeat_interval_ms) * u64::from(self.heartbeat_misses_max)
    }
}

/// What the server must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Queue `bytes` (one encoded frame) on `link`.
    Send { link: LinkId, bytes: Arc<[u8]> },
    /// Close `link` once what is queued on it is sent; `reason` and `detail` for the log.
    Close {
        link: LinkId,
        reason: RefusalReason,
        detail: String,
    },
    /// Make sure the peer that was on `link` (ended, and closed by an earlier output) can
    /// no longer change a member, then call [`Arbiter::handle_fenced`] for `port`, or
    /// [`Arbiter::handle_fence_failed`]. `attempt` counts from 1.
    Fence {
        port: u8,
        link: LinkId,
        attempt: u32,
    },
    /// `port` left cleanly (a `Leave`): close `link` once what is queued on it is sent; no
    /// fence.
    Left { link: LinkId, port: u8 },
}

/// One link's state.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Link {
    port: Option<u8>,
    last_heard_ms: u64,
    /// Why the shell cannot fence this link's peer: its `Join` is refused.
    unfenceable: Option<String>,
}

/// A port whose link ended and whose peer is not yet fenced.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
struct Fencing {
    link: LinkId,
    attempts: u32,
    /// When to ask again after a failure; `None` while an attempt runs.
    retry_at_ms: Option<u64>,
}

/// The arbiter; see the [module docs](self). Its state (outputs not yet taken aside)
/// serializes, so that a replicated fabric ([`crate::replica`]) can hand a copy to a
/// joining replica.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Arbiter {
    config: ArbiterConfig,
    array_uuid: Option<[u8; 16]>,
    links: BTreeMap<LinkId, Link>,
    /// The link holding each live port.
    holders: [Option<LinkId>; PORTS],
    /// Ports whose link ended, waiting for their fence (still in `join_order`).
    fencing: [Option<Fencing>; PORTS],
    /// Live ports, oldest first.
    join_order: Vec<u8>,
    /// Last sequence of the total order.
    broadcast_sequence: u64,
    /// Last point-to-point sequence of each port since it joined.
    sent_sequence: [u64; PORTS],
    #[serde(skip)]
    outputs: VecDeque<Output>,
}

/// An array uuid for log lines.
struct Hex<'a>(&'a [u8; 16]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0
            .iter()
            .try_for_each(|byte| write!(formatter, "{byte:02x}"))
    }
}

impl Arbiter {
    /// An arbiter with no links.
    pub fn new(config: ArbiterConfig) -> Self {
        assert!(config.heartbeat_interval_ms > 0);
        assert!(config.heartbeat_misses_max > 0);
        Self {
            config,
            array_uuid: config.array_uuid,
            links: BTreeMap::new(),
            holders: [None; PORTS],
            fencing: [None; PORTS],
            join_order: Vec::with_capacity(PORTS),
            broadcast_sequence: 0,
            sent_sequence: [0; PORTS],
            outputs: VecDeque::new(),
        }
    }

    /// Live ports, oldest first: those not yet announced down, the ones waiting for their
    /// fence included.
    pub fn live_ports(&self) -> &[u8] {
        &self.join_order
    }

    /// The ended links whose ports wait for their fence.
    pub fn fencing_links(&self) -> Vec<LinkId> {
        self.fencing
            .iter()
            .flatten()
            .map(|fencing| fencing.link)
            .collect()
    }

    /// Ports whose link ended and which wait for their fence before their `MemberDown`.
    pub fn fencing_ports(&self) -> Vec<u8> {
        (0..PORTS as u8)
            .filter(|&port| self.fencing[usize::from(port)].is_some())
            .collect()
    }

    /// The array served, once known.
    pub fn array_uuid(&self) -> Option<[u8; 16]> {
        self.array_uuid
    }

    /// Sequence of the last broadcast stamped.
    pub fn broadcast_sequence(&self) -> u64 {
        self.broadcast_sequence
    }

    /// Links open (joined or not).
    pub fn link_count(&self) -> usize {
        self.links.len()
    }

    /// Links open (joined or not), in id order.
    pub fn link_ids(&self) -> Vec<LinkId> {
        self.links.keys().copied().collect()
    }

    /// The port `link` joined as, if it did.
    pub fn port_of(&self, link: LinkId) -> Option<u8> {
        self.links.get(&link)?.port
    }

    /// Whether `link` is open, or its port waits for its fence.
    pub fn knows_link(&self, link: LinkId) -> bool {
        self.links.contains_key(&link) || self.fencing_links().contains(&link)
    }

    /// The heartbeat and liveness rules.
    pub fn config(&self) -> &ArbiterConfig {
        &self.config
    }

    /// The next thing to do, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// A connection was accepted.
    pub fn handle_connect(&mut self, now_ms: u64, link: LinkId) {
        let previous = self.links.insert(
            link,
            Link {
                port: None,
                last_heard_ms: now_ms,
                unfenceable: None,
            },
        );
        assert!(previous.is_none(), "link {link} connected twice");
    }

    /// The shell cannot fence the peer of `link` (`why`): its `Join` will be refused, so
    /// that no port is live that could not be made safe at its death.
    pub fn handle_unfenceable(&mut self, _now_ms: u64, link: LinkId, why: String) {
        if let Some(state) = self.links.get_mut(&link)
            && state.port.is_none()
        {
            state.unfenceable = Some(why);
        }
    }

    /// The peer of `port`'s ended link can no longer change a member: announce the port
    /// down, after everything it sent. Ignored for a port that is not being fenced.
    pub fn handle_fenced(&mut self, _now_ms: u64, port: u8) {
        let Some(slot) = self.fencing.get_mut(usize::from(port)) else {
            return;
        };
        if slot.take().is_none() {
            tracing::debug!(port, "fenced report for a port not being fenced: ignored");
            return;
        }
        tracing::info!(port, "port fenced");
        self.member_down(port);
    }

    /// Fencing `port` failed (`error`): it stays reserved and unannounced, and is asked
    /// again after a back-off that doubles up to [`FENCE_RETRY_MS_MAX`].
    pub fn handle_fence_failed(&mut self, now_ms: u64, port: u8, error: &str) {
        let Some(Some(fencing)) = self.fencing.get_mut(usize::from(port)) else {
            return;
        };
        let retry_ms = fence_retry_ms(fencing.attempts);
        fencing.retry_at_ms = Some(now_ms.saturating_add(retry_ms));
        tracing::error!(
            port,
            attempt = fencing.attempts,
            retry_ms,
            error,
            "fencing failed: the port stays reserved and is not announced down until it is fenced"
        );
    }

    /// A whole, checked frame arrived on `link`.
    pub fn handle_frame(&mut self, now_ms: u64, link: LinkId, frame: OwnedFrame) {
        let Some(state) = self.links.get_mut(&link) else {
            // Closed by the arbiter while this frame was on its way: never taken.
            return;
        };
        state.last_heard_ms = now_ms;
        let Some(port) = state.port else {
            self.handle_join(link, frame);
            return;
        };
        if frame.source_port() != port {
            let detail = format!("port {port} sent a frame as port {}", frame.source_port());
            self.refuse(link, RefusalReason::Forbidden, detail);
            return;
        }
        match frame.kind() {
            MessageKind::Heartbeat => {}
            MessageKind::Leave => self.leave(link, port),
            MessageKind::Broadcast => self.broadcast(frame),
            MessageKind::Unicast | MessageKind::SramWrite | MessageKind::SramWriteAck => {
                self.forward(port, frame);
            }
            MessageKind::Join => {
                self.refuse(
                    link,
                    RefusalReason::NotJoined,
                    format!("port {port} joined twice"),
                );
            }
            kind => {
                debug_assert!(!kind.sent_by_ports());
                let detail = format!("port {port} sent a {kind:?}, which only the fabric sends");
                self.refuse(link, RefusalReason::Forbidden, detail);
            }
        }
    }

    /// The bytes on `link` are not a frame (`error` says why); the link is refused.
    pub fn handle_malformed(&mut self, _now_ms: u64, link: LinkId, error: impl fmt::Display) {
        if self.links.contains_key(&link) {
            self.refuse(link, RefusalReason::Malformed, error.to_string());
        }
    }

    /// The connection ended (end of stream or an error); its port, if any, is fenced and
    /// then goes down.
    pub fn handle_closed(&mut self, _now_ms: u64, link: LinkId) {
        if let Some(state) = self.links.remove(&link)
            && let Some(port) = state.port
        {
            tracing::info!(port, "port's link ended without a Leave: fencing it");
            self.begin_fence(port, link);
        }
    }

    /// `link` could not take its frames as fast as the fabric produced them.
    pub fn handle_overloaded(&mut self, _now_ms: u64, link: LinkId) {
        if self.links.contains_key(&link) {
            let detail = "the port's receive queue overflowed".to_string();
            self.close(link, RefusalReason::Overloaded, detail, false);
        }
    }

    /// One heartbeat interval passed: close silent links, then beat on the others.
    pub fn handle_tick(&mut self, now_ms: u64) {
        let silence_ms_max = self.config.silence_ms_max();
        let silent: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, state)| now_ms.saturating_sub(state.last_heard_ms) > silence_ms_max)
            .map(|(&link, _)| link)
            .collect();
        for link in silent {
            let detail = format!("silent for more than {silence_ms_max} ms");
            self.refuse(link, RefusalReason::HeartbeatTimeout, detail);
        }
        self.retry_fences(now_ms);
        let beats: Vec<(LinkId, u8)> = self
            .links
            .iter()
            .filter_map(|(&link, state)| state.port.map(|port| (link, port)))
            .collect();
        for (link, port) in beats {
            let beat = OwnedFrame::new(MessageKind::Heartbeat, port, PORT_BROADCAST, 0, vec![]);
            self.send(link, beat.encode().into());
        }
    }

    /// Refuses every link (the fabric stops). No `MemberDown` is announced: every port
    /// loses its link at once, and a survivor told of a peer's death now could replay it
    /// while that peer, unfenced, still writes.
    pub fn shutdown(&mut self) {
        let links: Vec<LinkId> = self.links.keys().copied().collect();
        for link in links {
            let detail = "the fabric is shutting down".to_string();
            let state = self.links.remove(&link).expect("listed above");
            let port = state.port.unwrap_or(0);
            let reason = RefusalReason::ShuttingDown;
            self.send(link, refusal(port, reason, &detail).encode().into());
            self.outputs.push_back(Output::Close {
                link,
                reason,
                detail,
            });
        }
    }

    fn handle_join(&mut self, link: LinkId, frame: OwnedFrame) {
        if frame.kind() != MessageKind::Join {
            let detail = format!("first frame was a {:?}, not a Join", frame.kind());
            self.refuse(link, RefusalReason::NotJoined, detail);
            return;
        }
        let port = frame.source_port();
        if let Some(why) = self
            .links
            .get(&link)
            .and_then(|state| state.unfenceable.clone())
        {
            let detail = format!("port {port} cannot be fenced by this fabric: {why}");
            self.refuse_unjoined(link, port, RefusalReason::Unfenceable, detail);
            return;
        }
        let join = JoinPayload::read_from_bytes(frame.payload()).expect("length checked by parse");
        let array_uuid = *self.array_uuid.get_or_insert(join.array_uuid);
        if join.array_uuid != array_uuid {
            let detail = format!(
                "port {port} serves array {}, this fabric serves array {}",
                Hex(&join.array_uuid),
                Hex(&array_uuid)
            );
            self.refuse_unjoined(link, port, RefusalReason::WrongArray, detail);
            return;
        }
        if self.holders[usize::from(port)].is_some() {
            let detail = format!("port {port} is already in use by a live link");
            self.refuse_unjoined(link, port, RefusalReason::PortInUse, detail);
            return;
        }
        if self.fencing[usize::from(port)].is_some() {
            let detail =
                format!("port {port} is in use: its last link ended and it is not fenced yet");
            self.refuse_unjoined(link, port, RefusalReason::PortInUse, detail);
            return;
        }
        self.links
            .get_mut(&link)
            .expect("checked by the caller")
            .port = Some(port);
        self.holders[usize::from(port)] = Some(link);
        self.join_order.push(port);
        self.sent_sequence[usize::from(port)] = 0;
        assert!(self.join_order.len() <= PORTS);
        let member_up_sequence = self.broadcast_sequence + 1;
        self.send(link, self.welcome(port, member_up_sequence).encode().into());
        tracing::info!(port, live = ?self.join_order, "port joined the fabric");
        let member_up = OwnedFrame::new(MessageKind::MemberUp, port, PORT_BROADCAST, 0, vec![]);
        self.broadcast(member_up);
        assert_eq!(self.broadcast_sequence, member_up_sequence);
    }

    fn welcome(&self, port: u8, member_up_sequence: u64) -> OwnedFrame {
        let mut payload = WelcomePayload {
            member_up_sequence: U64::new(member_up_sequence),
            heartbeat_interval_ms: U32::new(self.config.heartbeat_interval_ms),
            heartbeat_misses_max: U32::new(self.config.heartbeat_misses_max),
            join_order: [PORT_BROADCAST; PORTS],
        };
        payload.join_order[..self.join_order.len()].copy_from_slice(&self.join_order);
        OwnedFrame::new(
            MessageKind::Welcome,
            port,
            PORT_BROADCAST,
            0,
            payload.as_bytes().to_vec(),
        )
    }

    /// Stamps `frame` with the next sequence of the total order and queues it on every
    /// live link.
    fn broadcast(&mut self, frame: OwnedFrame) {
        assert!(frame.kind().is_ordered_broadcast());
        self.broadcast_sequence += 1;
        let bytes: Arc<[u8]> = frame.stamped(self.broadcast_sequence).encode().into();
        // A port waiting for its fence has no link: it misses what it could not act on.
        let links: Vec<LinkId> = self
            .join_order
            .iter()
            .filter_map(|&port| self.holders[usize::from(port)])
            .collect();
        for link in links {
            self.send(link, Arc::clone(&bytes));
        }
    }

    fn forward(&mut self, sender: u8, frame: OwnedFrame) {
        let counter = &mut self.sent_sequence[usize::from(sender)];
        *counter += 1;
        let sequence = *counter;
        let target = frame.target_port();
        match self.holders.get(usize::from(target)).copied().flatten() {
            Some(link) => self.send(link, frame.stamped(sequence).encode().into()),
            None => tracing::debug!(
                sender,
                target,
                kind = ?frame.kind(),
                "dropped a frame for a port that is not live"
            ),
        }
    }

    fn send(&mut self, link: LinkId, bytes: Arc<[u8]>) {
        self.outputs.push_back(Output::Send { link, bytes });
    }

    /// Refuses a link that claimed `port` but did not get it.
    fn refuse_unjoined(&mut self, link: LinkId, port: u8, reason: RefusalReason, detail: String) {
        self.send(link, refusal(port, reason, &detail).encode().into());
        self.close(link, reason, detail, false);
    }

    /// Sends a `Refused` frame on `link` and closes it.
    fn refuse(&mut self, link: LinkId, reason: RefusalReason, detail: String) {
        self.close(link, reason, detail, true);
    }

    fn close(&mut self, link: LinkId, reason: RefusalReason, detail: String, tell: bool) {
        let state = self.links.remove(&link).expect("closing a live link");
        if tell {
            let port = state.port.unwrap_or(0);
            self.send(link, refusal(port, reason, &detail).encode().into());
        }
        self.outputs.push_back(Output::Close {
            link,
            reason,
            detail,
        });
        if let Some(port) = state.port {
            self.begin_fence(port, link);
        }
    }

    /// `port`'s `link` ended: it keeps the port, without a link, until it is fenced.
    fn begin_fence(&mut self, port: u8, link: LinkId) {
        let held = self.holders[usize::from(port)].take();
        assert_eq!(held, Some(link), "port {port} lost a link it did not hold");
        self.fencing[usize::from(port)] = Some(Fencing {
            link,
            attempts: 1,
            retry_at_ms: None,
        });
        self.outputs.push_back(Output::Fence {
            port,
            link,
            attempt: 1,
        });
    }

    /// Asks again for every failed fence whose back-off is over.
    fn retry_fences(&mut self, now_ms: u64) {
        for port in 0..PORTS as u8 {
            let Some(fencing) = self.fencing[usize::from(port)].as_mut() else {
                continue;
            };
            if fencing.retry_at_ms.is_some_and(|at_ms| at_ms <= now_ms) {
                fencing.retry_at_ms = None;
                fencing.attempts += 1;
                let (link, attempt) = (fencing.link, fencing.attempts);
                self.outputs.push_back(Output::Fence {
                    port,
                    link,
                    attempt,
                });
            }
        }
    }

    /// `port` said `Leave`: its host stopped every member write, so it goes down unfenced.
    fn leave(&mut self, link: LinkId, port: u8) {
        self.links.remove(&link);
        let held = self.holders[usize::from(port)].take();
        assert_eq!(held, Some(link), "port {port} left a link it did not hold");
        tracing::info!(port, "port left the fabric cleanly");
        self.outputs.push_back(Output::Left { link, port });
        self.member_down(port);
    }

    /// Announces `port` down, its link already gone (left or fenced).
    fn member_down(&mut self, port: u8) {
        assert!(
            self.holders[usize::from(port)].is_none() && self.join_order.contains(&port),
            "port {port} went down twice or while held"
        );
        self.join_order.retain(|&live| live != port);
        tracing::info!(port, live = ?self.join_order, "port is down");
        let down = OwnedFrame::new(MessageKind::MemberDown, port, PORT_BROADCAST, 0, vec![]);
        self.broadcast(down);
    }
}

/// Wait after the `attempts`-th failed fence: doubles from [`FENCE_RETRY_MS_FIRST`] up to
/// [`FENCE_RETRY_MS_MAX`].
pub fn fence_retry_ms(attempts: u32) -> u64 {
    let doublings = attempts.saturating_sub(1).min(16);
    (FENCE_RETRY_MS_FIRST << doublings).min(FENCE_RETRY_MS_MAX)
}

/// A `Refused` frame: the reason byte and as much of `detail` as fits.
pub fn refusal(port: u8, reason: RefusalReason, detail: &str) -> OwnedFrame {
    let mut text_bytes = detail.len().min(REFUSAL_TEXT_BYTES_MAX as usize);
    while !detail.is_char_boundary(text_bytes) {
        text_bytes -= 1;
    }
    let mut payload = Vec::with_capacity(1 + text_bytes);
    payload.push(reason as u8);
    payload.extend_from_slice(&detail.as_bytes()[..text_bytes]);
    OwnedFrame::new(MessageKind::Refused, port, PORT_BROADCAST, 0, payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_regs::fabric::FrameError;

    const ARRAY: [u8; 16] = [0xA5; 16];

    fn join_frame(port: u8, array_uuid: [u8; 16]) -> OwnedFrame {
        let payload = JoinPayload { array_uuid }.as_bytes().to_vec();
        OwnedFrame::new(MessageKind::Join, port, PORT_BROADCAST, 0, payload)
    }

    fn broadcast(port: u8, byte: u8) -> OwnedFrame {
        OwnedFrame::new(MessageKind::Broadcast, port, PORT_BROADCAST, 0, vec![byte])
    }

    /// Every send and close, with sends decoded (fences and leaves left out: see
    /// [`drain_all`]).
    fn drain(arbiter: &mut Arbiter) -> Vec<(LinkId, Result<OwnedFrame, RefusalReason>)> {
        std::iter::from_fn(|| arbiter.poll_output())
            .filter_map(|output| match output {
                Output::Send { link, bytes } => {
                    Some((link, Ok(OwnedFrame::parse(&bytes).unwrap())))
                }
                Output::Close { link, reason, .. } => Some((link, Err(reason))),
                Output::Fence { .. } | Output::Left { .. } => None,
            })
            .collect()
    }

    fn drain_all(arbiter: &mut Arbiter) -> Vec<Output> {
        std::iter::from_fn(|| arbiter.poll_output()).collect()
    }

    /// Reports every port waiting for its fence as fenced.
    fn fence_all(arbiter: &mut Arbiter, now_ms: u64) {
        for port in arbiter.fencing_ports() {
            arbiter.handle_fenced(now_ms, port);
        }
    }

    fn kinds_to(
        out: &[(LinkId, Result<OwnedFrame, RefusalReason>)],
        to: LinkId,
    ) -> Vec<(MessageKind, u8)> {
        out.iter()
            .filter(|(link, _)| *link == to)
            .filter_map(|(_, frame)| frame.as_ref().ok())
            .map(|frame| (frame.kind(), frame.source_port()))
            .collect()
    }

    fn joined(ports: &[u8]) -> Arbiter {
        let mut arbiter = Arbiter::new(ArbiterConfig::default());
        for &port in ports {
            let link = LinkId::from(port) + 100;
            arbiter.handle_connect(0, link);
            arbiter.handle_frame(0, link, join_frame(port, ARRAY));
        }
        drain(&mut arbiter);
        arbiter
    }

    #[test]
    fn join_welcomes_then_announces_to_everyone() {
        let mut arbiter = joined(&[4]);
        arbiter.handle_connect(0, 1);
        arbiter.handle_frame(0, 1, join_frame(2, ARRAY));
        let out = drain(&mut arbiter);
        let (link, welcome) = &out[0];
        let welcome = welcome.as_ref().unwrap();
        assert_eq!((*link, welcome.kind()), (1, MessageKind::Welcome));
        let payload = WelcomePayload::read_from_bytes(welcome.payload()).unwrap();
        assert_eq!(payload.live_ports().collect::<Vec<_>>(), vec![4, 2]);
        assert_eq!(payload.member_up_sequence.get(), 2);
        let ups: Vec<(LinkId, u64)> = out[1..]
            .iter()
            .map(|(link, frame)| {
                let frame = frame.as_ref().unwrap();
                assert_eq!(frame.kind(), MessageKind::MemberUp);
                assert_eq!(frame.source_port(), 2);
                (*link, frame.sequence())
            })
            .collect();
        assert_eq!(ups, vec![(104, 2), (1, 2)]);
        assert_eq!(arbiter.live_ports(), &[4, 2]);
    }

    #[test]
    fn duplicate_port_and_foreign_array_are_refused_without_harm() {
        let mut arbiter = joined(&[1]);
        arbiter.handle_connect(0, 7);
        arbiter.handle_frame(0, 7, join_frame(1, ARRAY));
        let out = drain(&mut arbiter);
        assert_eq!(out.len(), 2);
        let refusal = out[0].1.as_ref().unwrap();
        assert_eq!(refusal.kind(), MessageKind::Refused);
        assert_eq!(refusal.payload()[0], RefusalReason::PortInUse as u8);
        assert_eq!(out[1], (7, Err(RefusalReason::PortInUse)));
        arbiter.handle_connect(0, 8);
        arbiter.handle_frame(0, 8, join_frame(2, [0; 16]));
        let out = drain(&mut arbiter);
        assert_eq!(out[1], (8, Err(RefusalReason::WrongArray)));
        assert_eq!(arbiter.live_ports(), &[1], "the holder is untouched");
        assert_eq!(arbiter.broadcast_sequence(), 1, "no MemberUp or MemberDown");
    }

    #[test]
    fn member_down_follows_everything_the_port_sent() {
        let mut arbiter = joined(&[0, 1]);
        arbiter.handle_frame(1, 100, broadcast(0, 1));
        let unicast = OwnedFrame::new(MessageKind::Unicast, 0, 1, 0, vec![2]);
        arbiter.handle_frame(1, 100, unicast);
        arbiter.handle_closed(2, 100);
        fence_all(&mut arbiter, 2);
        let to_one: Vec<(MessageKind, u64)> = drain(&mut arbiter)
            .into_iter()
            .filter(|(link, _)| *link == 101)
            .map(|(_, frame)| {
                let frame = frame.unwrap();
                (frame.kind(), frame.sequence())
            })
            .collect();
        assert_eq!(
            to_one,
            vec![
                (MessageKind::Broadcast, 3),
                (MessageKind::Unicast, 1),
                (MessageKind::MemberDown, 4),
            ]
        );
        arbiter.handle_frame(3, 100, broadcast(0, 9));
        assert!(
            drain(&mut arbiter).is_empty(),
            "a closed link's late frames are dropped"
        );
    }

    #[test]
    fn point_to_point_is_numbered_per_sender() {
        let mut arbiter = joined(&[0, 1, 2]);
        for target in [1, 2, 1] {
            let frame = OwnedFrame::new(MessageKind::SramWrite, 0, target, 64, vec![0; 8]);
            arbiter.handle_frame(1, 100, frame);
        }
        let stamps: Vec<(LinkId, u64)> = drain(&mut arbiter)
            .into_iter()
            .map(|(link, frame)| (link, frame.unwrap().sequence()))
            .collect();
        assert_eq!(stamps, vec![(101, 1), (102, 2), (101, 3)]);
    }

    #[test]
    fn misbehaving_links_close_and_only_their_port_goes_down() {
        let mut arbiter = joined(&[0, 1, 2]);
        arbiter.handle_frame(1, 100, broadcast(2, 0));
        let out = drain(&mut arbiter);
        assert!(out.contains(&(100, Err(RefusalReason::Forbidden))));
        let down = OwnedFrame::new(MessageKind::MemberDown, 1, PORT_BROADCAST, 0, vec![]);
        arbiter.handle_frame(1, 101, down);
        assert!(drain(&mut arbiter).contains(&(101, Err(RefusalReason::Forbidden))));
        arbiter.handle_malformed(1, 102, FrameError::BadMagic(0));
        assert!(drain(&mut arbiter).contains(&(102, Err(RefusalReason::Malformed))));
        assert_eq!(arbiter.fencing_ports(), vec![0, 1, 2]);
        fence_all(&mut arbiter, 1);
        assert!(arbiter.live_ports().is_empty());
        arbiter.handle_connect(1, 5);
        arbiter.handle_frame(1, 5, broadcast(3, 0));
        assert!(drain(&mut arbiter).contains(&(5, Err(RefusalReason::NotJoined))));
    }

    #[test]
    fn silent_links_expire_and_live_ones_get_beats() {
        let config = ArbiterConfig::default();
        let mut arbiter = joined(&[0, 1]);
        let late_ms = config.silence_ms_max();
        arbiter.handle_frame(
            late_ms,
            101,
            OwnedFrame::new(MessageKind::Heartbeat, 1, PORT_BROADCAST, 0, vec![]),
        );
        arbiter.handle_tick(late_ms + 1);
        let out = drain(&mut arbiter);
        assert!(out.contains(&(100, Err(RefusalReason::HeartbeatTimeout))));
        let kinds: Vec<MessageKind> = kinds_to(&out, 101).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            kinds,
            vec![MessageKind::Heartbeat],
            "no MemberDown before the fence"
        );
        fence_all(&mut arbiter, late_ms + 1);
        let out = drain(&mut arbiter);
        assert_eq!(kinds_to(&out, 101), vec![(MessageKind::MemberDown, 0)]);
        assert_eq!(arbiter.live_ports(), &[1]);
    }

    fn heartbeat(port: u8) -> OwnedFrame {
        OwnedFrame::new(MessageKind::Heartbeat, port, PORT_BROADCAST, 0, vec![])
    }

    fn leave(port: u8) -> OwnedFrame {
        OwnedFrame::new(MessageKind::Leave, port, PORT_BROADCAST, 0, vec![])
    }

    #[test]
    fn member_down_waits_for_the_fence_and_comes_after_the_ports_frames() {
        let mut arbiter = joined(&[0, 1]);
        arbiter.handle_frame(1, 100, broadcast(0, 1));
        arbiter.handle_closed(2, 100);
        let out = drain_all(&mut arbiter);
        assert!(out.contains(&Output::Fence {
            port: 0,
            link: 100,
            attempt: 1
        }));
        let sequence_before = arbiter.broadcast_sequence();
        // Others' traffic flows while port 0 is fenced; port 0 misses it.
        arbiter.handle_frame(3, 101, broadcast(1, 2));
        let unicast = OwnedFrame::new(MessageKind::Unicast, 1, 0, 0, vec![3]);
        arbiter.handle_frame(3, 101, unicast);
        let out = drain(&mut arbiter);
        assert_eq!(kinds_to(&out, 101), vec![(MessageKind::Broadcast, 1)]);
        assert!(
            kinds_to(&out, 100).is_empty(),
            "the fenced port has no link"
        );
        assert_eq!(arbiter.live_ports(), &[0, 1], "not down until fenced");
        assert_eq!(arbiter.broadcast_sequence(), sequence_before + 1);
        arbiter.handle_fenced(4, 0);
        let out = drain(&mut arbiter);
        let down: Vec<(LinkId, MessageKind, u64)> = out
            .iter()
            .map(|(link, frame)| {
                let frame = frame.as_ref().unwrap();
                (*link, frame.kind(), frame.sequence())
            })
            .collect();
        assert_eq!(
            down,
            vec![(101, MessageKind::MemberDown, sequence_before + 2)]
        );
        assert_eq!(arbiter.live_ports(), &[1]);
        arbiter.handle_fenced(5, 0);
        assert!(
            drain_all(&mut arbiter).is_empty(),
            "one MemberDown per death"
        );
    }

    #[test]
    fn a_port_being_fenced_cannot_be_joined_until_it_is_fenced() {
        let mut arbiter = joined(&[0, 1]);
        arbiter.handle_closed(1, 100);
        drain_all(&mut arbiter);
        arbiter.handle_connect(2, 7);
        arbiter.handle_frame(2, 7, join_frame(0, ARRAY));
        let out = drain(&mut arbiter);
        assert_eq!(out.last(), Some(&(7, Err(RefusalReason::PortInUse))));
        arbiter.handle_fenced(3, 0);
        drain_all(&mut arbiter);
        arbiter.handle_connect(4, 8);
        arbiter.handle_frame(4, 8, join_frame(0, ARRAY));
        let out = drain(&mut arbiter);
        assert_eq!(kinds_to(&out, 8)[0], (MessageKind::Welcome, 0));
        assert_eq!(arbiter.live_ports(), &[1, 0]);
    }

    #[test]
    fn a_failed_fence_is_retried_with_back_off_and_never_announced() {
        let mut arbiter = joined(&[0, 1]);
        let interval_ms = u64::from(ArbiterConfig::default().heartbeat_interval_ms);
        arbiter.handle_closed(0, 100);
        drain_all(&mut arbiter);
        let mut now_ms = 0;
        let mut attempts_seen = vec![1];
        for _ in 0..3 {
            arbiter.handle_fence_failed(now_ms, 0, "agent exited 1");
            let retry_ms = fence_retry_ms(*attempts_seen.last().unwrap());
            // A tick before the back-off is over asks nothing.
            arbiter.handle_frame(now_ms, 101, heartbeat(1));
            arbiter.handle_tick(now_ms + retry_ms - 1);
            assert!(
                !drain_all(&mut arbiter)
                    .iter()
                    .any(|output| matches!(output, Output::Fence { .. }))
            );
            now_ms += retry_ms;
            arbiter.handle_frame(now_ms, 101, heartbeat(1));
            arbiter.handle_tick(now_ms);
            let out = drain_all(&mut arbiter);
            let attempt = out.iter().find_map(|output| match output {
                Output::Fence {
                    port: 0,
                    link: 100,
                    attempt,
                } => Some(*attempt),
                _ => None,
            });
            attempts_seen.push(attempt.expect("asked again once the back-off is over"));
            let downs = out.iter().filter(|output| match output {
                Output::Send { bytes, .. } => {
                    OwnedFrame::parse(bytes).unwrap().kind() == MessageKind::MemberDown
                }
                _ => false,
            });
            assert_eq!(downs.count(), 0, "never announced unfenced");
            now_ms += interval_ms;
        }
        assert_eq!(attempts_seen, vec![1, 2, 3, 4]);
        assert!(fence_retry_ms(2) > fence_retry_ms(1));
        assert_eq!(fence_retry_ms(40), FENCE_RETRY_MS_MAX);
        assert_eq!(arbiter.live_ports(), &[0, 1]);
        arbiter.handle_fenced(now_ms, 0);
        assert_eq!(
            kinds_to(&drain(&mut arbiter), 101),
            vec![(MessageKind::MemberDown, 0)]
        );
    }

    #[test]
    fn every_way_a_joined_link_ends_fences_it_but_leave() {
        let mut arbiter = joined(&[0, 1, 2, 3, 4]);
        arbiter.handle_closed(1, 100);
        arbiter.handle_malformed(1, 101, FrameError::BadMagic(0));
        arbiter.handle_overloaded(1, 102);
        arbiter.handle_frame(1, 103, broadcast(0, 0));
        drain_all(&mut arbiter);
        assert_eq!(arbiter.fencing_ports(), vec![0, 1, 2, 3]);
        arbiter.handle_frame(1, 104, broadcast(4, 7));
        arbiter.handle_frame(1, 104, leave(4));
        let out = drain_all(&mut arbiter);
        assert!(out.contains(&Output::Left { link: 104, port: 4 }));
        assert!(
            !out.iter()
                .any(|output| matches!(output, Output::Fence { .. }))
        );
        assert_eq!(arbiter.live_ports(), &[0, 1, 2, 3], "4 is down at once");
        arbiter.handle_frame(2, 104, broadcast(4, 8));
        arbiter.handle_closed(2, 104);
        assert!(
            drain_all(&mut arbiter).is_empty(),
            "after Leave the link is gone"
        );
    }

    #[test]
    fn leave_is_announced_after_the_ports_last_frame_without_a_fence() {
        let mut arbiter = joined(&[0, 1]);
        arbiter.handle_frame(1, 100, broadcast(0, 5));
        arbiter.handle_frame(1, 100, leave(0));
        let out = drain(&mut arbiter);
        assert_eq!(
            kinds_to(&out, 101),
            vec![(MessageKind::Broadcast, 0), (MessageKind::MemberDown, 0)]
        );
        assert!(arbiter.fencing_ports().is_empty());
        arbiter.handle_connect(2, 9);
        arbiter.handle_frame(2, 9, join_frame(0, ARRAY));
        assert_eq!(kinds_to(&drain(&mut arbiter), 9)[0].0, MessageKind::Welcome);
    }

    #[test]
    fn an_unfenceable_peer_is_refused_at_join() {
        let mut arbiter = joined(&[0]);
        arbiter.handle_connect(1, 5);
        arbiter.handle_unfenceable(1, 5, "a remote TCP peer".into());
        arbiter.handle_frame(1, 5, join_frame(1, ARRAY));
        let out = drain(&mut arbiter);
        let refused = out[0].1.as_ref().unwrap();
        assert_eq!(refused.payload()[0], RefusalReason::Unfenceable as u8);
        assert!(String::from_utf8_lossy(&refused.payload()[1..]).contains("remote TCP peer"));
        assert_eq!(out[1], (5, Err(RefusalReason::Unfenceable)));
        assert_eq!(arbiter.live_ports(), &[0]);
    }

    #[test]
    fn shutdown_refuses_every_link_and_announces_no_death() {
        let mut arbiter = joined(&[0, 1]);
        let sequence = arbiter.broadcast_sequence();
        arbiter.shutdown();
        let out = drain_all(&mut arbiter);
        assert!(
            !out.iter()
                .any(|output| matches!(output, Output::Fence { .. }))
        );
        assert_eq!(arbiter.broadcast_sequence(), sequence);
        assert_eq!(arbiter.link_count(), 0);
    }

    #[test]
    fn refusal_text_is_cut_on_a_character_boundary() {
        let detail = "é".repeat(REFUSAL_TEXT_BYTES_MAX as usize);
        let frame = refusal(1, RefusalReason::Malformed, &detail);
        assert!(frame.payload().len() <= 1 + REFUSAL_TEXT_BYTES_MAX as usize);
        assert!(std::str::from_utf8(&frame.payload()[1..]).is_ok());
        assert!(OwnedFrame::parse(&frame.encode()).is_ok());
    }
}
