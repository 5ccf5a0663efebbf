//! `amf bench parity`: throughput of our best parity kernel beside ISA-L's, in one run.
//!
//! Four cases: P (8 data + P, `xor_gen`) and P+Q (8 data + P + Q, `pq_gen`), each on one
//! stripe reused (in cache) and cycling over many distinct stripes (out of cache: at least
//! [`MEMORY_BYTES_DEFAULT`], far beyond the last-level cache). Ours and ISA-L run in
//! alternating time slices over the same buffers, so both see the same machine load; each
//! figure is the median slice, counting data bytes per second (GB/s, 1e9).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Data chunks per stripe.
pub const DATA_MEMBERS: usize = 8;
/// Bytes per chunk (the default RAID chunk).
pub const CHUNK_BYTES: usize = 65536;
/// Default size of the out-of-cache stripe set.
pub const MEMORY_BYTES_DEFAULT: u64 = 512 << 20;
/// Default measured time per implementation and case.
pub const MIN_SECONDS_DEFAULT: f64 = 0.5;

/// Buffers are aligned for ISA-L (32) and for full cache lines (64).
const ALIGNMENT_BYTES: usize = 64;
/// Data, P and Q of one stripe.
const STRIPE_BYTES: usize = (DATA_MEMBERS + 2) * CHUNK_BYTES;
/// One timed slice; ours and ISA-L alternate slices.
const SLICE: Duration = Duration::from_millis(20);
/// Bounds the slices of one case, whatever `min_seconds` says.
const SLICES_MAX: usize = 10_000;

const _: () = assert!(
    CHUNK_BYTES.is_multiple_of(32),
    "ISA-L pq_gen needs multiples of 32"
);
const _: () = assert!(DATA_MEMBERS >= 2, "ISA-L needs two data chunks");

/// What to measure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParityBenchOptions {
    /// Bytes of distinct stripes cycled over in the out-of-cache case (rounded up to whole
    /// stripes; at least one).
    pub memory_bytes: u64,
    /// Measured seconds per implementation and case (at least one slice each).
    pub min_seconds: f64,
}

impl Default for ParityBenchOptions {
    fn default() -> Self {
        Self {
            memory_bytes: MEMORY_BYTES_DEFAULT,
            min_seconds: MIN_SECONDS_DEFAULT,
        }
    }
}

/// Which parity is generated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParityKind {
    /// XOR only (RAID-5).
    P,
    /// P and Q (RAID-6).
    Pq,
}

/// Where the stripes live while measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// One stripe, reused: it stays in the caches.
    Cache,
    /// Many distinct stripes in turn: every one comes from memory.
    Memory,
}

/// One measured case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParityBenchRow {
    pub kernel: ParityKind,
    pub data_members: u32,
    pub chunk: u32,
    pub placement: Placement,
    pub ours_gbps: f64,
    /// `None` when ISA-L is not linked.
    pub isal_gbps: Option<f64>,
    /// `ours_gbps / isal_gbps`; `None` when ISA-L is not linked.
    pub ratio: Option<f64>,
    /// The kernel [`amf_parity::best`] chose, e.g. `gfni-avx512`.
    pub ours_kernel: String,
}

/// Every case of one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParityBenchReport {
    pub results: Vec<ParityBenchRow>,
}

/// Runs the four cases.
pub fn run_parity(options: &ParityBenchOptions) -> ParityBenchReport {
    let stripe_count = stripe_count(options.memory_bytes);
    let mut storage = vec![0u8; stripe_count * STRIPE_BYTES + ALIGNMENT_BYTES];
    let start = storage.as_ptr().align_offset(ALIGNMENT_BYTES);
    let stripes = &mut storage[start..start + stripe_count * STRIPE_BYTES];
    fill(stripes);
    check_against_isal(&mut stripes[..STRIPE_BYTES]);
    let mut results = Vec::with_capacity(4);
    for kind in [ParityKind::P, ParityKind::Pq] {
        for placement in [Placement::Cache, Placement::Memory] {
            let in_use = match placement {
                Placement::Cache => &mut stripes[..STRIPE_BYTES],
                Placement::Memory => &mut *stripes,
            };
            results.push(measure_case(in_use, kind, placement, options.min_seconds));
        }
    }
    assert_eq!(results.len(), 4);
    ParityBenchReport { results }
}

/// The report as a plain-text table.
pub fn render_table(report: &ParityBenchReport) -> String {
    let ours_kernel = report
        .results
        .first()
        .map_or("-", |row| row.ours_kernel.as_str());
    let ours_heading = format!("ours ({ours_kernel}) GB/s");
    let mut table = format!(
        "{:<6} {:>7} {:>6} {:<9} {:>26} {:>15} {:>6}\n",
        "kernel", "members", "chunk", "placement", ours_heading, "ISA-L GB/s", "ratio"
    );
    for row in &report.results {
        let kernel = match row.kernel {
            ParityKind::P => "p",
            ParityKind::Pq => "pq",
        };
        let placement = match row.placement {
            Placement::Cache => "cache",
            Placement::Memory => "memory",
        };
        let isal = row
            .isal_gbps
            .map_or("ISA-L not found".to_string(), |gbps| format!("{gbps:.2}"));
        let ratio = row
            .ratio
            .map_or("-".to_string(), |ratio| format!("{ratio:.2}x"));
        table.push_str(&format!(
            "{kernel:<6} {:>7} {:>6} {placement:<9} {:>26.2} {isal:>15} {ratio:>6}\n",
            row.data_members, row.chunk, row.ours_gbps
        ));
    }
    if report.results.iter().any(|row| row.isal_gbps.is_none()) {
        table.push_str("ISA-L not found: install libisal-dev and rebuild to compare.\n");
    }
    table
}

fn stripe_count(memory_bytes: u64) -> usize {
    let bytes = usize::try_from(memory_bytes).unwrap_or(usize::MAX);
    bytes.div_ceil(STRIPE_BYTES).max(1)
}

/// Deterministic noise (xorshift64), so no two chunks are alike.
fn fill(bytes: &mut [u8]) {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for word in bytes.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        word.copy_from_slice(&state.to_le_bytes()[..word.len()]);
    }
}

/// One stripe's data chunks, P and Q.
fn split_stripe(stripe: &mut [u8]) -> (Vec<&[u8]>, &mut [u8], &mut [u8]) {
    assert_eq!(stripe.len(), STRIPE_BYTES);
    let (data, parity) = stripe.split_at_mut(DATA_MEMBERS * CHUNK_BYTES);
    let (p, q) = parity.split_at_mut(CHUNK_BYTES);
    (data.chunks(CHUNK_BYTES).collect(), p, q)
}

/// A benchmark that measures the wrong thing is worse than none: ours must equal ISA-L.
fn check_against_isal(stripe: &mut [u8]) {
    if !isal::available() {
        return;
    }
    let (data, p, q) = split_stripe(stripe);
    amf_parity::gen_pq(&data, p, q);
    let (ours_p, ours_q) = (p.to_vec(), q.to_vec());
    isal::pq_gen(&data, p, q).expect("ISA-L pq_gen on an aligned stripe");
    assert!(
        *p == *ours_p && *q == *ours_q,
        "our P/Q differ from ISA-L's"
    );
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Ours,
    Isal,
}

/// Alternates slices of ours and ISA-L over `stripes` (one or many) until each side has
/// `min_seconds`, and reports the median slice of each. The order within a round flips
/// every round, so neither side always runs right after the other.
fn measure_case(
    stripes: &mut [u8],
    kind: ParityKind,
    placement: Placement,
    min_seconds: f64,
) -> ParityBenchRow {
    let sides: &[Side] = if isal::available() {
        &[Side::Ours, Side::Isal]
    } else {
        &[Side::Ours]
    };
    let min_time = Duration::from_secs_f64(min_seconds.max(0.0));
    let mut rates = [Vec::new(), Vec::new()];
    let mut measured = [Duration::ZERO; 2];
    for &side in sides {
        run_slice(stripes, kind, side); // warm-up, not counted
    }
    for round in 0..SLICES_MAX {
        for index in 0..sides.len() {
            let side = sides[(index + round) % sides.len()];
            let (bytes, elapsed) = run_slice(stripes, kind, side);
            measured[side as usize] += elapsed;
            rates[side as usize].push(bytes as f64 / elapsed.as_secs_f64() / 1e9);
        }
        let done = |side: &Side| measured[*side as usize] >= min_time;
        if sides.iter().all(done) {
            break;
        }
    }
    let ours_gbps = median(&mut rates[Side::Ours as usize]).expect("ours ran");
    let isal_gbps = median(&mut rates[Side::Isal as usize]);
    ParityBenchRow {
        kernel: kind,
        data_members: DATA_MEMBERS as u32,
        chunk: CHUNK_BYTES as u32,
        placement,
        ours_gbps,
        isal_gbps,
        ratio: isal_gbps.map(|isal| ours_gbps / isal),
        ours_kernel: amf_parity::best().name().to_string(),
    }
}

/// Runs one side over whole passes of `stripes`, each from the first stripe on, until at
/// least one [`SLICE`] has passed. Both sides thus meet the same stripes in the same
/// order, each one last touched a whole pass (far more than the caches hold) earlier.
/// Returns the data bytes processed and the time taken.
fn run_slice(stripes: &mut [u8], kind: ParityKind, side: Side) -> (usize, Duration) {
    assert!(stripes.len() >= STRIPE_BYTES);
    assert_eq!(stripes.len() % STRIPE_BYTES, 0);
    let started = Instant::now();
    let mut bytes = 0usize;
    loop {
        for stripe in stripes.chunks_exact_mut(STRIPE_BYTES) {
            generate(stripe, kind, side);
            bytes += DATA_MEMBERS * CHUNK_BYTES;
        }
        let elapsed = started.elapsed();
        if elapsed >= SLICE {
            return (bytes, elapsed);
        }
    }
}

fn generate(stripe: &mut [u8], kind: ParityKind, side: Side) {
    const ACCEPTED: &str = "ISA-L accepts aligned 8-chunk stripes of 64 KiB";
    let (data, p, q) = split_stripe(stripe);
    match (side, kind) {
        (Side::Ours, ParityKind::P) => amf_parity::gen_p(&data, p),
        (Side::Ours, ParityKind::Pq) => amf_parity::gen_pq(&data, p, q),
        (Side::Isal, ParityKind::P) => isal::xor_gen(&data, p).expect(ACCEPTED),
        (Side::Isal, ParityKind::Pq) => isal::pq_gen(&data, p, q).expect(ACCEPTED),
    }
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[values.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_run_reports_four_positive_rows() {
        let options = ParityBenchOptions {
            memory_bytes: 2 * STRIPE_BYTES as u64,
            min_seconds: 0.0,
        };
        let report = run_parity(&options);
        assert_eq!(report.results.len(), 4);
        for row in &report.results {
            assert!(row.ours_gbps > 0.0, "{row:?}");
            assert_eq!(row.data_members, 8);
            assert_eq!(row.chunk, 65536);
            assert_eq!(row.isal_gbps.is_some(), isal::available());
            assert!(row.isal_gbps.is_none_or(|gbps| gbps > 0.0), "{row:?}");
            assert!(row.ratio.is_none_or(|ratio| ratio > 0.0), "{row:?}");
        }
        let json = serde_json::to_value(&report).expect("serializes");
        let first = &json["results"][0];
        assert_eq!(first["kernel"], "p");
        assert_eq!(first["placement"], "cache");
        assert_eq!(json["results"][3]["kernel"], "pq");
        assert_eq!(json["results"][3]["placement"], "memory");
        assert!(render_table(&report).contains("memory"));
    }

    #[test]
    fn absent_isal_is_null_in_json_and_named_in_the_table() {
        let row = ParityBenchRow {
            kernel: ParityKind::Pq,
            data_members: 8,
            chunk: 65536,
            placement: Placement::Memory,
            ours_gbps: 1.5,
            isal_gbps: None,
            ratio: None,
            ours_kernel: "scalar".to_string(),
        };
        let report = ParityBenchReport { results: vec![row] };
        let json = serde_json::to_string(&report).expect("serializes");
        assert!(json.contains(r#""isal_gbps":null,"ratio":null"#), "{json}");
        assert!(json.starts_with(r#"{"results":[{"kernel":"pq","data_members":8"#));
        assert!(render_table(&report).contains("ISA-L not found"));
    }

    #[test]
    fn default_cycles_over_at_least_512_mib() {
        let options = ParityBenchOptions::default();
        let count = stripe_count(options.memory_bytes);
        assert!(count * STRIPE_BYTES >= 512 << 20);
        assert_eq!(stripe_count(0), 1);
    }
}
