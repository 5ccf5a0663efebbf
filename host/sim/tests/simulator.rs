//! The simulator over many seeds, the checkers against deliberately broken protocols, and
//! the ratios the sharing determination buys.

use std::ops::Range;

use amf_sim::{GeometryChoice, Mutation, SimOptions, SimSummary, Workload, run_seeds};

fn passes(seeds: Range<u64>, options: &SimOptions) -> SimSummary {
    let summary = run_seeds(seeds, options);
    println!("{}", summary.render());
    assert!(summary.failures.is_empty(), "{}", summary.render());
    summary
}

#[test]
fn two_thousand_seeds_with_faults() {
    let summary = passes(0..2000, &SimOptions::default());
    assert!(summary.totals.crashes > 1000, "the swarm crashes AMFs");
    assert!(
        summary.totals.interrupted_writes > 100,
        "crashes land mid-write"
    );
    assert!(summary.totals.protocol.replays > 100);
    assert!(
        summary.totals.zombie_writes > 100,
        "a dead AMF's issued member writes land"
    );
    assert!(
        summary.totals.protocol.records_corrupt > 10,
        "corrupt records are met"
    );
    assert!(summary.totals.protocol.forwards > 100);
    assert!(summary.totals.member_failures > 100, "runs go degraded");
    assert!(summary.totals.member_errors > 100, "members fail I/O");
    assert!(
        summary.totals.path_failures > 100,
        "members fail I/O for one AMF only"
    );
    assert!(
        summary.totals.protocol.member_errors > 100,
        "member I/O errors are met and redone degraded"
    );
    assert!(
        summary.totals.degraded_crashes > 100,
        "AMFs crash while members are lost (the degraded write hole)"
    );
    assert!(summary.totals.protocol.widened > 100);
    assert!(
        summary.totals.patches_completed > 1000,
        "hosts write sub-block patches"
    );
    assert!(
        summary.totals.large_requests_completed > 500,
        "hosts read and write more than a stripe at once"
    );
    assert!(
        summary.totals.rebuilds_completed > 100,
        "failed members are rebuilt online"
    );
    assert!(summary.totals.rebuilds_stopped > 100, "joins stop rebuilds");
    assert!(summary.totals.scrubs_completed > 500, "hosts scrub stripes");
    assert!(
        summary.totals.fabric_restarts > 100,
        "the fabric restarts (every link lost at once)"
    );
    assert!(
        summary.totals.rejoins > 200,
        "AMFs rejoin as new incarnations"
    );
    assert!(
        summary.totals.requests_resubmitted > 500,
        "held requests are resubmitted with their ids"
    );
    assert!(
        summary.totals.fenced_writes > 50,
        "member writes issued before the link loss land before the rejoin"
    );
}

#[test]
fn fixed_amf_counts_and_no_faults() {
    for amfs in [2, 3, 4] {
        let options = SimOptions {
            amfs: Some(amfs),
            ..SimOptions::default()
        };
        passes(
            10_000 + u64::from(amfs) * 1000..10_300 + u64::from(amfs) * 1000,
            &options,
        );
    }
    let options = SimOptions {
        faults: false,
        ..SimOptions::default()
    };
    let summary = passes(20_000..20_300, &options);
    assert_eq!(summary.totals.crashes, 0);
}

/// The first seed of `seeds` the simulator fails under `mutation`.
fn first_failure(mutation: Mutation, seeds: Range<u64>) -> u64 {
    let options = SimOptions {
        mutation,
        ..SimOptions::default()
    };
    for seed in seeds.clone() {
        if let Err(failure) = amf_sim::replay(seed, &options, false) {
            println!("{mutation:?} caught by seed {seed}: {}", failure.message);
            assert!(failure.replay.contains(&format!("--seed {seed}")));
            return seed;
        }
    }
    panic!("{mutation:?} survived seeds {seeds:?}: the checkers have no teeth");
}

#[test]
fn skipping_the_invalidation_is_caught() {
    first_failure(Mutation::SkipInvalidate, 0..20);
}

#[test]
fn two_owners_of_a_stripe_are_caught() {
    first_failure(Mutation::TwoOwners, 0..20);
}

#[test]
fn acknowledging_before_replication_is_caught() {
    first_failure(Mutation::AckBeforeReplication, 0..300);
}

#[test]
fn replaying_without_the_records_data_is_caught() {
    first_failure(Mutation::ReplayWithoutData, 0..300);
}

#[test]
fn a_degraded_record_without_the_lost_chunks_image_is_caught() {
    first_failure(Mutation::DegradedRecordWithoutImage, 0..2000);
}

#[test]
fn admitting_a_port_that_joins_during_recovery_at_once_is_caught() {
    first_failure(Mutation::AdmitJoinerDuringFence, 2400..3400);
}

#[test]
fn patching_a_block_read_outside_exclusive_ownership_is_caught() {
    first_failure(Mutation::PatchOutsideOwnership, 0..300);
}

#[test]
fn member_writes_of_an_unfenced_dead_amf_are_caught() {
    first_failure(Mutation::UnfencedDeath, 0..300);
}

/// The driver answers an acquire of a rebuilt stripe before its `RebuildProgress` is
/// ordered: the next owner writes it degraded, leaving the replacement stale below the
/// checkpoint. First caught by seed 13 (a read of the stale replacement).
#[test]
fn releasing_a_rebuilt_stripe_before_its_progress_is_caught() {
    first_failure(Mutation::ReleaseRebuiltBeforeProgress, 0..300);
}

/// A grant does not wait for the `RebuildProgress` its replier had taken: the grantee
/// writes a stripe the checkpoint has passed degraded. Rarer: the write must be issued
/// before the grantee takes that progress (a degraded write that reads its stripe
/// first is usually issued after it). First caught by seed 471.
#[test]
fn a_grant_ignoring_a_replier_s_rebuild_progress_is_caught() {
    first_failure(Mutation::GrantIgnoresRebuildProgress, 0..2000);
}

/// An AMF that lost its fabric link does not fence itself: a member write of its old
/// incarnation lands after it rejoined and resynced the stripe. First caught by seed 55
/// (parity not matching data at rest), which passes unmutated.
#[test]
fn a_rejoin_without_the_fence_is_caught() {
    let seed = first_failure(Mutation::UnfencedRejoin, 0..300);
    amf_sim::replay(seed, &SimOptions::default(), false).expect("passes unmutated");
}

#[test]
fn the_product_default_geometry_passes() {
    let options = SimOptions {
        geometry: GeometryChoice::ProductDefault,
        ..SimOptions::default()
    };
    let summary = passes(30_000..30_200, &options);
    assert!(summary.totals.crashes > 100);
}

/// A known limit kept visible: on a stripe wider than one intent record (the wide
/// geometry: 128 blocks a stripe) a degraded stripe is not widened, so a crash mid-write
/// there loses data (docs/PROTOCOL.md "Known limits", the degraded write hole). CI keeps
/// that fault out (`SimOptions::wide_stripe_write_hole` off); once the core closes the
/// hole this test fails: then turn the option on by default and delete this test.
#[test]
fn the_wide_stripe_write_hole_is_still_open() {
    let options = SimOptions {
        geometry: GeometryChoice::Wide,
        wide_stripe_write_hole: true,
        ..SimOptions::default()
    };
    // Seed 12 (seeds 150..300 before fabric restarts changed the runs' draws).
    known_gap_still_open(&options, 0..20);
}

/// A restarted AMF starts knowing no failed member; it learns them from its peers'
/// replies (each carries its sender's failed members) before it uses a grant, so a
/// restart while a member is unreachable from some AMF only (a path failure) no longer
/// reads the member's stale contents. Seed 1620 read stale data before (`read 16 via
/// amf0: block 4 sector 0 holds block 6 sector 0's data`), and 47 of 2,000 seeds
/// failed; CI kept such restarts out until then.
#[test]
fn a_restart_after_a_path_failure_reads_no_stale_data() {
    let options = SimOptions::default();
    amf_sim::replay(1620, &options, false).expect("seed 1620");
    let summary = passes(1600..1700, &options);
    assert!(summary.totals.path_failures > 0 && summary.totals.crashes > 0);
}

/// Seed 39848 of a 100,000-seed sweep (RAID-6, 4 members, two path failures, no crash):
/// AMF 0's write met member 1's error (a member only AMF 0 cannot reach), was redone
/// degraded around it (member 1 kept its old chunk), and AMF 0 then answered an acquire
/// of AMF 2's ordered before `MemberFailed(1)`; AMF 2, granted before it took that,
/// read member 1's stale chunk ("acknowledged write lost at rest: block 10 sector 0
/// holds block 8 sector 0's data"). A `Reply` now carries its sender's failed members,
/// and the grantee waits until it has taken them.
#[test]
fn a_grant_waits_for_the_replier_s_failed_members() {
    amf_sim::replay(39848, &SimOptions::default(), false).expect("seed 39848");
}

/// Seed 17535 of the 100,000-seed sweep: AMF 0 sent an intent record to port 1 just as
/// port 1 died and restarted; the fabric does not order a sender's SRAM writes with its
/// broadcasts, so the record landed in the new incarnation's SRAM after the `Retire`
/// of its op. Never freed, it was replayed over a newer acknowledged write when AMF 0
/// died later. A record whose op the last `Retire` of its slot named is now stale.
#[test]
fn a_record_landing_after_its_retire_is_never_replayed() {
    amf_sim::replay(17535, &SimOptions::default(), false).expect("seed 17535");
}

/// A port that joined after a rebuild ended, then took the rebuilt member failed again,
/// got a `Reply` from a peer that had not taken that failure yet, naming the rebuild as
/// the one that restored the member: its grant waited for the end of a rebuild it would
/// never see, and every stripe behind it hung (seed 10560; seed 12158 with two AMFs;
/// seed 30177 of the product's default geometry). A rebuild a replier names is no
/// longer waited for once the member failed anew after the acquire was ordered.
#[test]
fn a_joiner_does_not_wait_for_a_rebuild_that_ended_before_it_joined() {
    amf_sim::replay(10560, &SimOptions::default(), false).expect("seed 10560");
    let two = SimOptions {
        amfs: Some(2),
        ..SimOptions::default()
    };
    amf_sim::replay(12158, &two, false).expect("seed 12158");
    let product_default = SimOptions {
        geometry: GeometryChoice::ProductDefault,
        ..SimOptions::default()
    };
    amf_sim::replay(30177, &product_default, false).expect("seed 30177");
}

/// A known limit kept visible: the failed members live only in the AMFs' memory, so
/// once every AMF that took a member failed through a path failure dies, a restarted
/// AMF that still reaches the member reads its stale contents (docs/PROTOCOL.md "Known
/// limits", member I/O errors). CI keeps that fault out
/// (`SimOptions::crash_last_failure_knower` off); once the failed members persist this
/// test fails: then turn the option on by default and delete this test.
#[test]
fn crashing_the_last_failure_knower_still_reads_stale_data() {
    let options = SimOptions {
        crash_last_failure_knower: true,
        ..SimOptions::default()
    };
    known_gap_still_open(&options, 1600..1700);
}

/// Seed 464 (RAID-6, 3 AMFs, a fabric restart while member 5 failed for AMF 1 only):
/// AMF 0 rejoined first and rebuilt member 5 alone; AMF 1 rejoined with member 5 failed
/// (its volume's) and got `Reply`s naming the rebuild that had put the member back,
/// ended before it joined: every grant waited for that rebuild's end, and every request
/// hung. A port that starts with a member failed that a replier has in service now
/// orders the failure (`MemberFailed`), and its grant goes on once that is ordered.
#[test]
fn a_rejoin_with_a_member_its_peers_rebuilt_meanwhile_does_not_hang() {
    amf_sim::replay(464, &SimOptions::default(), false).expect("seed 464");
}

/// A known limit kept visible: after a fabric restart the shell's fence waits for an
/// AMF's issued member writes before its own rejoin only; one landing after another AMF
/// rejoined and wrote the stripe loses that write or leaves the stripe's parity stale
/// with no record naming it (docs/PROTOCOL.md "Known limits"). CI assumes every AMF
/// fences before the first rejoin (`SimOptions::late_fenced_writes` off); once the
/// protocol closes the gap this test fails: then turn the option on and delete this.
#[test]
fn a_late_fenced_write_after_another_rejoin_still_breaks_the_stripe() {
    let options = SimOptions {
        late_fenced_writes: true,
        ..SimOptions::default()
    };
    known_gap_still_open(&options, 390..440);
}

/// Asserts that some seed of `seeds` still fails with a known gap's fault let in.
fn known_gap_still_open(options: &SimOptions, seeds: Range<u64>) {
    let failure = seeds
        .clone()
        .find_map(|seed| amf_sim::replay(seed, options, false).err());
    let failure = failure.unwrap_or_else(|| {
        panic!("no seed of {seeds:?} fails any more: the gap is closed (see the comment)")
    });
    println!("seed {} still fails: {}", failure.seed, failure.message);
}

#[test]
fn own_ranges_rarely_broadcast_after_warm_up() {
    let options = SimOptions {
        amfs: Some(3),
        steps: Some(20_000),
        faults: false,
        workload: Workload::OwnRanges,
        ..SimOptions::default()
    };
    let summary = passes(0..5, &options);
    let ratio = summary.broadcasts_per_write();
    println!("own ranges: {ratio:.4} broadcasts per stripe write");
    assert!(ratio < 0.01, "{ratio}");
}

#[test]
fn a_hot_stripe_costs_one_acquire_per_ownership_change() {
    let options = SimOptions {
        amfs: Some(4),
        steps: Some(5_000),
        faults: false,
        workload: Workload::HotStripe,
        ..SimOptions::default()
    };
    let summary = passes(0..5, &options);
    let ratio = summary.acquires_per_ownership_change();
    println!("hot stripe: {ratio:.4} acquires per ownership change");
    assert!(summary.totals.protocol.grants > 500);
    assert!((ratio - 1.0).abs() < 1e-9, "{ratio}");
}

#[test]
fn a_seed_replays_identically() {
    let options = SimOptions::default();
    let first = amf_sim::replay(77, &options, false).unwrap();
    let second = amf_sim::replay(77, &options, false).unwrap();
    assert_eq!(
        format!("{:?}", first.counters),
        format!("{:?}", second.counters)
    );
}
