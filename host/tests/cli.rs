//! End-to-end tests of the `amf` binary on real member files.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const DATA_OFFSET: u64 = 1 << 20;

fn amf(arguments: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_amf"))
        .args(arguments)
        .output()
        .expect("amf runs")
}

/// Runs `amf` with the words of `line` followed by `paths`.
fn amf_line(line: &str, paths: &[&str]) -> Output {
    let arguments: Vec<&str> = line
        .split_whitespace()
        .chain(paths.iter().copied())
        .collect();
    amf(&arguments)
}

/// [`amf_line`] that must succeed; returns its standard output.
fn amf_ok_line(line: &str, paths: &[&str]) -> String {
    let arguments: Vec<&str> = line
        .split_whitespace()
        .chain(paths.iter().copied())
        .collect();
    amf_ok(&arguments)
}

fn amf_ok(arguments: &[&str]) -> String {
    let output = amf(arguments);
    assert!(
        output.status.success(),
        "amf {arguments:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

fn member(directory: &Path, index: u32) -> PathBuf {
    directory.join(format!("member-{index:02}.img"))
}

fn flip_byte(path: &Path, offset: u64) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, offset).unwrap();
    byte[0] ^= 0x5a;
    file.write_all_at(&byte, offset).unwrap();
}

fn create(directory: &Path, level: &str, members: u32, size: &str) {
    let line = format!("create --level {level} --members {members} --chunk 64K --size {size}");
    amf_ok_line(&line, &[directory.to_str().unwrap()]);
}

fn status_json(directory: &Path) -> serde_json::Value {
    serde_json::from_str(&amf_ok(&["status", "--json", directory.to_str().unwrap()]))
        .expect("status JSON")
}

/// Member holding data chunk `data_index` of `stripe` (docs/FORMAT.md section 3, written
/// out here independently of the RAID core).
fn data_member(level: u32, members: u64, stripe: u64, data_index: u64) -> u32 {
    let p = members - 1 - stripe % members;
    let first = if level == 6 { p + 2 } else { p + 1 };
    ((first + data_index) % members) as u32
}

fn p_member(members: u64, stripe: u64) -> u32 {
    (members - 1 - stripe % members) as u32
}

#[test]
fn create_then_status_json_describes_the_array() {
    let directory = tempfile::tempdir().unwrap();
    create(directory.path(), "6", 6, "256M");
    let status = status_json(directory.path());
    assert_eq!(status["level"], 6);
    assert_eq!(status["member_count"], 6);
    assert_eq!(status["chunk_bytes"], 65536);
    assert_eq!(status["health"], "clean");
    assert_eq!(status["generation"], 1);
    let member_data_bytes = (256u64 << 20) - DATA_OFFSET;
    assert_eq!(status["member_data_bytes"], member_data_bytes);
    assert_eq!(status["volume_bytes"], member_data_bytes * 4);
    let members = status["members"].as_array().unwrap();
    assert_eq!(members.len(), 6);
    for (index, member) in members.iter().enumerate() {
        assert_eq!(member["index"], index);
        assert_eq!(member["state"], "active");
    }
    let text = amf_ok(&["status", directory.path().to_str().unwrap()]);
    assert!(
        text.contains("RAID-6") && text.contains("member-05.img"),
        "{text}"
    );
}

#[test]
fn corrupt_superblock_fails_status_naming_the_member() {
    let directory = tempfile::tempdir().unwrap();
    create(directory.path(), "6", 6, "8M");
    flip_byte(&member(directory.path(), 2), 40);
    let output = amf(&["status", directory.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("member-02.img") && stderr.contains("checksum"),
        "{stderr}"
    );
}

#[test]
fn foreign_file_is_named_as_foreign() {
    let directory = tempfile::tempdir().unwrap();
    create(directory.path(), "5", 3, "8M");
    std::fs::write(member(directory.path(), 1), vec![0x11u8; 8192]).unwrap();
    let output = amf(&["status", directory.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("member-01.img") && stderr.contains("no amflink superblock"),
        "{stderr}"
    );
}

#[test]
fn member_of_another_array_is_refused() {
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    create(first.path(), "5", 3, "8M");
    create(second.path(), "5", 3, "8M");
    let foreign = member(second.path(), 1);
    let output = amf(&[
        "status",
        member(first.path(), 0).to_str().unwrap(),
        foreign.to_str().unwrap(),
        member(first.path(), 2).to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("array_uuid") && stderr.contains("another array"),
        "{stderr}"
    );
}

#[test]
fn create_refuses_an_existing_array_without_force() {
    let directory = tempfile::tempdir().unwrap();
    create(directory.path(), "6", 4, "8M");
    let before = status_json(directory.path())["array_uuid"].clone();
    let path = directory.path().to_str().unwrap();
    let output = amf_line("create --level 6 --members 4 --size 8M", &[path]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--force"));
    assert_eq!(
        status_json(directory.path())["array_uuid"],
        before,
        "refused create changed nothing"
    );
    amf_ok_line("create --level 5 --members 3 --size 8M --force", &[path]);
    let after = status_json(directory.path());
    assert_ne!(after["array_uuid"], before);
    assert_eq!(
        after["member_count"], 3,
        "leftover members of the wider array were removed"
    );
}

/// Writes the same seeded random bytes into the data chunks of `stripes` (leaving their
/// parity stale) and flips the same parity bytes elsewhere, on each array in `directories`.
fn corrupt_alike(directories: &[&Path], members: u64, stripes: std::ops::Range<u64>) {
    use rand::{RngCore, SeedableRng};
    for directory in directories {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for stripe in stripes.clone() {
            for data_index in 0..members - 2 {
                let mut bytes = vec![0u8; 65536];
                rng.fill_bytes(&mut bytes);
                let path = member(directory, data_member(6, members, stripe, data_index));
                let file = OpenOptions::new().write(true).open(path).unwrap();
                file.write_all_at(&bytes, DATA_OFFSET + stripe * 65536)
                    .unwrap();
            }
        }
        // P of one stripe, Q of another, among chunks of zeros.
        flip_byte(
            &member(directory, p_member(members, 40)),
            DATA_OFFSET + 40 * 65536 + 999,
        );
        let q_member = (p_member(members, 41) + 1) % members as u32;
        flip_byte(
            &member(directory, q_member),
            DATA_OFFSET + 41 * 65536 + 65535,
        );
    }
}

/// Every member's data area (after the first `DATA_OFFSET` bytes), in member order.
fn data_areas(directory: &Path, members: u32) -> Vec<Vec<u8>> {
    (0..members)
        .map(|index| {
            std::fs::read(member(directory, index)).unwrap()[DATA_OFFSET as usize..].to_vec()
        })
        .collect()
}

#[test]
fn repair_through_the_sim_card_writes_the_hosts_bytes() {
    let scratch = tempfile::tempdir().unwrap();
    let (on_host, on_card) = (scratch.path().join("host"), scratch.path().join("card"));
    let members = 5u64;
    for directory in [&on_host, &on_card] {
        create(directory, "6", members as u32, "8M");
    }
    corrupt_alike(&[&on_host, &on_card], members, 3..9);
    let sram = scratch.path().join("card.sram");
    let card_spec = format!("sim:{}", sram.display());
    let (host_code, host_report) = scrub_json(&on_host, &["--repair"]);
    let (card_code, card_report) = scrub_json(&on_card, &["--repair", "--card", &card_spec]);
    assert_eq!(host_report["parity_engine"], "host");
    assert_eq!(card_report["parity_engine"], "card:sim");
    assert_eq!((host_code, card_code), (Some(1), Some(1)));
    assert_eq!(host_report["mismatches"], card_report["mismatches"]);
    assert_eq!(
        host_report["mismatches"].as_array().unwrap().len(),
        2 * 6 + 2,
        "P and Q of six random stripes, one P, one Q"
    );
    assert_eq!(card_report["repaired"], true);
    assert_eq!(
        std::fs::metadata(&sram).unwrap().len(),
        64 << 20,
        "a missing SRAM file is created with the default size"
    );
    let (host_areas, card_areas) = (
        data_areas(&on_host, members as u32),
        data_areas(&on_card, members as u32),
    );
    for (index, (host_area, card_area)) in host_areas.iter().zip(&card_areas).enumerate() {
        assert!(host_area == card_area, "member {index}'s data area differs");
    }
    // The card's SRAM file is reused, and the repaired array scrubs clean through it.
    let text = amf_ok(&["scrub", "--card", &card_spec, on_card.to_str().unwrap()]);
    assert!(
        text.contains("0 mismatches found") && text.contains("parity engine: card:sim"),
        "{text}"
    );
}

#[test]
fn bad_card_spec_is_a_one_line_error() {
    let directory = tempfile::tempdir().unwrap();
    create(directory.path(), "5", 3, "8M");
    for spec in ["bogus", "sim:", "Host", "rtl:/dev/null"] {
        let output = amf(&["scrub", "--card", spec, directory.path().to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(2), "--card {spec}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains("--card") && stderr.contains(spec),
            "{stderr}"
        );
        assert!(
            output.stdout.is_empty(),
            "nothing scrubbed for --card {spec}"
        );
    }
}

#[test]
fn clean_array_scrubs_clean() {
    let directory = tempfile::tempdir().unwrap();
    create(directory.path(), "6", 6, "8M");
    let output = amf(&["scrub", "--json", directory.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["mismatches"].as_array().unwrap().len(), 0);
    assert_eq!(report["stripes_checked"], report["stripes"]);
    assert_eq!(report["stripes"], 112);
}

fn scrub_json(directory: &Path, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut arguments = vec!["scrub", "--json"];
    arguments.extend_from_slice(extra);
    arguments.push(directory.to_str().unwrap());
    let output = amf(&arguments);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&output.stderr)));
    (output.status.code(), report)
}

fn scrub_mismatches(directory: &Path, extra: &[&str]) -> (Option<i32>, Vec<(u64, String)>) {
    let (code, report) = scrub_json(directory, extra);
    let mismatches = report["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["stripe"].as_u64().unwrap(),
                m["parity"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (code, mismatches)
}

#[test]
fn flipped_data_byte_is_reported_at_its_stripe_only() {
    for (level, members) in [(6u32, 6u64), (5, 4)] {
        let directory = tempfile::tempdir().unwrap();
        create(directory.path(), &level.to_string(), members as u32, "8M");
        let (stripe, data_index, offset_in_chunk) = (37u64, 2u64, 12_345u64);
        let target = member(
            directory.path(),
            data_member(level, members, stripe, data_index),
        );
        flip_byte(&target, DATA_OFFSET + stripe * 65536 + offset_in_chunk);
        let (code, mismatches) = scrub_mismatches(directory.path(), &[]);
        assert_eq!(code, Some(1));
        let mut expected = vec![(stripe, "p".to_string())];
        if level == 6 {
            expected.push((stripe, "q".to_string()));
        }
        assert_eq!(mismatches, expected, "RAID-{level}");
    }
}

#[test]
fn repair_restores_corrupted_parity() {
    let directory = tempfile::tempdir().unwrap();
    create(directory.path(), "6", 5, "8M");
    let stripe = 9u64;
    let p_path = member(directory.path(), p_member(5, stripe));
    let offset = DATA_OFFSET + stripe * 65536 + 100;
    flip_byte(&p_path, offset);
    let (code, mismatches) = scrub_mismatches(directory.path(), &["--repair"]);
    assert_eq!(
        code,
        Some(1),
        "the repairing scrub still reports what it found"
    );
    assert_eq!(mismatches, vec![(stripe, "p".to_string())]);
    let (code, mismatches) = scrub_mismatches(directory.path(), &[]);
    assert_eq!((code, mismatches.len()), (Some(0), 0));
    let mut byte = [0xffu8; 1];
    std::fs::File::open(&p_path)
        .unwrap()
        .read_exact_at(&mut byte, offset)
        .unwrap();
    assert_eq!(byte[0], 0, "parity of zeros is zero again");
}

#[test]
fn degraded_raid6_still_scrubs_and_reports() {
    let directory = tempfile::tempdir().unwrap();
    create(directory.path(), "6", 6, "8M");
    let stripe = 20u64;
    let target = member(directory.path(), data_member(6, 6, stripe, 0));
    flip_byte(&target, DATA_OFFSET + stripe * 65536 + 7);
    // Remove a member that holds neither the flipped chunk nor stripe 20's parity.
    let busy = [
        data_member(6, 6, stripe, 0),
        p_member(6, stripe),
        (p_member(6, stripe) + 1) % 6,
    ];
    let gone = (0..6).find(|index| !busy.contains(index)).unwrap();
    std::fs::remove_file(member(directory.path(), gone)).unwrap();
    let status = status_json(directory.path());
    assert_eq!(status["health"], "degraded");
    assert_eq!(status["members"][gone as usize]["state"], "missing");
    let (code, mismatches) = scrub_mismatches(directory.path(), &[]);
    assert_eq!(code, Some(1));
    assert_eq!(
        mismatches
            .iter()
            .map(|(s, _)| *s)
            .collect::<Vec<_>>()
            .first(),
        Some(&stripe)
    );
    assert!(
        mismatches.iter().all(|(s, _)| *s == stripe),
        "{mismatches:?}"
    );
}

#[test]
fn too_many_missing_members_fail_scrub_cleanly() {
    let directory = tempfile::tempdir().unwrap();
    create(directory.path(), "5", 3, "8M");
    std::fs::remove_file(member(directory.path(), 0)).unwrap();
    std::fs::remove_file(member(directory.path(), 1)).unwrap();
    assert_eq!(status_json(directory.path())["health"], "failed");
    let output = amf(&["scrub", directory.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unavailable"));
}

#[test]
fn bad_command_lines_get_usage_errors() {
    let scratch = tempfile::tempdir().unwrap();
    let target = scratch.path().join("array");
    let target = target.to_str().unwrap();
    for line in [
        "create --level 7 --members 4 --size 8M",
        "create --level 6 --members 3 --size 8M",
        "create --level 6 --members 4 --chunk 3K --size 8M",
        "create --level 6 --members 4 --size 8Q",
        "create --level 6 --members 4 --size 512K",
    ] {
        let output = amf_line(line, &[target]);
        assert_eq!(output.status.code(), Some(2), "{line}");
        assert!(!output.stderr.is_empty());
    }
    let output = amf(&["status"]);
    assert_eq!(output.status.code(), Some(2), "status without members");
    assert!(
        !Path::new(target).join("member-00.img").exists(),
        "a refused create wrote nothing"
    );
}

fn aligned_32(backing: &mut [u8], length: usize) -> &mut [u8] {
    let skip = backing.as_ptr().align_offset(32);
    &mut backing[skip..skip + length]
}

/// The outside oracle on a whole array: after random data is written into the members'
/// data chunks and `scrub --repair` recomputes parity, ISA-L's pq_gen over each stripe's
/// data chunks (in data-index order, placed by the documented layout) equals P and Q on
/// disk.
#[test]
fn repaired_parity_on_disk_equals_isal() {
    use rand::{RngCore, SeedableRng};
    let (members, chunk, stripes) = (7u64, 65536usize, 16u64);
    let directory = tempfile::tempdir().unwrap();
    create(directory.path(), "6", members as u32, "3M");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let files: Vec<std::fs::File> = (0..members)
        .map(|index| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(member(directory.path(), index as u32))
                .unwrap()
        })
        .collect();
    for stripe in 0..stripes {
        for data_index in 0..members - 2 {
            let mut chunk_bytes = vec![0u8; chunk];
            rng.fill_bytes(&mut chunk_bytes);
            let file = &files[data_member(6, members, stripe, data_index) as usize];
            file.write_all_at(&chunk_bytes, DATA_OFFSET + stripe * chunk as u64)
                .unwrap();
        }
    }
    let (code, mismatches) = scrub_mismatches(directory.path(), &["--repair"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        mismatches.len() as u64,
        2 * stripes,
        "every random stripe had stale P and Q"
    );
    for stripe in 0..stripes {
        let read = |index: u32| {
            let mut bytes = vec![0u8; chunk];
            files[index as usize]
                .read_exact_at(&mut bytes, DATA_OFFSET + stripe * chunk as u64)
                .unwrap();
            bytes
        };
        let data: Vec<Vec<u8>> = (0..members - 2)
            .map(|i| read(data_member(6, members, stripe, i)))
            .collect();
        let data_views: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        // ISA-L wants 32-byte aligned buffers: carve aligned slices out of larger ones.
        let (mut p_backing, mut q_backing) = (vec![0u8; chunk + 32], vec![0u8; chunk + 32]);
        let (p, q) = (
            aligned_32(&mut p_backing, chunk),
            aligned_32(&mut q_backing, chunk),
        );
        let data_aligned: Vec<Vec<u8>> = data.iter().map(|_| vec![0u8; chunk + 32]).collect();
        let mut data_aligned = data_aligned;
        let data_views: Vec<&[u8]> = data_aligned
            .iter_mut()
            .zip(&data_views)
            .map(|(backing, source)| {
                let slice = aligned_32(backing, chunk);
                slice.copy_from_slice(source);
                &*slice
            })
            .collect();
        isal::pq_gen(&data_views, p, q).expect("ISA-L is installed by scripts/test");
        let p_index = p_member(members, stripe);
        assert!(read(p_index) == *p, "P of stripe {stripe}");
        assert!(
            read((p_index + 1) % members as u32) == *q,
            "Q of stripe {stripe}"
        );
    }
}

fn set_generation(path: &Path, generation: u64) {
    use amflink::format::Superblock;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut bytes = vec![0u8; 4096];
    file.read_exact_at(&mut bytes, 0).unwrap();
    let mut superblock = Superblock::decode(&bytes).unwrap();
    superblock.generation = generation;
    file.write_all_at(&superblock.encode(), 0).unwrap();
}

#[test]
fn newer_member_of_another_array_is_the_one_blamed() {
    let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    create(ours.path(), "5", 3, "8M");
    create(theirs.path(), "5", 3, "8M");
    let foreign = member(theirs.path(), 0);
    set_generation(&foreign, 7);
    let output = amf(&[
        "status",
        foreign.to_str().unwrap(),
        member(ours.path(), 1).to_str().unwrap(),
        member(ours.path(), 2).to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let blamed = stderr.split("field").next().unwrap();
    assert!(blamed.contains(foreign.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("array_uuid"), "{stderr}");
}

#[test]
fn short_member_is_named_with_the_field() {
    let directory = tempfile::tempdir().unwrap();
    create(directory.path(), "6", 4, "8M");
    let short = member(directory.path(), 2);
    OpenOptions::new()
        .write(true)
        .open(&short)
        .unwrap()
        .set_len(2 << 20)
        .unwrap();
    let output = amf(&["status", directory.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("member-02.img") && stderr.contains("data_bytes"),
        "{stderr}"
    );
}

#[test]
fn failed_forced_create_leaves_the_old_array_whole() {
    let directory = tempfile::tempdir().unwrap();
    create(directory.path(), "6", 6, "8M");
    let before = status_json(directory.path());
    let path = directory.path().to_str().unwrap();
    let output = amf_line("create --level 6 --members 4 --size 100K --force", &[path]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("too small"));
    let after = status_json(directory.path());
    assert_eq!(after["array_uuid"], before["array_uuid"]);
    assert_eq!(after["health"], "clean", "all six members are still there");
}

#[test]
fn create_refuses_one_file_given_twice_and_foreign_data() {
    let scratch = tempfile::tempdir().unwrap();
    let file = |name: &str| scratch.path().join(name).to_str().unwrap().to_string();
    let (a, b) = (file("a.img"), file("b.img"));
    let output = amf_line("create --level 5 --members 3 --size 4M", &[&a, &b, &a]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("given twice"));
    assert!(!Path::new(&a).exists(), "nothing was written");

    let c = file("c.img");
    std::fs::write(&c, b"a file system, say").unwrap();
    let output = amf_line("create --level 5 --members 3 --size 4M", &[&a, &b, &c]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("c.img") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&c).unwrap(),
        b"a file system, say",
        "foreign data untouched"
    );
    amf_ok_line(
        "create --level 5 --members 3 --size 4M --force",
        &[&a, &b, &c],
    );
}

#[test]
fn too_small_names_the_smallest_device() {
    let scratch = tempfile::tempdir().unwrap();
    let file = |name: &str, bytes: u64| {
        let path = scratch.path().join(name);
        std::fs::File::create(&path)
            .unwrap()
            .set_len(bytes)
            .unwrap();
        path.to_str().unwrap().to_string()
    };
    let (big0, big1, small) = (
        file("big0.img", 8 << 20),
        file("big1.img", 8 << 20),
        file("small.img", 100 << 10),
    );
    let output = amf_line("create --level 5 --members 3", &[&big0, &big1, &small]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(&format!("amf: error: {small}")),
        "{stderr}"
    );
}

/// A PCI address no machine has (the last function of the last bus of domain ffff).
const ABSENT_CARD: &str = "vfio:ffff:ff:1f.7";

/// `output` failed with exit code 2 and one stderr line holding every one of `words`.
fn assert_one_line_error(output: &Output, words: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    for word in words {
        assert!(stderr.contains(word), "{word:?} missing from: {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn status_and_serve_on_a_machine_without_the_vfio_card_say_so_in_one_line() {
    let directory = tempfile::tempdir().unwrap();
    create(directory.path(), "5", 3, "8M");
    let members = directory.path().to_str().unwrap();
    let output = amf(&["status", "--card", ABSENT_CARD]);
    assert_one_line_error(&output, &["ffff:ff:1f.7", "not present"]);
    let output = amf(&["status", "--json", "--card", ABSENT_CARD, members]);
    assert_one_line_error(&output, &["ffff:ff:1f.7", "not present"]);
    assert!(output.stdout.is_empty(), "no half report");
    let output = amf(&[
        "serve",
        "--nbd",
        "127.0.0.1:0",
        "--card",
        ABSENT_CARD,
        members,
    ]);
    assert_one_line_error(&output, &["--card vfio", "ffff:ff:1f.7", "not present"]);
}

#[test]
fn a_malformed_vfio_address_is_refused_naming_the_form() {
    let output = amf(&["status", "--card", "vfio:0000:03:00"]);
    assert_one_line_error(&output, &["vfio:0000:03:00", "DDDD:BB:DD.F"]);
    let output = amf(&["status", "--card", "vfio:0000:03:20.0"]);
    assert_one_line_error(&output, &["device must be below 0x20"]);
}

#[test]
fn status_reports_the_card_beside_the_array() {
    let directory = tempfile::tempdir().unwrap();
    create(directory.path(), "5", 3, "8M");
    let members = directory.path().to_str().unwrap();
    let sram = directory.path().join("card.sram");
    std::fs::write(&sram, vec![0u8; 4096]).unwrap();
    let spec = format!("sim:{}", sram.display());
    let json: serde_json::Value =
        serde_json::from_str(&amf_ok(&["status", "--json", "--card", &spec, members])).unwrap();
    assert_eq!(json["card"]["kind"], "sim");
    assert_eq!(json["card"]["sram_bytes"], 4096);
    assert_eq!(json["level"], 5, "the array's fields stay where they were");
    let text = amf_ok(&["status", "--card", "host"]);
    assert!(text.starts_with("card host"), "{text}");
}
