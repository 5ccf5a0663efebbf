//! One replica of a fabric replicated over a group-communication system (corosync's CPG):
//! every machine runs an `amf fabric` whose [`Arbiter`] is a copy, fed the same inputs in
//! the group's agreed order, so that every copy holds the same state and stamps the same
//! total order. A state machine without I/O: the shell hands it what the group delivers
//! ([`Replica::deliver`]) and multicasts what it asks ([`ReplicaOutput::Multicast`]).
//!
//! The rules (also in `docs/PROTOCOL.md`, "Fabric on corosync"):
//!
//! * **Inputs are proposals.** What happens on a link of this machine (a connection, a
//!   frame, its end, a fence's outcome) is multicast as an [`Input`] and applied by every
//!   replica when the group delivers it, the proposer included. Nothing is applied on
//!   receipt, so the order is the group's, not a machine's.
//! * **Links belong to a group member.** A link's id names the group member (node id,
//!   process id) that accepted it ([`link_id`], [`owner`]). Every replica computes every
//!   output; it performs only those on its own links.
//! * **Time is a tick.** The leader (the oldest synced member) multicasts a `Tick` per
//!   heartbeat interval; every replica's clock moves one interval per delivered tick, so
//!   heartbeat expiry and fence retries happen at the same point of the order everywhere.
//! * **A member that leaves the group** takes its links with it: each replica closes them
//!   at the membership change, in id order, and the arbiter asks to fence their ports.
//!   Their owner cannot fence them any more; the leader waits the self-fence bound (the
//!   time within which a machine that lost its quorum has cut its AMFs off,
//!   [`ReplicaOutput::RemoteFence`]) and then proposes them fenced.
//! * **A joiner is given the state.** A replica that joins waits (it takes no links). At
//!   the membership change that adds it, every synced replica keeps a copy of its state;
//!   the leader multicasts it ([`Message::Snapshot`]). The joiner installs it and replays
//!   what the group delivered since that change. If every member older than a joiner
//!   leaves before a snapshot came, no state is left anywhere: the oldest waiting member
//!   multicasts [`Message::Fresh`] and every waiting member starts an empty arbiter at that
//!   point (the AMFs ride it through as a fabric restart).

use crate::arbiter::{Arbiter, ArbiterConfig, LinkId, Output};
use crate::codec::OwnedFrame;
use std::collections::{BTreeSet, VecDeque};

/// A group member: one fabric process on one machine.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Member {
    /// The machine's node id in the group.
    pub nodeid: u32,
    /// The fabric process on it.
    pub pid: u32,
}

impl std::fmt::Display for Member {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "node {} pid {}", self.nodeid, self.pid)
    }
}

/// Node ids a link id can name.
pub const NODEID_MAX: u32 = 0xffff;
/// Process ids a link id can name.
pub const PID_MAX: u32 = 0xff_ffff;
const COUNTER_BITS: u32 = 24;

/// Why this process cannot be a replica.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{member} cannot name its links: node ids up to {NODEID_MAX}, pids up to {PID_MAX}")]
pub struct MemberOutOfRange {
    /// The member.
    pub member: Member,
}

/// The id of the `counter`-th link `member` accepted (counter taken modulo 2^24).
pub fn link_id(member: Member, counter: u64) -> LinkId {
    (u64::from(member.nodeid) << 48)
        | (u64::from(member.pid) << COUNTER_BITS)
        | (counter & ((1 << COUNTER_BITS) - 1))
}

/// The member that accepted `link`.
pub fn owner(link: LinkId) -> Member {
    Member {
        nodeid: (link >> 48) as u32,
        pid: ((link >> COUNTER_BITS) & u64::from(PID_MAX)) as u32,
    }
}

/// What happened on a link, or to a fence, proposed by the link's owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A connection was accepted; `unfenceable` says why its peer cannot be fenced.
    Connect {
        link: LinkId,
        unfenceable: Option<String>,
    },
    /// A whole, checked frame arrived (its encoded bytes).
    Frame { link: LinkId, bytes: Vec<u8> },
    /// The bytes on the link were not a frame.
    Malformed { link: LinkId, error: String },
    /// The connection ended.
    Closed { link: LinkId },
    /// The link could not take its frames fast enough.
    Overloaded { link: LinkId },
    /// A fence of `port` ended: `error` says why it failed.
    Fenced { port: u8, error: Option<String> },
}

/// What replicas multicast to each other.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// An input, applied by every replica where the group delivers it.
    Input(Input),
    /// One heartbeat interval passed (sent by the leader).
    Tick,
    /// The state as it was at the membership change that added `joiners`.
    Snapshot {
        joiners: Vec<Member>,
        state: Vec<u8>,
    },
    /// No member holds a state: every waiting member starts an empty one here.
    Fresh { config: ArbiterConfig },
}

/// Why a group message is not one of ours.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Fewer bytes than its fields need.
    #[error("group message truncated")]
    Truncated,
    /// An unknown message or input kind.
    #[error("unknown group message kind {0}")]
    UnknownKind(u8),
    /// A text field that is not UTF-8.
    #[error("group message text is not UTF-8")]
    BadText,
    /// A snapshot or configuration that does not parse.
    #[error("group message state does not parse: {0}")]
    BadState(String),
    /// Bytes after the last field.
    #[error("{0} bytes after the end of a group message")]
    Trailing(usize),
}

const KIND_CONNECT: u8 = 1;
const KIND_FRAME: u8 = 2;
const KIND_MALFORMED: u8 = 3;
const KIND_CLOSED: u8 = 4;
const KIND_OVERLOADED: u8 = 5;
const KIND_FENCED: u8 = 6;
const KIND_TICK: u8 = 7;
const KIND_SNAPSHOT: u8 = 8;
const KIND_FRESH: u8 = 9;

impl Message {
    /// The bytes multicast: a kind byte, then the fields little-endian, texts and byte
    /// strings with a `u32` length (a frame's bytes run to the end).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Self::Input(Input::Connect { link, unfenceable }) => {
                out.push(KIND_CONNECT);
                out.extend_from_slice(&link.to_le_bytes());
                put_optional_text(&mut out, unfenceable.as_deref());
            }
            Self::Input(Input::Frame { link, bytes }) => {
                out.push(KIND_FRAME);
                out.extend_from_slice(&link.to_le_bytes());
                out.extend_from_slice(bytes);
            }
            Self::Input(Input::Malformed { link, error }) => {
                out.push(KIND_MALFORMED);
                out.extend_from_slice(&link.to_le_bytes());
                put_bytes(&mut out, error.as_bytes());
            }
            Self::Input(Input::Closed { link }) => {
                out.push(KIND_CLOSED);
                out.extend_from_slice(&link.to_le_bytes());
            }
            Self::Input(Input::Overloaded { link }) => {
                out.push(KIND_OVERLOADED);
                out.extend_from_slice(&link.to_le_bytes());
            }
            Self::Input(Input::Fenced { port, error }) => {
                out.push(KIND_FENCED);
                out.push(*port);
                put_optional_text(&mut out, error.as_deref());
            }
            Self::Tick => out.push(KIND_TICK),
            Self::Snapshot { joiners, state } => {
                out.push(KIND_SNAPSHOT);
                out.extend_from_slice(&(joiners.len() as u32).to_le_bytes());
                for joiner in joiners {
                    out.extend_from_slice(&joiner.nodeid.to_le_bytes());
                    out.extend_from_slice(&joiner.pid.to_le_bytes());
                }
                put_bytes(&mut out, state);
            }
            Self::Fresh { config } => {
                out.push(KIND_FRESH);
                let json = serde_json::to_vec(config).expect("a config serializes");
                put_bytes(&mut out, &json);
            }
        }
        out
    }

    /// Parses what [`Message::encode`] wrote; anything else is a typed error.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let mut reader = Reader(bytes);
        let kind = reader.u8()?;
        let message = match kind {
            KIND_CONNECT => Self::Input(Input::Connect {
                link: reader.u64()?,
                unfenceable: reader.optional_text()?,
            }),
            KIND_FRAME => Self::Input(Input::Frame {
                link: reader.u64()?,
                bytes: reader.rest().to_vec(),
            }),
            KIND_MALFORMED => Self::Input(Input::Malformed {
                link: reader.u64()?,
                error: reader.text()?,
            }),
            KIND_CLOSED => Self::Input(Input::Closed {
                link: reader.u64()?,
            }),
            KIND_OVERLOADED => Self::Input(Input::Overloaded {
                link: reader.u64()?,
            }),
            KIND_FENCED => Self::Input(Input::Fenced {
                port: reader.u8()?,
                error: reader.optional_text()?,
            }),
            KIND_TICK => Self::Tick,
            KIND_SNAPSHOT => {
                let count = reader.u32()? as usize;
                let mut joiners = Vec::with_capacity(count.min(64));
                for _ in 0..count {
                    joiners.push(Member {
                        nodeid: reader.u32()?,
                        pid: reader.u32()?,
                    });
                }
                Self::Snapshot {
                    joiners,
                    state: reader.bytes()?.to_vec(),
                }
            }
            KIND_FRESH => {
                let config = serde_json::from_slice(reader.bytes()?)
                    .map_err(|error| WireError::BadState(error.to_string()))?;
                Self::Fresh { config }
            }
            other => return Err(WireError::UnknownKind(other)),
        };
        match reader.rest().len() {
            0 => Ok(message),
            trailing => Err(WireError::Trailing(trailing)),
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn put_optional_text(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        None => out.push(0),
        Some(text) => {
            out.push(1);
            put_bytes(out, text.as_bytes());
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < count {
            return Err(WireError::Truncated);
        }
        let (head, tail) = self.0.split_at(count);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }

    fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let length = self.u32()? as usize;
        self.take(length)
    }

    fn text(&mut self) -> Result<String, WireError> {
        let bytes = self.bytes()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| WireError::BadText)
    }

    fn optional_text(&mut self) -> Result<Option<String>, WireError> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.text().map(Some),
            other => Err(WireError::UnknownKind(other)),
        }
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
}

/// What the group delivered, in its agreed order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A message multicast by `from`.
    Message { from: Member, bytes: Vec<u8> },
    /// The group's membership changed: `members` after it, who `left` and who `joined`.
    Membership {
        members: Vec<Member>,
        left: Vec<Member>,
        joined: Vec<Member>,
    },
}

/// What the shell must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicaOutput {
    /// Multicast these bytes to the group (agreed order).
    Multicast(Vec<u8>),
    /// An arbiter output about one of this replica's own links.
    Arbiter(Output),
    /// `port`'s ended `link` belonged to a member no longer in the group: wait the
    /// self-fence bound, then propose the port fenced (as leader; repeated when a new
    /// leader takes over).
    RemoteFence { port: u8, link: LinkId },
    /// The replica holds the state now: it may accept links.
    Synced,
}

/// The replicated state a joiner is handed.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct State {
    arbiter: Arbiter,
    clock_ms: u64,
    /// Group members, oldest first (the first synced one leads).
    order: Vec<Member>,
}

/// A snapshot kept for joiners until one is delivered.
#[derive(Debug)]
struct Pending {
    joiners: Vec<Member>,
    state: Vec<u8>,
    sent_by_me: bool,
}

#[derive(Debug)]
struct Synced {
    state: State,
    members: Vec<Member>,
    pending: Vec<Pending>,
}

#[derive(Debug, Default)]
struct Waiting {
    /// Seen the membership change that added this replica.
    joined: bool,
    /// Members older than this replica, still in the group.
    older: BTreeSet<Member>,
    /// Members that joined with this replica, still in the group.
    cohort: BTreeSet<Member>,
    members: Vec<Member>,
    /// What the group delivered since this replica joined.
    buffer: Vec<Delivery>,
    fresh_sent: bool,
}

#[derive(Debug)]
enum Phase {
    Waiting(Waiting),
    Synced(Box<Synced>),
}

/// One replica; see the [module docs](self).
#[derive(Debug)]
pub struct Replica {
    me: Member,
    config: ArbiterConfig,
    phase: Phase,
    outputs: VecDeque<ReplicaOutput>,
    /// This replica's last `Tick` is not delivered yet: while the group re-forms it
    /// delivers nothing, and a burst of queued ticks afterwards would age every other
    /// machine's links at once.
    tick_in_flight: bool,
}

impl Replica {
    /// A replica for `me` about to join the group; `config` is used if it starts the
    /// state (a joiner takes the group's).
    pub fn new(me: Member, config: ArbiterConfig) -> Result<Self, MemberOutOfRange> {
        if me.nodeid > NODEID_MAX || me.pid > PID_MAX {
            return Err(MemberOutOfRange { member: me });
        }
        Ok(Self {
            me,
            config,
            phase: Phase::Waiting(Waiting::default()),
            outputs: VecDeque::new(),
            tick_in_flight: false,
        })
    }

    /// This replica's member.
    pub fn me(&self) -> Member {
        self.me
    }

    /// Whether it holds the state (and may take links).
    pub fn is_synced(&self) -> bool {
        matches!(self.phase, Phase::Synced(_))
    }

    /// Whether it leads: synced and the oldest member.
    pub fn is_leader(&self) -> bool {
        match &self.phase {
            Phase::Synced(synced) => synced.state.order.first() == Some(&self.me),
            Phase::Waiting(_) => false,
        }
    }

    /// The arbiter, once synced.
    pub fn arbiter(&self) -> Option<&Arbiter> {
        match &self.phase {
            Phase::Synced(synced) => Some(&synced.state.arbiter),
            Phase::Waiting(_) => None,
        }
    }

    /// The replica's clock (ticks delivered times the heartbeat interval).
    pub fn clock_ms(&self) -> Option<u64> {
        match &self.phase {
            Phase::Synced(synced) => Some(synced.state.clock_ms),
            Phase::Waiting(_) => None,
        }
    }

    /// The next thing to do, in order.
    pub fn poll_output(&mut self) -> Option<ReplicaOutput> {
        self.outputs.pop_front()
    }

    /// Proposes what happened on one of this replica's links.
    pub fn propose(&mut self, input: Input) {
        self.multicast(&Message::Input(input));
    }

    /// One heartbeat interval passed on this machine's clock: the leader says so.
    pub fn tick(&mut self) {
        if self.is_leader() && !self.tick_in_flight {
            self.tick_in_flight = true;
            self.multicast(&Message::Tick);
        }
    }

    fn multicast(&mut self, message: &Message) {
        self.outputs
            .push_back(ReplicaOutput::Multicast(message.encode()));
    }

    /// What the group delivered, in its order.
    pub fn deliver(&mut self, delivery: Delivery) {
        match &mut self.phase {
            Phase::Waiting(_) => self.deliver_waiting(delivery),
            Phase::Synced(_) => self.deliver_synced(delivery),
        }
    }

    fn deliver_waiting(&mut self, delivery: Delivery) {
        let me = self.me;
        let Phase::Waiting(waiting) = &mut self.phase else {
            unreachable!("called while waiting")
        };
        match &delivery {
            Delivery::Membership {
                members,
                left,
                joined,
            } => {
                if !waiting.joined {
                    if !joined.contains(&me) {
                        return;
                    }
                    waiting.joined = true;
                    waiting.older = members
                        .iter()
                        .filter(|member| !joined.contains(member))
                        .copied()
                        .collect();
                    waiting.cohort = joined.iter().copied().collect();
                } else {
                    for member in left {
                        waiting.older.remove(member);
                        waiting.cohort.remove(member);
                    }
                    waiting.buffer.push(delivery.clone());
                }
                waiting.members.clone_from(members);
                let oldest = waiting.older.is_empty() && waiting.cohort.first() == Some(&me);
                if oldest && !waiting.fresh_sent {
                    waiting.fresh_sent = true;
                    tracing::info!(%me, "no group member holds the fabric's state: starting it afresh");
                    let config = self.config;
                    self.multicast(&Message::Fresh { config });
                }
            }
            Delivery::Message { bytes, .. } => match Message::parse(bytes) {
                Ok(Message::Fresh { config }) => {
                    let mut order = waiting.members.clone();
                    order.sort();
                    self.install(
                        State {
                            arbiter: Arbiter::new(config),
                            clock_ms: 0,
                            order,
                        },
                        Vec::new(),
                    );
                }
                Ok(Message::Snapshot { joiners, state }) if joiners.contains(&me) => {
                    match serde_json::from_slice::<State>(&state) {
                        Ok(state) => {
                            let replay = std::mem::take(&mut waiting.buffer);
                            self.install(state, replay);
                        }
                        Err(error) => {
                            tracing::error!(%error, "the group's snapshot does not parse: still waiting");
                        }
                    }
                }
                _ => waiting.buffer.push(delivery),
            },
        }
    }

    fn install(&mut self, state: State, replay: Vec<Delivery>) {
        let members = match &self.phase {
            Phase::Waiting(waiting) => waiting.members.clone(),
            Phase::Synced(synced) => synced.members.clone(),
        };
        tracing::info!(me = %self.me, replayed = replay.len(), order = ?state.order, "holding the fabric's state");
        self.phase = Phase::Synced(Box::new(Synced {
            state,
            members,
            pending: Vec::new(),
        }));
        for delivery in replay {
            self.deliver_synced(delivery);
        }
        self.outputs.push_back(ReplicaOutput::Synced);
    }

    fn synced(&mut self) -> &mut Synced {
        match &mut self.phase {
            Phase::Synced(synced) => synced,
            Phase::Waiting(_) => unreachable!("called when synced"),
        }
    }

    fn deliver_synced(&mut self, delivery: Delivery) {
        match delivery {
            Delivery::Membership {
                members,
                left,
                joined,
            } => self.membership_changed(members, &left, &joined),
            Delivery::Message { from, bytes } => match Message::parse(&bytes) {
                Ok(message) => {
                    if message == Message::Tick && from == self.me {
                        self.tick_in_flight = false;
                    }
                    self.apply(message);
                }
                Err(error) => {
                    tracing::warn!(%from, %error, "ignored a group message that is not ours")
                }
            },
        }
        self.take_arbiter_outputs();
        self.send_snapshots();
    }

    fn membership_changed(&mut self, members: Vec<Member>, left: &[Member], joined: &[Member]) {
        let synced = self.synced();
        synced.members = members;
        let clock_ms = synced.state.clock_ms;
        synced.state.order.retain(|member| !left.contains(member));
        let arbiter = &mut synced.state.arbiter;
        for link in arbiter.link_ids() {
            if left.contains(&owner(link)) {
                arbiter.handle_closed(clock_ms, link);
            }
        }
        let mut joiners: Vec<Member> = joined
            .iter()
            .filter(|member| !synced.state.order.contains(member))
            .copied()
            .collect();
        joiners.sort();
        if !joiners.is_empty() {
            synced.state.order.extend(&joiners);
            let state = serde_json::to_vec(&synced.state).expect("the state serializes");
            synced.pending.push(Pending {
                joiners,
                state,
                sent_by_me: false,
            });
        }
        if !left.is_empty() {
            // A new leader takes over the waits the old one did not finish.
            self.ask_remote_fences();
        }
    }

    fn apply(&mut self, message: Message) {
        let synced = self.synced();
        let clock_ms = synced.state.clock_ms;
        let arbiter = &mut synced.state.arbiter;
        match message {
            Message::Input(input) => apply_input(arbiter, clock_ms, input),
            Message::Tick => {
                synced.state.clock_ms += u64::from(arbiter.config().heartbeat_interval_ms);
                arbiter.handle_tick(synced.state.clock_ms);
            }
            Message::Snapshot { joiners, .. } => {
                synced.pending.retain(|pending| pending.joiners != joiners);
            }
            Message::Fresh { .. } => {
                tracing::warn!(
                    "a member started the fabric afresh while this one holds it: ignored"
                );
            }
        }
    }

    /// Keeps the arbiter's outputs about this replica's links, and turns fences of links
    /// whose owner left into remote fences.
    fn take_arbiter_outputs(&mut self) {
        let me = self.me;
        let leader = self.is_leader();
        let synced = self.synced();
        let mut kept = Vec::new();
        while let Some(output) = synced.state.arbiter.poll_output() {
            let link = match &output {
                Output::Send { link, .. }
                | Output::Close { link, .. }
                | Output::Left { link, .. }
                | Output::Fence { link, .. } => *link,
            };
            if owner(link) == me {
                kept.push(ReplicaOutput::Arbiter(output));
            } else if let Output::Fence { port, link, .. } = output
                && leader
                && !synced.members.contains(&owner(link))
            {
                kept.push(ReplicaOutput::RemoteFence { port, link });
            }
        }
        self.outputs.extend(kept);
    }

    fn ask_remote_fences(&mut self) {
        if !self.is_leader() {
            return;
        }
        let synced = self.synced();
        let arbiter = &synced.state.arbiter;
        let waits: Vec<ReplicaOutput> = arbiter
            .fencing_ports()
            .into_iter()
            .zip(arbiter.fencing_links())
            .filter(|(_, link)| !synced.members.contains(&owner(*link)))
            .map(|(port, link)| ReplicaOutput::RemoteFence { port, link })
            .collect();
        self.outputs.extend(waits);
    }

    fn send_snapshots(&mut self) {
        if !self.is_leader() {
            return;
        }
        let mut messages = Vec::new();
        for pending in &mut self.synced().pending {
            if !pending.sent_by_me {
                pending.sent_by_me = true;
                messages.push(Message::Snapshot {
                    joiners: pending.joiners.clone(),
                    state: pending.state.clone(),
                });
            }
        }
        for message in &messages {
            self.multicast(message);
        }
    }
}

/// Feeds one input to `arbiter` at `now_ms`: what a fabric does with what happened on a
/// link, replicated or not.
pub fn apply_input(arbiter: &mut Arbiter, now_ms: u64, input: Input) {
    match input {
        Input::Connect { link, unfenceable } => {
            arbiter.handle_connect(now_ms, link);
            if let Some(why) = unfenceable {
                arbiter.handle_unfenceable(now_ms, link, why);
            }
        }
        Input::Frame { link, bytes } => match OwnedFrame::parse(&bytes) {
            Ok(frame) => arbiter.handle_frame(now_ms, link, frame),
            Err(error) => arbiter.handle_malformed(now_ms, link, error),
        },
        Input::Malformed { link, error } => arbiter.handle_malformed(now_ms, link, error),
        Input::Closed { link } => arbiter.handle_closed(now_ms, link),
        Input::Overloaded { link } => arbiter.handle_overloaded(now_ms, link),
        Input::Fenced { port, error: None } => arbiter.handle_fenced(now_ms, port),
        Input::Fenced {
            port,
            error: Some(error),
        } => arbiter.handle_fence_failed(now_ms, port, &error),
    }
}
