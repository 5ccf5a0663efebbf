//! The sim backend: the card modelled in software.
//!
//! [`SimCard`] wraps the card's state machine ([`model`]) behind a mutex and implements
//! [`CardBackend`] on it. The register rules are documented in [`model`]; the parity
//! engine's address rules in [`parity`].
//!
//! # How work becomes asynchronous
//!
//! Nothing the host submits completes inside the register write that submits it. Where the
//! card's progress happens is chosen with [`Execution`]:
//!
//! * [`Execution::Threaded`] (the default of [`SimConfig::new`]): a worker thread owned by
//!   the card runs the model whenever it has work, as the card's own logic would. The host
//!   sees completions appear asynchronously and may sleep in
//!   [`CardBackend::wait_interrupt`].
//! * [`Execution::Stepped`]: the model runs only inside [`CardBackend::advance`] (one step)
//!   and [`CardBackend::wait_interrupt`] (steps until the interrupt line rises or the card
//!   is idle), on the caller's thread. Deterministic, like the rtl backend's cycle stepping,
//!   for tests and seeded simulation; and what `amf serve` uses ([`crate::open_sim`]), as
//!   its volume waits for every completion anyway.
//!
//! # The fabric port
//!
//! [`SimCard::open`] makes a card without one (`CAP_FABRIC` clear, fabric rings inert).
//! [`SimCard::open_with_fabric`] joins a fabric first ([`fabric`]); in stepped mode,
//! [`CardBackend::wait_interrupt`] on an idle card then also waits, in wall time, for
//! frames from the link.
//!
//! # Errors
//!
//! A register access the card rejects is latched in `ERROR_CODE`/`ERROR_INFO` *and*
//! returned as [`SimError::Register`], so both the register-level contract (what a driver
//! on vfio must rely on) and the immediate error are testable.

pub mod dma;
pub mod fabric;
pub mod model;
pub mod parity;
pub mod sram;

use crate::backend::{CardBackend, DmaBuffer, InterruptWait};
use dma::{DmaError, DmaSpace};
pub use fabric::SimFabric;
use model::{Fault, Model, WindowFault};
use shared_regs::limits::FABRIC_PORTS_MAX;
use shared_regs::regs::ErrorCode;
use sram::{SramError, SramFile};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use parity::{PARITY_BUFFER_ALIGN_BYTES, SOURCE_LIST_ALIGN_BYTES, SimMutation};

const READ: &str = "read";
const WRITE: &str = "write";

/// Where the sim card's work runs; see the [module docs](self).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Execution {
    /// On a worker thread owned by the card.
    #[default]
    Threaded,
    /// Only inside `advance` and `wait_interrupt`, on the caller's thread.
    Stepped,
}

/// How to build a sim card.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimConfig {
    /// SRAM size: a non-zero multiple of the SRAM window; an existing file must match.
    pub sram_bytes: u64,
    /// Where work runs.
    pub execution: Execution,
    /// This card's port on the fabric (`FABRIC_PORT_ID`), below `FABRIC_PORTS_MAX`.
    pub fabric_port_id: u8,
    /// Most DMA memory the host may have mapped at once.
    pub dma_bytes_max: u64,
    /// A deliberate bug, for tests that show the driver suite catches a wrong card.
    pub mutation: Option<SimMutation>,
}

impl SimConfig {
    /// Default DMA limit: a full-width stripe of the largest chunk, several times over.
    pub const DMA_BYTES_MAX_DEFAULT: u64 = 256 << 20;

    /// A threaded card on port 0 with `sram_bytes` of SRAM.
    pub fn new(sram_bytes: u64) -> Self {
        Self {
            sram_bytes,
            execution: Execution::Threaded,
            fabric_port_id: 0,
            dma_bytes_max: Self::DMA_BYTES_MAX_DEFAULT,
            mutation: None,
        }
    }

    /// The same, running [`Execution::Stepped`].
    pub fn stepped(self) -> Self {
        Self {
            execution: Execution::Stepped,
            ..self
        }
    }
}

/// Errors of the sim backend.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The card rejected a register access (also latched in `ERROR_CODE`).
    #[error(
        "card rejected a {width_bytes}-byte {direction} at BAR0 offset {offset:#x}: {code:?} (ERROR_INFO {info:#x})"
    )]
    Register {
        /// "read" or "write".
        direction: &'static str,
        /// BAR0 offset.
        offset: u32,
        /// 4 or 8.
        width_bytes: u32,
        /// The card's error code.
        code: ErrorCode,
        /// What the card put in `ERROR_INFO` for it.
        info: u32,
    },
    /// The SRAM file.
    #[error(transparent)]
    Sram(#[from] SramError),
    /// The DMA map.
    #[error(transparent)]
    Dma(#[from] DmaError),
    /// A configuration value out of range.
    #[error("sim card configuration: {field} = {value} is out of range")]
    BadConfig {
        /// Field of [`SimConfig`].
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// The worker thread could not be started.
    #[error("could not start the sim card's worker thread")]
    Spawn(#[source] std::io::Error),
    /// The fabric port could not join (refused, unreachable, or out of protocol).
    #[error("the sim card's fabric port could not join the fabric")]
    Fabric(#[source] amf_fabric::ClientError),
    /// A thread panicked while holding the card's state; the card is unusable.
    #[error("the sim card's state was poisoned by a panic")]
    Poisoned,
}

/// State shared between the host side and the worker thread.
#[derive(Debug)]
struct Shared {
    model: Mutex<Model>,
    /// Signalled when the host did something that may give the card work, or shuts down.
    work: Condvar,
    /// Signalled whenever the model stepped (the interrupt line may have risen).
    progress: Condvar,
    shutdown: std::sync::atomic::AtomicBool,
}

/// The card modelled in software. Dropping it stops its worker and unmaps the SRAM.
#[derive(Debug)]
pub struct SimCard {
    shared: Arc<Shared>,
    execution: Execution,
    worker: Option<JoinHandle<()>>,
    link: Option<fabric::LinkThreads>,
}

impl SimCard {
    /// Opens (or creates) the SRAM file at `sram_path` and powers the card on. The card
    /// comes out of reset on its first step: drivers wait for `STATUS_READY`.
    pub fn open(sram_path: &Path, config: SimConfig) -> Result<Self, SimError> {
        Self::check_port(config)?;
        let sram = SramFile::open(sram_path, config.sram_bytes)?;
        Self::start(sram, config, None)
    }

    /// As [`SimCard::open`], with a fabric port: the card joins `fabric` as port
    /// `config.fabric_port_id` (a refusal is the error) and keeps the link until dropped.
    pub fn open_with_fabric(
        sram_path: &Path,
        config: SimConfig,
        fabric: &SimFabric,
    ) -> Result<Self, SimError> {
        Self::check_port(config)?;
        // The SRAM first: a card whose SRAM is locked elsewhere must not join.
        let sram = SramFile::open(sram_path, config.sram_bytes)?;
        let joined = fabric::join(fabric, config.fabric_port_id)?;
        Self::start(sram, config, Some(joined))
    }

    fn check_port(config: SimConfig) -> Result<(), SimError> {
        if u32::from(config.fabric_port_id) >= FABRIC_PORTS_MAX {
            return Err(SimError::BadConfig {
                field: "fabric_port_id",
                value: u64::from(config.fabric_port_id),
            });
        }
        Ok(())
    }

    fn start(
        sram: SramFile,
        config: SimConfig,
        joined: Option<fabric::Joined>,
    ) -> Result<Self, SimError> {
        let dma = DmaSpace::new(config.dma_bytes_max);
        let parity = parity::SoftwareParity {
            mutation: config.mutation,
        };
        let mut model = Model::new(sram, dma, u32::from(config.fabric_port_id), parity);
        let pending = joined.map(|joined| {
            model.attach_fabric(joined.port);
            joined.link
        });
        let shared = Arc::new(Shared {
            model: Mutex::new(model),
            work: Condvar::new(),
            progress: Condvar::new(),
            shutdown: std::sync::atomic::AtomicBool::new(false),
        });
        let worker = match config.execution {
            Execution::Stepped => None,
            Execution::Threaded => {
                let shared = Arc::clone(&shared);
                let handle = std::thread::Builder::new()
                    .name("amf-sim-card".into())
                    .spawn(move || run_worker(&shared))
                    .map_err(SimError::Spawn)?;
                Some(handle)
            }
        };
        let mut card = Self {
            shared,
            execution: config.execution,
            worker,
            link: None,
        };
        if let Some(pending) = pending {
            card.link = Some(fabric::start(&card.shared, pending)?);
        }
        Ok(card)
    }

    /// Why the fabric link went down, once it did (`None` while it is up, or without a
    /// fabric port).
    pub fn fabric_link_error(&self) -> Result<Option<String>, SimError> {
        let model = self.lock()?;
        Ok(model
            .fabric()
            .and_then(|port| port.link_error().map(str::to_string)))
    }

    /// Remote SRAM writes this card refused (their range left the SRAM).
    pub fn fabric_sram_writes_refused(&self) -> Result<u64, SimError> {
        let model = self.lock()?;
        Ok(model
            .fabric()
            .map_or(0, fabric::PortState::sram_writes_refused))
    }

    /// Where this card's work runs.
    pub fn execution(&self) -> Execution {
        self.execution
    }

    /// Writes the SRAM's dirty pages to disk (a process death needs no flush; a machine
    /// crash does).
    pub fn flush_sram(&self) -> Result<(), SimError> {
        Ok(self.lock()?.sram().flush()?)
    }

    fn lock(&self) -> Result<MutexGuard<'_, Model>, SimError> {
        self.shared.model.lock().map_err(|_| SimError::Poisoned)
    }

    /// Runs `access` on the model. After a write, wakes the worker (the write may have
    /// given it work) and any waiter (it may have raised the interrupt line); reads have no
    /// side effects but the error latch, which needs no wakeup to be seen.
    fn access<T>(
        &mut self,
        access: impl FnOnce(&mut Model) -> Result<T, Fault>,
        describe: (&'static str, u32, u32),
    ) -> Result<T, SimError> {
        let result = access(&mut *self.lock()?);
        let (direction, offset, width_bytes) = describe;
        if direction == WRITE {
            self.shared.work.notify_one();
            self.shared.progress.notify_all();
        }
        result.map_err(|fault| SimError::Register {
            direction,
            offset,
            width_bytes,
            code: fault.code,
            info: fault.info,
        })
    }
}

impl Drop for SimCard {
    fn drop(&mut self) {
        self.shared
            .shutdown
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(link) = self.link.take() {
            fabric::detach(&self.shared);
            drop(link);
        }
        // Take the lock so the worker is either before its shutdown check or waiting.
        drop(self.shared.model.lock());
        self.shared.work.notify_all();
        if let Some(worker) = self.worker.take() {
            // A worker that panicked already poisoned the state; nothing more to report.
            let _ = worker.join();
        }
    }
}

/// The worker: step while there is work, sleep on `work` otherwise.
fn run_worker(shared: &Shared) {
    let Ok(mut model) = shared.model.lock() else {
        return;
    };
    while !shared.shutdown.load(std::sync::atomic::Ordering::SeqCst) {
        if model.step() {
            shared.progress.notify_all();
            // Let the host in between two descriptors.
            drop(model);
            model = match shared.model.lock() {
                Ok(model) => model,
                Err(_) => return,
            };
            continue;
        }
        model = match shared.work.wait(model) {
            Ok(model) => model,
            Err(_) => return,
        };
    }
}

/// The error of the register access a rejected window transfer stands for.
fn window_error(fault: WindowFault) -> SimError {
    SimError::Register {
        direction: if fault.reading { READ } else { WRITE },
        offset: fault.offset,
        width_bytes: fault.width_bytes,
        code: fault.fault.code,
        info: fault.fault.info,
    }
}

impl CardBackend for SimCard {
    type Error = SimError;

    fn name(&self) -> &'static str {
        "sim"
    }

    fn read32(&mut self, offset: u32) -> Result<u32, SimError> {
        let value = self.access(|model| model.read(offset, 4), (READ, offset, 4))?;
        Ok(u32::try_from(value).expect("a 4-byte read fits in u32"))
    }

    fn write32(&mut self, offset: u32, value: u32) -> Result<(), SimError> {
        self.access(
            |model| model.write(offset, 4, u64::from(value)),
            (WRITE, offset, 4),
        )
    }

    fn read64(&mut self, offset: u32) -> Result<u64, SimError> {
        self.access(|model| model.read(offset, 8), (READ, offset, 8))
    }

    fn write64(&mut self, offset: u32, value: u64) -> Result<(), SimError> {
        self.access(|model| model.write(offset, 8, value), (WRITE, offset, 8))
    }

    /// One copy into the mapped SRAM, under the mutex, instead of one lock per word.
    fn window_write(&mut self, within: u32, source: &[u8]) -> Result<(), SimError> {
        let result = self.lock()?.window_copy_in(within, source);
        // Only a fault changes more than SRAM: it may raise the interrupt line.
        result.map_err(|fault| {
            self.shared.progress.notify_all();
            window_error(fault)
        })
    }

    fn window_read(&mut self, within: u32, target: &mut [u8]) -> Result<(), SimError> {
        let result = self.lock()?.window_copy_out(within, target);
        result.map_err(window_error)
    }

    fn dma_alloc(&mut self, bytes: u64) -> Result<DmaBuffer, SimError> {
        let (handle, device_address) = self.lock()?.dma_mut().alloc(bytes)?;
        Ok(DmaBuffer::new(handle, device_address, bytes))
    }

    fn dma_free(&mut self, buffer: DmaBuffer) -> Result<(), SimError> {
        Ok(self
            .lock()?
            .dma_mut()
            .free(buffer.handle(), buffer.device_address())?)
    }

    fn dma_write(
        &mut self,
        buffer: &DmaBuffer,
        offset: u64,
        source: &[u8],
    ) -> Result<(), SimError> {
        let mut model = self.lock()?;
        Ok(model.dma_mut().host_write(buffer, offset, source)?)
    }

    fn dma_read(
        &mut self,
        buffer: &DmaBuffer,
        offset: u64,
        target: &mut [u8],
    ) -> Result<(), SimError> {
        let mut model = self.lock()?;
        Ok(model.dma_mut().host_read(buffer, offset, target)?)
    }

    fn advance(&mut self) -> Result<(), SimError> {
        match self.execution {
            Execution::Stepped => {
                self.lock()?.step();
            }
            Execution::Threaded => std::thread::yield_now(),
        }
        Ok(())
    }

    fn wait_interrupt(&mut self, timeout_ms: u32) -> Result<InterruptWait, SimError> {
        let mut model = self.lock()?;
        match self.execution {
            Execution::Stepped => {
                let deadline = Instant::now() + Duration::from_millis(u64::from(timeout_ms));
                loop {
                    if model.interrupt_line() {
                        return Ok(InterruptWait::Raised);
                    }
                    if model.step() {
                        continue;
                    }
                    // Idle: only the fabric can bring work now, in wall time.
                    let now = Instant::now();
                    if model.fabric().is_none() || now >= deadline {
                        return Ok(InterruptWait::TimedOut);
                    }
                    model = self
                        .shared
                        .progress
                        .wait_timeout(model, deadline - now)
                        .map_err(|_| SimError::Poisoned)?
                        .0;
                }
            }
            Execution::Threaded => {
                let deadline = Instant::now() + Duration::from_millis(u64::from(timeout_ms));
                loop {
                    if model.interrupt_line() {
                        return Ok(InterruptWait::Raised);
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        return Ok(InterruptWait::TimedOut);
                    }
                    model = self
                        .shared
                        .progress
                        .wait_timeout(model, deadline - now)
                        .map_err(|_| SimError::Poisoned)?
                        .0;
                }
            }
        }
    }
}
