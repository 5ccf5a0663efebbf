//! Register accesses per second and parity MB/s through the driver, on the `rtl` backend
//! (the Verilated card) next to the `sim` backend (stepped, on this thread: the same
//! conditions) in the same run.
//!
//! usage: card-speed [--json]
//!
//! Registers: `SCRATCH` written and read back through `CardBackend`. Parity: RAID-6 P+Q of
//! 8 data chunks of 4 KiB through `CardParity` (the driver, the rings, DMA); MB/s counts
//! data bytes in. Prints a table, or JSON with --json.
#![forbid(unsafe_code)]

use amf_card::backend::CardBackend;
use amf_card::{Card, CardConfig, CardParity, SimCard, SimConfig};
use amf_parity::ParityEngine;
use shared_regs::regs;
use std::process::ExitCode;
use std::time::Instant;
use testbench::backend::{RtlCard, RtlConfig};

const SRAM_BYTES: u64 = 128 << 10;
const CHUNKS: usize = 8;
const CHUNK_BYTES: usize = 4096;

/// One backend's figures.
struct Row {
    backend: &'static str,
    register_accesses_per_second: f64,
    parity_mb_per_second: f64,
    /// Simulated clock cycles per parity job (rtl only).
    cycles_per_stripe: Option<f64>,
}

type Failure = Box<dyn std::error::Error>;

fn registers_per_second<B: CardBackend>(backend: &mut B, pairs: u32) -> Result<f64, Failure>
where
    B::Error: 'static,
{
    let started = Instant::now();
    for value in 0..pairs {
        backend.write32(regs::SCRATCH, value)?;
        if backend.read32(regs::SCRATCH)? != value {
            return Err(format!("{}: SCRATCH did not read back", backend.name()).into());
        }
    }
    Ok(f64::from(2 * pairs) / started.elapsed().as_secs_f64())
}

fn parity_mb_per_second<B: CardBackend>(
    engine: &mut CardParity<B>,
    stripes: u32,
) -> Result<f64, Failure> {
    let data: Vec<Vec<u8>> = (0..CHUNKS)
        .map(|i| vec![(i as u8).wrapping_mul(37) ^ 0x5A; CHUNK_BYTES])
        .collect();
    let sources: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
    let (mut p, mut q) = (vec![0; CHUNK_BYTES], vec![0; CHUNK_BYTES]);
    let started = Instant::now();
    for _ in 0..stripes {
        engine.compute(&sources, &mut p, Some(&mut q))?;
    }
    let bytes = f64::from(stripes) * (CHUNKS * CHUNK_BYTES) as f64;
    Ok(bytes / 1e6 / started.elapsed().as_secs_f64())
}

/// Register and parity figures of one backend; `cycles` reads its simulated clock, if any.
fn measure<B: CardBackend + std::fmt::Debug>(
    backend: B,
    pairs: u32,
    stripes: u32,
    cycles: fn(&B) -> Option<u64>,
) -> Result<Row, Failure> {
    let mut engine = CardParity::new(Card::open(backend, CardConfig::default())?)?;
    let backend = engine.card_mut().backend_mut();
    let register_accesses_per_second = registers_per_second(backend, pairs)?;
    let before = cycles(engine.card().backend());
    let parity_mb_per_second = parity_mb_per_second(&mut engine, stripes)?;
    let after = cycles(engine.card().backend());
    let cycles_per_stripe = before
        .zip(after)
        .map(|(before, after)| (after - before) as f64 / f64::from(stripes));
    Ok(Row {
        backend: engine.card().backend().name(),
        register_accesses_per_second,
        parity_mb_per_second,
        cycles_per_stripe,
    })
}

fn run() -> Result<Vec<Row>, Failure> {
    let dir = tempfile::tempdir()?;
    let sim = SimCard::open(
        &dir.path().join("sram"),
        SimConfig::new(SRAM_BYTES).stepped(),
    )?;
    let sim_row = measure(sim, 200_000, 2_000, |_| None)?;
    let rtl = RtlCard::new(RtlConfig::default())?;
    let rtl_row = measure(rtl, 20_000, 50, |rtl| Some(rtl.cycles()))?;
    Ok(vec![sim_row, rtl_row])
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<8} {:>22} {:>14} {:>18}",
        "backend", "register accesses/s", "parity MB/s", "cycles per stripe"
    );
    for row in rows {
        let cycles = row
            .cycles_per_stripe
            .map_or("-".to_owned(), |c| format!("{c:.0}"));
        println!(
            "{:<8} {:>22.0} {:>14.2} {:>18}",
            row.backend, row.register_accesses_per_second, row.parity_mb_per_second, cycles
        );
    }
    println!("(RAID-6, {CHUNKS} data chunks of {CHUNK_BYTES} bytes; sim stepped on this thread)");
}

fn print_json(rows: &[Row]) {
    let items: Vec<String> = rows
        .iter()
        .map(|row| {
            let cycles = row.cycles_per_stripe.map_or("null".to_owned(), |c| format!("{c:.0}"));
            format!(
                "{{\"backend\":\"{}\",\"register_accesses_per_second\":{:.0},\"parity_mb_per_second\":{:.3},\"cycles_per_stripe\":{cycles}}}",
                row.backend, row.register_accesses_per_second, row.parity_mb_per_second
            )
        })
        .collect();
    println!(
        "{{\"chunks\":{CHUNKS},\"chunk_bytes\":{CHUNK_BYTES},\"rows\":[{}]}}",
        items.join(",")
    );
}

fn main() -> ExitCode {
    let json = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--json") => true,
        Some(other) => {
            eprintln!("card-speed: unknown argument {other:?}\nusage: card-speed [--json]");
            return ExitCode::FAILURE;
        }
    };
    match run() {
        Ok(rows) if json => print_json(&rows),
        Ok(rows) => print_table(&rows),
        Err(error) => {
            eprintln!("card-speed: {error}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
