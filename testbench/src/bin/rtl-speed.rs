//! Simulated clock cycles per second of the Verilated card modules, with rust-hdl's own
//! simulator running the same module in the same run as the reference.
//!
//! usage: rtl-speed [--json]
//!
//! The parity engines stream random beats at full speed (8 data chunks per column); the
//! fabric carries random broadcasts from every port. Prints a table, or JSON with --json.
#![forbid(unsafe_code)]

use hdl::parity_engine::ParityEngine;
use hdl::sim::{bits_from_bytes, rising_edge, settle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_hdl::prelude::*;
use std::process::ExitCode;
use std::time::Instant;
use testbench::fabric::{FabricModel, FabricPacing, Message, Traffic};
use testbench::parity::{Pacing, ParityEngineModel, Stripe};
use testbench::rtl::TestbenchError;

/// Cycles each Verilated measurement runs; rust-hdl's runs a tenth (it is that much slower).
const VERILATOR_CYCLES: u64 = 2_000_000;
const RUST_HDL_CYCLES: u64 = VERILATOR_CYCLES / 10;
/// Data chunks per stripe column in the parity workload.
const CHUNKS: usize = 8;

/// One row of the table.
struct Measurement {
    module: String,
    verilator_cycles_per_second: f64,
    rust_hdl_cycles_per_second: Option<f64>,
}

fn per_second(cycles: u64, started: Instant) -> f64 {
    cycles as f64 / started.elapsed().as_secs_f64()
}

fn parity_stripes(beat_bytes: usize, cycles: u64, rng: &mut ChaCha8Rng) -> Vec<Stripe> {
    let columns_per_stripe = 4;
    let stripes = cycles as usize / (CHUNKS * columns_per_stripe);
    (0..stripes)
        .map(|_| Stripe {
            chunks: (0..CHUNKS)
                .map(|_| {
                    (0..beat_bytes * columns_per_stripe)
                        .map(|_| rng.r#gen())
                        .collect()
                })
                .collect(),
            pq: true,
        })
        .collect()
}

fn verilator_parity(width_bits: u32) -> Result<f64, TestbenchError> {
    let mut engine = ParityEngineModel::new(width_bits)?;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let stripes = parity_stripes(engine.beat_bytes(), VERILATOR_CYCLES, &mut rng);
    let (start_cycles, started) = (engine.cycles(), Instant::now());
    engine.run(&stripes, Pacing::FULL_SPEED, &mut rng);
    Ok(per_second(engine.cycles() - start_cycles, started))
}

fn rust_hdl_parity<const W: usize>() -> f64 {
    let mut uut = ParityEngine::<W>::new();
    uut.connect_all();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let beats: Vec<Bits<W>> = (0..64)
        .map(|_| bits_from_bytes::<W>(&(0..W / 8).map(|_| rng.r#gen()).collect::<Vec<u8>>()))
        .collect();
    uut.in_valid.next = true;
    uut.in_pq.next = true;
    uut.out_ready.next = true;
    let started = Instant::now();
    for cycle in 0..RUST_HDL_CYCLES as usize {
        uut.in_data.next = beats[cycle % beats.len()];
        uut.in_first.next = cycle % CHUNKS == 0;
        uut.in_last.next = cycle % CHUNKS == CHUNKS - 1;
        settle(&mut uut);
        rising_edge(&mut uut, |u| &mut u.clock);
    }
    per_second(RUST_HDL_CYCLES, started)
}

fn verilator_fabric(ports: usize) -> Result<f64, TestbenchError> {
    let mut fabric = FabricModel::new(ports)?;
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut traffic = Traffic::new(ports);
    let pacing = FabricPacing {
        offer_percent: 100,
        ready_percent: 100,
    };
    let cycles = VERILATOR_CYCLES / 4;
    for outbox in &mut traffic.outbox {
        outbox.extend((0..cycles).map(|payload| Message {
            kind: shared_regs::fabric::MessageKind::Broadcast,
            target: shared_regs::fabric::PORT_BROADCAST,
            payload,
            sram_offset: 0,
        }));
    }
    let started = Instant::now();
    for _ in 0..cycles {
        fabric.cycle(&mut traffic, pacing, &mut rng);
        traffic.inbox.iter_mut().for_each(Vec::clear);
    }
    Ok(per_second(cycles, started))
}

fn measure() -> Result<Vec<Measurement>, TestbenchError> {
    Ok(vec![
        Measurement {
            module: "parity_engine_64".into(),
            verilator_cycles_per_second: verilator_parity(64)?,
            rust_hdl_cycles_per_second: Some(rust_hdl_parity::<64>()),
        },
        Measurement {
            module: "parity_engine_256".into(),
            verilator_cycles_per_second: verilator_parity(256)?,
            rust_hdl_cycles_per_second: Some(rust_hdl_parity::<256>()),
        },
        Measurement {
            module: "parity_engine_512".into(),
            verilator_cycles_per_second: verilator_parity(512)?,
            rust_hdl_cycles_per_second: Some(rust_hdl_parity::<512>()),
        },
        Measurement {
            module: "broadcast_fabric_4".into(),
            verilator_cycles_per_second: verilator_fabric(4)?,
            rust_hdl_cycles_per_second: None,
        },
        Measurement {
            module: "broadcast_fabric_8".into(),
            verilator_cycles_per_second: verilator_fabric(8)?,
            rust_hdl_cycles_per_second: None,
        },
    ])
}

fn print_table(rows: &[Measurement]) {
    println!(
        "{:<20} {:>22} {:>22} {:>8}",
        "module", "verilator cycles/s", "rust-hdl cycles/s", "ratio"
    );
    for row in rows {
        let (reference, ratio) = match row.rust_hdl_cycles_per_second {
            Some(reference) => (
                format!("{reference:.0}"),
                format!("{:.0}x", row.verilator_cycles_per_second / reference),
            ),
            None => ("-".into(), "-".into()),
        };
        println!(
            "{:<20} {:>22.0} {:>22} {:>8}",
            row.module, row.verilator_cycles_per_second, reference, ratio
        );
    }
}

fn print_json(rows: &[Measurement]) {
    let entries: Vec<String> = rows
        .iter()
        .map(|row| {
            let reference = row.rust_hdl_cycles_per_second.map_or("null".into(), |r| format!("{r:.0}"));
            format!(
                "{{\"module\":\"{}\",\"verilator_cycles_per_second\":{:.0},\"rust_hdl_cycles_per_second\":{}}}",
                row.module, row.verilator_cycles_per_second, reference
            )
        })
        .collect();
    println!("[{}]", entries.join(","));
}

fn main() -> ExitCode {
    let json = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--json") => true,
        Some(other) => {
            eprintln!("rtl-speed: unknown argument {other:?}\nusage: rtl-speed [--json]");
            return ExitCode::from(2);
        }
    };
    match measure() {
        Ok(rows) if json => print_json(&rows),
        Ok(rows) => print_table(&rows),
        Err(error) => {
            eprintln!("rtl-speed: {error}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
