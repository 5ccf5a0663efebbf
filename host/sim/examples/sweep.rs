//! A seed sweep without the `amf` binary (which needs every host crate to build):
//! `cargo run -p amf-sim --release --example sweep -- 0..100000 [any|small|product-default]
//! [--wide-stripe-write-hole] [--crash-last-failure-knower] [--late-fenced-writes] [--unfenced-rejoin]`
//! (a single seed instead of a range: replay it with a trace).
//! `scripts/sim-sweep` (through `amf sim`) is the usual way.

use std::process::ExitCode;

use amf_sim::{GeometryChoice, Mutation, SimOptions, run_seeds};

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |args: &mut Vec<String>, name: &str| {
        let found = args.iter().any(|arg| arg == name);
        args.retain(|arg| arg != name);
        found
    };
    let wide_stripe_write_hole = flag(&mut args, "--wide-stripe-write-hole");
    let crash_last_failure_knower = flag(&mut args, "--crash-last-failure-knower");
    let late_fenced_writes = flag(&mut args, "--late-fenced-writes");
    // The mutation `amf sim --mutation unfenced-rejoin` runs.
    let mutation = if flag(&mut args, "--unfenced-rejoin") {
        Mutation::UnfencedRejoin
    } else {
        Mutation::None
    };
    let range = args.first().map_or("0..100", String::as_str);
    if let Ok(seed) = range.parse::<u64>() {
        // One seed, traced.
        let options = SimOptions {
            geometry: geometry(args.get(1).map(String::as_str)).unwrap_or_default(),
            wide_stripe_write_hole,
            crash_last_failure_knower,
            late_fenced_writes,
            mutation,
            ..SimOptions::default()
        };
        return match amf_sim::replay(seed, &options, true) {
            Ok(_) => ExitCode::SUCCESS,
            Err(failure) => {
                println!("FAILED at step {}: {}", failure.step, failure.message);
                ExitCode::from(1)
            }
        };
    }
    let Some((start, end)) = range
        .split_once("..")
        .and_then(|(start, end)| Some((start.parse::<u64>().ok()?, end.parse::<u64>().ok()?)))
    else {
        eprintln!(
            "usage: sweep A..B|SEED [any|small|product-default] [--wide-stripe-write-hole] \
             [--crash-last-failure-knower] [--late-fenced-writes] [--unfenced-rejoin]"
        );
        return ExitCode::from(2);
    };
    let Some(geometry) = geometry(args.get(1).map(String::as_str)) else {
        eprintln!("unknown geometry");
        return ExitCode::from(2);
    };
    let options = SimOptions {
        geometry,
        wide_stripe_write_hole,
        crash_last_failure_knower,
        late_fenced_writes,
        mutation,
        ..SimOptions::default()
    };
    let summary = run_seeds(start..end, &options);
    print!("{}", summary.render());
    if summary.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn geometry(name: Option<&str>) -> Option<GeometryChoice> {
    match name {
        None | Some("any") => Some(GeometryChoice::Any),
        Some("small") => Some(GeometryChoice::Small),
        Some("product-default") => Some(GeometryChoice::ProductDefault),
        Some("wide") => Some(GeometryChoice::Wide),
        Some(_) => None,
    }
}
