//! `amf-sim`: run the deterministic simulator over seeds, or replay one with a trace.
//!
//! `amf-sim [--seeds A..B | --seed N] [--amfs N] [--steps N] [--no-faults]
//!          [--workload mixed|own-ranges|hot-stripe] [--trace]`

use std::process::ExitCode;

use amf_sim::{Mutation, SimOptions, Workload};

fn parse_range(text: &str) -> Option<std::ops::Range<u64>> {
    let (start, end) = text.split_once("..")?;
    Some(start.parse().ok()?..end.parse().ok()?)
}

fn main() -> ExitCode {
    let mut options = SimOptions::default();
    let mut seeds = 0..100;
    let mut single = None;
    let mut trace = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_default();
        match arg.as_str() {
            "--seed" => single = value().parse().ok(),
            "--seeds" => match parse_range(&value()) {
                Some(range) => seeds = range,
                None => return usage("--seeds wants A..B"),
            },
            "--amfs" => options.amfs = value().parse().ok(),
            "--steps" => options.steps = value().parse().ok(),
            "--no-faults" => options.faults = false,
            "--trace" => trace = true,
            "--workload" => {
                options.workload = match value().as_str() {
                    "mixed" => Workload::Mixed,
                    "own-ranges" => Workload::OwnRanges,
                    "hot-stripe" => Workload::HotStripe,
                    other => return usage(&format!("unknown workload {other}")),
                }
            }
            "--mutation" => {
                options.mutation = match value().as_str() {
                    "SkipInvalidate" => Mutation::SkipInvalidate,
                    "AckBeforeReplication" => Mutation::AckBeforeReplication,
                    "ReplayWithoutData" => Mutation::ReplayWithoutData,
                    "TwoOwners" => Mutation::TwoOwners,
                    other => return usage(&format!("unknown mutation {other}")),
                }
            }
            other => return usage(&format!("unknown argument {other}")),
        }
    }
    if let Some(seed) = single {
        return match amf_sim::replay(seed, &options, trace) {
            Ok(report) => {
                println!("seed {seed} passed: {:?}", report.counters);
                ExitCode::SUCCESS
            }
            Err(failure) => {
                eprintln!(
                    "seed {seed} failed at step {}: {}",
                    failure.step, failure.message
                );
                eprintln!("replay: {}", failure.replay);
                ExitCode::FAILURE
            }
        };
    }
    let summary = amf_sim::run_seeds(seeds, &options);
    print!("{}", summary.render());
    if summary.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn usage(error: &str) -> ExitCode {
    eprintln!("amf-sim: {error}");
    eprintln!(
        "usage: amf-sim [--seeds A..B | --seed N] [--amfs N] [--steps N] [--no-faults] \
         [--workload mixed|own-ranges|hot-stripe] [--trace]"
    );
    ExitCode::from(2)
}
