//! The RAID volume one AMF serves: a [`BlockDevice`] over an opened [`Array`].
//!
//! * Requests are split per stripe with the RAID core ([`Geometry::split`]); each stripe is
//!   locked for the time of its read or write ([`locks::StripeLocks`]), so requests on
//!   different stripes run in parallel on the NBD server's blocking threads and requests on
//!   one stripe one after the other.
//! * Parity goes through the [`Engine`] `--card` names. A card is one device with one
//!   parity ring and one SRAM window, so it sits behind one mutex (held for one stripe's
//!   parity, or one journal access). The host engine keeps no state: each call uses its own
//!   [`HostParity`] and takes no lock.
//! * Writes are write-through: a write returns once its data and parity are written to
//!   the members (`pwrite`); FUA and FLUSH add `fdatasync` of the members touched (FLUSH:
//!   every member with unsynced writes).
//! * No write hole: before a stripe's member writes, its intent goes into a journal slot
//!   ([`journal`]): the new data, and in a degraded stripe the images of the lost data
//!   chunks. [`Volume::open`] replays every valid slot left behind by a crash (rewriting
//!   the whole stripe from the members plus the records, idempotent) and discards, with a
//!   log line, the ones whose checksums fail. The journal is the sim card's SRAM, which
//!   outlives the process; with `--card host` it is an intent file beside the members,
//!   synced before the member writes.
//! * Faults: a member whose read, write or sync fails is marked failed (the others'
//!   superblocks are rewritten with a bumped generation); reads reconstruct, writes go on
//!   degraded. Past what parity covers, every request fails with
//!   [`BlockError::Unavailable`], never with wrong data.

mod card;
pub mod journal;
pub mod locks;

pub use card::{CardOpenError, CardSpec, CardSpecError, Engine, SimCardError};

use crate::array::{Array, ArrayError, Member, MemberCaching, SlotState};
use crate::block::{BlockDevice, BlockError, check_range};
use crate::format::MemberState;
use amf_parity::{HostParity, ParityEngine};
use amf_raid::{ComputeError, Geometry, MemberIo, MemberSet, Role, StripeExtent, WriteMode};
use journal::{BlockRun, Layout};
use locks::{SlotPool, StripeLocks};
use shared_regs::limits::BLOCK_BYTES;
use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

const BLOCK: u64 = BLOCK_BYTES as u64;

/// Why a volume did not open.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The members do not form a usable array.
    #[error(transparent)]
    Array(#[from] ArrayError),
    /// The intent file could not be opened or sized.
    #[error("intent file {path}: {source}")]
    IntentFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The journal is too small for one slot of this array.
    #[error("{store}: {store_bytes} bytes hold no {slot_bytes}-byte intent slot (header included)")]
    StoreTooSmall {
        store: String,
        store_bytes: u64,
        slot_bytes: u64,
    },
    /// The journal holds live intents of another array.
    #[error(
        "{store} holds unfinished writes of array {found}, not of this array {expected}: use another --card"
    )]
    ForeignJournal {
        store: String,
        found: String,
        expected: String,
    },
    /// The journal could not be read or written, or a replay failed.
    #[error("intent journal in {store}: {source}")]
    Journal { store: String, source: BlockError },
}

/// What [`Volume::open`] found in the journal.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Recovery {
    /// Slots replayed (stripes rewritten from their intent).
    pub replayed: u32,
    /// Live slots discarded because a header or record failed its checks.
    pub discarded: u32,
    /// Stripes replayed, in slot order.
    pub stripes: Vec<u64>,
}

/// Counters for status lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VolumeStats {
    /// Bytes returned by reads.
    pub read_bytes: u64,
    /// Bytes accepted by writes (zeroes included).
    pub written_bytes: u64,
    /// Flushes done.
    pub flushes: u64,
    /// Members failed or missing.
    pub failed_members: u32,
    /// Array generation.
    pub generation: u64,
    /// Stripe writes, by how their parity was brought up to date.
    pub stripe_writes: StripeWrites,
    /// Stripe reads that reconstructed data from parity (a member missing).
    pub degraded_reads: u64,
}

/// Stripe writes by [`WriteMode`]; a stripe write whose column ranges took two modes
/// counts once in each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StripeWrites {
    /// Every data chunk written: parity from the new data alone.
    pub full_stripe: u64,
    /// Old data and parity read, the difference folded in.
    pub read_modify_write: u64,
    /// The unwritten data read, parity computed afresh.
    pub reconstruct_write: u64,
    /// Every survivor read and the lost data rebuilt first (degraded RAID-6).
    pub degraded_reconstruct: u64,
    /// No parity left to update (degraded past parity's member).
    pub data_only: u64,
}

/// Counters behind [`StripeWrites`], indexed by [`mode_index`].
#[derive(Debug, Default)]
struct StripeWriteCounters([AtomicU64; 5]);

fn mode_index(mode: WriteMode) -> usize {
    match mode {
        WriteMode::FullStripe => 0,
        WriteMode::ReadModifyWrite => 1,
        WriteMode::ReconstructWrite => 2,
        WriteMode::DegradedReconstruct => 3,
        WriteMode::DataOnly => 4,
    }
}

impl StripeWriteCounters {
    fn count(&self, plan: &amf_raid::WritePlan) {
        let mut seen = [false; 5];
        for (_, mode) in plan.segments() {
            seen[mode_index(mode)] = true;
        }
        for (counter, _) in self.0.iter().zip(seen).filter(|(_, seen)| *seen) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn snapshot(&self) -> StripeWrites {
        let [
            full_stripe,
            read_modify_write,
            reconstruct_write,
            degraded_reconstruct,
            data_only,
        ] = self
            .0
            .each_ref()
            .map(|counter| counter.load(Ordering::Relaxed));
        StripeWrites {
            full_stripe,
            read_modify_write,
            reconstruct_write,
            degraded_reconstruct,
            data_only,
        }
    }
}

/// Where the intent journal lives.
#[derive(Debug)]
enum Store {
    /// The sim card's SRAM, reached through the engine's mutex.
    Sram,
    /// A file, written with pwrite and synced before member writes.
    File { file: File, path: PathBuf },
    /// No local journal: an AMF of a cluster, whose coherency core replicates every
    /// write's intent record into its peers' card SRAM before the member writes. A local
    /// journal would be wrong there: replayed at a restart, it would write a dead AMF's old
    /// data over what the survivors wrote since they completed that write.
    Peers,
}

#[derive(Debug)]
struct Membership {
    /// Members whose contents are not trusted as a whole (the one being rebuilt included).
    failed: MemberSet,
    generation: u64,
    /// The member being rebuilt onto, and the first stripe not yet rebuilt (persisted in
    /// the superblocks): stripes below it are in sync on that member.
    rebuild: Option<RebuildMark>,
}

/// Where a rebuild stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RebuildMark {
    member: u32,
    next_stripe: u64,
}

impl Membership {
    /// The members not to be used for `stripe`: the failed ones, less the member being
    /// rebuilt where the rebuild has passed.
    fn failed_for(&self, stripe: u64) -> MemberSet {
        let mut failed = self.failed;
        if let Some(mark) = self.rebuild
            && stripe < mark.next_stripe
        {
            failed.remove(mark.member);
        }
        failed
    }

    /// True when writes to `member` must reach it: in service, or being rebuilt.
    fn in_service(&self, member: u32) -> bool {
        !self.failed.contains(member) || self.rebuild.is_some_and(|mark| mark.member == member)
    }
}

/// A step that must start over because a member failed under it.
enum Step {
    Retry,
    Fail(BlockError),
}

impl From<BlockError> for Step {
    fn from(error: BlockError) -> Step {
        Step::Fail(error)
    }
}

/// The RAID volume; see the module documentation.
#[derive(Debug)]
pub struct Volume {
    array: Array,
    /// The opened member of every slot; a rebuild swaps its replacement in.
    members: RwLock<Vec<Option<Arc<Member>>>>,
    geometry: Geometry,
    membership: RwLock<Membership>,
    locks: StripeLocks,
    engine: Mutex<Engine>,
    host_parity: bool,
    store: Store,
    layout: Layout,
    slots: SlotPool,
    unsynced: Vec<AtomicBool>,
    next_op_id: AtomicU64,
    read_bytes: AtomicU64,
    written_bytes: AtomicU64,
    flushes: AtomicU64,
    stripe_writes: StripeWriteCounters,
    degraded_reads: AtomicU64,
    /// Set once this AMF may no longer change a member (see [`Volume::fence`]).
    fenced: AtomicBool,
}

/// The intent file `--card host` uses for the members `paths`: `DIR/intent.journal` for a
/// directory argument, else beside the first member.
pub fn default_sidecar(arguments: &[PathBuf], name: &str) -> PathBuf {
    let first = arguments
        .first()
        .map(PathBuf::as_path)
        .unwrap_or(Path::new("."));
    if first.is_dir() {
        first.join(name)
    } else {
        first.parent().unwrap_or(Path::new(".")).join(name)
    }
}

/// Name of the default sim card SRAM file beside the members.
pub const CARD_SRAM_FILE: &str = "card.sram";
/// Name of the intent file beside the members with `--card host`.
pub const INTENT_FILE: &str = "intent.journal";

impl Volume {
    /// Opens the members at `paths` read-write, with parity on `engine`; with the host
    /// engine the journal is the file `intent_file` (created if missing). Replays what the
    /// journal holds.
    pub fn open(
        paths: &[PathBuf],
        engine: Engine,
        intent_file: &Path,
    ) -> Result<(Volume, Recovery), VolumeError> {
        let array = Array::open(paths, true)?;
        array.check_available()?;
        let geometry = array.geometry;
        // A card whose SRAM outlives the process (sim, vfio) keeps the journal there; the
        // host and the rtl card (whose SRAM is simulated in this process) journal to the
        // intent file.
        let (store, store_bytes, slots_max) = match engine.sram_bytes() {
            Some(sram_bytes) => (Store::Sram, sram_bytes, journal::SLOTS_MAX),
            None => {
                let context = |source| VolumeError::IntentFile {
                    path: intent_file.to_path_buf(),
                    source,
                };
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(intent_file)
                    .map_err(context)?;
                let wanted = Layout::for_store(&geometry, u64::MAX, journal::FILE_SLOTS)
                    .expect("an unbounded store fits a slot")
                    .store_bytes();
                if file.metadata().map_err(context)?.len() < wanted {
                    file.set_len(wanted).map_err(context)?;
                }
                let path = intent_file.to_path_buf();
                (Store::File { file, path }, wanted, journal::FILE_SLOTS)
            }
        };
        let layout = Layout::for_store(&geometry, store_bytes, slots_max).ok_or_else(|| {
            VolumeError::StoreTooSmall {
                store: store_name(&store),
                store_bytes,
                slot_bytes: journal::REGION_BYTES + Layout::slot_bytes_for(&geometry),
            }
        })?;
        let volume = Self::assemble(array, engine, store, layout);
        let recovery = volume.recover()?;
        Ok((volume, recovery))
    }

    /// Opens the members at `paths` read-write for one AMF of a cluster: parity on the
    /// host, and no local journal (see `Store::Peers`): the caller's coherency core
    /// replicates each write's intent to the peers and replays a dead peer's writes.
    /// `caching` says whether member I/O may use this host's page cache (all AMFs on one
    /// host) or must go around it (members shared by hosts).
    pub fn open_in_cluster(
        paths: &[PathBuf],
        caching: MemberCaching,
    ) -> Result<Volume, VolumeError> {
        let array = Array::open_with(paths, true, caching)?;
        array.check_available()?;
        // Unused without a journal; sized as for one slot of an unbounded store.
        let layout = Layout::for_store(&array.geometry, u64::MAX, 1)
            .expect("an unbounded store fits a slot");
        Ok(Self::assemble(
            array,
            Engine::Host(HostParity),
            Store::Peers,
            layout,
        ))
    }

    fn assemble(array: Array, engine: Engine, store: Store, layout: Layout) -> Volume {
        let geometry = array.geometry;
        let host_parity = matches!(engine, Engine::Host(_));
        let members = geometry.members();
        let failed: MemberSet = array.unusable_members().into_iter().collect();
        let generation = array.superblock.generation;
        // A cluster records no rebuild checkpoint (see `follow`): one found on disk is
        // from a standalone `amf serve`, and the cluster treats its member as failed.
        let rebuild = match store {
            Store::Peers => None,
            _ => pending_rebuild(&array),
        };
        Volume {
            members: RwLock::new(array.shared_members()),
            array,
            geometry,
            membership: RwLock::new(Membership {
                failed,
                generation,
                rebuild,
            }),
            locks: StripeLocks::default(),
            engine: Mutex::new(engine),
            host_parity,
            store,
            layout,
            slots: SlotPool::new(layout.slot_count),
            unsynced: (0..members).map(|_| AtomicBool::new(false)).collect(),
            next_op_id: AtomicU64::new(1),
            read_bytes: AtomicU64::new(0),
            written_bytes: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            stripe_writes: StripeWriteCounters::default(),
            degraded_reads: AtomicU64::new(0),
            fenced: AtomicBool::new(false),
        }
    }

    /// The array's geometry.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// The array as opened.
    pub fn array(&self) -> &Array {
        &self.array
    }

    /// The journal's slot layout.
    pub fn journal_layout(&self) -> Layout {
        self.layout
    }

    /// Which engine computes parity: `"host"`, `"card:sim"`.
    pub fn parity_engine(&self) -> &'static str {
        self.engine().as_dyn().name()
    }

    /// Members failed or missing now.
    pub fn failed_members(&self) -> MemberSet {
        self.membership().failed
    }

    /// Counters.
    pub fn stats(&self) -> VolumeStats {
        let membership = self.membership();
        VolumeStats {
            read_bytes: self.read_bytes.load(Ordering::Relaxed),
            written_bytes: self.written_bytes.load(Ordering::Relaxed),
            flushes: self.flushes.load(Ordering::Relaxed),
            failed_members: membership.failed.count(),
            generation: membership.generation,
            stripe_writes: self.stripe_writes.snapshot(),
            degraded_reads: self.degraded_reads.load(Ordering::Relaxed),
        }
    }

    /// Flushes every member and stops the card.
    pub fn close(self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let flushed = self.flush();
        let engine = self
            .engine
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let closed = engine.close();
        flushed?;
        closed
    }

    fn engine(&self) -> MutexGuard<'_, Engine> {
        self.engine
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn membership(&self) -> std::sync::RwLockReadGuard<'_, Membership> {
        self.membership
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn membership_mut(&self) -> std::sync::RwLockWriteGuard<'_, Membership> {
        self.membership
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn members_mut(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Option<Arc<Member>>>> {
        self.members
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The members not to be used for `stripe` now: the failed ones, less the member
    /// being rebuilt where the rebuild has passed.
    pub fn failed_for_stripe(&self, stripe: u64) -> MemberSet {
        self.membership().failed_for(stripe)
    }

    fn snapshot(&self) -> (MemberSet, u64) {
        let membership = self.membership();
        (membership.failed, membership.generation)
    }

    /// The members not to be used for `stripe`, and the generation.
    fn snapshot_for(&self, stripe: u64) -> (MemberSet, u64) {
        let membership = self.membership();
        (membership.failed_for(stripe), membership.generation)
    }

    /// The opened member at `index`, if any.
    fn member(&self, index: u32) -> Option<Arc<Member>> {
        let members = self
            .members
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        members.get(index as usize).cloned().flatten()
    }

    fn unavailable(&self, failed: MemberSet) -> BlockError {
        BlockError::Unavailable(format!(
            "{} of {} members failed or missing (members {:?}), {} survives {}",
            failed.count(),
            self.geometry.members(),
            failed.iter().collect::<Vec<_>>(),
            self.geometry.level(),
            self.geometry.parity_count()
        ))
    }

    fn check_failed(&self, failed: MemberSet) -> Result<(), BlockError> {
        if failed.count() > self.geometry.parity_count() {
            return Err(self.unavailable(failed));
        }
        Ok(())
    }

    /// Runs `job` with the parity engine: the host's without a lock, a card's under its
    /// mutex.
    fn with_engine<T>(&self, job: impl FnOnce(&mut dyn ParityEngine) -> T) -> T {
        if self.host_parity {
            job(&mut HostParity)
        } else {
            job(self.engine().as_dyn())
        }
    }
}

/// The rebuild the superblocks record as under way, when its member is present to go on.
fn pending_rebuild(array: &Array) -> Option<RebuildMark> {
    let member = (0..array.superblock.member_count).find(|&index| {
        array.slots()[index as usize] == SlotState::Present(MemberState::Rebuilding)
    })?;
    Some(RebuildMark {
        member,
        next_stripe: array.superblock.rebuild_next_stripe,
    })
}

fn store_name(store: &Store) -> String {
    match store {
        Store::Sram => "card SRAM".to_owned(),
        Store::File { path, .. } => format!("intent file {}", path.display()),
        Store::Peers => "the peers' card SRAM".to_owned(),
    }
}

pub(crate) mod faults;
mod follow;
mod io;
mod rebuild;
mod recover;
mod scrub;

pub use rebuild::{RebuildError, RebuildProgress};

#[cfg(test)]
mod tests;

impl BlockDevice for Volume {
    fn size_bytes(&self) -> u64 {
        self.geometry.volume_bytes()
    }

    fn read(&self, offset: u64, buffer: &mut [u8]) -> Result<(), BlockError> {
        let length = buffer.len() as u64;
        for extent in self.stripe_extents(offset, length)? {
            let _guard = self.locks.lock(extent.stripe());
            let start = extent.request_offset() as usize;
            let target = &mut buffer[start..start + extent.length() as usize];
            self.read_locked(&extent, target)?;
        }
        self.read_bytes.fetch_add(length, Ordering::Relaxed);
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), BlockError> {
        let length = data.len() as u64;
        let mut touched = MemberSet::new();
        for extent in self.stripe_extents(offset, length)? {
            let start = extent.request_offset() as usize;
            let bytes = &data[start..start + extent.length() as usize];
            self.write_extent(&extent, bytes, &mut touched)?;
        }
        self.written_bytes.fetch_add(length, Ordering::Relaxed);
        if fua {
            self.sync_members(touched)?;
        }
        Ok(())
    }

    fn trim(&self, offset: u64, length: u64) -> Result<(), BlockError> {
        // NBD lets a trim do nothing; the data stays as it was, parity with it.
        check_range(offset, length, self.size_bytes())
    }

    /// Reads are preads of the member files under a stripe lock, which a writer holds for
    /// one stripe write at most.
    fn quick_reads(&self) -> bool {
        true
    }

    fn flush(&self) -> Result<(), BlockError> {
        let all: MemberSet = (0..self.geometry.members()).collect();
        self.sync_members(all)?;
        self.store_flush()?;
        self.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl Volume {
    /// The request's pieces, one per stripe, after the range check (none for length 0).
    fn stripe_extents(&self, offset: u64, length: u64) -> Result<Vec<StripeExtent>, BlockError> {
        check_range(offset, length, self.size_bytes())?;
        if length == 0 {
            return Ok(Vec::new());
        }
        let extents = self.geometry.split(offset, length);
        Ok(extents
            .map_err(|error| BlockError::Invalid(error.to_string()))?
            .collect())
    }
}

impl Volume {
    /// Writes one stripe extent under its stripe lock, widened to whole blocks.
    fn write_extent(
        &self,
        extent: &StripeExtent,
        data: &[u8],
        touched: &mut MemberSet,
    ) -> Result<(), BlockError> {
        let _guard = self.locks.lock(extent.stripe());
        let start = extent.stripe_offset() / BLOCK * BLOCK;
        let end = (extent.stripe_offset() + extent.length()).div_ceil(BLOCK) * BLOCK;
        if start == extent.stripe_offset() && end == start + extent.length() {
            return self.write_journaled(extent, data, touched);
        }
        let aligned = self
            .geometry
            .stripe_extent(extent.stripe(), start, end - start)
            .map_err(|error| BlockError::Invalid(error.to_string()))?;
        let mut buffer = vec![0u8; (end - start) as usize];
        self.read_locked(&aligned, &mut buffer)?;
        let offset = (extent.stripe_offset() - start) as usize;
        buffer[offset..offset + data.len()].copy_from_slice(data);
        self.write_journaled(&aligned, &buffer, touched)
    }

    /// Writes a block-aligned stripe extent with its intent in a journal slot.
    fn write_journaled(
        &self,
        extent: &StripeExtent,
        data: &[u8],
        touched: &mut MemberSet,
    ) -> Result<(), BlockError> {
        assert!(extent.stripe_offset().is_multiple_of(BLOCK));
        assert!(extent.length().is_multiple_of(BLOCK));
        if matches!(self.store, Store::Peers) {
            return self.write_stripe(extent, data, None, touched);
        }
        let slot = self.slots.take();
        let mut committed = false;
        let result = self.write_stripe(extent, data, Some((slot, &mut committed)), touched);
        match (&result, committed) {
            (Ok(()), true) => {
                self.free_slot(slot)?;
                self.slots.give(slot);
            }
            (_, false) => self.slots.give(slot),
            // The members did not take the whole write: the slot stays live, so that a
            // restart with the members back replays it, and the slot is not reused.
            (Err(_), true) => {}
        }
        result
    }

    /// Plans and performs one stripe write; with a slot, commits the intent before the
    /// member writes. Starts over when a member fails before the first member write.
    fn write_stripe(
        &self,
        extent: &StripeExtent,
        data: &[u8],
        mut journal: Option<(u32, &mut bool)>,
        touched: &mut MemberSet,
    ) -> Result<(), BlockError> {
        for _ in 0..=self.geometry.members() {
            let (failed, generation) = self.snapshot_for(extent.stripe());
            self.check_failed(failed)?;
            let plan = self
                .geometry
                .plan_write(extent, failed)
                .map_err(|_| self.unavailable(failed))?;
            let mut runs = match &journal {
                Some(_) => match self.lost_images(extent.stripe(), failed) {
                    Ok(runs) => runs,
                    Err(Step::Retry) => continue,
                    Err(Step::Fail(error)) => return Err(error),
                },
                None => Vec::new(),
            };
            let reads = match self.read_members(plan.reads()) {
                Ok(reads) => reads,
                Err(Step::Retry) => continue,
                Err(Step::Fail(error)) => return Err(error),
            };
            if self.snapshot_for(extent.stripe()) != (failed, generation) {
                continue;
            }
            let writes = self.compute(&plan, &reads, data)?;
            self.check_fenced()?;
            if let Some((slot, committed)) = journal.as_mut() {
                runs.push(BlockRun {
                    first_block: u32::try_from(extent.stripe_offset() / BLOCK)
                        .expect("a stripe holds fewer than 2^32 blocks"),
                    bytes: Cow::Borrowed(data),
                });
                let op_id = self.next_op_id.fetch_add(1, Ordering::Relaxed);
                self.commit_slot(*slot, op_id, extent.stripe(), generation, &runs)?;
                **committed = true;
            }
            for (io, bytes) in plan.writes().iter().zip(&writes) {
                self.write_member(io, bytes, touched);
            }
            self.stripe_writes.count(&plan);
            self.check_fenced()?;
            return self.check_failed(self.snapshot_for(extent.stripe()).0);
        }
        Err(self.unavailable(self.snapshot().0))
    }

    /// The plan's parity (and data) buffers, from the engine.
    fn compute(
        &self,
        plan: &amf_raid::WritePlan,
        reads: &[Vec<u8>],
        data: &[u8],
    ) -> Result<Vec<Vec<u8>>, BlockError> {
        let read_views: Vec<&[u8]> = reads.iter().map(Vec::as_slice).collect();
        let mut writes: Vec<Vec<u8>> = plan
            .writes()
            .iter()
            .map(|io| vec![0u8; io.length as usize])
            .collect();
        let mut targets: Vec<&mut [u8]> = writes.iter_mut().map(Vec::as_mut_slice).collect();
        self.with_engine(|engine| plan.execute(engine, &read_views, data, &mut targets))
            .map_err(|error| match error {
                ComputeError::Engine(error) => BlockError::Io(format!(
                    "stripe {}: parity engine: {}",
                    plan.extent().stripe(),
                    crate::volume::faults::chain(&error)
                )),
                ComputeError::Buffer(error) => {
                    panic!("buffers sized from the plan: {error}")
                }
            })?;
        Ok(writes)
    }

    /// Images of the stripe's lost data chunks (whole chunks, as the surviving members and
    /// parity give them now), when some parity survives to be rewritten.
    fn lost_images(&self, stripe: u64, failed: MemberSet) -> Result<Vec<BlockRun<'static>>, Step> {
        let geometry = &self.geometry;
        let parity_alive = [Role::P, Role::Q].into_iter().any(|role| {
            geometry
                .member_of(stripe, role)
                .is_some_and(|member| !failed.contains(member))
        });
        let mut runs = Vec::new();
        if !parity_alive {
            return Ok(runs);
        }
        let chunk = u64::from(geometry.chunk_bytes());
        for index in 0..geometry.data_chunks() {
            if !failed.contains(geometry.data_member(stripe, index)) {
                continue;
            }
            let extent = geometry
                .stripe_extent(stripe, u64::from(index) * chunk, chunk)
                .expect("a whole chunk of the stripe");
            let mut bytes = vec![0u8; chunk as usize];
            self.read_once(&extent, &mut bytes, failed)?;
            let first_block = u32::try_from(u64::from(index) * chunk / BLOCK).expect("small");
            runs.push(BlockRun {
                first_block,
                bytes: bytes.into(),
            });
        }
        Ok(runs)
    }

    /// Reads one stripe extent; the caller holds the stripe. Starts over when a member
    /// fails under it.
    fn read_locked(&self, extent: &StripeExtent, out: &mut [u8]) -> Result<(), BlockError> {
        for _ in 0..=self.geometry.members() {
            let (failed, _) = self.snapshot_for(extent.stripe());
            self.check_failed(failed)?;
            match self.read_once(extent, out, failed) {
                Ok(()) => return Ok(()),
                Err(Step::Retry) => continue,
                Err(Step::Fail(error)) => return Err(error),
            }
        }
        Err(self.unavailable(self.snapshot().0))
    }

    /// Reads one stripe extent with `failed` gone.
    fn read_once(
        &self,
        extent: &StripeExtent,
        out: &mut [u8],
        failed: MemberSet,
    ) -> Result<(), Step> {
        let plan = self
            .geometry
            .plan_read(extent, failed)
            .map_err(|_| Step::Fail(self.unavailable(failed)))?;
        if plan.is_direct() {
            let mut position = 0usize;
            for io in plan.reads() {
                let length = io.length as usize;
                self.read_member(io, &mut out[position..position + length])?;
                position += length;
            }
            assert_eq!(position, out.len());
            return Ok(());
        }
        let reads = self.read_members(plan.reads())?;
        self.degraded_reads.fetch_add(1, Ordering::Relaxed);
        let views: Vec<&[u8]> = reads.iter().map(Vec::as_slice).collect();
        plan.execute(&views, out)
            .unwrap_or_else(|error| panic!("buffers sized from the plan: {error}"));
        Ok(())
    }

    fn read_members(&self, ios: &[MemberIo]) -> Result<Vec<Vec<u8>>, Step> {
        let mut buffers = Vec::with_capacity(ios.len());
        for io in ios {
            let mut buffer = vec![0u8; io.length as usize];
            self.read_member(io, &mut buffer)?;
            buffers.push(buffer);
        }
        Ok(buffers)
    }
}
