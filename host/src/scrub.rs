//! Scrub: read every stripe, check its P (and Q) against its data, report (and with
//! repair, rewrite) the parity that mismatches.
//!
//! Runs offline on the members. A degraded stripe is checked with what redundancy is
//! left (RAID-6 missing one member: the lost chunk is rebuilt from one parity and checked
//! against the other); a stripe with no redundancy left is counted as not checked.

use crate::array::{Array, ArrayError};
use amf_raid::{Geometry, Role, StripeCheck, check_stripe};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// Check only, or rewrite mismatching parity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Report only.
    Check,
    /// Report, and rewrite parity computed from the data.
    Repair,
}

/// Which parity of a stripe mismatched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    /// P, the XOR.
    P,
    /// Q, the GF(2^8) syndrome.
    Q,
}

/// One mismatching parity chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    /// Stripe number, from 0.
    pub stripe: u64,
    /// Which parity.
    pub parity: Parity,
}

/// What a scrub found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScrubReport {
    /// Stripes in the array.
    pub stripes: u64,
    /// Stripes whose parity could be checked.
    pub stripes_checked: u64,
    /// Mismatches, in stripe order.
    pub mismatches: Vec<Mismatch>,
    /// True when mismatching parity was rewritten.
    pub repaired: bool,
}

/// A progress bar over the array's stripes, drawn on a terminal only.
pub fn progress_bar(array: &Array) -> ProgressBar {
    let bar = ProgressBar::new(array.geometry.stripe_count());
    let style = ProgressStyle::with_template("{prefix} [{bar:40}] {percent:>3}% {pos}/{len} stripes {per_sec} eta {eta}")
        .map(|style| style.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix("scrub");
    bar
}

/// Scrubs every stripe of `array`.
pub fn run(array: &Array, mode: Mode, progress: ProgressBar) -> Result<ScrubReport, ArrayError> {
    array.check_available()?;
    let geometry = array.geometry;
    let chunk_bytes = geometry.chunk_bytes() as usize;
    let mut chunks: Vec<Vec<u8>> = (0..geometry.members()).map(|_| vec![0u8; chunk_bytes]).collect();
    let mut report = ScrubReport { stripes: geometry.stripe_count(), stripes_checked: 0, mismatches: Vec::new(), repaired: false };
    for stripe in 0..geometry.stripe_count() {
        let present = read_stripe(array, stripe, &mut chunks)?;
        let check = check_stripe(&geometry, stripe, &present_views(&chunks, &present));
        record(&mut report, stripe, &check);
        if mode == Mode::Repair && !check.is_clean() {
            repair_stripe(array, &geometry, stripe, &mut chunks, &present)?;
            report.repaired = true;
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    Ok(report)
}

fn present_views<'a>(chunks: &'a [Vec<u8>], present: &[bool]) -> Vec<Option<&'a [u8]>> {
    chunks.iter().zip(present).map(|(chunk, &here)| here.then_some(chunk.as_slice())).collect()
}

/// Reads stripe `stripe` from every usable member into `chunks` (by member index);
/// returns which members were read.
fn read_stripe(array: &Array, stripe: u64, chunks: &mut [Vec<u8>]) -> Result<Vec<bool>, ArrayError> {
    let offset = stripe * u64::from(array.geometry.chunk_bytes());
    let mut present = Vec::with_capacity(chunks.len());
    for (index, chunk) in chunks.iter_mut().enumerate() {
        let member = array.usable_member(index as u32);
        if let Some(member) = member {
            member.read_data(offset, chunk)?;
        }
        present.push(member.is_some());
    }
    Ok(present)
}

fn record(report: &mut ScrubReport, stripe: u64, check: &StripeCheck) {
    if !check.checked() {
        return;
    }
    report.stripes_checked += 1;
    if check.p_mismatch {
        report.mismatches.push(Mismatch { stripe, parity: Parity::P });
    }
    if check.q_mismatch {
        report.mismatches.push(Mismatch { stripe, parity: Parity::Q });
    }
}

/// Recomputes the stripe's parity from its data and writes it to the usable parity
/// members. The data is taken as the truth (a scrub cannot tell which chunk is wrong).
fn repair_stripe(array: &Array, geometry: &Geometry, stripe: u64, chunks: &mut [Vec<u8>], present: &[bool]) -> Result<(), ArrayError> {
    amf_raid::regenerate_parity(geometry, stripe, chunks, present);
    let offset = stripe * u64::from(geometry.chunk_bytes());
    for (index, chunk) in chunks.iter().enumerate() {
        let is_parity = !matches!(geometry.role(stripe, index as u32), Role::Data(_));
        if let (true, Some(member)) = (is_parity, array.usable_member(index as u32)) {
            member.write_data(offset, chunk)?;
            member.sync()?;
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
        "scrub: {} of {} stripes checked, {} mismatches {verb}\n",
        report.stripes_checked,
        report.stripes,
        report.mismatches.len()
    ));
    text
}
