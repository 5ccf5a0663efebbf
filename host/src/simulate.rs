//! `amf sim`: the deterministic simulator (crate `amf-sim`) from the command line: run a
//! range of seeds, or replay one seed, optionally with a readable trace.

use amf_sim::{GeometryChoice, Mutation, SimOptions, Workload};
use clap::{Args, ValueEnum};
use std::ops::Range;
use std::process::ExitCode;

/// Arguments of `amf sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Seeds to run, as A..B (B excluded).
    #[arg(long, value_name = "A..B", value_parser = parse_seed_range, default_value = "0..100", conflicts_with = "seed")]
    seeds: Range<u64>,
    /// Replay one seed (what a failure prints).
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// With --seed: print every step.
    #[arg(long, requires = "seed")]
    trace: bool,
    /// Fix the number of AMFs (2..=4) instead of letting the seed pick.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(2..=4))]
    amfs: Option<u8>,
    /// Fix the number of steps of the safety phase.
    #[arg(long, value_name = "N")]
    steps: Option<u64>,
    /// No crashes, record corruption or member failures.
    #[arg(long)]
    no_faults: bool,
    /// What the hosts do.
    #[arg(long, value_enum, default_value = "mixed")]
    workload: WorkloadArg,
    /// Which geometry: any (the seed picks; one in eight the product's default), small
    /// (8 KiB chunks, 6 stripes), product-default (RAID-6, 6 members, 64 KiB chunks: one
    /// intent record a stripe) or wide (128 KiB chunks: two records a stripe).
    #[arg(long, value_enum, default_value = "any")]
    geometry: GeometryArg,
    /// Also crash AMFs mid-write on degraded stripes wider than one intent record
    /// (--geometry wide): injects the degraded write hole, a known limit (docs/PROTOCOL.md).
    #[arg(long)]
    wide_stripe_write_hole: bool,
    /// Also crash the last AMF that knows a failed member while a path failure lasts
    /// (nobody then remembers it: a known limit, docs/PROTOCOL.md).
    #[arg(long)]
    crash_last_failure_knower: bool,
    /// Also let an AMF's member writes issued before a fabric restart land after another
    /// AMF rejoined (a known limit, docs/PROTOCOL.md).
    #[arg(long)]
    late_fenced_writes: bool,
    /// Break the protocol on purpose, to see the checkers catch it (for testing the
    /// simulator itself).
    #[arg(long, value_enum, default_value = "none", hide = true)]
    mutation: MutationArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum WorkloadArg {
    Mixed,
    OwnRanges,
    HotStripe,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum GeometryArg {
    Any,
    Small,
    ProductDefault,
    Wide,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum MutationArg {
    None,
    SkipInvalidate,
    AckBeforeReplication,
    ReplayWithoutData,
    TwoOwners,
    DegradedRecordWithoutImage,
    AdmitJoinerDuringFence,
    PatchOutsideOwnership,
    UnfencedDeath,
    ReleaseRebuiltBeforeProgress,
    GrantIgnoresRebuildProgress,
    UnfencedRejoin,
}

/// Parses `A..B` with `A < B`.
pub fn parse_seed_range(text: &str) -> Result<Range<u64>, String> {
    let wanted = || format!("'{text}' is not a seed range A..B with A < B");
    let (start, end) = text.split_once("..").ok_or_else(wanted)?;
    let (start, end) = (
        start.parse().map_err(|_| wanted())?,
        end.parse().map_err(|_| wanted())?,
    );
    if start < end {
        Ok(start..end)
    } else {
        Err(wanted())
    }
}

fn options(args: &SimArgs) -> SimOptions {
    SimOptions {
        amfs: args.amfs,
        steps: args.steps,
        faults: !args.no_faults,
        workload: match args.workload {
            WorkloadArg::Mixed => Workload::Mixed,
            WorkloadArg::OwnRanges => Workload::OwnRanges,
            WorkloadArg::HotStripe => Workload::HotStripe,
        },
        geometry: match args.geometry {
            GeometryArg::Any => GeometryChoice::Any,
            GeometryArg::Small => GeometryChoice::Small,
            GeometryArg::ProductDefault => GeometryChoice::ProductDefault,
            GeometryArg::Wide => GeometryChoice::Wide,
        },
        wide_stripe_write_hole: args.wide_stripe_write_hole,
        crash_last_failure_knower: args.crash_last_failure_knower,
        late_fenced_writes: args.late_fenced_writes,
        mutation: match args.mutation {
            MutationArg::None => Mutation::None,
            MutationArg::SkipInvalidate => Mutation::SkipInvalidate,
            MutationArg::AckBeforeReplication => Mutation::AckBeforeReplication,
            MutationArg::ReplayWithoutData => Mutation::ReplayWithoutData,
            MutationArg::TwoOwners => Mutation::TwoOwners,
            MutationArg::DegradedRecordWithoutImage => Mutation::DegradedRecordWithoutImage,
            MutationArg::AdmitJoinerDuringFence => Mutation::AdmitJoinerDuringFence,
            MutationArg::PatchOutsideOwnership => Mutation::PatchOutsideOwnership,
            MutationArg::UnfencedDeath => Mutation::UnfencedDeath,
            MutationArg::ReleaseRebuiltBeforeProgress => Mutation::ReleaseRebuiltBeforeProgress,
            MutationArg::GrantIgnoresRebuildProgress => Mutation::GrantIgnoresRebuildProgress,
            MutationArg::UnfencedRejoin => Mutation::UnfencedRejoin,
        },
    }
}

/// Runs `amf sim`; exit code 1 when any seed fails.
pub fn run(args: &SimArgs) -> ExitCode {
    let options = options(args);
    if let Some(seed) = args.seed {
        return match amf_sim::replay(seed, &options, args.trace) {
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
                ExitCode::from(1)
            }
        };
    }
    let summary = amf_sim::run_seeds(args.seeds.clone(), &options);
    if let Err(error) = crate::cli::emit(&summary.render()) {
        eprintln!("amf: error: {error}");
    }
    if summary.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_seed_range;

    #[test]
    fn seed_ranges_parse_or_say_why() {
        assert_eq!(parse_seed_range("0..100"), Ok(0..100));
        assert!(parse_seed_range("5..5").is_err());
        assert!(parse_seed_range("9..2").is_err());
        assert!(parse_seed_range("a..b").is_err());
        assert!(parse_seed_range("100").is_err());
    }
}
