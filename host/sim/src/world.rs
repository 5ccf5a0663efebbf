//! One simulated run: AMFs, the fabric, members, hosts and faults, stepped from one seed.

use std::collections::{BTreeMap, VecDeque};

use amf_coherency::{
    Amf, Config, Counters, Event, MemberOutcome, MemberRequest, MembershipEvent, Mode, Mutation,
    Request, Sram, Transmit, id_incarnation,
};
use amf_raid::{Level, MemberSet, MemberWrite};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use shared_regs::intent::INTENT_HEADER_BYTES;
use shared_regs::limits::BLOCK_BYTES;

use crate::history::{
    BLOCK_SECTORS, History, SECTOR_BYTES, block_bytes, decode_sectors, sector_address, sector_bytes,
};
use crate::members::Members;
use crate::{GeometryChoice, SimOptions, Workload};

/// Most host requests outstanding across all hosts.
const REQUESTS_OUTSTANDING_MAX: usize = 8;
/// Most steps after its AMF's crash before a zombie member write may land.
const ZOMBIE_DELAY_STEPS_MAX: u64 = 300;
/// Steps the liveness phase may take once faults stop.
const LIVENESS_STEPS_MAX: u64 = 200_000;
/// Chance per step, once a member's failure is ordered at every live AMF, that one
/// begins rebuilding it online.
const REBUILD_START_PER_MILLE: u32 = 20;
/// Most steps after a fabric restart before the new fabric takes joins, and most steps
/// after that before each AMF that lost its link rejoins (each draws its own: a random
/// order).
const FABRIC_BACK_STEPS_MAX: u64 = 150;
const REJOIN_DELAY_STEPS_MAX: u64 = 250;
/// The path every AMF opens for a replacement.
const REPLACEMENT_PATH: &[u8] = b"/sim/replacement";

/// A card's SRAM, kept by the simulator: it outlives its AMF's crashes.
#[derive(Debug)]
struct VecSram(Vec<u8>);

impl Sram for VecSram {
    fn read(&self, offset: u32, bytes: &mut [u8]) {
        bytes.copy_from_slice(&self.0[offset as usize..][..bytes.len()]);
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) {
        self.0[offset as usize..][..bytes.len()].copy_from_slice(bytes);
    }
}

#[derive(Debug)]
enum LogEntry {
    Payload(u8, Vec<u8>),
    MemberDown(u8),
    MemberUp(u8),
}

#[derive(Debug)]
enum PairMessage {
    Unicast(Vec<u8>),
    Sram(u32, Vec<u8>),
    SramAck(u32),
}

#[derive(Debug)]
enum Job {
    Read {
        io: u64,
        stripe: u64,
        first_block: u32,
        block_count: u32,
        failed_members: u32,
    },
    Write {
        io: u64,
        plan: Option<VecDeque<MemberWrite>>,
        request: MemberRequest,
        /// An erroring member the plan met (its other writes still go on).
        error: Option<u32>,
    },
}

/// A member write a crashed AMF had issued and that had not reached its member when the
/// AMF died: it may still land. The fabric fences a dead port (kills its process and waits
/// for its exit) before it broadcasts `MEMBER_DOWN`, so every zombie lands or is lost
/// before its owner's `MEMBER_DOWN` reaches any port (`Mutation::UnfencedDeath`: at any
/// later step, the real fault of an AMF paused by SIGSTOP and declared dead).
#[derive(Debug)]
struct Zombie {
    owner: u8,
    fence: Fence,
    /// Not before this step: a paused process resumes late.
    due: u64,
    write: MemberWrite,
}

/// What a zombie member write must land before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fence {
    /// A crashed AMF's: its owner's `MEMBER_DOWN`, at this index of the log.
    MemberDown(usize),
    /// Issued by an AMF before it lost its fabric link (a fabric restart): its owner
    /// fences itself, and its member workers' restart waits for them, before it rejoins
    /// (`Mutation::UnfencedRejoin`: they land only after it rejoined).
    Rejoin,
}

/// An AMF whose fabric link died with the fabric (`World::fabric_restart`): fenced, its
/// card dropped, its requests held, trying the fabric again.
#[derive(Debug)]
struct Away {
    /// Not before this step does it rejoin.
    rejoin_due: u64,
    /// The members its volume has failed (the old core's, adopted at once by the shell):
    /// the new incarnation starts with them.
    failed_members: u32,
    /// Its requests that were pending or came while away, oldest first: resubmitted with
    /// the same ids once it rejoined.
    held: Vec<u64>,
}

#[derive(Debug)]
struct Node {
    amf: Option<Amf>,
    sram: VecSram,
    incarnation: u32,
    cursor: usize,
    jobs: Vec<Job>,
    away: Option<Away>,
}

#[derive(Debug)]
struct Pending {
    port: u8,
    invoked: u64,
    first_block: u64,
    block_count: u32,
    write: bool,
    patch: bool,
    scrub: bool,
    /// What the host asked, for a resubmission after a fabric restart.
    request: Request,
    /// Its AMF crashed: the host saw its connection close, nobody resubmits it.
    orphaned: bool,
}

/// The swarm this seed picked.
#[derive(Clone, Debug)]
pub struct Swarm {
    pub amfs: u8,
    pub level: Level,
    pub members: u32,
    pub chunk_bytes: u32,
    pub stripes: u64,
    pub crash_per_mille: u32,
    pub corrupt_per_mille: u32,
    /// Members that fail during the run (up to what the level survives).
    pub member_failures: u32,
    /// Failed members are rebuilt online onto fresh replacements.
    pub rebuilds: bool,
    /// Chance per step of a host scrub (check or repair) of a random stripe.
    pub scrub_per_mille: u32,
    /// Chance per step of a fabric restart (every link dies at once).
    pub fabric_restart_per_mille: u32,
    pub safety_steps: u64,
}

/// Counts a run reports.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunCounters {
    pub protocol: Counters,
    pub steps: u64,
    pub crashes: u64,
    pub corruptions: u64,
    pub requests_completed: u64,
    pub writes_completed: u64,
    /// Sub-block writes (patches of whole sectors) completed, included in the writes.
    pub patches_completed: u64,
    /// Requests larger than a stripe completed (up to the whole volume).
    pub large_requests_completed: u64,
    /// Writes whose owner died with member writes issued, checked complete at rest.
    pub interrupted_writes: u64,
    /// Members failed (the run then continues degraded, and rebuilds them at the end).
    pub member_failures: u64,
    /// Members that started failing I/O (every read and write of them errs).
    pub member_errors: u64,
    /// Members whose I/O failed for one AMF only (counted in `member_errors` too).
    pub path_failures: u64,
    /// Member writes of dead AMFs that landed after their AMF's crash.
    pub zombie_writes: u64,
    /// AMF crashes while a member was failed or failing I/O (the degraded write hole).
    pub degraded_crashes: u64,
    /// Online rebuilds begun by the simulator, refused (another had begun first),
    /// stopped (each AMF counts its own), and completed (back in service at every live
    /// AMF).
    pub rebuilds_begun: u64,
    pub rebuilds_refused: u64,
    pub rebuilds_stopped: u64,
    pub rebuilds_completed: u64,
    /// Host scrubs completed (checks and repairs).
    pub scrubs_completed: u64,
    /// Fabric restarts (every link lost at once), rejoins of an AMF that lost its link
    /// (as a new incarnation), requests held meanwhile and resubmitted with their ids,
    /// and member writes issued before the link loss that landed before their AMF
    /// rejoined.
    pub fabric_restarts: u64,
    pub rejoins: u64,
    pub requests_resubmitted: u64,
    pub fenced_writes: u64,
}

pub struct World {
    rng: ChaCha8Rng,
    /// Draws for rebuilds and scrubs only, apart from `rng`: a seed that runs neither
    /// makes the same draws as before they existed.
    side_rng: ChaCha8Rng,
    /// Draws for fabric restarts' timing only (stream 2), so a seed's other draws stay
    /// those it made before fabric restarts existed until its first one.
    fabric_rng: ChaCha8Rng,
    /// The step from which the fabric takes joins (a restarted fabric comes back late).
    fabric_back: u64,
    options: SimOptions,
    pub swarm: Swarm,
    members: Members,
    nodes: Vec<Node>,
    log: Vec<LogEntry>,
    /// Live ports in join order, as of the end of `log`.
    log_live: Vec<u8>,
    pairs: BTreeMap<(u8, u8), VecDeque<PairMessage>>,
    history: History,
    pending: BTreeMap<u64, Pending>,
    next_request: u64,
    now: u64,
    pub counters: RunCounters,
    faults: bool,
    trace: bool,
    /// Writes cut short by their AMF's death after member writes were issued, per sector:
    /// (tag the write puts there, volume sector address, crash step). A survivor must complete
    /// each. (A write widened to its whole stripe puts back what the other blocks held.)
    interrupted: Vec<(u64, u64, u64)>,
    /// Member writes of dead AMFs still in flight (at most one plan's worth per job of
    /// each crash, so bounded by the jobs).
    zombies: Vec<Zombie>,
}

/// The product's default geometry (`amf up`): RAID-6 over 6 members, 64 KiB chunks, so
/// 64 blocks a stripe, more than one intent record carries (`OP_BLOCKS_MAX`, 63): stripe
/// writes are cut in two operations, and degraded stripes are not widened.
const DEFAULT_MEMBERS: u32 = 6;
const DEFAULT_CHUNK_BYTES: u32 = 64 * 1024;
/// The wide geometry's chunk: 128 blocks a stripe over 4 data chunks, two records.
const WIDE_CHUNK_BYTES: u32 = 128 * 1024;
/// The small geometry's chunk: 2 blocks, so a few blocks span several stripes.
const SMALL_CHUNK_BYTES: u32 = 2 * BLOCK_BYTES;

/// Level, members, chunk bytes and stripes: one seed in eight (unless fixed by
/// `choice`) the product's default geometry with 2-3 stripes (to stay fast), else
/// RAID-5 or RAID-6 over the level's fewest members or one more, 8 KiB chunks, 6 stripes.
fn pick_geometry(rng: &mut ChaCha8Rng, choice: GeometryChoice) -> (Level, u32, u32, u64) {
    let product_default = match choice {
        GeometryChoice::Any => rng.next_u32().is_multiple_of(8),
        GeometryChoice::Small => false,
        GeometryChoice::ProductDefault => true,
        GeometryChoice::Wide => return (Level::Raid6, DEFAULT_MEMBERS, WIDE_CHUNK_BYTES, 2),
    };
    if product_default {
        let stripes = 2 + u64::from(rng.next_u32() % 2);
        return (Level::Raid6, DEFAULT_MEMBERS, DEFAULT_CHUNK_BYTES, stripes);
    }
    let level = if rng.next_u32().is_multiple_of(2) {
        Level::Raid5
    } else {
        Level::Raid6
    };
    let members = level.members_min() + rng.next_u32() % 2;
    (level, members, SMALL_CHUNK_BYTES, 6)
}

pub(crate) fn add_counters(total: &mut Counters, more: Counters) {
    total.broadcasts += more.broadcasts;
    total.exclusive_acquires += more.exclusive_acquires;
    total.grants += more.grants;
    total.broadcasts_avoided += more.broadcasts_avoided;
    total.forwards += more.forwards;
    total.invalidations += more.invalidations;
    total.replays += more.replays;
    total.records_corrupt += more.records_corrupt;
    total.writes += more.writes;
    total.reads += more.reads;
    total.member_errors += more.member_errors;
    total.ops_failed += more.ops_failed;
    total.widened += more.widened;
    total.joins_during_fence += more.joins_during_fence;
    total.stripes_rebuilt += more.stripes_rebuilt;
    total.stripes_scrubbed += more.stripes_scrubbed;
}

impl World {
    pub fn new(seed: u64, options: &SimOptions, trace: bool) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let amfs = options.amfs.unwrap_or(2 + (rng.next_u32() % 3) as u8);
        let (level, members, chunk_bytes, stripes) = pick_geometry(&mut rng, options.geometry);
        let faulty = options.faults && rng.next_u32() % 4 != 0;
        let swarm = Swarm {
            amfs,
            level,
            members,
            chunk_bytes,
            stripes,
            crash_per_mille: if faulty { 2 + rng.next_u32() % 10 } else { 0 },
            corrupt_per_mille: if faulty && amfs >= 3 { 500 } else { 0 },
            member_failures: 0,
            rebuilds: false,
            scrub_per_mille: 0,
            fabric_restart_per_mille: 0,
            safety_steps: options
                .steps
                .unwrap_or(300 + u64::from(rng.next_u32() % 900)),
        };
        let mut swarm = swarm;
        // Degraded runs: half of them take AMF crashes too (a write on a degraded stripe
        // records the whole stripe, so its replay needs no parity a tear left stale).
        if faulty && rng.next_u32() % 3 == 0 {
            swarm.member_failures = 1 + rng.next_u32() % level.parity_count();
            if rng.next_u32() % 2 == 0 {
                swarm.crash_per_mille = 0;
                swarm.corrupt_per_mille = 0;
            }
        }
        let mut side_rng = ChaCha8Rng::seed_from_u64(seed);
        side_rng.set_stream(1);
        swarm.rebuilds = swarm.member_failures > 0 && side_rng.next_u32() % 4 != 0;
        if faulty && side_rng.next_u32().is_multiple_of(3) {
            swarm.scrub_per_mille = 5 + side_rng.next_u32() % 20;
        }
        let mut fabric_rng = ChaCha8Rng::seed_from_u64(seed);
        fabric_rng.set_stream(2);
        if faulty && fabric_rng.next_u32().is_multiple_of(3) {
            swarm.fabric_restart_per_mille = 1 + fabric_rng.next_u32() % 4;
        }
        let members = Members::new(level, members, chunk_bytes, swarm.stripes, amfs);
        let mut world = World {
            rng,
            side_rng,
            fabric_rng,
            fabric_back: 0,
            options: options.clone(),
            members,
            nodes: Vec::new(),
            log: Vec::new(),
            log_live: (0..amfs).collect(),
            pairs: BTreeMap::new(),
            history: History::default(),
            pending: BTreeMap::new(),
            next_request: 1,
            now: 0,
            counters: RunCounters::default(),
            faults: true,
            trace,
            interrupted: Vec::new(),
            zombies: Vec::new(),
            swarm,
        };
        for port in 0..amfs {
            let config = world.config(port, 0);
            let mut sram = VecSram(vec![0; config.sram_bytes() as usize]);
            let amf = Amf::new(config, &mut sram);
            world.nodes.push(Node {
                amf: Some(amf),
                sram,
                incarnation: 0,
                cursor: 0,
                jobs: Vec::new(),
                away: None,
            });
        }
        if trace {
            println!("swarm: {:?}", world.swarm);
        }
        world
    }

    fn config(&self, port: u8, incarnation: u32) -> Config {
        Config {
            port,
            incarnation,
            live_ports: self.log_live.clone(),
            stripe_count: self.swarm.stripes,
            stripe_data_blocks: self.members.stripe_data_blocks(),
            array_generation: 1,
            intent_slots: 8,
            parity_count: self.swarm.level.parity_count(),
            // Small, so that eviction runs all the time under the checkers.
            cache_blocks_max: 24,
            failed_members: 0,
            mutation: self.options.mutation,
        }
    }

    fn chance(&mut self, per_mille: u32) -> bool {
        self.rng.next_u32() % 1000 < per_mille
    }

    fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0);
        self.rng.next_u64() % bound
    }

    fn trace(&self, line: impl FnOnce() -> String) {
        if self.trace {
            println!("{:>6} {}", self.now, line());
        }
    }

    fn live(&self, port: u8) -> bool {
        self.nodes[port as usize].amf.is_some()
    }

    /// Whether `port` lost its fabric link and has not rejoined yet.
    fn away(&self, port: u8) -> bool {
        self.nodes[port as usize].away.is_some()
    }

    /// Runs the safety phase, then the liveness phase and the final checks.
    pub fn run(&mut self) -> Result<(), String> {
        while self.now < self.swarm.safety_steps {
            self.step()?;
        }
        self.faults = false;
        self.trace(|| "faults stop; liveness phase".to_owned());
        let deadline = self.now + LIVENESS_STEPS_MAX;
        loop {
            if self.quiescent() {
                break;
            }
            if self.now >= deadline {
                let rebuilds: Vec<Option<(u32, u64)>> = self
                    .nodes
                    .iter()
                    .filter_map(|node| node.amf.as_ref().map(Amf::rebuild_progress))
                    .collect();
                return Err(format!(
                    "liveness: {} requests still outstanding {LIVENESS_STEPS_MAX} steps after faults stopped \
                     (rebuild (member, next stripe) at each live AMF: {rebuilds:?})",
                    self.pending
                        .values()
                        .filter(|pending| self.live(pending.port))
                        .count()
                ));
            }
            self.step()?;
        }
        self.final_checks()
    }

    fn quiescent(&self) -> bool {
        let dead_down = (0..self.nodes.len() as u8).all(|port| self.live(port));
        dead_down
            && self.zombies.is_empty()
            && self.pairs.values().all(VecDeque::is_empty)
            && self.nodes.iter().all(|node| {
                node.cursor == self.log.len()
                    && node.jobs.is_empty()
                    && node
                        .amf
                        .as_ref()
                        .is_some_and(|amf| amf.is_quiet() && amf.rebuild_progress().is_none())
            })
    }
}

#[derive(Clone, Copy, Debug)]
enum Action {
    NewRequest,
    Broadcast(u8),
    Pair(u8, u8),
    Drain(u8),
    Job(u8, usize),
    Crash(u8),
    Restart(u8),
    FailMember,
    Zombie,
    FabricRestart,
    Rejoin(u8),
}

impl World {
    /// The actions possible now; crashes only when `crash_now` (working out which crash
    /// is survivable decodes SRAM, too dear for every step).
    fn actions(&self, crash_now: bool) -> Vec<(Action, u32)> {
        let mut actions = Vec::new();
        let outstanding = self
            .pending
            .values()
            .filter(|pending| self.live(pending.port) || self.away(pending.port))
            .count();
        if self.faults && outstanding < REQUESTS_OUTSTANDING_MAX {
            actions.push((Action::NewRequest, 3));
        }
        let live_count = self.nodes.iter().filter(|node| node.amf.is_some()).count();
        for (index, node) in self.nodes.iter().enumerate() {
            let port = index as u8;
            let Some(amf) = &node.amf else {
                if self.now < self.fabric_back {
                    // Nothing joins a fabric that is not back yet.
                } else if let Some(away) = &node.away {
                    if self.now >= away.rejoin_due && self.rejoin_fenced(port) {
                        actions.push((Action::Rejoin(port), if self.faults { 20 } else { 50 }));
                    }
                } else {
                    // Also while the survivors complete its writes: the core holds a port
                    // that joins during the fence until the fence ends.
                    actions.push((Action::Restart(port), if self.faults { 2 } else { 50 }));
                }
                continue;
            };
            if node.cursor < self.log.len() && self.deliverable(port) {
                actions.push((Action::Broadcast(port), 4));
            }
            if has_output(amf) {
                actions.push((Action::Drain(port), 8));
            }
            for job in 0..node.jobs.len() {
                actions.push((Action::Job(port, job), 3));
            }
            if crash_now && self.faults && live_count > 1 && self.crash_survivable(port) {
                actions.push((Action::Crash(port), 30));
            }
        }
        // Never while a dead AMF's writes await their replay: a stripe its crash tore is
        // protected only by its record and its parity until then, and losing a member
        // before the replay is the write hole's double fault (docs/PROTOCOL.md).
        if self.faults
            && self.lost_anywhere().count_ones() < self.swarm.member_failures
            && !self.recovery_pending()
            && self.fabric_settled()
        {
            actions.push((Action::FailMember, 1));
        }
        for (&(from, to), queue) in &self.pairs {
            if !queue.is_empty() {
                actions.push((Action::Pair(from, to), 4));
            }
        }
        if self.zombies.iter().any(|zombie| zombie.due <= self.now) {
            actions.push((Action::Zombie, 3));
        }
        actions
    }

    /// Whether the next broadcast for `port` may be delivered: a `MEMBER_DOWN(x)` only
    /// after everything `x` sent to `port`, and once `x` is fenced (none of its member
    /// writes can land any more).
    fn deliverable(&self, port: u8) -> bool {
        let cursor = self.nodes[port as usize].cursor;
        match &self.log[cursor] {
            LogEntry::MemberDown(dead) => {
                let fenced = self.options.mutation == Mutation::UnfencedDeath
                    || self
                        .zombies
                        .iter()
                        .all(|zombie| zombie.fence != Fence::MemberDown(cursor));
                fenced
                    && self
                        .pairs
                        .get(&(*dead, port))
                        .is_none_or(VecDeque::is_empty)
            }
            _ => true,
        }
    }

    /// A crash the design must survive: the AMF that will complete the victim's writes
    /// (the oldest survivor) holds a valid record of every write whose member writes may
    /// have begun — the victim's own and replays, every dead owner's record the victim
    /// holds, decoded or still in its SRAM. Losing the last usable copy (every holder
    /// dead, or the completer's copy corrupt) is a double fault the simulator does not
    /// inject.
    fn crash_survivable(&self, victim: u8) -> bool {
        let Some(&completer) = self.log_live.iter().find(|&&port| port != victim) else {
            return false;
        };
        let own_writes = self.nodes[victim as usize]
            .jobs
            .iter()
            .all(|job| match job {
                Job::Write {
                    request:
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
                        },
                    ..
                } => self.completer_holds(completer, victim, *stripe, *first_block, data),
                _ => true,
            });
        let decoded = self.nodes[victim as usize]
            .amf
            .as_ref()
            .map(Amf::dead_records)
            .unwrap_or_default()
            .into_iter()
            .all(|(owner, stripe, first_block)| {
                self.completer_holds(completer, owner, stripe, first_block, &[])
            });
        // Records of a dead owner, or of an earlier incarnation of one that has rejoined
        // since (its new incarnation will not complete them), must outlive the victim.
        let in_sram = (0..self.nodes.len() as u8).all(|owner| {
            let config = self.config(owner, 0);
            let live_incarnation = self
                .live(owner)
                .then(|| self.nodes[owner as usize].incarnation);
            (0..config.intent_slots).all(|slot| {
                let offset = config.slot_offset(owner, slot) as usize;
                let bytes =
                    &self.nodes[victim as usize].sram.0[offset..][..config.slot_bytes() as usize];
                match shared_regs::intent::Intent::decode(bytes) {
                    Err(_) => true,
                    Ok((intent, _)) if Some(id_incarnation(intent.op_id)) == live_incarnation => {
                        true
                    }
                    Ok((intent, payload)) => self.completer_holds(
                        completer,
                        owner,
                        intent.stripe,
                        intent.first_block,
                        payload,
                    ),
                }
            })
        });
        own_writes
            && decoded
            && in_sram
            && self.torn_writes_degraded(victim)
            && (self.options.wide_stripe_write_hole || !self.tears_unwidenable_stripe(victim))
            && (self.options.crash_last_failure_knower || self.failures_known_elsewhere(victim))
    }

    /// Whether, should `victim` crash now, the failed members it has taken stay known to
    /// a live AMF. A restarted AMF starts knowing no failed member; it learns them from
    /// its peers' replies (each carries its sender's failed members, and the joiner
    /// broadcasts a `MemberFailed` of its own for each), or through its own I/O errors —
    /// which never come for a member only some AMFs cannot reach (a path failure). If
    /// every AMF that took such a member dies, nobody remembers it (the failed set lives
    /// only in memory), and a restarted AMF that still reaches the member reads its stale
    /// contents: a known limit (docs/PROTOCOL.md "Known limits", member I/O errors;
    /// `amf sim --crash-last-failure-knower` lets it in). The same holds for a member
    /// under rebuild, whose replacement holds garbage above the checkpoint. So while a
    /// path failure lasts or a replacement is not in service everywhere, the simulator
    /// crashes an AMF only if another live AMF has taken every member it has.
    fn failures_known_elsewhere(&self, victim: u8) -> bool {
        let known = self.nodes[victim as usize]
            .amf
            .as_ref()
            .map_or(0, |amf| amf.failed_members());
        !(self.path_failed() || self.members.replacing.is_some())
            || known == 0
            || self.nodes.iter().enumerate().any(|(port, node)| {
                port != victim as usize
                    && node
                        .amf
                        .as_ref()
                        .is_some_and(|amf| known & !amf.failed_members() == 0)
            })
    }

    /// Whether a member's I/O fails for some AMFs only.
    fn path_failed(&self) -> bool {
        self.members.unreachable.iter().any(|set| !set.is_empty())
    }

    /// Whether crashing `victim` now may tear a degraded stripe wider than one intent
    /// record. Such a stripe is not widened (`Amf::needs_widening`), so its record has no
    /// image of the lost chunk and the replay rebuilds it from parity the tear left
    /// stale: the degraded write hole, a known limit (docs/PROTOCOL.md "Known limits",
    /// the degraded write hole bullet: "a stripe larger than one record ... keeps the
    /// hole"; no issue number yet). Kept out unless `SimOptions::wide_stripe_write_hole`.
    fn tears_unwidenable_stripe(&self, victim: u8) -> bool {
        let config = self.config(victim, 0);
        config.op_blocks_max() < config.stripe_data_blocks
            && !self.members.lost().is_empty()
            && self.nodes[victim as usize]
                .jobs
                .iter()
                .any(|job| matches!(job, Job::Write { .. }))
    }

    /// Whether every member write plan `victim` has begun was made knowing every member
    /// lost now. A plan begun on a stripe its AMF believed whole, torn by the crash while
    /// a member is lost, has a record without the lost chunk's image: losing a member
    /// mid-write and the writer at once is the RAID write hole's double fault, which the
    /// simulator does not inject.
    fn torn_writes_degraded(&self, victim: u8) -> bool {
        let lost = self.members.lost().bits();
        self.nodes[victim as usize]
            .jobs
            .iter()
            .all(|job| match job {
                Job::Write {
                    plan: Some(_),
                    request:
                        MemberRequest::Write { failed_members, .. }
                        | MemberRequest::Replay { failed_members, .. },
                    ..
                } => lost & !failed_members == 0,
                _ => true,
            })
    }

    /// Whether `completer` holds a usable copy of `owner`'s record of this write: decoded
    /// at the owner's death, or valid in its SRAM. Empty `data` matches any payload.
    fn completer_holds(
        &self,
        completer: u8,
        owner: u8,
        stripe: u64,
        first_block: u32,
        data: &[u8],
    ) -> bool {
        if completer == owner {
            // A port's local copies of its own records (a restarted incarnation's) are
            // only resynced, never completed with their data: no survivor's copy.
            return false;
        }
        let decoded = self.nodes[completer as usize]
            .amf
            .as_ref()
            .is_some_and(|amf| amf.dead_records().contains(&(owner, stripe, first_block)));
        decoded || self.holds_record(completer, owner, stripe, first_block, data)
    }

    /// Whether `port`'s SRAM holds `owner`'s record of this write.
    fn holds_record(
        &self,
        port: u8,
        owner: u8,
        stripe: u64,
        first_block: u32,
        data: &[u8],
    ) -> bool {
        let config = self.config(owner, 0);
        let sram = &self.nodes[port as usize].sram.0;
        (0..config.intent_slots).any(|slot| {
            let offset = config.slot_offset(owner, slot) as usize;
            let bytes = &sram[offset..offset + config.slot_bytes() as usize];
            shared_regs::intent::Intent::decode(bytes).is_ok_and(|(intent, payload)| {
                intent.stripe == stripe
                    && intent.first_block == first_block
                    && (data.is_empty() || payload == data)
            })
        })
    }

    /// A crash whose writes may not have been replayed yet.
    fn recovery_pending(&self) -> bool {
        !self.recovery_settled()
    }

    fn recovery_settled(&self) -> bool {
        self.nodes.iter().all(|node| match &node.amf {
            None => true,
            Some(amf) => {
                !amf.recovering()
                    && self.log[node.cursor..]
                        .iter()
                        .all(|entry| !matches!(entry, LogEntry::MemberDown(_)))
            }
        })
    }

    fn step(&mut self) -> Result<(), String> {
        self.now += 1;
        self.counters.steps += 1;
        let crash_now = self.chance(self.swarm.crash_per_mille);
        let mut actions = self.actions(crash_now);
        if self.swarm.fabric_restart_per_mille > 0
            && self.faults
            && self.fabric_rng.next_u32() % 1000 < self.swarm.fabric_restart_per_mille
            && self.fabric_restart_allowed()
        {
            // Chosen at once: its chance is the swarm's rate, not a weight among others.
            actions = vec![(Action::FabricRestart, 1)];
        }
        let total: u64 = actions.iter().map(|(_, weight)| u64::from(*weight)).sum();
        if total == 0 {
            return Ok(());
        }
        let mut pick = self.below(total);
        let mut chosen = actions[0].0;
        for (action, weight) in &actions {
            if pick < u64::from(*weight) {
                chosen = *action;
                break;
            }
            pick -= u64::from(*weight);
        }
        match chosen {
            Action::NewRequest => self.new_request(),
            Action::Broadcast(port) => self.deliver_broadcast(port)?,
            Action::Pair(from, to) => self.deliver_pair(from, to),
            Action::Drain(port) => self.drain(port)?,
            Action::Job(port, index) => self.run_job(port, index)?,
            Action::Crash(port) => self.crash(port),
            Action::Restart(port) => self.restart(port),
            Action::Zombie => self.land_zombie(),
            Action::FailMember => self.fail_member(),
            Action::FabricRestart => self.fabric_restart(),
            Action::Rejoin(port) => self.rejoin(port),
        }
        if self.faults {
            self.side_actions();
        }
        self.check_replacement_in_service();
        self.check_ownership()
    }

    /// Rebuilds and scrubs, besides the step's action and drawn from `side_rng`.
    fn side_actions(&mut self) {
        if self.swarm.rebuilds && self.side_rng.next_u32() % 1000 < REBUILD_START_PER_MILLE {
            self.start_rebuild();
        }
        if self.side_rng.next_u32() % 1000 < self.swarm.scrub_per_mille {
            self.new_scrub();
        }
    }

    /// Once a member's failure is ordered at every live AMF and no rebuild runs or is
    /// on its way, a random live AMF begins rebuilding it onto a fresh replacement. No
    /// I/O planned with the member in service (a zombie write, a job planned before its
    /// failure was ordered) may then still reach the replacement.
    fn start_rebuild(&mut self) {
        let Some(member) = self.rebuildable_member() else {
            return;
        };
        let live: Vec<u8> = self.log_live.clone();
        let port = live[self.side_rng.next_u32() as usize % live.len()];
        self.members.start_replacement(member);
        self.counters.rebuilds_begun += 1;
        self.trace(|| format!("amf{port} STARTS REBUILDING member {member}"));
        let now = self.now;
        self.nodes[port as usize]
            .amf
            .as_mut()
            .expect("live")
            .start_rebuild(now, member, REPLACEMENT_PATH.to_vec())
            .expect("the member is failed at every live AMF and no rebuild runs");
    }

    /// A member that may be rebuilt now (see [`World::start_rebuild`]).
    fn rebuildable_member(&self) -> Option<u32> {
        let amfs: Vec<&Amf> = self
            .nodes
            .iter()
            .filter_map(|node| node.amf.as_ref())
            .collect();
        // Member I/O an AMF has not handed out yet may be planned with the member in
        // service (granted before the failure was ordered there).
        if amfs
            .iter()
            .any(|amf| amf.rebuild_progress().is_some() || amf.has_output())
        {
            return None;
        }
        let oldest_cursor = self
            .nodes
            .iter()
            .filter(|node| node.amf.is_some())
            .map(|node| node.cursor)
            .min()?;
        let begin_on_its_way = self.log[oldest_cursor..].iter().any(|entry| {
            matches!(entry, LogEntry::Payload(_, payload)
                if matches!(amf_coherency::Message::decode(payload), Ok(amf_coherency::Message::RebuildBegin { .. })))
        });
        if begin_on_its_way {
            return None;
        }
        // An AMF away (fabric restart) rejoins with the failures its volume took.
        let failed_everywhere = amfs
            .iter()
            .fold(u32::MAX, |failed, amf| failed & amf.failed_members())
            & self
                .nodes
                .iter()
                .filter_map(|node| node.away.as_ref())
                .fold(u32::MAX, |failed, away| failed & away.failed_members);
        // Also a member the model has in service that the AMFs failed again.
        let mut planned_around = failed_everywhere;
        for node in &self.nodes {
            for job in &node.jobs {
                planned_around &= job_failed_members(job);
            }
        }
        for zombie in &self.zombies {
            planned_around &= !(1 << zombie.write.io.member);
        }
        if let Some(replacing) = self.members.replacing {
            // A replacement whose rebuild stopped is begun again, and no other.
            planned_around &= 1 << replacing;
        }
        (planned_around != 0).then(|| planned_around.trailing_zeros())
    }

    /// The replacement under way is back in service once no live AMF has its member
    /// failed any more (each took the `RebuildProgress` at the last stripe) and no
    /// member I/O planned around it is left (with another member failed next, it would
    /// need more than the parity).
    fn check_replacement_in_service(&mut self) {
        let Some(member) = self.members.replacing else {
            return;
        };
        let in_service = self.nodes.iter().all(|node| {
            node.away
                .as_ref()
                .is_none_or(|away| away.failed_members & (1 << member) == 0)
                && node.amf.as_ref().is_none_or(|amf| {
                    amf.failed_members() & (1 << member) == 0
                        && amf.rebuild_progress().is_none()
                        && !amf.has_output()
                        && node
                            .jobs
                            .iter()
                            .all(|job| job_failed_members(job) & (1 << member) == 0)
                })
        });
        if in_service {
            self.trace(|| format!("member {member} back in service at every live AMF"));
            self.members.replacement_in_service();
            self.counters.rebuilds_completed += 1;
        }
    }

    /// What a membership event of AMF `port` changes in the world.
    fn membership(&mut self, port: u8, change: MembershipEvent) {
        self.trace(|| format!("amf{port} reports {change:?}"));
        match change {
            MembershipEvent::RebuildStopped { .. } => self.counters.rebuilds_stopped += 1,
            // Refused where two begin at once: the driver begins again after a join
            // while the simulator begins one (at this AMF or another).
            MembershipEvent::RebuildRefused { .. } => self.counters.rebuilds_refused += 1,
            _ => {}
        }
    }

    /// A host scrub of a random stripe through a random live AMF: a check, or a repair.
    fn new_scrub(&mut self) {
        let outstanding = self
            .pending
            .values()
            .filter(|pending| self.live(pending.port))
            .count();
        let port = (self.side_rng.next_u32() % u32::from(self.swarm.amfs)) as u8;
        if outstanding >= REQUESTS_OUTSTANDING_MAX || !self.live(port) {
            return;
        }
        let stripe = self.side_rng.next_u64() % self.swarm.stripes;
        let repair = self.side_rng.next_u32().is_multiple_of(2);
        let id = self.next_request;
        self.next_request += 1;
        self.trace(|| {
            format!("host -> amf{port}: request {id} scrub stripe {stripe} (repair: {repair})")
        });
        let now = self.now;
        let amf = self.nodes[port as usize].amf.as_mut().expect("live");
        amf.handle_request(now, id, Request::Scrub { stripe, repair })
            .expect("the simulator sends valid requests");
        let block_count = self.members.stripe_data_blocks();
        self.pending.insert(
            id,
            Pending {
                port,
                invoked: now,
                first_block: stripe * u64::from(block_count),
                block_count,
                write: false,
                patch: false,
                scrub: true,
                request: Request::Scrub { stripe, repair },
                orphaned: false,
            },
        );
    }
}

impl World {
    /// The members lost, or failed at some live AMF (a joiner that relays a lagging
    /// `Reply`'s failure of a member a rebuild just put back fails it again): a further
    /// failure must stay within what the level survives for every AMF.
    fn lost_anywhere(&self) -> u32 {
        let away = self
            .nodes
            .iter()
            .filter_map(|node| node.away.as_ref())
            .fold(0, |lost, away| lost | away.failed_members);
        self.nodes
            .iter()
            .filter_map(|node| node.amf.as_ref())
            .fold(self.members.lost().bits() | away, |lost, amf| {
                lost | amf.failed_members()
            })
    }

    /// A member is lost. Half the time it dies at once (known below the AMFs, out of
    /// band: only in runs without AMF crashes); otherwise its I/O starts failing, for
    /// every AMF or (half of those) for one AMF only, a path failure the others do not
    /// see: either way the AMFs discover it through their own member I/O and order it.
    fn fail_member(&mut self) {
        let member = self.below(u64::from(self.members.geometry.members())) as u32;
        if self.lost_anywhere() & (1 << member) != 0 {
            return;
        }
        if self.swarm.crash_per_mille == 0 && self.chance(500) {
            self.trace(|| format!("MEMBER {member} FAILS"));
            self.members.fail(member);
            self.counters.member_failures += 1;
        } else if self.chance(500) {
            let port = self.below(u64::from(self.swarm.amfs)) as u8;
            self.trace(|| format!("MEMBER {member} STARTS FAILING I/O FOR amf{port} ONLY"));
            self.members.start_unreachable(member, port);
            self.counters.member_errors += 1;
            self.counters.path_failures += 1;
        } else {
            self.trace(|| format!("MEMBER {member} STARTS FAILING I/O"));
            self.members.start_erroring(member);
            self.counters.member_errors += 1;
        }
    }
}

/// The members a job's I/O was planned around.
fn job_failed_members(job: &Job) -> u32 {
    match job {
        Job::Read { failed_members, .. } => *failed_members,
        Job::Write { request, .. } => request.failed_members(),
    }
}

fn has_output(amf: &Amf) -> bool {
    amf.has_output()
}

impl World {
    fn new_request(&mut self) {
        let amfs = self.swarm.amfs;
        let stripe_blocks = u64::from(self.members.stripe_data_blocks());
        let volume_blocks = self.swarm.stripes * stripe_blocks;
        let workload = self.options.workload;
        let (port, first_block, block_count) = match workload {
            Workload::Mixed if self.chance(40) => {
                // A large request: many blocks over several stripes, up to the volume.
                let port = self.below(u64::from(amfs)) as u8;
                let first = if self.chance(300) {
                    0
                } else {
                    self.below(volume_blocks)
                };
                let count = if self.chance(300) {
                    volume_blocks - first
                } else {
                    1 + self.below(volume_blocks - first)
                };
                (port, first, count as u32)
            }
            Workload::Mixed => {
                let port = self.below(u64::from(amfs)) as u8;
                let first = if self.chance(600) {
                    self.below(2 * stripe_blocks)
                } else {
                    self.below(volume_blocks)
                };
                let longest = (volume_blocks - first).min(2 * stripe_blocks + 1);
                let count = if self.chance(500) {
                    1
                } else {
                    1 + self.below(longest)
                };
                (port, first, count as u32)
            }
            Workload::OwnRanges => {
                let port = self.below(u64::from(amfs)) as u8;
                let own = (self.swarm.stripes / u64::from(amfs)).max(1);
                let stripe =
                    (u64::from(port) + u64::from(amfs) * self.below(own)) % self.swarm.stripes;
                let first = stripe * stripe_blocks + self.below(stripe_blocks);
                (port, first, 1)
            }
            Workload::HotStripe => {
                let port = self.below(u64::from(amfs)) as u8;
                (port, self.below(stripe_blocks), 1)
            }
        };
        // An AMF away from the fabric holds its host's requests.
        if !self.live(port) && !self.away(port) {
            return;
        }
        let write = self.chance(if self.options.workload == Workload::Mixed {
            500
        } else {
            700
        });
        // A third of the mixed workload's writes are sub-block patches.
        let patch = write && self.options.workload == Workload::Mixed && self.chance(330);
        let id = self.next_request;
        self.next_request += 1;
        let (request, description) = if patch {
            self.new_patch(id, first_block, block_count)
        } else if write {
            let mut data = Vec::with_capacity(block_count as usize * BLOCK_BYTES as usize);
            for block in first_block..first_block + u64::from(block_count) {
                data.extend_from_slice(&block_bytes(id, block));
            }
            let sectors =
                first_block * BLOCK_SECTORS..(first_block + u64::from(block_count)) * BLOCK_SECTORS;
            self.history.write_invoked(id, sectors, self.now);
            let description = format!("write blocks {first_block}+{block_count}");
            (Request::Write { first_block, data }, description)
        } else {
            let description = format!("read blocks {first_block}+{block_count}");
            let request = Request::Read {
                first_block,
                block_count,
            };
            (request, description)
        };
        let (first_block, block_count) = match request {
            Request::Patch { block, .. } => (block, 1),
            _ => (first_block, block_count),
        };
        self.trace(|| format!("host -> amf{port}: request {id} {description}"));
        let now = self.now;
        let node = &mut self.nodes[port as usize];
        if let Some(away) = node.away.as_mut() {
            away.held.push(id);
        } else {
            let amf = node.amf.as_mut().expect("live");
            amf.handle_request(now, id, request.clone())
                .expect("the simulator sends valid requests");
        }
        self.pending.insert(
            id,
            Pending {
                port,
                invoked: self.now,
                first_block,
                block_count,
                write,
                patch,
                scrub: false,
                request,
                orphaned: false,
            },
        );
    }

    /// A patch of 1-8 whole sectors of one block: half the time of one of the first few
    /// blocks, so hosts at several AMFs patch different sectors of one block at once.
    fn new_patch(&mut self, id: u64, first_block: u64, block_count: u32) -> (Request, String) {
        let block = if self.chance(500) {
            self.below(3)
        } else {
            first_block + self.below(u64::from(block_count))
        };
        let first_sector = self.below(BLOCK_SECTORS);
        let sector_count = 1 + self.below(BLOCK_SECTORS - first_sector);
        let sectors =
            sector_address(block, first_sector)..sector_address(block, first_sector) + sector_count;
        let mut data = Vec::with_capacity(sector_count as usize * SECTOR_BYTES);
        for address in sectors.clone() {
            data.extend_from_slice(&sector_bytes(id, address));
        }
        self.history.write_invoked(id, sectors, self.now);
        let offset = (first_sector as usize * SECTOR_BYTES) as u32;
        let description = format!("patch block {block} sectors {first_sector}+{sector_count}");
        (
            Request::Patch {
                block,
                offset,
                data,
            },
            description,
        )
    }

    fn deliver_broadcast(&mut self, port: u8) -> Result<(), String> {
        let now = self.now;
        let node = &mut self.nodes[port as usize];
        let entry = &self.log[node.cursor];
        node.cursor += 1;
        let amf = node.amf.as_mut().expect("live");
        match entry {
            LogEntry::Payload(from, payload) => {
                amf.handle_broadcast(now, *from, payload, &mut node.sram)
                    .expect("the simulator's AMFs speak one version");
            }
            LogEntry::MemberDown(dead) => amf.handle_member_down(now, *dead, &mut node.sram),
            LogEntry::MemberUp(joined) if *joined != port => amf.handle_member_up(now, *joined),
            LogEntry::MemberUp(_) => {}
        }
        if self.trace {
            let line = match entry {
                LogEntry::Payload(from, payload) => format!(
                    "amf{port} <= broadcast from amf{from}: {:?}",
                    amf_coherency::Message::decode(payload).map(short)
                ),
                LogEntry::MemberDown(dead) => format!("amf{port} <= MEMBER_DOWN amf{dead}"),
                LogEntry::MemberUp(joined) => format!("amf{port} <= MEMBER_UP amf{joined}"),
            };
            self.trace(|| line);
        }
        self.check_member_failed(port)
    }

    /// Once `MemberFailed(m)` is delivered to an AMF, whoever sent it (also an AMF that
    /// alone cannot reach `m`), that AMF plans around `m`.
    fn check_member_failed(&self, port: u8) -> Result<(), String> {
        let node = &self.nodes[port as usize];
        let LogEntry::Payload(from, payload) = &self.log[node.cursor - 1] else {
            return Ok(());
        };
        let Ok(amf_coherency::Message::MemberFailed { member }) =
            amf_coherency::Message::decode(payload)
        else {
            return Ok(());
        };
        let known = node.amf.as_ref().expect("live").failed_members();
        if known & (1 << member) == 0 {
            return Err(format!(
                "amf{port} took amf{from}'s MemberFailed({member}) but plans with failed members {known:#b}"
            ));
        }
        Ok(())
    }

    fn deliver_pair(&mut self, from: u8, to: u8) {
        let now = self.now;
        let message = self
            .pairs
            .get_mut(&(from, to))
            .and_then(VecDeque::pop_front)
            .expect("non-empty");
        if !self.live(to) {
            return;
        }
        match message {
            PairMessage::Unicast(payload) => {
                self.trace(|| {
                    format!(
                        "amf{to} <- amf{from}: {:?}",
                        amf_coherency::Message::decode(&payload).map(short)
                    )
                });
                let node = &mut self.nodes[to as usize];
                node.amf
                    .as_mut()
                    .expect("live")
                    .handle_unicast(now, from, &payload)
                    .expect("the simulator's AMFs speak one version");
            }
            PairMessage::Sram(offset, bytes) => {
                self.trace(|| format!("card{to} <- amf{from}: intent record at {offset:#x}"));
                self.nodes[to as usize].sram.write(offset, &bytes);
                if self.live(from) {
                    self.pairs
                        .entry((to, from))
                        .or_default()
                        .push_back(PairMessage::SramAck(offset));
                }
            }
            PairMessage::SramAck(offset) => {
                self.trace(|| format!("amf{to} <- card{from}: SRAM ack {offset:#x}"));
                let node = &mut self.nodes[to as usize];
                node.amf
                    .as_mut()
                    .expect("live")
                    .handle_sram_ack(now, from, offset);
            }
        }
    }

    fn drain(&mut self, port: u8) -> Result<(), String> {
        let choice = self.below(3);
        let node = &mut self.nodes[port as usize];
        let amf = node.amf.as_mut().expect("live");
        // The card's own SRAM is written at once, within the step that made the write:
        // it is no fabric action, and it must precede the member I/O that follows it.
        while let Some(write) = amf.poll_local_write() {
            node.sram.write(write.offset, &write.bytes);
        }
        for attempt in 0..3 {
            match (choice + attempt) % 3 {
                0 => {
                    if let Some(transmit) = amf.poll_transmit() {
                        self.send(port, transmit);
                        return Ok(());
                    }
                }
                1 => {
                    if let Some(event) = amf.poll_event() {
                        return self.host_completion(port, event);
                    }
                }
                _ => {
                    if let Some(request) = amf.poll_member_io() {
                        let job = match request {
                            MemberRequest::Read {
                                io,
                                stripe,
                                first_block,
                                block_count,
                                failed_members,
                            } => Job::Read {
                                io,
                                stripe,
                                first_block,
                                block_count,
                                failed_members,
                            },
                            MemberRequest::Write { io, .. }
                            | MemberRequest::Replay { io, .. }
                            | MemberRequest::Rebuild { io, .. }
                            | MemberRequest::Scrub { io, .. } => Job::Write {
                                io,
                                plan: None,
                                request,
                                error: None,
                            },
                        };
                        node.jobs.push(job);
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    fn send(&mut self, port: u8, transmit: Transmit) {
        match transmit {
            Transmit::Broadcast { payload } => {
                self.trace(|| {
                    format!(
                        "amf{port} broadcasts {:?}",
                        amf_coherency::Message::decode(&payload).map(short)
                    )
                });
                self.log.push(LogEntry::Payload(port, payload));
            }
            Transmit::Unicast { target, payload } => {
                if self.live(target) {
                    self.pairs
                        .entry((port, target))
                        .or_default()
                        .push_back(PairMessage::Unicast(payload));
                }
            }
            Transmit::SramWrite {
                target,
                offset,
                bytes,
            } => {
                if self.live(target) {
                    self.pairs
                        .entry((port, target))
                        .or_default()
                        .push_back(PairMessage::Sram(offset, bytes));
                }
            }
        }
    }

    fn host_completion(&mut self, port: u8, event: Event) -> Result<(), String> {
        let (id, data) = match event {
            Event::Completed { id, data } => (id, data),
            // The simulator never fails more members than the parity covers.
            Event::Failed { id } => {
                return Err(format!(
                    "request {id} via amf{port} failed though the parity covers every failed member"
                ));
            }
            Event::Membership(change) => {
                self.membership(port, change);
                return Ok(());
            }
        };
        let pending = self.pending.remove(&id).expect("a request we sent");
        assert_eq!(pending.port, port);
        self.counters.requests_completed += 1;
        self.counters.large_requests_completed +=
            u64::from(pending.block_count > self.members.stripe_data_blocks());
        self.trace(|| format!("host <- amf{port}: request {id} done"));
        if pending.scrub {
            self.counters.scrubs_completed += 1;
            return Ok(());
        }
        if pending.write {
            assert!(data.is_none());
            self.counters.writes_completed += 1;
            self.counters.patches_completed += u64::from(pending.patch);
            self.history.write_completed(id, self.now);
            return Ok(());
        }
        let data = data.expect("reads return data");
        assert_eq!(
            data.len(),
            pending.block_count as usize * BLOCK_BYTES as usize
        );
        self.history
            .check_sectors(&data, pending.first_block * BLOCK_SECTORS, pending.invoked)
            .map_err(|error| format!("read {id} via amf{port}: {error}"))
    }

    fn run_job(&mut self, port: u8, index: usize) -> Result<(), String> {
        let now = self.now;
        let settled = self.fabric_settled();
        let node = &mut self.nodes[port as usize];
        match &mut node.jobs[index] {
            Job::Read {
                io,
                stripe,
                first_block,
                block_count,
                failed_members,
            } => {
                let io = *io;
                let outcome = match self.members.read_degraded(
                    *stripe,
                    *first_block,
                    *block_count,
                    *failed_members,
                    port,
                ) {
                    Ok(data) => MemberOutcome::Read(data),
                    Err(member) => MemberOutcome::Failed { member },
                };
                if self.trace {
                    let result = match &outcome {
                        MemberOutcome::Failed { member } => format!("I/O error on member {member}"),
                        _ => "read".to_owned(),
                    };
                    println!("{now:>6} amf{port}: member read io {io} stripe {stripe}: {result}");
                }
                node.jobs.remove(index);
                node.amf
                    .as_mut()
                    .expect("live")
                    .handle_member_completion(now, io, outcome);
            }
            Job::Write {
                io,
                plan,
                request,
                error,
            } => {
                if plan.is_none() {
                    // A stripe an AMF away since a fabric restart tore (its record is
                    // in its own SRAM and in peers away with it) stays inconsistent
                    // until it rejoins and resyncs it.
                    if let MemberRequest::Scrub {
                        stripe,
                        failed_members,
                        ..
                    } = request
                        && settled
                        && self.members.scrub(*stripe, *failed_members, port) == Ok(Some(false))
                    {
                        return Err(format!(
                            "amf{port}'s scrub of stripe {stripe} found parity not matching data, \
                             though it holds the stripe"
                        ));
                    }
                    match plan_member_writes(&self.members, request, port) {
                        Ok(writes) => *plan = Some(writes.into()),
                        // A read of the plan failed: nothing was written.
                        Err(member) => {
                            *error = Some(member);
                            *plan = Some(VecDeque::new());
                        }
                    }
                }
                let plan = plan.as_mut().expect("planned");
                if let Some(write) = plan.pop_front() {
                    let failed = self.members.apply(&write, port);
                    if failed.is_some() {
                        *error = failed;
                    }
                    if self.trace {
                        println!(
                            "{:>6} amf{port}: member {} write {:?} at {}{}",
                            now,
                            write.io.member,
                            write.io.role,
                            write.io.member_offset,
                            if failed.is_some() { ": I/O error" } else { "" }
                        );
                    }
                    return Ok(());
                }
                let (io, outcome) = match *error {
                    None => (*io, MemberOutcome::Written),
                    Some(member) => (*io, MemberOutcome::Failed { member }),
                };
                node.jobs.remove(index);
                node.amf
                    .as_mut()
                    .expect("live")
                    .handle_member_completion(now, io, outcome);
            }
        }
        Ok(())
    }

    fn crash(&mut self, port: u8) {
        let node = &mut self.nodes[port as usize];
        let stripe_blocks = u64::from(self.members.stripe_data_blocks());
        for job in &node.jobs {
            if let Job::Write {
                request:
                    MemberRequest::Write {
                        stripe,
                        first_block,
                        data,
                        ..
                    },
                ..
            } = job
            {
                self.counters.interrupted_writes += 1;
                let first = (stripe * stripe_blocks + u64::from(*first_block)) * BLOCK_SECTORS;
                for (index, bytes) in data.chunks_exact(SECTOR_BYTES).enumerate() {
                    let tag = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
                    self.interrupted.push((tag, first + index as u64, self.now));
                }
            }
        }
        let amf = node.amf.take().expect("live");
        add_counters(&mut self.counters.protocol, amf.counters());
        let jobs = std::mem::take(&mut node.jobs);
        for pending in self.pending.values_mut() {
            if pending.port == port {
                pending.orphaned = true;
            }
        }
        let member_down = self.log.len();
        self.keep_zombies(port, jobs, Fence::MemberDown(member_down));
        self.counters.crashes += 1;
        if !self.members.lost().is_empty() {
            self.counters.degraded_crashes += 1;
        }
        self.trace(|| format!("CRASH amf{port}"));
        for ((_, to), queue) in self.pairs.iter_mut() {
            if *to == port {
                queue.clear();
            }
        }
        self.log_live.retain(|&live| live != port);
        if self.swarm.corrupt_per_mille > 0 && self.chance(self.swarm.corrupt_per_mille) {
            self.corrupt_one_record(port);
        }
        self.log.push(LogEntry::MemberDown(port));
    }

    /// Keeps a random subset of the member writes `owner` had issued and not yet seen
    /// applied: the rest of a started plan, or all of one not started if it was made
    /// knowing every member lost now (else it is dropped whole: a plan torn around a
    /// member unknown to its writer is the double fault `torn_writes_degraded` keeps
    /// out). Issued before the crash (or the link loss), they may still land, before
    /// `fence`; the others never reach their member.
    fn keep_zombies(&mut self, owner: u8, jobs: Vec<Job>, fence: Fence) {
        let lost = self.members.lost().bits();
        for job in jobs {
            let Job::Write { plan, request, .. } = job else {
                continue;
            };
            // A rebuild's or a scrub's writes have no record a survivor completes: they
            // could land after a restart that never takes their owner's `MEMBER_DOWN`
            // (nothing fences them then), over newer writes. Lost with their AMF.
            if matches!(
                request,
                MemberRequest::Rebuild { .. } | MemberRequest::Scrub { .. }
            ) {
                continue;
            }
            let writes: Vec<MemberWrite> = match (plan, &request) {
                (Some(plan), _) => plan.into(),
                (
                    None,
                    MemberRequest::Write { failed_members, .. }
                    | MemberRequest::Replay { failed_members, .. },
                ) if lost & !failed_members == 0 => {
                    plan_member_writes(&self.members, &request, owner).unwrap_or_default()
                }
                (None, _) => Vec::new(),
            };
            for write in writes {
                if self.chance(500) {
                    let mut due = self.now + self.below(ZOMBIE_DELAY_STEPS_MAX);
                    if fence == Fence::Rejoin && self.options.mutation == Mutation::UnfencedRejoin {
                        // Issued once its AMF has rejoined (see `World::rejoin`).
                        due = u64::MAX;
                    }
                    self.zombies.push(Zombie {
                        owner,
                        fence,
                        due,
                        write,
                    });
                }
            }
        }
    }

    /// One dead AMF's in-flight member write reaches its member (its error, if the
    /// member errs, goes to nobody).
    fn land_zombie(&mut self) {
        let due: Vec<usize> = (0..self.zombies.len())
            .filter(|&index| self.zombies[index].due <= self.now)
            .collect();
        let index = due[self.below(due.len() as u64) as usize];
        let zombie = self.zombies.swap_remove(index);
        let failed = self.members.apply(&zombie.write, zombie.owner);
        if zombie.fence == Fence::Rejoin {
            self.counters.fenced_writes += 1;
        } else {
            self.counters.zombie_writes += 1;
        }
        self.trace(|| {
            format!(
                "ZOMBIE write of {} amf{}: member {} {:?} at {}{}",
                if zombie.fence == Fence::Rejoin {
                    "old incarnation of"
                } else {
                    "dead"
                },
                zombie.owner,
                zombie.write.io.member,
                zombie.write.io.role,
                zombie.write.io.member_offset,
                if failed.is_some() { ": I/O error" } else { "" }
            )
        });
    }

    /// Flips one byte of one of `owner`'s records in one survivor's SRAM: never the
    /// oldest survivor's (the completer's), so one valid copy remains.
    fn corrupt_one_record(&mut self, owner: u8) {
        let candidates: Vec<u8> = self.log_live.iter().skip(1).copied().collect();
        if candidates.is_empty() {
            return;
        }
        let target = candidates[self.below(candidates.len() as u64) as usize];
        let config = self.config(owner, 0);
        let slot = self.below(u64::from(config.intent_slots)) as u32;
        let offset = config.slot_offset(owner, slot) as usize;
        let sram = &mut self.nodes[target as usize].sram.0;
        if sram[offset..offset + 4] == [0; 4] {
            return;
        }
        let at =
            offset + self.rng.next_u32() as usize % (INTENT_HEADER_BYTES + BLOCK_BYTES as usize);
        sram[at] ^= 0x5A;
        self.counters.corruptions += 1;
        self.trace(|| format!("CORRUPT amf{owner}'s record slot {slot} in card{target}'s SRAM"));
    }

    fn restart(&mut self, port: u8) {
        self.log.push(LogEntry::MemberUp(port));
        self.log_live.push(port);
        let incarnation = self.nodes[port as usize].incarnation + 1;
        let config = self.config(port, incarnation);
        let cursor = self.log.len();
        let node = &mut self.nodes[port as usize];
        node.incarnation = incarnation;
        node.cursor = cursor;
        node.amf = Some(Amf::new(config, &mut node.sram));
        self.trace(|| format!("RESTART amf{port} (incarnation {incarnation})"));
    }

    /// Whether a fabric restart may be injected now. Not while a crash's recovery is
    /// pending or a dead AMF's member writes may still land (the restarted fabric would
    /// resync, parity only, what the survivors were to complete with the records' data,
    /// and nothing would order the dead AMF's fence before the joins). Not while a member
    /// is lost, failed somewhere or being rebuilt if any stripe write is in flight: a
    /// write torn by the fence on a degraded stripe is only resynced, which cannot repair
    /// it (the degraded write hole of a cluster that stops at once, docs/PROTOCOL.md
    /// "Known limits").
    fn fabric_restart_allowed(&self) -> bool {
        let crash_zombies = self
            .zombies
            .iter()
            .any(|zombie| matches!(zombie.fence, Fence::MemberDown(_)));
        let degraded =
            self.lost_anywhere() != 0 || self.members.replacing.is_some() || self.path_failed();
        let writing = self.nodes.iter().any(|node| {
            node.jobs.iter().any(|job| {
                matches!(
                    job,
                    Job::Write {
                        request: MemberRequest::Write { .. } | MemberRequest::Replay { .. },
                        ..
                    }
                )
            })
        });
        self.nodes.iter().any(|node| node.amf.is_some())
            && self.recovery_settled()
            && !crash_zombies
            && !(degraded && writing)
            && (self.options.crash_last_failure_knower || self.failures_agree())
    }

    /// Whether any AMF may be the first back on the new fabric (alone, with no peer's
    /// `Reply` to learn failures from) without reading a member another AMF had failed:
    /// while a path failure lasts or a replacement is not in service everywhere, every
    /// AMF must know the same failed members, and none be down (a restarted process
    /// starts knowing none). The gap of [`World::failures_known_elsewhere`].
    fn failures_agree(&self) -> bool {
        if !(self.path_failed() || self.members.replacing.is_some()) {
            return true;
        }
        let mut known = self.nodes.iter().map(|node| match (&node.amf, &node.away) {
            (Some(amf), _) => Some(amf.failed_members()),
            (None, Some(away)) => Some(away.failed_members),
            (None, None) => None,
        });
        let Some(Some(first)) = known.next() else {
            return false;
        };
        known.all(|failed| failed == Some(first))
    }

    /// Whether every AMF is back from the last fabric restart, every member write its
    /// old incarnations issued has landed, and every resync of their records is done:
    /// until then a stripe may hold parity a late member write left stale, so losing a
    /// member meanwhile is the write hole's double fault (as before a replay).
    fn fabric_settled(&self) -> bool {
        self.nodes
            .iter()
            .all(|node| node.away.is_none() && node.amf.as_ref().is_none_or(|amf| !amf.resyncing()))
            && self
                .zombies
                .iter()
                .all(|zombie| zombie.fence != Fence::Rejoin)
    }

    /// Whether `port`, away, may rejoin: every AMF that lost its link with it has fenced
    /// itself (its workers' restart waited for every member write it had issued). An
    /// AMF's own fence precedes its own rejoin; that every other one's does too is a
    /// timing assumption (all links die at one instant and each AMF fences at once,
    /// while a rejoin waits for a new fabric and a retry), not a guarantee: with
    /// `SimOptions::late_fenced_writes` a peer's old write may land after this one
    /// rejoined and wrote the stripe (docs/PROTOCOL.md "Known limits").
    /// `Mutation::UnfencedRejoin`: nobody waits.
    fn rejoin_fenced(&self, port: u8) -> bool {
        self.options.mutation == Mutation::UnfencedRejoin
            || self.zombies.iter().all(|zombie| {
                zombie.fence != Fence::Rejoin
                    || (self.options.late_fenced_writes && zombie.owner != port)
            })
    }

    /// The fabric process is killed and restarted: every link dies at the same instant,
    /// and the new fabric remembers nothing (queued broadcasts, SRAM writes and acks in
    /// flight are gone; its join order is the order of the rejoins). Each live AMF fences
    /// itself (no further member write of its incarnation; those issued may land before
    /// it rejoins), drops its core and card (its SRAM survives), holds its requests, and
    /// rejoins after a random delay as a new incarnation (`World::rejoin`). Crashed AMFs
    /// restart onto the new fabric.
    fn fabric_restart(&mut self) {
        self.counters.fabric_restarts += 1;
        self.fabric_back = self.now + 1 + self.fabric_rng.next_u64() % FABRIC_BACK_STEPS_MAX;
        self.trace(|| format!("FABRIC RESTART (back at step {})", self.fabric_back));
        for port in 0..self.nodes.len() as u8 {
            let rejoin_due = self.fabric_back + self.fabric_rng.next_u64() % REJOIN_DELAY_STEPS_MAX;
            let node = &mut self.nodes[port as usize];
            if let Some(away) = node.away.as_mut() {
                away.rejoin_due = rejoin_due;
                continue;
            }
            let Some(amf) = node.amf.take() else {
                continue;
            };
            add_counters(&mut self.counters.protocol, amf.counters());
            let jobs = std::mem::take(&mut node.jobs);
            let held: Vec<u64> = self
                .pending
                .iter()
                .filter(|(_, pending)| pending.port == port && !pending.orphaned)
                .map(|(&id, _)| id)
                .collect();
            self.nodes[port as usize].away = Some(Away {
                rejoin_due,
                failed_members: amf.failed_members(),
                held,
            });
            self.keep_zombies(port, jobs, Fence::Rejoin);
        }
        for queue in self.pairs.values_mut() {
            queue.clear();
        }
        self.log_live.clear();
        let end = self.log.len();
        for node in &mut self.nodes {
            node.cursor = end;
        }
    }

    /// `port`, away since a fabric restart, joins the new fabric as a new incarnation
    /// (its core starts at the welcome and resyncs what its SRAM's records name), is
    /// unfenced, and resubmits its held requests with their ids, oldest first.
    fn rejoin(&mut self, port: u8) {
        let away = self.nodes[port as usize].away.take().expect("away");
        self.log.push(LogEntry::MemberUp(port));
        self.log_live.push(port);
        let incarnation = self.nodes[port as usize].incarnation + 1;
        let mut config = self.config(port, incarnation);
        config.failed_members = away.failed_members;
        let cursor = self.log.len();
        let now = self.now;
        let node = &mut self.nodes[port as usize];
        node.incarnation = incarnation;
        node.cursor = cursor;
        let mut amf = Amf::new(config, &mut node.sram);
        for &id in &away.held {
            let request = self.pending[&id].request.clone();
            amf.handle_request(now, id, request)
                .expect("the simulator sends valid requests");
        }
        self.nodes[port as usize].amf = Some(amf);
        self.counters.rejoins += 1;
        self.counters.requests_resubmitted += away.held.len() as u64;
        if self.options.mutation == Mutation::UnfencedRejoin {
            for index in 0..self.zombies.len() {
                if self.zombies[index].owner == port && self.zombies[index].fence == Fence::Rejoin {
                    self.zombies[index].due = now + self.below(ZOMBIE_DELAY_STEPS_MAX);
                }
            }
        }
        self.trace(|| {
            format!(
                "REJOIN amf{port} (incarnation {incarnation}, failed members {:#b}, {} requests resubmitted)",
                away.failed_members,
                away.held.len()
            )
        });
    }

    /// At most one exclusive holder per stripe, and none beside it holding a copy.
    fn check_ownership(&self) -> Result<(), String> {
        for stripe in 0..self.swarm.stripes {
            let holders: Vec<(u8, Option<Mode>, usize)> = self
                .nodes
                .iter()
                .enumerate()
                .filter_map(|(port, node)| {
                    node.amf
                        .as_ref()
                        .map(|amf| (port as u8, amf.holding(stripe), amf.cached_blocks(stripe)))
                })
                .collect();
            let exclusive: Vec<u8> = holders
                .iter()
                .filter(|(_, mode, _)| *mode == Some(Mode::Exclusive))
                .map(|(port, _, _)| *port)
                .collect();
            if exclusive.len() > 1 {
                return Err(format!(
                    "stripe {stripe} has exclusive owners {exclusive:?}"
                ));
            }
            if let Some(&owner) = exclusive.first()
                && let Some((port, mode, cached)) = holders
                    .iter()
                    .find(|(port, mode, cached)| *port != owner && (mode.is_some() || *cached > 0))
            {
                return Err(format!(
                    "stripe {stripe} is owned by amf{owner} but amf{port} still holds {mode:?} with {cached} cached blocks"
                ));
            }
        }
        Ok(())
    }

    fn final_checks(&mut self) -> Result<(), String> {
        for node in &self.nodes {
            if let Some(amf) = &node.amf {
                add_counters(&mut self.counters.protocol, amf.counters());
            }
        }
        // A member the AMFs failed again after its rebuild (a joiner relayed a lagging
        // `Reply`'s failure of it) goes stale while they plan around it: lost, as far as
        // the checks go.
        let failed_again = self.lost_anywhere() & !self.members.lost().bits();
        for member in MemberSet::from_bits(failed_again).iter() {
            self.members.failed.insert(member);
        }
        let stale = self.members.stale_rebuilt_chunks();
        if !stale.is_empty() {
            return Err(format!(
                "members rebuilt online hold other than their reconstruction from the others \
                 at (member, stripe) {stale:?}"
            ));
        }
        if self.members.lost().is_empty() {
            let bad = self.members.inconsistent_stripes();
            if !bad.is_empty() {
                return Err(format!(
                    "parity does not match the data of stripes {bad:?}, every member in service"
                ));
            }
        }
        // Replacements for failed members, rebuilt from the survivors, before checking.
        self.members.rebuild();
        let bad = self.members.inconsistent_stripes();
        if !bad.is_empty() {
            return Err(format!("parity does not match the data of stripes {bad:?}"));
        }
        self.check_interrupted()?;
        let stripe_blocks = self.members.stripe_data_blocks();
        let now = self.now + 1;
        for stripe in 0..self.swarm.stripes {
            let data = self.members.read(stripe, 0, stripe_blocks);
            let first_address = stripe * u64::from(stripe_blocks) * BLOCK_SECTORS;
            self.history
                .check_sectors(&data, first_address, now)
                .map_err(|error| format!("acknowledged write lost at rest: {error}"))?;
        }
        Ok(())
    }
}

impl World {
    /// Every write interrupted after its member writes were issued was completed: each
    /// of its sectors holds it, or a write that was still running when its owner died.
    fn check_interrupted(&mut self) -> Result<(), String> {
        let stripe_blocks = u64::from(self.members.stripe_data_blocks());
        for &(tag, address, crashed) in &self.interrupted {
            let block = address / BLOCK_SECTORS;
            let (stripe, index) = (block / stripe_blocks, (block % stripe_blocks) as u32);
            let bytes = self.members.read(stripe, index, 1);
            let sector = (address % BLOCK_SECTORS) as usize;
            let found =
                decode_sectors(&bytes[sector * SECTOR_BYTES..][..SECTOR_BYTES], address)?[0];
            // A write that had not completed when the owner died may follow it.
            let newer = found != 0
                && self
                    .history
                    .completed(found)
                    .is_none_or(|completed| completed > crashed);
            if found != tag && !newer {
                return Err(format!(
                    "write {tag} was interrupted at step {crashed} and never completed: \
                     block {block} sector {sector} holds {found}"
                ));
            }
        }
        Ok(())
    }
}

/// The member writes of AMF `port`'s write, replay, rebuild or scrub, planned from the
/// members as they are now; `Err(member)` if its reads met a member erroring for `port` (nothing written
/// then).
fn plan_member_writes(
    members: &Members,
    request: &MemberRequest,
    port: u8,
) -> Result<Vec<MemberWrite>, u32> {
    match request {
        MemberRequest::Write {
            stripe,
            first_block,
            data,
            failed_members,
            ..
        } => members.plan_write(*stripe, *first_block, data, *failed_members, port),
        MemberRequest::Replay {
            stripe,
            first_block,
            data,
            failed_members,
            ..
        } => members.plan_replay(*stripe, *first_block, data, *failed_members, port),
        MemberRequest::Rebuild {
            stripe,
            member,
            failed_members,
            ..
        } => Ok(vec![members.plan_rebuild(
            *stripe,
            *member,
            *failed_members,
            port,
        )?]),
        // A repair rewrites the stripe whole with fresh parity (its data is unchanged);
        // a check writes nothing.
        MemberRequest::Scrub {
            stripe,
            repair: true,
            failed_members,
            ..
        } => members.plan_replay(*stripe, 0, &[], *failed_members, port),
        MemberRequest::Scrub { repair: false, .. } => Ok(Vec::new()),
        MemberRequest::Read { .. } => unreachable!("reads are read jobs"),
    }
}

fn short(message: amf_coherency::Message) -> String {
    match message {
        amf_coherency::Message::Reply {
            stripe,
            acquire_id,
            first_block,
            failed_members,
            data,
            ..
        } => format!(
            "Reply {{ stripe: {stripe}, acquire_id: {acquire_id}, failed_members: {failed_members:#b}, forwarded: {} blocks from {first_block} }}",
            data.len() / BLOCK_BYTES as usize
        ),
        other => format!("{other:?}"),
    }
}
