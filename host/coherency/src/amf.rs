//! One AMF's coherency state machine.

use std::collections::{BTreeMap, VecDeque};

use shared_regs::intent::{INTENT_HEADER_BYTES, Intent, IntentPhase};
use shared_regs::limits::{
    BLOCK_BYTES, FABRIC_PORTS_MAX, INTENT_PAYLOAD_BYTES_MAX, SRAM_BYTES_MAX,
};

use crate::message::{DecodeError, Message, Mode, REPLY_DATA_BYTES_MAX};
use crate::ports::PortSet;

mod rebuild;
use rebuild::{AwaitedRebuild, Rebuild, RebuildsOver};
pub use rebuild::{MembershipEvent, REBUILD_BATCH_STRIPES, RebuildRefusal};

/// Most host requests outstanding at one AMF.
pub const REQUESTS_MAX: usize = 256;
/// Most stripe operations (pieces of host requests, and replays) at one AMF.
pub const OPS_MAX: usize = 4096;
/// Most blocks one stripe operation carries: what one intent record holds.
pub const OP_BLOCKS_MAX: u32 = INTENT_PAYLOAD_BYTES_MAX / BLOCK_BYTES;
/// Op and acquire ids start at `incarnation << INCARNATION_SHIFT`, so that a message
/// meant for a port's previous incarnation never matches one of the current one's.
const INCARNATION_SHIFT: u32 = 40;
/// Incarnations a port may have: its ids must not overflow 64 bits.
pub const INCARNATIONS_MAX: u64 = 1 << (64 - INCARNATION_SHIFT);

/// The incarnation of the port that issued op (or acquire) id `id`.
pub fn id_incarnation(id: u64) -> u32 {
    (id >> INCARNATION_SHIFT) as u32
}
/// Bound on the scheduling loop of one stripe per input.
const ADVANCE_STEPS_MAX: usize = 2 * OPS_MAX;
/// Messages held from ports that joined during a fence: a joiner waits for the answers to
/// its acquires (one per operation, at most `OPS_MAX`) and sends little else meanwhile.
const DEFERRED_MAX: usize = 4 * OPS_MAX;

const _: () = {
    assert!(OP_BLOCKS_MAX >= 1);
    assert!(REQUESTS_MAX <= OPS_MAX);
    assert!(REPLY_DATA_BYTES_MAX >= (OP_BLOCKS_MAX * BLOCK_BYTES) as usize);
};

/// Deliberate protocol breakage, for showing that the simulator's checkers catch it.
/// `Mutation::None` in every real configuration.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mutation {
    #[default]
    None,
    /// Answer an exclusive acquire but keep the shared copy.
    SkipInvalidate,
    /// Acknowledge a write before its record reaches any peer (and never send it).
    AckBeforeReplication,
    /// Replay a dead owner's record without its data (parity resync only).
    ReplayWithoutData,
    /// Answer an exclusive acquire at once while keeping exclusive ownership.
    TwoOwners,
    /// Record a write on a degraded stripe without the whole stripe (no image of the
    /// lost chunk): the degraded write hole.
    DegradedRecordWithoutImage,
    /// Take a port that joins during a fence as live at once.
    AdmitJoinerDuringFence,
    /// Patch a sub-block write into a copy of the block read before the stripe is held
    /// exclusively (a shared read, then a whole-block write): the read-patch-write race
    /// that loses one of two concurrent sub-block writes.
    PatchOutsideOwnership,
    /// Simulator only: a dead AMF's issued member writes may land after its death is
    /// announced (nothing fenced it).
    UnfencedDeath,
    /// The rebuild's driver ends each rebuilt op at once (answering what it owes on the
    /// stripe) instead of holding it until its batch's `RebuildProgress` is ordered: the
    /// next owner may write the rebuilt stripe degraded, before the checkpoint passes it.
    ReleaseRebuiltBeforeProgress,
    /// A grant does not wait for a rebuild's progress that a replier had taken and this
    /// AMF has not: it may write degraded a stripe the replier rebuilt or wrote whole.
    GrantIgnoresRebuildProgress,
    /// Simulator only: an AMF that lost its fabric link does not fence itself, so a
    /// member write its old incarnation had issued lands after its new incarnation
    /// rejoined (after the stripe was resynced).
    UnfencedRejoin,
}

/// What an AMF is and what it serves.
#[derive(Clone, Debug)]
pub struct Config {
    /// This AMF's fabric port.
    pub port: u8,
    /// Incarnation of this port (restarts so far); op ids differ between incarnations.
    pub incarnation: u32,
    /// Live ports in the order they joined, this one included, as of the point in the
    /// fabric's total order where this AMF starts.
    pub live_ports: Vec<u8>,
    pub stripe_count: u64,
    /// 4 KiB blocks of data per stripe.
    pub stripe_data_blocks: u32,
    pub array_generation: u64,
    /// Intent slots each owner has in every peer's SRAM: most writes in flight.
    pub intent_slots: u32,
    /// Members the redundancy group survives losing (1 for RAID-5, 2 for RAID-6): an
    /// operation needing more failed members than this fails to the host.
    pub parity_count: u32,
    /// Blocks this AMF caches at most; past it, the stripes cached longest ago drop
    /// their blocks (they keep their ownership: a cache is any subset of what is held).
    pub cache_blocks_max: u64,
    /// Members failed when this AMF starts (bit `m` for member `m`), as the members'
    /// superblocks record them: a port that joins learns later failures from the
    /// `Reply`s it gets.
    pub failed_members: u32,
    #[doc(hidden)]
    pub mutation: Mutation,
}

impl Config {
    /// Blocks one stripe operation carries at most.
    pub fn op_blocks_max(&self) -> u32 {
        self.stripe_data_blocks.min(OP_BLOCKS_MAX)
    }

    /// Bytes of one intent slot.
    pub fn slot_bytes(&self) -> u32 {
        INTENT_HEADER_BYTES as u32 + self.op_blocks_max() * BLOCK_BYTES
    }

    /// Where `owner`'s slot `slot` lives in every card's SRAM.
    pub fn slot_offset(&self, owner: u8, slot: u32) -> u32 {
        assert!(u32::from(owner) < FABRIC_PORTS_MAX);
        assert!(slot < self.intent_slots);
        (u32::from(owner) * self.intent_slots + slot) * self.slot_bytes()
    }

    /// SRAM bytes the layout needs on every card.
    pub fn sram_bytes(&self) -> u64 {
        u64::from(FABRIC_PORTS_MAX) * u64::from(self.intent_slots) * u64::from(self.slot_bytes())
    }

    fn check(&self) {
        assert!(u32::from(self.port) < FABRIC_PORTS_MAX);
        assert!(u64::from(self.incarnation) < INCARNATIONS_MAX);
        assert!(
            self.live_ports.contains(&self.port),
            "a port is live to itself"
        );
        assert!(self.live_ports.len() <= FABRIC_PORTS_MAX as usize);
        assert!(self.stripe_count > 0);
        assert!(self.stripe_data_blocks >= 2);
        assert!(self.intent_slots >= 1);
        assert!((1..=2).contains(&self.parity_count));
        assert!(self.cache_blocks_max >= 1);
        assert!(self.sram_bytes() <= SRAM_BYTES_MAX);
    }
}

/// This card's SRAM, where peers' intent records land (written by the card, read here
/// only when a peer dies, and freed here when a record retires).
pub trait Sram {
    fn read(&self, offset: u32, bytes: &mut [u8]);
    fn write(&mut self, offset: u32, bytes: &[u8]);
}

/// A host request; blocks are 4 KiB volume blocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Read {
        first_block: u64,
        block_count: u32,
    },
    Write {
        first_block: u64,
        data: Vec<u8>,
    },
    /// Writes `data` at byte `offset` of volume block `block`, atomically against every
    /// other write of that block at every AMF: the block is read, patched and recorded
    /// under exclusive ownership of its stripe. `1 <= data.len()` and
    /// `offset + data.len() <= 4096`.
    Patch {
        block: u64,
        offset: u32,
        data: Vec<u8>,
    },
    /// Checks stripe `stripe`'s parity against its data (with `repair`, rewrites parity
    /// that does not match), holding the stripe so that no AMF writes it meanwhile: shared
    /// for a check, exclusive for a repair.
    Scrub {
        stripe: u64,
        repair: bool,
    },
}

/// Why a request was refused before it started.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error(
        "request of {block_count} blocks at block {first_block} is empty or beyond the volume's {volume_blocks}"
    )]
    OutOfRange {
        first_block: u64,
        block_count: u64,
        volume_blocks: u64,
    },
    #[error("write data of {0} bytes is not whole blocks")]
    PartialBlock(usize),
    #[error("patch of {length} bytes at byte {offset} does not lie within one block")]
    BadPatch { offset: u32, length: usize },
    #[error("request id {0} is already outstanding")]
    DuplicateId(u64),
    #[error("too many requests outstanding")]
    Busy,
}

/// Something for the fabric, in production order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transmit {
    Broadcast {
        payload: Vec<u8>,
    },
    Unicast {
        target: u8,
        payload: Vec<u8>,
    },
    /// Write `bytes` into `target`'s SRAM at `offset`; acknowledged by the fabric.
    SramWrite {
        target: u8,
        offset: u32,
        bytes: Vec<u8>,
    },
}

/// A write into this AMF's own card SRAM: the local copy of an own record (or its
/// release), which a restart of this port finds when no peer completed the write (it was
/// alone, or every AMF died). [`Amf::poll_member_io`] hands out nothing while one waits,
/// so a record's local copy is always in place before its member writes begin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalWrite {
    pub offset: u32,
    pub bytes: Vec<u8>,
}

/// Member I/O for the RAID path; blocks are counted within the stripe's data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberRequest {
    Read {
        io: u64,
        stripe: u64,
        first_block: u32,
        block_count: u32,
        /// Members known failed (bit `m` for member `m`): plan degraded around them.
        failed_members: u32,
    },
    /// Write the blocks and bring parity up to date (any plan the RAID core picks).
    Write {
        io: u64,
        stripe: u64,
        first_block: u32,
        data: Vec<u8>,
        failed_members: u32,
    },
    /// Complete a dead owner's write: read every data chunk, lay `data` over it at
    /// `first_block`, write the whole stripe with fresh parity. Idempotent. Empty `data`:
    /// a parity resync (a restart's unfinished writes, or under a mutation).
    Replay {
        io: u64,
        stripe: u64,
        first_block: u32,
        data: Vec<u8>,
        failed_members: u32,
    },
    /// Reconstruct `member`'s chunk of `stripe` from the others and write it to the
    /// member's replacement (`failed_members` names the member too: it is not read).
    /// Answered `Written`.
    Rebuild {
        io: u64,
        stripe: u64,
        member: u32,
        failed_members: u32,
    },
    /// Check `stripe`'s parity (with `repair`, rewrite what does not match); the shell
    /// keeps the findings. Answered `Written`.
    Scrub {
        io: u64,
        stripe: u64,
        repair: bool,
        failed_members: u32,
    },
}

impl MemberRequest {
    /// The members the core planned this I/O around (bit `m` for member `m`).
    pub fn failed_members(&self) -> u32 {
        match self {
            MemberRequest::Read { failed_members, .. }
            | MemberRequest::Write { failed_members, .. }
            | MemberRequest::Replay { failed_members, .. }
            | MemberRequest::Rebuild { failed_members, .. }
            | MemberRequest::Scrub { failed_members, .. } => *failed_members,
        }
    }

    /// The I/O's number, which its completion names.
    pub fn io(&self) -> u64 {
        match self {
            MemberRequest::Read { io, .. }
            | MemberRequest::Write { io, .. }
            | MemberRequest::Replay { io, .. }
            | MemberRequest::Rebuild { io, .. }
            | MemberRequest::Scrub { io, .. } => *io,
        }
    }

    /// The stripe this I/O is on.
    pub fn stripe(&self) -> u64 {
        match self {
            MemberRequest::Read { stripe, .. }
            | MemberRequest::Write { stripe, .. }
            | MemberRequest::Replay { stripe, .. }
            | MemberRequest::Rebuild { stripe, .. }
            | MemberRequest::Scrub { stripe, .. } => *stripe,
        }
    }
}

/// A member I/O's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberOutcome {
    Read(Vec<u8>),
    Written,
    /// The I/O met an error on `member`. For a write or replay, either nothing was
    /// written (a read of the plan failed) or every write of the plan but those to
    /// `member` was applied, so the stripe is consistent with `member` holding what the
    /// plan meant for it; either way redoing the operation degraded around `member` is
    /// correct. The core broadcasts `MemberFailed` and redoes it once that is ordered.
    Failed {
        member: u32,
    },
}

/// A host completion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Request `id` is done: reads carry their data; writes are durable and replicated.
    Completed { id: u64, data: Option<Vec<u8>> },
    /// Request `id` failed: one of its stripe operations needed more failed members than
    /// the parity covers. A failed read returns nothing; a failed write may have taken
    /// effect in part.
    Failed { id: u64 },
    /// The members' states changed at this point of the fabric's order.
    Membership(MembershipEvent),
}

/// What the protocol did, for the simulator's ratios.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Acquire broadcasts sent.
    pub broadcasts: u64,
    /// Of those, exclusive ones (for writes and replays).
    pub exclusive_acquires: u64,
    /// Acquires granted: ownership changes (coming to hold a stripe, or to hold it
    /// exclusively).
    pub grants: u64,
    /// Stripe operations started without an acquire of their own.
    pub broadcasts_avoided: u64,
    /// Replies received that carried blocks.
    pub forwards: u64,
    /// Copies dropped on an exclusive acquire.
    pub invalidations: u64,
    /// Dead owners' records completed.
    pub replays: u64,
    /// Dead owners' records found corrupt (never replayed).
    pub records_corrupt: u64,
    /// Stripe writes and reads performed.
    pub writes: u64,
    pub reads: u64,
    /// Member I/O errors met (each redone degraded, or failed beyond the parity).
    pub member_errors: u64,
    /// Stripe operations failed to the host: beyond what the parity covers.
    pub ops_failed: u64,
    /// Writes and replays on a degraded stripe recorded as the whole stripe.
    pub widened: u64,
    /// Ports that joined while a dead peer's writes were being completed (held until
    /// the fence ended).
    pub joins_during_fence: u64,
    /// Stripes resynced at start for records that no survivor completed.
    pub resyncs: u64,
    /// Stripes this AMF rebuilt onto a replacement.
    pub stripes_rebuilt: u64,
    /// Stripes this AMF scrubbed.
    pub stripes_scrubbed: u64,
}

#[derive(Clone, Debug)]
enum OpKind {
    Read,
    Write {
        data: Vec<u8>,
    },
    Replay {
        owner: u8,
        op_id: u64,
        slot: u32,
        data: Vec<u8>,
    },
    /// Parity rewritten from the stripe's data, for a record found at start that nobody
    /// may have completed; `own_slot` holds this port's previous incarnation's record
    /// until then, so a crash during the resync finds it again.
    Resync {
        own_slot: Option<u32>,
    },
    /// A stripe of the driver's rebuild batch `batch`.
    Rebuild {
        rebuild: crate::message::RebuildId,
        member: u32,
        batch: u64,
    },
    Scrub {
        repair: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum OpState {
    Queued,
    Replicating {
        slot: u32,
        awaited: PortSet,
    },
    MemberIo {
        io: u64,
        slot: Option<u32>,
    },
    /// A member I/O met an error on `member`: redone once `MemberFailed(member)` is
    /// ordered (the stripe stays busy meanwhile).
    AwaitingFailure {
        member: u32,
        slot: Option<u32>,
    },
    /// A rebuild op's chunk is written: the stripe stays held until the batch's
    /// `RebuildProgress` is ordered.
    Rebuilt,
}

#[derive(Clone, Debug)]
struct Op {
    request: Option<u64>,
    /// Byte offset of this piece in the request's data.
    request_offset: usize,
    stripe: u64,
    first_block: u32,
    block_count: u32,
    kind: OpKind,
    state: OpState,
    op_id: u64,
    caused_acquire: bool,
    /// The slot kept for a write or replay widened to its whole stripe while it reads
    /// the stripe first (degraded: see [`Amf::needs_widening`]), or for a patch while it
    /// reads its block.
    reserved_slot: Option<u32>,
    /// A sub-block write not yet laid over its block: the op's data is valid only once
    /// this is `None` (see [`Amf::read_for_patch`]).
    patch: Option<Patch>,
}

/// New bytes for part of one block.
#[derive(Clone, Debug)]
struct Patch {
    offset: u32,
    bytes: Vec<u8>,
}

impl Patch {
    /// Lays the new bytes over `block`, the block's current contents.
    fn apply(&self, block: &mut [u8]) {
        assert_eq!(block.len(), BLOCK_BYTES as usize);
        block[self.offset as usize..][..self.bytes.len()].copy_from_slice(&self.bytes);
    }
}

impl Op {
    fn mode(&self) -> Mode {
        match self.kind {
            OpKind::Read | OpKind::Scrub { repair: false } => Mode::Shared,
            _ => Mode::Exclusive,
        }
    }
}

#[derive(Clone, Debug)]
struct Acquiring {
    id: u64,
    mode: Mode,
    /// Our own broadcast has been delivered back: `awaited` is fixed.
    ordered: bool,
    awaited: PortSet,
    replied: PortSet,
    forwarded: BTreeMap<u32, Vec<u8>>,
    /// The union of the replies' failed members: the grant waits until we have taken
    /// each of them (see [`Amf::check_granted`]).
    failed_members: u32,
    /// Rebuild progress the repliers had taken on this stripe: the grant waits for it too.
    rebuilds_awaited: Vec<AwaitedRebuild>,
    /// Members this AMF had in service and took failed after this acquire was ordered.
    /// A rebuild of one that a replier names (answering this acquire, it lagged behind
    /// that failure) ended before it, or the failure stopped it: none is waited for. A
    /// port that joined after that rebuild ended would never see it end.
    failed_since_ordered: u32,
}

#[derive(Clone, Debug)]
struct Owed {
    port: u8,
    acquire_id: u64,
    mode: Mode,
    first_block: u32,
    block_count: u32,
    /// Ordered after our own pending acquire: answered after our turn.
    after_mine: bool,
}

#[derive(Clone, Debug, Default)]
struct Stripe {
    held: Option<Mode>,
    /// Valid only while `held` is some.
    cache: BTreeMap<u32, Vec<u8>>,
    acquiring: Option<Acquiring>,
    owed: VecDeque<Owed>,
    queue: VecDeque<u64>,
    busy: Option<u64>,
    /// Queued operations that may still run on the current grant before owed answers.
    batch: usize,
}

impl Stripe {
    fn is_idle(&self) -> bool {
        self.held.is_none()
            && self.acquiring.is_none()
            && self.owed.is_empty()
            && self.queue.is_empty()
            && self.busy.is_none()
    }
}

#[derive(Clone, Debug)]
struct HostRequest {
    ops_left: u32,
    data: Option<Vec<u8>>,
    /// A piece failed: the request fails once its last piece is done.
    failed: bool,
}

/// A dead owner's records, as decoded from this card's SRAM when it died.
#[derive(Clone, Debug, Default)]
struct DeadOwner {
    /// By slot: the record and its payload.
    records: BTreeMap<u32, (Intent, Vec<u8>)>,
    replay_queued: bool,
    recovered_sent: bool,
}

/// A broadcast from a joining port, held until the port is admitted. (Its replies are
/// not held: point-to-point frames are not ordered with the membership, so one may come
/// from a later incarnation of the port; a reply only ever counts towards an acquire
/// that is still waiting, whatever the sender's state.)
#[derive(Clone, Debug)]
struct Deferred {
    from: u8,
    payload: Vec<u8>,
}

/// One AMF's coherency core. See the crate docs for the calling pattern.
#[derive(Debug)]
pub struct Amf {
    config: Config,
    now: u64,
    live: Vec<u8>,
    stripes: BTreeMap<u64, Stripe>,
    requests: BTreeMap<u64, HostRequest>,
    ops: BTreeMap<u64, Op>,
    ios: BTreeMap<u64, u64>,
    slots: Vec<Option<u64>>,
    /// Stripes whose next write or replay waits for a free slot, in the order they
    /// found none: advanced again as slots free up.
    slot_waiters: VecDeque<u64>,
    /// The op id the last `Retire` named, per (peer, slot): a record of that op that
    /// lands in this card's SRAM after its `Retire` (a peer's SRAM write sent to this
    /// port's previous incarnation, delivered to this one; the fabric does not order a
    /// sender's SRAM writes with its broadcasts) is stale and never replayed. The last
    /// one is enough: the peer reuses the slot only after that `Retire`, and its next
    /// record there reaches this card after the stale one (FIFO per pair).
    retired: BTreeMap<(u8, u32), u64>,
    /// Blocks cached over every stripe, and the stripes in the order their caches
    /// filled (stale entries are skipped when met): what [`Amf::trim_cache`] evicts.
    cached_blocks: u64,
    cache_order: VecDeque<u64>,
    dead: BTreeMap<u8, DeadOwner>,
    /// Ports that joined while `dead` was not empty, in join order: admitted (made live)
    /// at the `Recovered` that empties it. See [`Amf::handle_member_up`].
    joining: Vec<u8>,
    /// Their broadcasts meanwhile, in the total order.
    deferred: VecDeque<Deferred>,
    /// Members every AMF treats as failed, bit `m` for member `m`: grown only by
    /// `MemberFailed` broadcasts, so every AMF changes it at the same point of the order.
    failed_members: u32,
    /// Members a `Reply` named failed before we had taken them, for which we broadcast
    /// a `MemberFailed` of our own (once each): a port that joined after the original
    /// was ordered never receives it, and waits for ours instead.
    failures_relayed: u32,
    /// Failed members this AMF started with (its volume's, `Config::failed_members`)
    /// and has not taken a `MemberFailed` of since: news to the order, maybe stale (a
    /// port back from a fabric restart while a peer rebuilt the member). See
    /// [`Amf::reorder_failures`].
    failures_unordered: u32,
    /// The online rebuild this AMF follows (see `rebuild.rs`).
    rebuild: Option<Rebuild>,
    /// The last rebuild that brought its member back into service here, until that
    /// member fails again.
    last_restored: Option<(crate::message::RebuildId, u32)>,
    rebuilds_over: RebuildsOver,
    next_op: u64,
    next_acquire: u64,
    next_io: u64,
    next_op_id: u64,
    transmits: VecDeque<Transmit>,
    local_writes: VecDeque<LocalWrite>,
    member_ios: VecDeque<MemberRequest>,
    events: VecDeque<Event>,
    counters: Counters,
}

impl Amf {
    /// A fresh (or restarted) AMF over its card's `sram`, as left by the previous
    /// incarnation of this port. See [`Amf::resync_leftovers`] for what it does with the
    /// records it finds there.
    pub fn new(config: Config, sram: &mut dyn Sram) -> Amf {
        config.check();
        let mut amf = Amf::empty(config);
        amf.resync_leftovers(sram);
        amf
    }

    fn empty(config: Config) -> Amf {
        Amf {
            live: config.live_ports.clone(),
            failed_members: config.failed_members,
            failures_unordered: config.failed_members,
            slots: vec![None; config.intent_slots as usize],
            slot_waiters: VecDeque::new(),
            retired: BTreeMap::new(),
            cached_blocks: 0,
            cache_order: VecDeque::new(),
            next_op_id: u64::from(config.incarnation) << INCARNATION_SHIFT,
            next_acquire: u64::from(config.incarnation) << INCARNATION_SHIFT,
            config,
            now: 0,
            stripes: BTreeMap::new(),
            requests: BTreeMap::new(),
            ops: BTreeMap::new(),
            ios: BTreeMap::new(),
            dead: BTreeMap::new(),
            joining: Vec::new(),
            deferred: VecDeque::new(),
            failures_relayed: 0,
            rebuild: None,
            last_restored: None,
            rebuilds_over: RebuildsOver::new(),
            next_op: 0,
            next_io: 0,
            transmits: VecDeque::new(),
            local_writes: VecDeque::new(),
            member_ios: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
        }
    }

    pub fn port(&self) -> u8 {
        self.config.port
    }

    /// The records a previous incarnation left in this card's SRAM:
    ///
    /// * its own (local copies): a write it had begun. If peers were live they completed
    ///   it from their copies; if it was alone, or every AMF died, nobody did. Either way
    ///   its stripe's parity is resynced from the data, under exclusive ownership like a
    ///   write, and the slot is held until then (a crash meanwhile finds it again).
    /// * peers': if other AMFs are live now, they completed those writes while this port
    ///   was down: dropped. If this AMF is the only one (every AMF died), nobody did:
    ///   their stripes are resynced too. The record may be stale (its write completed,
    ///   even overwritten since, while this port was down) — which is why only parity is
    ///   rewritten, never the record's data: a resync of a consistent stripe changes
    ///   nothing, and a torn stripe's blocks each hold the old or the new data of a write
    ///   that was never acknowledged.
    ///
    /// A resync cannot repair a degraded stripe (its lost chunk lives only in the parity
    /// it would rewrite); that double fault is in docs/PROTOCOL.md's known limits.
    fn resync_leftovers(&mut self, sram: &mut dyn Sram) {
        let alone = self.live == [self.config.port];
        let mut stripes = Vec::new();
        for owner in 0..FABRIC_PORTS_MAX as u8 {
            let own = owner == self.config.port;
            for slot in 0..self.config.intent_slots {
                let Some(decoded) = self.decode_slot(owner, slot, sram) else {
                    continue;
                };
                match decoded {
                    Ok((intent, _)) if own => stripes.push((intent.stripe, Some(slot))),
                    Ok((intent, _)) if alone => stripes.push((intent.stripe, None)),
                    Ok(_) => {}
                    Err(()) => self.counters.records_corrupt += 1,
                }
                if !own {
                    sram.write(self.config.slot_offset(owner, slot), &[0; 4]);
                }
            }
        }
        for (stripe, own_slot) in stripes {
            self.queue_resync(stripe, own_slot, sram);
        }
    }

    /// Queues a resync of `stripe`; `own_slot` stays taken until it is done.
    fn queue_resync(&mut self, stripe: u64, own_slot: Option<u32>, sram: &mut dyn Sram) {
        let duplicate = self.ops.values().any(|op| op.stripe == stripe);
        if duplicate {
            // One resync of a stripe covers every record on it.
            if let Some(slot) = own_slot {
                sram.write(self.config.slot_offset(self.config.port, slot), &[0; 4]);
            }
            return;
        }
        let blocks = self.config.stripe_data_blocks;
        let kind = OpKind::Resync { own_slot };
        let key = self.enqueue(stripe, None, 0, 0, blocks, kind, false);
        if let Some(slot) = own_slot {
            self.slots[slot as usize] = Some(key);
        }
        self.advance(stripe);
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Members this AMF treats as failed (bit `m` for member `m`).
    pub fn failed_members(&self) -> u32 {
        self.failed_members
    }

    /// Live ports in join order, as this AMF knows them.
    pub fn live_ports(&self) -> &[u8] {
        &self.live
    }

    /// Stripes this AMF holds, shared or exclusive.
    pub fn stripes_held(&self) -> usize {
        self.stripes
            .values()
            .filter(|state| state.held.is_some())
            .count()
    }

    /// The mode this AMF holds `stripe` in.
    pub fn holding(&self, stripe: u64) -> Option<Mode> {
        self.stripes.get(&stripe).and_then(|state| state.held)
    }

    /// Blocks of `stripe` this AMF has cached.
    pub fn cached_blocks(&self, stripe: u64) -> usize {
        self.stripes
            .get(&stripe)
            .map_or(0, |state| state.cache.len())
    }

    /// Whether a dead peer's writes are still being completed (a port must not rejoin
    /// the fabric meanwhile).
    pub fn recovering(&self) -> bool {
        !self.dead.is_empty()
    }

    /// Whether a resync of a previous incarnation's records (at the welcome) is still to
    /// finish.
    pub fn resyncing(&self) -> bool {
        self.ops
            .values()
            .any(|op| matches!(op.kind, OpKind::Resync { .. }))
    }

    /// Dead owners' records this AMF holds and has not seen retired: (owner, stripe,
    /// first block).
    pub fn dead_records(&self) -> Vec<(u8, u64, u32)> {
        self.dead
            .iter()
            .flat_map(|(&owner, dead)| {
                dead.records
                    .values()
                    .map(move |(intent, _)| (owner, intent.stripe, intent.first_block))
            })
            .collect()
    }

    /// No request, operation or acquisition outstanding.
    /// A rebuild's ops do not count: a peer goes on with the rebuild if this AMF leaves.
    pub fn is_quiet(&self) -> bool {
        self.requests.is_empty()
            && self
                .ops
                .values()
                .all(|op| matches!(op.kind, OpKind::Rebuild { .. }))
            && self.dead.is_empty()
            && !self.has_output()
    }

    /// Something waits in [`Amf::poll_transmit`], [`Amf::poll_local_write`],
    /// [`Amf::poll_member_io`] or
    /// [`Amf::poll_event`].
    pub fn has_output(&self) -> bool {
        !self.transmits.is_empty()
            || !self.local_writes.is_empty()
            || !self.member_ios.is_empty()
            || !self.events.is_empty()
    }

    fn tick(&mut self, now: u64) {
        assert!(now >= self.now, "time went backwards");
        self.now = now;
    }

    /// Accepts host request `id`; its completion comes out of [`Amf::poll_event`].
    pub fn handle_request(
        &mut self,
        now: u64,
        id: u64,
        request: Request,
    ) -> Result<(), RequestError> {
        self.tick(now);
        let (first_block, block_count, data) = match request {
            Request::Patch {
                block,
                offset,
                data,
            } => {
                return self.handle_patch(
                    id,
                    block,
                    Patch {
                        offset,
                        bytes: data,
                    },
                );
            }
            Request::Scrub { stripe, repair } => return self.handle_scrub(id, stripe, repair),
            Request::Read {
                first_block,
                block_count,
            } => (first_block, u64::from(block_count), None),
            Request::Write { first_block, data } => {
                if !data.len().is_multiple_of(BLOCK_BYTES as usize) {
                    return Err(RequestError::PartialBlock(data.len()));
                }
                (
                    first_block,
                    (data.len() / BLOCK_BYTES as usize) as u64,
                    Some(data),
                )
            }
        };
        let pieces = self.admissible(id, first_block, block_count)?;
        let is_read = data.is_none();
        self.requests.insert(
            id,
            HostRequest {
                ops_left: pieces.len() as u32,
                failed: false,
                data: is_read.then(|| vec![0; block_count as usize * BLOCK_BYTES as usize]),
            },
        );
        let mut touched = Vec::with_capacity(pieces.len());
        for (stripe, first, count, request_offset) in pieces {
            let kind = match &data {
                None => OpKind::Read,
                Some(bytes) => OpKind::Write {
                    data: bytes[request_offset..][..count as usize * BLOCK_BYTES as usize].to_vec(),
                },
            };
            self.enqueue(stripe, Some(id), request_offset, first, count, kind, false);
            touched.push(stripe);
        }
        for stripe in touched {
            self.advance(stripe);
        }
        Ok(())
    }

    /// Request `id`'s range cut into its pieces, if the request may be taken now.
    fn admissible(
        &self,
        id: u64,
        first_block: u64,
        block_count: u64,
    ) -> Result<Vec<(u64, u32, u32, usize)>, RequestError> {
        let volume_blocks = self.config.stripe_count * u64::from(self.config.stripe_data_blocks);
        if block_count == 0 || first_block.saturating_add(block_count) > volume_blocks {
            return Err(RequestError::OutOfRange {
                first_block,
                block_count,
                volume_blocks,
            });
        }
        if self.requests.contains_key(&id) {
            return Err(RequestError::DuplicateId(id));
        }
        let pieces = self.pieces(first_block, block_count);
        if self.requests.len() >= REQUESTS_MAX || self.ops.len() + pieces.len() > OPS_MAX {
            return Err(RequestError::Busy);
        }
        Ok(pieces)
    }

    /// A sub-block write: one op on its block, patched once its stripe is held
    /// exclusively (or, under [`Mutation::PatchOutsideOwnership`], a shared read first).
    fn handle_patch(&mut self, id: u64, block: u64, patch: Patch) -> Result<(), RequestError> {
        let end = patch.offset as usize + patch.bytes.len();
        if patch.bytes.is_empty() || end > BLOCK_BYTES as usize {
            return Err(RequestError::BadPatch {
                offset: patch.offset,
                length: patch.bytes.len(),
            });
        }
        let pieces = self.admissible(id, block, 1)?;
        assert_eq!(pieces.len(), 1);
        let (stripe, first, _, _) = pieces[0];
        self.requests.insert(
            id,
            HostRequest {
                ops_left: 1,
                failed: false,
                data: None,
            },
        );
        let kind = if self.config.mutation == Mutation::PatchOutsideOwnership {
            OpKind::Read
        } else {
            OpKind::Write {
                data: vec![0; BLOCK_BYTES as usize],
            }
        };
        let key = self.enqueue(stripe, Some(id), 0, first, 1, kind, false);
        self.ops.get_mut(&key).expect("just queued").patch = Some(patch);
        self.advance(stripe);
        Ok(())
    }

    /// A scrub of one stripe: one op over the whole stripe, in the mode it needs.
    fn handle_scrub(&mut self, id: u64, stripe: u64, repair: bool) -> Result<(), RequestError> {
        let blocks = self.config.stripe_data_blocks;
        let first_block = stripe.saturating_mul(u64::from(blocks));
        let pieces = self.admissible(id, first_block, 1)?;
        assert_eq!(pieces[0].0, stripe);
        self.requests.insert(
            id,
            HostRequest {
                ops_left: 1,
                failed: false,
                data: None,
            },
        );
        self.enqueue(
            stripe,
            Some(id),
            0,
            0,
            blocks,
            OpKind::Scrub { repair },
            false,
        );
        self.advance(stripe);
        Ok(())
    }

    /// The request cut at stripe and record boundaries: (stripe, first block in the
    /// stripe, blocks, byte offset in the request).
    fn pieces(&self, first_block: u64, block_count: u64) -> Vec<(u64, u32, u32, usize)> {
        let per_stripe = u64::from(self.config.stripe_data_blocks);
        let op_max = u64::from(self.config.op_blocks_max());
        let mut pieces = Vec::new();
        let mut block = first_block;
        let end = first_block + block_count;
        while block < end {
            let stripe = block / per_stripe;
            let in_stripe = block % per_stripe;
            let count = (end - block).min(per_stripe - in_stripe).min(op_max);
            assert!(count >= 1);
            let offset = ((block - first_block) * u64::from(BLOCK_BYTES)) as usize;
            pieces.push((stripe, in_stripe as u32, count as u32, offset));
            block += count;
        }
        pieces
    }

    #[allow(clippy::too_many_arguments)]
    fn enqueue(
        &mut self,
        stripe: u64,
        request: Option<u64>,
        request_offset: usize,
        first_block: u32,
        block_count: u32,
        kind: OpKind,
        front: bool,
    ) -> u64 {
        assert!(stripe < self.config.stripe_count);
        assert!(first_block + block_count <= self.config.stripe_data_blocks);
        let key = self.next_op;
        self.next_op += 1;
        let op_id = self.next_op_id;
        self.next_op_id += 1;
        self.ops.insert(
            key,
            Op {
                request,
                request_offset,
                stripe,
                first_block,
                block_count,
                kind,
                state: OpState::Queued,
                op_id,
                caused_acquire: false,
                reserved_slot: None,
                patch: None,
            },
        );
        let state = self.stripes.entry(stripe).or_default();
        if front {
            state.queue.push_front(key);
        } else {
            state.queue.push_back(key);
        }
        key
    }

    /// Next thing for the fabric, in the order produced (a reply never overtakes the
    /// retire broadcast queued before it).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next write into this card's own SRAM; take them all before member I/O.
    pub fn poll_local_write(&mut self) -> Option<LocalWrite> {
        self.local_writes.pop_front()
    }

    /// Next member I/O to perform; none while a [`Amf::poll_local_write`] waits.
    pub fn poll_member_io(&mut self) -> Option<MemberRequest> {
        if !self.local_writes.is_empty() {
            return None;
        }
        self.member_ios.pop_front()
    }

    /// Next host completion.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The core keeps no timers: a peer's death comes from the fabric.
    pub fn poll_timeout(&self) -> Option<u64> {
        None
    }

    fn live_peers(&self) -> PortSet {
        self.live
            .iter()
            .copied()
            .filter(|&port| port != self.config.port)
            .collect()
    }

    fn broadcast(&mut self, message: &Message) {
        self.transmits.push_back(Transmit::Broadcast {
            payload: message.encode(),
        });
    }

    fn unicast(&mut self, target: u8, message: &Message) {
        assert_ne!(target, self.config.port);
        self.transmits.push_back(Transmit::Unicast {
            target,
            payload: message.encode(),
        });
    }
}

// Scheduling: which of a stripe's owed answers and queued operations goes next.
impl Amf {
    fn advance(&mut self, stripe: u64) {
        for _ in 0..ADVANCE_STEPS_MAX {
            if !self.advance_once(stripe) {
                break;
            }
        }
        if self.stripes.get(&stripe).is_some_and(Stripe::is_idle) {
            self.stripes.remove(&stripe);
        }
    }

    fn advance_all(&mut self) {
        let stripes: Vec<u64> = self.stripes.keys().copied().collect();
        for stripe in stripes {
            self.advance(stripe);
        }
    }

    /// Whether host operations must wait: from a peer's `MEMBER_DOWN` until its
    /// completer's `Recovered`, on every stripe. Survivors need not hold the same records
    /// (one that joined after a write began lacks its record), so none of them can tell
    /// alone which stripes the completer will rewrite; all of them wait, and only the
    /// replays run. `stripe` is kept for a finer fence (the completer announcing its
    /// stripes) later.
    fn fenced(&self, _stripe: u64) -> bool {
        !self.dead.is_empty()
    }

    /// One scheduling step; false when nothing more can happen now.
    fn advance_once(&mut self, stripe: u64) -> bool {
        let fenced = self.fenced(stripe);
        let Some(state) = self.stripes.get_mut(&stripe) else {
            return false;
        };
        if state.busy.is_some() {
            return false;
        }
        if let Some(front) = state.owed.front()
            && (!front.after_mine || (state.acquiring.is_none() && state.batch == 0))
        {
            let owed = state.owed.pop_front().expect("front exists");
            self.answer(stripe, owed);
            return true;
        }
        if state.acquiring.is_some() {
            return false;
        }
        let Some(&key) = state.queue.front() else {
            state.batch = 0;
            return false;
        };
        let op = &self.ops[&key];
        let is_replay = matches!(op.kind, OpKind::Replay { .. });
        let mode = op.mode();
        let (first_block, block_count) = (op.first_block, op.block_count);
        if fenced && !is_replay {
            // Nothing may touch the stripe before the dead owner's write is completed.
            let waiting = state.batch > 0 && !state.owed.is_empty();
            state.batch = 0;
            return waiting;
        }
        let satisfied = matches!(
            (state.held, mode),
            (Some(Mode::Exclusive), _) | (Some(Mode::Shared), Mode::Shared)
        );
        if satisfied {
            let needs_slot = matches!(op.kind, OpKind::Write { .. } | OpKind::Replay { .. });
            if needs_slot && self.slots.iter().all(Option::is_some) {
                if !self.slot_waiters.contains(&stripe) {
                    self.slot_waiters.push_back(stripe);
                }
                return false;
            }
            state.queue.pop_front();
            state.batch = state.batch.saturating_sub(1);
            if !self.ops[&key].caused_acquire {
                self.counters.broadcasts_avoided += 1;
            }
            self.start(key);
            return true;
        }
        if !state.owed.is_empty() {
            state.batch = 0;
            return true;
        }
        self.start_acquire(stripe, key, mode, first_block, block_count);
        false
    }

    fn start_acquire(
        &mut self,
        stripe: u64,
        key: u64,
        mode: Mode,
        first_block: u32,
        block_count: u32,
    ) {
        let acquire_id = self.next_acquire;
        self.next_acquire += 1;
        let state = self.stripes.get_mut(&stripe).expect("stripe has a queue");
        assert!(state.acquiring.is_none());
        assert!(state.owed.is_empty());
        state.acquiring = Some(Acquiring {
            id: acquire_id,
            mode,
            ordered: false,
            awaited: PortSet::new(),
            replied: PortSet::new(),
            forwarded: BTreeMap::new(),
            failed_members: 0,
            rebuilds_awaited: Vec::new(),
            failed_since_ordered: 0,
        });
        self.ops.get_mut(&key).expect("queued op").caused_acquire = true;
        self.counters.broadcasts += 1;
        if mode == Mode::Exclusive {
            self.counters.exclusive_acquires += 1;
        }
        self.broadcast(&Message::Acquire {
            stripe,
            acquire_id,
            mode,
            first_block,
            block_count,
        });
    }

    /// Answers an acquire we owed: drop (exclusive) or downgrade and forward (shared).
    fn answer(&mut self, stripe: u64, owed: Owed) {
        let mutation = self.config.mutation;
        let state = self
            .stripes
            .get_mut(&stripe)
            .expect("owed on a known stripe");
        assert!(state.busy.is_none());
        let mut data = Vec::new();
        match owed.mode {
            Mode::Exclusive if mutation == Mutation::SkipInvalidate => {
                if state.held.is_some() {
                    state.held = Some(Mode::Shared);
                }
            }
            Mode::Exclusive => {
                if state.held.is_some() {
                    self.counters.invalidations += 1;
                }
                state.held = None;
                self.cached_blocks -= state.cache.len() as u64;
                state.cache.clear();
            }
            Mode::Shared => {
                if state.held == Some(Mode::Exclusive) {
                    state.held = Some(Mode::Shared);
                }
                if state.held.is_some() {
                    data = forward(&state.cache, owed.first_block, owed.block_count);
                }
            }
        }
        if state.held.is_none() {
            assert!(state.cache.is_empty() || mutation != Mutation::None);
        }
        let message = Message::Reply {
            stripe,
            acquire_id: owed.acquire_id,
            first_block: owed.first_block,
            failed_members: self.failed_members,
            membership: self.rebuild_view(),
            data,
        };
        self.unicast(owed.port, &message);
    }

    /// Our acquire has every reply it waits for: we hold the stripe.
    fn check_granted(&mut self, stripe: u64) {
        let failed_here = self.failed_for(stripe);
        let rebuilds_over = &self.rebuilds_over;
        let Some(state) = self.stripes.get_mut(&stripe) else {
            return;
        };
        let Some(acquiring) = &state.acquiring else {
            return;
        };
        if !acquiring.ordered || !acquiring.awaited.is_subset(acquiring.replied) {
            return;
        }
        if acquiring.failed_members & !self.failed_members != 0 {
            // A replier had taken a member failed that we have not: it may have written
            // this stripe degraded around it, leaving the member stale where we still
            // reach it. Wait for the `MemberFailed`, ordered after our acquire (or our
            // own relay of it), so that every AMF keeps changing its failed members at
            // points of the order, never before a peer's death that precedes them.
            return;
        }
        if rebuild::awaits(failed_here, rebuilds_over, &acquiring.rebuilds_awaited) {
            // A replier had the rebuild's checkpoint past this stripe (it may have written
            // the replacement here): wait for that `RebuildProgress`, already ordered.
            return;
        }
        let acquiring = state.acquiring.take().expect("checked");
        self.counters.grants += 1;
        if state.held.is_none() {
            assert!(state.cache.is_empty() || self.config.mutation != Mutation::None);
        }
        state.held = match (state.held, acquiring.mode) {
            (Some(Mode::Exclusive), _) | (_, Mode::Exclusive) => Some(Mode::Exclusive),
            _ => Some(Mode::Shared),
        };
        let before = state.cache.len();
        state.cache.extend(acquiring.forwarded);
        let added = state.cache.len() - before;
        state.batch = state.queue.len().max(1);
        self.cache_grew(stripe, before, added);
        self.advance(stripe);
    }
}

/// The requested blocks, if every one of them is cached.
fn forward(cache: &BTreeMap<u32, Vec<u8>>, first_block: u32, block_count: u32) -> Vec<u8> {
    let bytes = block_count as usize * BLOCK_BYTES as usize;
    if block_count == 0 || bytes > REPLY_DATA_BYTES_MAX {
        return Vec::new();
    }
    let mut data = Vec::with_capacity(bytes);
    for block in first_block..first_block + block_count {
        match cache.get(&block) {
            Some(bytes) => data.extend_from_slice(bytes),
            None => return Vec::new(),
        }
    }
    data
}

// Running stripe operations.
impl Amf {
    fn start(&mut self, key: u64) {
        let op = self.ops.get(&key).expect("op exists").clone();
        let state = self.stripes.get_mut(&op.stripe).expect("op's stripe");
        assert!(state.busy.is_none());
        assert!(state.held.is_some());
        assert_eq!(op.state, OpState::Queued);
        match &op.kind {
            OpKind::Read => {
                self.counters.reads += 1;
                let cached: Option<Vec<u8>> = (op.first_block..op.first_block + op.block_count)
                    .map(|block| state.cache.get(&block).cloned())
                    .collect::<Option<Vec<Vec<u8>>>>()
                    .map(|blocks| blocks.concat());
                match cached {
                    // Served from our own copy: no broadcast, no member I/O.
                    Some(data) => {
                        self.fill_read(key, &data);
                        self.ops.remove(&key);
                    }
                    None => self.issue_io(key, None),
                }
            }
            OpKind::Write { data } => {
                self.counters.writes += 1;
                state.busy = Some(key);
                if self.config.mutation == Mutation::AckBeforeReplication {
                    self.complete_piece(key);
                    self.issue_io(key, None);
                    return;
                }
                if op.patch.is_some() {
                    self.read_for_patch(key);
                    return;
                }
                if self.needs_widening(key) {
                    self.read_whole_stripe(key);
                    return;
                }
                self.replicate(key, data);
            }
            OpKind::Resync { .. } => {
                self.counters.resyncs += 1;
                state.busy = Some(key);
                self.issue_io(key, None);
            }
            OpKind::Scrub { .. } => {
                self.counters.stripes_scrubbed += 1;
                state.busy = Some(key);
                self.issue_io(key, None);
            }
            OpKind::Rebuild { rebuild, batch, .. } => {
                let current = self
                    .rebuild
                    .as_ref()
                    .is_some_and(|under_way| under_way.id == *rebuild && under_way.batch == *batch);
                if !current {
                    // Its batch was given up, or its rebuild ended.
                    self.ops.remove(&key);
                    return;
                }
                self.counters.stripes_rebuilt += 1;
                state.busy = Some(key);
                self.issue_io(key, None);
            }
            // A replay is recorded like a write: if this completer dies mid-replay, the
            // next one (live now, since nobody joins during recovery) holds this record
            // even if it lacked the dead owner's.
            OpKind::Replay { data, .. } => {
                self.counters.replays += 1;
                state.busy = Some(key);
                if self.needs_widening(key) {
                    self.read_whole_stripe(key);
                    return;
                }
                self.replicate(key, data);
            }
        }
    }

    /// Whether write or replay `key` must first be widened to its whole stripe: a member
    /// is failed, so the stripe is degraded (every stripe has a chunk on every member),
    /// and a record of only the op's blocks would leave the replay rebuilding the lost
    /// chunk from parity a torn write left stale (the degraded write hole). A record of
    /// the whole stripe's new data makes the replay independent of parity — the image of
    /// every lost chunk rides in it. Only when the stripe fits one record.
    fn needs_widening(&self, key: u64) -> bool {
        let op = &self.ops[&key];
        self.failed_for(op.stripe) != 0
            && matches!(op.kind, OpKind::Write { .. } | OpKind::Replay { .. })
            && op.block_count < self.config.stripe_data_blocks
            && self.config.op_blocks_max() == self.config.stripe_data_blocks
            && self.config.mutation != Mutation::AckBeforeReplication
            && self.config.mutation != Mutation::DegradedRecordWithoutImage
    }

    /// Reads the whole stripe (degraded) before recording a widened write; its slot is
    /// kept meanwhile.
    fn read_whole_stripe(&mut self, key: u64) {
        self.reserve_slot(key);
        self.issue_io(key, None);
    }

    fn reserve_slot(&mut self, key: u64) {
        let slot = self
            .slots
            .iter()
            .position(Option::is_none)
            .expect("a free slot was checked") as u32;
        self.slots[slot as usize] = Some(key);
        self.ops.get_mut(&key).expect("op").reserved_slot = Some(slot);
    }

    /// A patch starts, its stripe held exclusively: lay it over the cached block, or
    /// read the block first (its slot kept meanwhile). Nobody else can write the block
    /// between that read and this op's record, which is what makes the patch atomic.
    fn read_for_patch(&mut self, key: u64) {
        let op = &self.ops[&key];
        assert_eq!(op.block_count, 1);
        let cached = self.stripes[&op.stripe].cache.get(&op.first_block).cloned();
        match cached {
            Some(block) => self.patched(key, block),
            None => {
                self.reserve_slot(key);
                self.issue_io(key, None);
            }
        }
    }

    /// The patch's block as it is now: lay the patch over it, then go on as a write.
    fn patched(&mut self, key: u64, mut block: Vec<u8>) {
        let op = self.ops.get_mut(&key).expect("op");
        let patch = op.patch.take().expect("a patch pending");
        patch.apply(&mut block);
        let OpKind::Write { data } = &mut op.kind else {
            unreachable!("only writes are patched under ownership");
        };
        data.clone_from(&block);
        let reserved = op.reserved_slot.is_some();
        if self.needs_widening(key) {
            if reserved {
                self.issue_io(key, None);
            } else {
                self.read_whole_stripe(key);
            }
            return;
        }
        self.replicate(key, &block);
    }

    /// The whole stripe, read: lay the op's data over it and record it all.
    fn widen(&mut self, key: u64, mut whole: Vec<u8>) {
        let stripe_blocks = self.config.stripe_data_blocks;
        let op = self.ops.get_mut(&key).expect("op");
        assert_eq!(whole.len(), stripe_blocks as usize * BLOCK_BYTES as usize);
        let data = match &mut op.kind {
            OpKind::Write { data } | OpKind::Replay { data, .. } => data,
            _ => unreachable!("only writes and replays are widened"),
        };
        whole[op.first_block as usize * BLOCK_BYTES as usize..][..data.len()].copy_from_slice(data);
        data.clone_from(&whole);
        op.first_block = 0;
        op.block_count = stripe_blocks;
        self.counters.widened += 1;
        self.replicate(key, &whole);
    }

    /// Puts the write's intent record in every live peer's SRAM.
    fn replicate(&mut self, key: u64, data: &[u8]) {
        let slot = match self.ops.get_mut(&key).expect("op").reserved_slot.take() {
            Some(slot) => slot,
            None => self
                .slots
                .iter()
                .position(Option::is_none)
                .expect("a free slot was checked") as u32,
        };
        self.slots[slot as usize] = Some(key);
        let op = &self.ops[&key];
        let intent = Intent {
            owner_port: self.config.port,
            op_id: op.op_id,
            stripe: op.stripe,
            array_generation: self.config.array_generation,
            first_block: op.first_block,
            block_count: op.block_count,
            phase: IntentPhase::Prepared,
        };
        let record = intent.encode(data).expect("an op fits one record");
        let (decoded, payload) = Intent::decode(&record).expect("a record we made decodes");
        assert_eq!(decoded, intent);
        assert_eq!(payload, data);
        let awaited = self.live_peers();
        let offset = self.config.slot_offset(self.config.port, slot);
        self.local_writes.push_back(LocalWrite {
            offset,
            bytes: record.clone(),
        });
        for target in awaited.iter() {
            self.transmits.push_back(Transmit::SramWrite {
                target,
                offset,
                bytes: record.clone(),
            });
        }
        self.ops.get_mut(&key).expect("op").state = OpState::Replicating { slot, awaited };
        if awaited.is_empty() {
            self.issue_io(key, Some(slot));
        }
    }

    fn issue_io(&mut self, key: u64, slot: Option<u32>) {
        if let Some(slot) = slot
            && self.needs_widening(key)
        {
            // A member failed since the op was recorded (or its first pass met the
            // error): record the whole stripe, in the same slot, before writing it.
            self.ops.get_mut(&key).expect("op").reserved_slot = Some(slot);
            self.issue_io(key, None);
            return;
        }
        let io = self.next_io;
        self.next_io += 1;
        let mutation = self.config.mutation;
        let failed_members = self.failed_for(self.ops[&key].stripe);
        let op = self.ops.get_mut(&key).expect("op");
        op.state = OpState::MemberIo { io, slot };
        let (stripe, first_block) = (op.stripe, op.first_block);
        let request = match &op.kind {
            OpKind::Read => MemberRequest::Read {
                io,
                stripe,
                first_block,
                block_count: op.block_count,
                failed_members,
            },
            // A patch reads its block first.
            OpKind::Write { .. } if op.patch.is_some() => MemberRequest::Read {
                io,
                stripe,
                first_block,
                block_count: 1,
                failed_members,
            },
            // A widened write or replay reads its whole stripe first.
            OpKind::Write { .. } | OpKind::Replay { .. } if op.reserved_slot.is_some() => {
                MemberRequest::Read {
                    io,
                    stripe,
                    first_block: 0,
                    block_count: self.config.stripe_data_blocks,
                    failed_members,
                }
            }
            OpKind::Write { data } => MemberRequest::Write {
                io,
                stripe,
                first_block,
                data: data.clone(),
                failed_members,
            },
            OpKind::Resync { .. } => MemberRequest::Replay {
                io,
                stripe,
                first_block: 0,
                failed_members,
                data: Vec::new(),
            },
            OpKind::Rebuild { member, .. } => MemberRequest::Rebuild {
                io,
                stripe,
                member: *member,
                failed_members,
            },
            OpKind::Scrub { repair } => MemberRequest::Scrub {
                io,
                stripe,
                repair: *repair,
                failed_members,
            },
            OpKind::Replay { data, .. } => MemberRequest::Replay {
                io,
                stripe,
                first_block,
                failed_members,
                data: if mutation == Mutation::ReplayWithoutData {
                    Vec::new()
                } else {
                    data.clone()
                },
            },
        };
        self.ios.insert(io, key);
        self.stripes.get_mut(&stripe).expect("op's stripe").busy = Some(key);
        self.member_ios.push_back(request);
    }

    /// The fabric says `target` holds the record we wrote at `offset`.
    pub fn handle_sram_ack(&mut self, now: u64, target: u8, offset: u32) {
        self.tick(now);
        let Some(slot) = (0..self.config.intent_slots)
            .find(|&slot| self.config.slot_offset(self.config.port, slot) == offset)
        else {
            return;
        };
        let Some(key) = self.slots[slot as usize] else {
            return;
        };
        let op = self.ops.get_mut(&key).expect("slot's op");
        if let OpState::Replicating { awaited, .. } = &mut op.state {
            awaited.remove(target);
            if awaited.is_empty() {
                self.issue_io(key, Some(slot));
            }
        }
    }

    /// Member I/O `io` finished.
    pub fn handle_member_completion(&mut self, now: u64, io: u64, outcome: MemberOutcome) {
        self.tick(now);
        let key = self
            .ios
            .remove(&io)
            .expect("completion of an I/O we issued");
        let op = self.ops.get(&key).expect("I/O's op").clone();
        let OpState::MemberIo { slot, .. } = op.state else {
            panic!("completion for an op not in member I/O");
        };
        if let MemberOutcome::Failed { member } = outcome {
            self.member_error(key, member, slot);
            return;
        }
        match (op.kind, outcome) {
            (OpKind::Read, MemberOutcome::Read(data)) => {
                assert_eq!(data.len(), op.block_count as usize * BLOCK_BYTES as usize);
                self.cache(op.stripe, op.first_block, &data);
                self.finish_read(key, data);
            }
            (OpKind::Write { data }, MemberOutcome::Written) => {
                assert_eq!(self.stripes[&op.stripe].held, Some(Mode::Exclusive));
                self.cache(op.stripe, op.first_block, &data);
                if let Some(slot) = slot {
                    self.release_slot(slot, op.op_id);
                }
                if self.config.mutation != Mutation::AckBeforeReplication {
                    self.complete_piece(key);
                }
                self.finish_op(key);
            }
            (
                OpKind::Replay {
                    owner,
                    op_id,
                    slot: dead_slot,
                    ..
                },
                MemberOutcome::Written,
            ) => {
                let own_slot = slot.expect("a replay is recorded");
                self.release_slot(own_slot, op.op_id);
                self.broadcast(&Message::Retire {
                    owner,
                    op_id,
                    slot: dead_slot,
                });
                self.finish_op(key);
            }
            (OpKind::Resync { own_slot }, MemberOutcome::Written) => {
                if let Some(slot) = own_slot {
                    self.release_leftover(slot);
                }
                self.finish_op(key);
            }
            (OpKind::Rebuild { .. }, MemberOutcome::Written) => self.stripe_rebuilt(key),
            (OpKind::Scrub { .. }, MemberOutcome::Written) => {
                self.complete_piece(key);
                self.finish_op(key);
            }
            (OpKind::Write { .. }, MemberOutcome::Read(block)) if op.patch.is_some() => {
                assert!(slot.is_none(), "the block is read before the record");
                self.patched(key, block);
            }
            (OpKind::Write { .. } | OpKind::Replay { .. }, MemberOutcome::Read(whole)) => {
                assert!(
                    slot.is_none(),
                    "the whole-stripe read comes before the record"
                );
                self.widen(key, whole);
            }
            (kind, outcome) => panic!("member outcome {outcome:?} does not fit {kind:?}"),
        }
    }

    /// Our record in `slot` is done with: peers free their copies at the `Retire`, and
    /// the local copy goes first.
    fn release_slot(&mut self, slot: u32, op_id: u64) {
        self.slots[slot as usize] = None;
        self.release_local(slot);
        self.broadcast(&Message::Retire {
            owner: self.config.port,
            op_id,
            slot,
        });
    }

    /// A previous incarnation's record in `slot` is resynced: the slot is ours again.
    fn release_leftover(&mut self, slot: u32) {
        self.slots[slot as usize] = None;
        self.release_local(slot);
    }

    fn release_local(&mut self, slot: u32) {
        self.local_writes.push_back(LocalWrite {
            offset: self.config.slot_offset(self.config.port, slot),
            bytes: vec![0; 4],
        });
    }

    /// Op `key`'s member I/O met an error on `member`: the member is failed for every
    /// AMF once the fabric orders our `MemberFailed`; the op is redone degraded then.
    fn member_error(&mut self, key: u64, member: u32, slot: Option<u32>) {
        assert!(member < 32, "member {member} beyond the member bitmap");
        self.counters.member_errors += 1;
        let stripe = self.ops[&key].stripe;
        self.ops.get_mut(&key).expect("op").state = OpState::AwaitingFailure { member, slot };
        // The member being rebuilt is failed as a whole, yet in service below the
        // checkpoint, and its rebuild writes it everywhere: an error on it must stop the
        // rebuild at every AMF, or the op would be redone onto it for ever.
        let rebuilding = self
            .rebuild_progress()
            .is_some_and(|(rebuilding, _)| rebuilding == member);
        if self.failed_for(stripe) & (1 << member) != 0 && !rebuilding {
            // Already ordered failed (the I/O was issued before we learnt it).
            self.redo(key);
        } else {
            self.broadcast(&Message::MemberFailed { member });
        }
    }

    /// `MemberFailed(member)` is ordered: every AMF plans around it from here on.
    fn member_failed(&mut self, member: u32) {
        if member >= 32 {
            return;
        }
        if self
            .last_restored
            .is_some_and(|(_, restored)| restored == member)
        {
            self.last_restored = None;
        }
        let rebuilding = self
            .rebuild_progress()
            .is_some_and(|(rebuilding, _)| rebuilding == member);
        if rebuilding {
            self.stop_rebuild("the replacement failed");
        }
        self.failures_unordered &= self.failed_members;
        if !rebuilding
            && self.failed_members & (1 << member) != 0
            && self.failures_unordered & (1 << member) == 0
        {
            return;
        }
        // A failure this AMF started with is ordered now: like one taken anew, it
        // supersedes the rebuilds a replier named as having put the member back.
        let in_service = self.failed_members & (1 << member) == 0
            || self.failures_unordered & (1 << member) != 0;
        self.failures_unordered &= !(1 << member);
        self.failed_members |= 1 << member;
        for acquiring in self
            .stripes
            .values_mut()
            .filter_map(|state| state.acquiring.as_mut())
        {
            acquiring.failed_members &= !(1 << member);
            if in_service && acquiring.ordered {
                acquiring.failed_since_ordered |= 1 << member;
                acquiring
                    .rebuilds_awaited
                    .retain(|&(_, awaited)| awaited != member);
            }
        }
        let waiting: Vec<u64> = self
            .ops
            .iter()
            .filter(|(_, op)| {
                matches!(op.state, OpState::AwaitingFailure { member: waited, .. }
                    if self.failed_members & (1 << waited) != 0)
            })
            .map(|(&key, _)| key)
            .collect();
        for key in waiting {
            self.redo(key);
        }
        self.recheck_grants();
    }

    /// A `Reply` named `failed_members`: broadcast a `MemberFailed` of our own for each
    /// we have neither taken nor relayed yet. The replier's own (or its source's) may be
    /// ordered after our acquire, and then it comes anyway (ours is a no-op); but if it
    /// was ordered before this port joined, ours is the one our grant waits for.
    fn relay_failures(&mut self, failed_members: u32) {
        let unknown = failed_members & !self.failed_members & !self.failures_relayed;
        self.failures_relayed |= unknown;
        for member in 0..32 {
            if unknown & (1 << member) != 0 {
                self.broadcast(&Message::MemberFailed { member });
            }
        }
    }

    /// A `Reply`'s sender has in service a member this AMF started with failed and has not
    /// seen ordered failed (a port back from a fabric restart, whose volume kept the
    /// failure, while a peer rebuilt the member): broadcast a `MemberFailed` of it, once.
    /// Without it, the grant waited for the end of the rebuild that put the member back,
    /// ordered before this port joined (it never comes: every stripe hung), and this AMF
    /// would write degraded around a member its peers read. Ordered, the failure is
    /// everyone's (the member is rebuilt again).
    fn reorder_failures(&mut self, replier_failed: u32) {
        // One it has seen rebuilt since is no longer its volume's word.
        self.failures_unordered &= self.failed_members;
        let stale = self.failures_unordered & !replier_failed & !self.failures_relayed;
        self.failures_relayed |= stale;
        for member in 0..32 {
            if stale & (1 << member) != 0 {
                self.broadcast(&Message::MemberFailed { member });
            }
        }
    }

    /// Redoes an op whose member I/O failed, degraded around the failed members; or,
    /// beyond what the parity covers, fails it to the host.
    fn redo(&mut self, key: u64) {
        let op = self.ops.get(&key).expect("op").clone();
        let OpState::AwaitingFailure { slot, .. } = op.state else {
            panic!("redo of an op not awaiting a member failure");
        };
        if let OpKind::Rebuild { rebuild, batch, .. } = op.kind
            && !self.rebuild_current(rebuild, batch)
        {
            self.finish_op(key);
            return;
        }
        if self.failed_for(op.stripe).count_ones() <= self.config.parity_count {
            self.issue_io(key, slot);
            return;
        }
        if let OpKind::Rebuild { member, .. } = op.kind {
            // Too few members left to rebuild from: the rebuild stops at every AMF.
            self.broadcast(&Message::MemberFailed { member });
        }
        // Beyond the parity's reach: nothing more can be done for this op. Its record
        // (and a dead owner's it replays) retires, so recovery still ends.
        self.counters.ops_failed += 1;
        if let Some(reserved) = op.reserved_slot {
            self.slots[reserved as usize] = None;
        }
        if let Some(slot) = slot {
            self.release_slot(slot, op.op_id);
        }
        if let OpKind::Resync {
            own_slot: Some(slot),
        } = op.kind
        {
            self.release_leftover(slot);
        }
        if let OpKind::Replay {
            owner,
            op_id,
            slot: dead_slot,
            ..
        } = op.kind
        {
            self.broadcast(&Message::Retire {
                owner,
                op_id,
                slot: dead_slot,
            });
        }
        if !matches!(op.kind, OpKind::Read)
            && let Some(state) = self.stripes.get_mut(&op.stripe)
        {
            // The members may hold the write in part: no cached copy may contradict them.
            self.cached_blocks -= state.cache.len() as u64;
            state.cache.clear();
        }
        if let Some(id) = op.request {
            self.requests.get_mut(&id).expect("op's request").failed = true;
        }
        self.complete_piece(key);
        self.finish_op(key);
    }

    fn finish_read(&mut self, key: u64, data: Vec<u8>) {
        self.fill_read(key, &data);
        self.finish_op(key);
    }

    fn fill_read(&mut self, key: u64, data: &[u8]) {
        let op = &self.ops[&key];
        let request = op.request.expect("reads come from hosts");
        if let Some(patch) = &op.patch {
            // Mutation::PatchOutsideOwnership: the block was read shared; the patched
            // copy is written as a plain write, racing any other writer meanwhile.
            let mut block = data.to_vec();
            patch.apply(&mut block);
            let kind = OpKind::Write { data: block };
            let (stripe, first_block) = (op.stripe, op.first_block);
            self.enqueue(stripe, Some(request), 0, first_block, 1, kind, false);
            return;
        }
        let buffer = self
            .requests
            .get_mut(&request)
            .and_then(|request| request.data.as_mut())
            .expect("read request buffer");
        buffer[op.request_offset..][..data.len()].copy_from_slice(data);
        self.complete_piece(key);
    }

    /// One piece of a host request is done; the request completes with its last piece.
    fn complete_piece(&mut self, key: u64) {
        let Some(id) = self.ops[&key].request else {
            return;
        };
        let request = self.requests.get_mut(&id).expect("piece's request");
        assert!(request.ops_left > 0);
        request.ops_left -= 1;
        if request.ops_left == 0 {
            let request = self.requests.remove(&id).expect("present");
            self.events.push_back(if request.failed {
                Event::Failed { id }
            } else {
                Event::Completed {
                    id,
                    data: request.data,
                }
            });
        }
    }

    fn finish_op(&mut self, key: u64) {
        let op = self.ops.remove(&key).expect("op");
        if let Some(state) = self.stripes.get_mut(&op.stripe)
            && state.busy == Some(key)
        {
            state.busy = None;
        }
        self.advance(op.stripe);
        self.advance_slot_waiters();
    }

    /// Gives freed slots to the stripes that waited for one, oldest first, while slots
    /// are free (a stripe that still finds none queues again at the back).
    fn advance_slot_waiters(&mut self) {
        for _ in 0..self.slot_waiters.len() {
            if self.slots.iter().all(Option::is_some) {
                break;
            }
            let Some(stripe) = self.slot_waiters.pop_front() else {
                break;
            };
            self.advance(stripe);
        }
    }
}

impl Amf {
    /// Caches `data` as `stripe`'s blocks from `first_block` on (the stripe is held).
    fn cache(&mut self, stripe: u64, first_block: u32, data: &[u8]) {
        let state = self.stripes.get_mut(&stripe).expect("a held stripe");
        assert!(state.held.is_some());
        let before = state.cache.len();
        cache_blocks(&mut state.cache, first_block, data);
        let added = state.cache.len() - before;
        self.cache_grew(stripe, before, added);
    }

    /// `stripe`'s cache grew from `before` blocks by `added`: count them, and evict
    /// while the cache is over its bound.
    fn cache_grew(&mut self, stripe: u64, before: usize, added: usize) {
        self.cached_blocks += added as u64;
        if before == 0 && added > 0 {
            self.cache_order.push_back(stripe);
        }
        self.trim_cache(stripe);
    }

    /// Drops the caches of the stripes cached longest ago (never `keep`'s, nor a busy
    /// stripe's) until at most `cache_blocks_max` blocks are cached.
    fn trim_cache(&mut self, keep: u64) {
        for _ in 0..self.cache_order.len() {
            if self.cached_blocks <= self.config.cache_blocks_max {
                break;
            }
            let Some(stripe) = self.cache_order.pop_front() else {
                break;
            };
            let Some(state) = self.stripes.get_mut(&stripe) else {
                continue;
            };
            if state.cache.is_empty() {
                continue;
            }
            if stripe == keep || state.busy.is_some() {
                self.cache_order.push_back(stripe);
                continue;
            }
            self.cached_blocks -= state.cache.len() as u64;
            state.cache.clear();
        }
        if self.cache_order.len() as u64 > self.config.cache_blocks_max.max(64) {
            // Entries of caches dropped since: keep one per stripe that still caches.
            let stripes = &self.stripes;
            let mut seen = std::collections::BTreeSet::new();
            self.cache_order.retain(|stripe| {
                stripes
                    .get(stripe)
                    .is_some_and(|state| !state.cache.is_empty())
                    && seen.insert(*stripe)
            });
        }
    }

    /// Blocks cached over every stripe.
    pub fn cached_blocks_total(&self) -> u64 {
        self.cached_blocks
    }
}

fn cache_blocks(cache: &mut BTreeMap<u32, Vec<u8>>, first_block: u32, data: &[u8]) {
    for (index, block) in data.chunks_exact(BLOCK_BYTES as usize).enumerate() {
        cache.insert(first_block + index as u32, block.to_vec());
    }
}

// Fabric deliveries.
impl Amf {
    /// A broadcast, delivered in the fabric's total order (our own included). A payload
    /// that is not a coherency message is refused whole, with the reason; the fabric
    /// checked its frame's checksum, so this means a peer speaks another version.
    pub fn handle_broadcast(
        &mut self,
        now: u64,
        from: u8,
        payload: &[u8],
        sram: &mut dyn Sram,
    ) -> Result<(), DecodeError> {
        self.tick(now);
        let message = Message::decode(payload)?;
        if self.joining.contains(&from) {
            self.defer(Deferred {
                from,
                payload: payload.to_vec(),
            });
            return Ok(());
        }
        match message {
            Message::Acquire {
                stripe,
                acquire_id,
                mode,
                first_block,
                block_count,
            } if stripe < self.config.stripe_count => {
                if from == self.config.port {
                    self.own_acquire_ordered(stripe, acquire_id);
                } else {
                    self.peer_acquire(stripe, from, acquire_id, mode, first_block, block_count);
                }
            }
            Message::Retire { owner, op_id, slot } if slot < self.config.intent_slots => {
                self.retire(owner, op_id, slot, sram);
            }
            Message::Recovered { owner } => {
                self.dead.remove(&owner);
                if self.dead.is_empty() {
                    self.admit_joining(sram);
                }
                self.advance_all();
                self.resume_rebuild();
            }
            Message::MemberFailed { member } => self.member_failed(member),
            Message::RebuildBegin {
                op_id,
                member,
                replacement,
            } => self.rebuild_begun(from, op_id, member, replacement),
            Message::RebuildProgress {
                rebuild,
                member,
                next_stripe,
            } => self.rebuild_progressed(rebuild, member, next_stripe),
            _ => {}
        }
        Ok(())
    }

    fn own_acquire_ordered(&mut self, stripe: u64, acquire_id: u64) {
        let awaited = self.live_peers();
        let state = self.stripes.get_mut(&stripe).expect("our acquire's stripe");
        let acquiring = state.acquiring.as_mut().expect("our acquire pending");
        assert_eq!(acquiring.id, acquire_id);
        assert!(!acquiring.ordered);
        acquiring.ordered = true;
        acquiring.awaited = awaited;
        self.check_granted(stripe);
    }

    fn peer_acquire(
        &mut self,
        stripe: u64,
        from: u8,
        acquire_id: u64,
        mode: Mode,
        first_block: u32,
        block_count: u32,
    ) {
        let mutation = self.config.mutation;
        let failed_members = self.failed_members;
        let membership = self.rebuild_view();
        let state = self.stripes.entry(stripe).or_default();
        let ordered = state
            .acquiring
            .as_ref()
            .is_some_and(|acquiring| acquiring.ordered);
        let conflict = state.held.is_some() || ordered;
        let reply = |data| Message::Reply {
            stripe,
            acquire_id,
            first_block,
            failed_members,
            membership,
            data,
        };
        if mutation == Mutation::TwoOwners && mode == Mode::Exclusive && state.held.is_some() {
            let message = reply(Vec::new());
            self.unicast(from, &message);
            return;
        }
        if !conflict {
            let message = reply(Vec::new());
            self.unicast(from, &message);
            self.advance(stripe);
            return;
        }
        let compatible = mode == Mode::Shared
            && state.held == Some(Mode::Shared)
            && !ordered
            && state.owed.is_empty();
        if compatible {
            let message = reply(forward(&state.cache, first_block, block_count));
            self.unicast(from, &message);
            return;
        }
        state.owed.push_back(Owed {
            port: from,
            acquire_id,
            mode,
            first_block,
            block_count,
            after_mine: ordered,
        });
        self.advance(stripe);
    }

    /// A point-to-point message from `from`; refused whole if it is not a `Reply`.
    pub fn handle_unicast(
        &mut self,
        now: u64,
        from: u8,
        payload: &[u8],
    ) -> Result<(), DecodeError> {
        self.tick(now);
        let message = Message::decode(payload)?;
        let Message::Reply {
            stripe,
            acquire_id,
            first_block,
            failed_members,
            membership,
            data,
        } = message
        else {
            return Err(DecodeError::UnexpectedUnicast);
        };
        // The grant waits to take the failures it has not (`member_failed` clears each as
        // it is taken: a rebuild ending here later does not make it news again).
        self.reorder_failures(failed_members);
        let failed_members =
            failed_members & !self.failed_members & !self.lagging_rebuild_member(membership);
        let rebuilds_awaited = self.rebuilds_to_await(stripe, membership);
        let Some(acquiring) = self
            .stripes
            .get_mut(&stripe)
            .and_then(|state| state.acquiring.as_mut())
        else {
            return Ok(());
        };
        if acquiring.id != acquire_id {
            // A reply to an acquire that no longer waits for it: sent to this port's
            // previous incarnation before the sender learnt of its death (ids carry the
            // incarnation), or by a port admitted after a fence to an acquire of ours
            // that did not wait for it. Either way an older id.
            assert!(acquire_id < acquiring.id);
            return Ok(());
        }
        acquiring.replied.insert(from);
        acquiring.failed_members |= failed_members;
        let failed_since_ordered = acquiring.failed_since_ordered;
        acquiring.rebuilds_awaited.extend(
            rebuilds_awaited
                .into_iter()
                .filter(|&(_, member)| failed_since_ordered & (1 << member) == 0),
        );
        if !data.is_empty() {
            self.counters.forwards += 1;
            cache_blocks(&mut acquiring.forwarded, first_block, &data);
        }
        self.relay_failures(failed_members);
        self.check_granted(stripe);
        Ok(())
    }

    fn retire(&mut self, owner: u8, op_id: u64, slot: u32, sram: &mut dyn Sram) {
        if let Some(dead) = self.dead.get_mut(&owner) {
            if dead
                .records
                .get(&slot)
                .is_some_and(|(intent, _)| intent.op_id == op_id)
            {
                let (intent, _) = dead.records.remove(&slot).expect("present");
                if dead.replay_queued && dead.records.is_empty() && !dead.recovered_sent {
                    dead.recovered_sent = true;
                    self.broadcast(&Message::Recovered { owner });
                }
                self.advance(intent.stripe);
            }
            return;
        }
        if owner == self.config.port {
            return;
        }
        self.retired.insert((owner, slot), op_id);
        let offset = self.config.slot_offset(owner, slot);
        let mut header = [0u8; INTENT_HEADER_BYTES];
        sram.read(offset, &mut header);
        if header[16..24] == op_id.to_le_bytes() {
            sram.write(offset, &[0; 4]);
        }
    }

    /// `port` joined the fabric (ordered with the broadcasts).
    ///
    /// While a dead peer's writes are being completed (the fence), a joiner is not made
    /// live at once: it knows nothing of the fence, and an acquire of its, answered before
    /// the replays, would let it write a stripe that a replay then overwrites with older
    /// data. So it joins `joining`: replays neither wait for its answers nor replicate to
    /// it, and its broadcasts wait in `deferred`. At the `Recovered` that ends the fence it
    /// becomes live and its messages are taken, in order, as if the fabric had ordered
    /// them right after that `Recovered`. Every survivor sees the member up and the
    /// `Recovered` at the same point of the total order, so all defer the same messages.
    /// The joiner waits for the survivors' answers meanwhile; it holds nothing, so the
    /// replays need nothing from it.
    pub fn handle_member_up(&mut self, now: u64, port: u8) {
        self.tick(now);
        assert!(!self.live.contains(&port), "port {port} joined twice");
        assert!(!self.joining.contains(&port), "port {port} joined twice");
        // The joiner never saw the rebuild begin: it would write rebuilt stripes degraded.
        self.stop_rebuild(rebuild::JOINED);
        if self.dead.is_empty() || self.config.mutation == Mutation::AdmitJoinerDuringFence {
            self.live.push(port);
        } else {
            self.counters.joins_during_fence += 1;
            self.joining.push(port);
        }
    }

    fn defer(&mut self, message: Deferred) {
        assert!(self.joining.contains(&message.from));
        assert!(self.deferred.len() < DEFERRED_MAX, "a joiner sent too much");
        self.deferred.push_back(message);
    }

    /// The fence is over: the joiners become live and their messages are taken.
    fn admit_joining(&mut self, sram: &mut dyn Sram) {
        assert!(self.dead.is_empty());
        self.live.append(&mut self.joining);
        let now = self.now;
        while let Some(Deferred { from, payload }) = self.deferred.pop_front() {
            self.handle_broadcast(now, from, &payload, sram)
                .expect("decoded when it was deferred");
        }
    }

    /// `port` died (ordered after everything it sent). Reads its records from `sram`;
    /// the oldest live AMF completes them.
    pub fn handle_member_down(&mut self, now: u64, port: u8, sram: &mut dyn Sram) {
        self.tick(now);
        assert_ne!(port, self.config.port, "told of our own death");
        if let Some(position) = self.joining.iter().position(|&joiner| joiner == port) {
            // Dead before it was admitted: it held no stripe and wrote no record. Yet a
            // port that joined after it (and so took it as live at once) now waits for
            // its `Recovered`: the completer sends one, as for an owner without records.
            self.joining.remove(position);
            self.deferred.retain(|message| message.from != port);
            if let std::collections::btree_map::Entry::Vacant(entry) = self.dead.entry(port) {
                entry.insert(DeadOwner::default());
                if self.live[0] == self.config.port {
                    self.queue_replays(port);
                }
            }
            return;
        }
        let Some(position) = self.live.iter().position(|&live| live == port) else {
            return;
        };
        self.live.remove(position);
        // Fence first: forgetting the port may grant an acquire, which must not run a
        // host operation before the dead owner's writes are completed.
        let owner = self.read_records(port, sram);
        self.dead.insert(port, owner);
        assert!(self.fenced(0));
        self.abandon_rebuild_batch();
        self.forget_port(port);
        self.rebuild_driver_lost(port);
        if self.live[0] == self.config.port {
            let pending: Vec<u8> = self
                .dead
                .iter()
                .filter(|(_, dead)| !dead.replay_queued)
                .map(|(&owner, _)| owner)
                .collect();
            for owner in pending {
                self.queue_replays(owner);
            }
        }
        self.advance_all();
    }

    /// Stops waiting for, and owing answers to, a dead port.
    fn forget_port(&mut self, port: u8) {
        let mut granted = Vec::new();
        for (&stripe, state) in &mut self.stripes {
            state.owed.retain(|owed| owed.port != port);
            if let Some(acquiring) = &mut state.acquiring {
                acquiring.awaited.remove(port);
                granted.push(stripe);
            }
        }
        let mut ready = Vec::new();
        for (&key, op) in &mut self.ops {
            if let OpState::Replicating { slot, awaited } = &mut op.state {
                awaited.remove(port);
                if awaited.is_empty() {
                    ready.push((key, *slot));
                }
            }
        }
        for (key, slot) in ready {
            self.issue_io(key, Some(slot));
        }
        for stripe in granted {
            self.check_granted(stripe);
        }
    }

    fn read_records(&mut self, owner: u8, sram: &mut dyn Sram) -> DeadOwner {
        let mut dead = DeadOwner::default();
        for slot in 0..self.config.intent_slots {
            match self.decode_slot(owner, slot, sram) {
                None => continue,
                Some(Ok((intent, _)))
                    if self
                        .retired
                        .get(&(owner, slot))
                        .is_some_and(|&retired| intent.op_id == retired) => {}
                Some(Ok(record)) => {
                    dead.records.insert(slot, record);
                }
                Some(Err(())) => self.counters.records_corrupt += 1,
            }
            sram.write(self.config.slot_offset(owner, slot), &[0; 4]);
        }
        dead
    }

    /// `owner`'s record in `slot` of `sram`: none (an empty slot), or the record, or an
    /// error when it is corrupt or cannot be this array's (checksum, owner, range).
    ///
    /// The record's array generation is not compared with ours: a member failure bumps
    /// the generation, and a peer that started after it records a newer one than this
    /// AMF started with, yet its records are as valid. Foreign records cannot be met:
    /// every slot is emptied at start ([`Amf::resync_leftovers`]), and from then on only
    /// peers the fabric admitted for this array's uuid write here.
    #[allow(clippy::type_complexity)]
    fn decode_slot(
        &self,
        owner: u8,
        slot: u32,
        sram: &dyn Sram,
    ) -> Option<Result<(Intent, Vec<u8>), ()>> {
        let offset = self.config.slot_offset(owner, slot);
        let mut magic = [0u8; 4];
        sram.read(offset, &mut magic);
        if magic == [0; 4] {
            return None;
        }
        let mut bytes = vec![0u8; self.config.slot_bytes() as usize];
        sram.read(offset, &mut bytes);
        Some(match Intent::decode(&bytes) {
            Ok((intent, payload))
                if intent.owner_port == owner
                    && intent.stripe < self.config.stripe_count
                    && intent.first_block + intent.block_count
                        <= self.config.stripe_data_blocks =>
            {
                Ok((intent, payload.to_vec()))
            }
            _ => Err(()),
        })
    }

    /// We complete `owner`'s records: one replay per record, per stripe in op order,
    /// ahead of anything else queued there.
    fn queue_replays(&mut self, owner: u8) {
        let dead = self.dead.get_mut(&owner).expect("dead owner");
        assert!(!dead.replay_queued);
        dead.replay_queued = true;
        if dead.records.is_empty() {
            dead.recovered_sent = true;
            self.broadcast(&Message::Recovered { owner });
            return;
        }
        let mut records: Vec<(u32, Intent, Vec<u8>)> = dead
            .records
            .iter()
            .map(|(&slot, (intent, payload))| (slot, *intent, payload.clone()))
            .collect();
        records.sort_by_key(|(_, intent, _)| std::cmp::Reverse(intent.op_id));
        for (slot, intent, data) in records {
            let kind = OpKind::Replay {
                owner,
                op_id: intent.op_id,
                slot,
                data,
            };
            self.enqueue(
                intent.stripe,
                None,
                0,
                intent.first_block,
                intent.block_count,
                kind,
                true,
            );
        }
    }
}
