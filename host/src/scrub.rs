//! Scrub: read every stripe, check its P (and Q) against its data, report (and with
//! repair, rewrite) the parity that mismatches.
//!
//! Runs offline on the members. A degraded stripe is checked with what redundancy is
//! left (RAID-6 missing one member: the lost chunk is rebuilt from one parity and checked
//! against the other); a stripe with no redundancy left is counted as not checked.
//!
//! P and Q are recomputed by the [`ParityEngine`] the caller passes (the host's, or a
//! card's with `amf scrub --card`); rebuilding a lost member's chunk is recovery, which
//! always runs on the host.

use crate::array::{Array, ArrayError};
use amf_parity::{EngineError, ParityEngine};
use amf_raid::{Columns, ComputeError, Geometry, MemberSet, ParityCheck, Role};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

/// Check only, or rewrite mismatching parity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Report only.
    Check,
    /// Report, and rewrite parity computed from the data.
    Repair,
}

/// Which parity of a stripe mismatched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    /// P, the XOR.
    P,
    /// Q, the GF(2^8) syndrome.
    Q,
}

/// One mismatching parity chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    /// Stripe number, from 0.
    pub stripe: u64,
    /// Which parity.
    pub parity: Parity,
}

/// What a scrub found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubReport {
    /// Stripes in the array.
    pub stripes: u64,
    /// Stripes whose parity could be checked.
    pub stripes_checked: u64,
    /// Mismatches, in stripe order.
    pub mismatches: Vec<Mismatch>,
    /// True when mismatching parity was rewritten.
    pub repaired: bool,
    /// Which engine computed the parity ([`ParityEngine::name`]): `"host"`, `"card:sim"`.
    pub parity_engine: String,
}

/// Why a scrub stopped.
#[derive(Debug, thiserror::Error)]
pub enum ScrubError {
    /// Reading or writing a member failed, or the array cannot be scrubbed.
    #[error(transparent)]
    Array(#[from] ArrayError),
    /// A member failed under an online scrub (the volume goes on degraded).
    #[error("member {member} failed during the scrub")]
    MemberFailed {
        /// The member.
        member: u32,
    },
    /// The serving volume refused I/O.
    #[error("{0}")]
    Volume(String),
    /// The parity engine failed.
    #[error("computing the parity of stripe {stripe}")]
    Engine {
        /// The stripe being checked or repaired.
        stripe: u64,
        /// The engine's error.
        #[source]
        source: EngineError,
    },
}

/// The engine's error, with the stripe; a buffer error is this module's bug.
fn engine_failed(stripe: u64) -> impl FnOnce(ComputeError) -> ScrubError {
    move |error| match error {
        ComputeError::Engine(source) => ScrubError::Engine { stripe, source },
        ComputeError::Buffer(error) => {
            panic!("stripe {stripe}: buffers sized by geometry: {error}")
        }
    }
}

/// A progress bar over the array's stripes, drawn on a terminal only.
pub fn progress_bar(array: &Array) -> ProgressBar {
    let bar = ProgressBar::new(array.geometry.stripe_count());
    let style = ProgressStyle::with_template(
        "{prefix} [{bar:40}] {percent:>3}% {pos}/{len} stripes {per_sec} eta {eta}",
    )
    .map(|style| style.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix("scrub");
    bar
}

/// Where a scrub reads stripes and writes repaired parity: the members of an offline
/// [`Array`], or a serving volume (which locks each stripe around its scrub).
pub trait StripeSource {
    /// The array's layout.
    fn geometry(&self) -> Geometry;
    /// Members whose chunks of `stripe` cannot be trusted.
    fn unusable(&self, stripe: u64) -> MemberSet;
    /// Reads `member`'s bytes at `offset` of its data area.
    fn read_chunk(&self, member: u32, offset: u64, buffer: &mut [u8]) -> Result<(), ScrubError>;
    /// Writes `member`'s bytes at `offset` of its data area, durably.
    fn write_chunk(&self, member: u32, offset: u64, bytes: &[u8]) -> Result<(), ScrubError>;
}

impl StripeSource for Array {
    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn unusable(&self, _stripe: u64) -> MemberSet {
        self.unusable_members().into_iter().collect()
    }

    fn read_chunk(&self, member: u32, offset: u64, buffer: &mut [u8]) -> Result<(), ScrubError> {
        let member = self
            .usable_member(member)
            .expect("asked for usable members only");
        Ok(member.read_data(offset, buffer)?)
    }

    fn write_chunk(&self, member: u32, offset: u64, bytes: &[u8]) -> Result<(), ScrubError> {
        let member = self
            .usable_member(member)
            .expect("asked for usable members only");
        member.write_data(offset, bytes)?;
        Ok(member.sync()?)
    }
}

/// An empty report for `source`'s array, before any stripe is scrubbed.
pub fn new_report(source: &dyn StripeSource, engine_name: &str) -> ScrubReport {
    ScrubReport {
        stripes: source.geometry().stripe_count(),
        stripes_checked: 0,
        mismatches: Vec::new(),
        repaired: false,
        parity_engine: engine_name.to_owned(),
    }
}

/// Adds what the scrub of some stripes found (`part`) to `report`.
pub fn merge(report: &mut ScrubReport, part: ScrubReport) {
    report.stripes_checked += part.stripes_checked;
    report.mismatches.extend(part.mismatches);
    report.repaired |= part.repaired;
}

/// Scrubs every stripe of `array`, computing parity with `engine`.
pub fn run(
    array: &Array,
    mode: Mode,
    engine: &mut dyn ParityEngine,
    progress: ProgressBar,
) -> Result<ScrubReport, ScrubError> {
    array.check_available()?;
    let mut report = new_report(array, engine.name());
    for stripe in 0..array.geometry.stripe_count() {
        progress.inc(1);
        scrub_stripe(array, engine, stripe, mode, &mut report)?;
    }
    progress.finish_and_clear();
    Ok(report)
}

/// Checks one stripe (with repair, rewrites its parity) and adds what it found to
/// `report`. A stripe with no redundancy left is not checked.
pub fn scrub_stripe(
    source: &dyn StripeSource,
    engine: &mut dyn ParityEngine,
    stripe: u64,
    mode: Mode,
    report: &mut ScrubReport,
) -> Result<(), ScrubError> {
    let geometry = source.geometry();
    let unusable = source.unusable(stripe);
    // With every parity's worth of members gone, nothing is left to check against.
    if unusable.count() >= geometry.parity_count() {
        return Ok(());
    }
    let mut chunks = read_stripe(source, stripe, unusable)?;
    rebuild_unusable(&geometry, stripe, unusable, &mut chunks);
    let check = check_stripe(&geometry, engine, stripe, &chunks)?;
    record(report, stripe, &check);
    if mode == Mode::Repair && !check.is_consistent() {
        repair_stripe(source, engine, stripe, unusable, &mut chunks)?;
        report.repaired = true;
    }
    Ok(())
}

/// Reads stripe `stripe` from every usable member (by member index; unusable ones zero).
fn read_stripe(
    source: &dyn StripeSource,
    stripe: u64,
    unusable: MemberSet,
) -> Result<Vec<Vec<u8>>, ScrubError> {
    let geometry = source.geometry();
    let offset = geometry.stripe_member_offset(stripe);
    let chunk_bytes = geometry.chunk_bytes() as usize;
    let mut chunks: Vec<Vec<u8>> = (0..geometry.members())
        .map(|_| vec![0u8; chunk_bytes])
        .collect();
    for (index, chunk) in chunks.iter_mut().enumerate() {
        if !unusable.contains(index as u32) {
            source.read_chunk(index as u32, offset, chunk)?;
        }
    }
    Ok(chunks)
}
/// Fills the chunks of unusable members from the usable ones, so the parity left over can
/// be checked against a full stripe.
fn rebuild_unusable(geometry: &Geometry, stripe: u64, unusable: MemberSet, chunks: &mut [Vec<u8>]) {
    let whole = Columns::new(0, geometry.chunk_bytes());
    let stripe_offset = geometry.stripe_member_offset(stripe);
    for member in unusable.iter() {
        let plan = geometry
            .plan_rebuild(stripe, member, whole, unusable)
            .expect("availability was checked");
        let mut rebuilt = vec![0u8; whole.length() as usize];
        {
            let reads: Vec<&[u8]> = plan
                .reads()
                .iter()
                .map(|io| {
                    let start = (io.member_offset - stripe_offset) as usize;
                    &chunks[io.member as usize][start..start + io.length as usize]
                })
                .collect();
            plan.execute(&reads, &mut rebuilt)
                .expect("buffers sized by the plan");
        }
        chunks[member as usize] = rebuilt;
    }
}

fn check_stripe(
    geometry: &Geometry,
    engine: &mut dyn ParityEngine,
    stripe: u64,
    chunks: &[Vec<u8>],
) -> Result<ParityCheck, ScrubError> {
    let views: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    geometry
        .check_parity(engine, stripe, &views)
        .map_err(engine_failed(stripe))
}

fn record(report: &mut ScrubReport, stripe: u64, check: &ParityCheck) {
    report.stripes_checked += 1;
    if check.p_mismatch {
        report.mismatches.push(Mismatch {
            stripe,
            parity: Parity::P,
        });
    }
    if check.q_mismatch {
        report.mismatches.push(Mismatch {
            stripe,
            parity: Parity::Q,
        });
    }
}

/// Recomputes the stripe's parity from its data and writes it to the usable parity
/// members. The data is taken as the truth (a scrub cannot tell which chunk is wrong).
fn repair_stripe(
    source: &dyn StripeSource,
    engine: &mut dyn ParityEngine,
    stripe: u64,
    unusable: MemberSet,
    chunks: &mut [Vec<u8>],
) -> Result<(), ScrubError> {
    let geometry = source.geometry();
    let mut views: Vec<&mut [u8]> = chunks.iter_mut().map(Vec::as_mut_slice).collect();
    geometry
        .repair_parity(engine, stripe, &mut views)
        .map_err(engine_failed(stripe))?;
    let offset = geometry.stripe_member_offset(stripe);
    for (index, chunk) in chunks.iter().enumerate() {
        let member = index as u32;
        let is_parity = !matches!(geometry.role(stripe, member), Role::Data(_));
        if is_parity && !unusable.contains(member) {
            source.write_chunk(member, offset, chunk)?;
        }
    }
    Ok(())
}

/// Human-readable rendering.
pub fn render(report: &ScrubReport) -> String {
    let mut text = String::new();
    for mismatch in &report.mismatches {
        let parity = match mismatch.parity {
            Parity::P => "P",
            Parity::Q => "Q",
        };
        text.push_str(&format!("stripe {}: {parity} mismatch\n", mismatch.stripe));
    }
    let verb = if report.repaired { "repaired" } else { "found" };
    text.push_str(&format!(
        "scrub: {} of {} stripes checked, {} mismatches {verb} (parity engine: {})\n",
        report.stripes_checked,
        report.stripes,
        report.mismatches.len(),
        report.parity_engine
    ));
    text
}
