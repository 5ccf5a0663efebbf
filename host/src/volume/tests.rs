use super::journal::{BlockRun, HEADER_BYTES, encode_slot};
use super::*;
use crate::create::{CreateSpec, Targets, create};
use crate::scrub;
use amf_raid::Level;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const CHUNK: u32 = 16 * 1024;

fn make_array(dir: &Path, level: Level, members: u32) -> Vec<PathBuf> {
    let spec = CreateSpec {
        level,
        members,
        chunk_bytes: CHUNK,
        member_bytes: Some((1 << 20) + 64 * u64::from(CHUNK)),
        force: false,
        array_uuid: *uuid::Uuid::new_v4().as_bytes(),
        created_unix_seconds: 0,
    };
    create(&spec, &Targets::Directory(dir.to_path_buf()))
        .unwrap()
        .paths
}

fn open(paths: &[PathBuf], dir: &Path) -> (Volume, Recovery) {
    Volume::open(paths, Engine::Host(HostParity), &dir.join(INTENT_FILE)).unwrap()
}

fn mismatches(paths: &[PathBuf]) -> usize {
    let array = Array::open(paths, false).unwrap();
    let report = scrub::run(
        &array,
        scrub::Mode::Check,
        &mut HostParity,
        indicatif::ProgressBar::hidden(),
    )
    .unwrap();
    report.mismatches.len()
}

fn pattern(seed: u64, length: usize) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..length).map(|_| rng.r#gen()).collect()
}

#[test]
fn random_writes_read_back_and_parity_holds() {
    let dir = tempfile::tempdir().unwrap();
    let paths = make_array(dir.path(), Level::Raid6, 5);
    let (volume, recovery) = open(&paths, dir.path());
    assert_eq!(recovery, Recovery::default());
    let size = volume.size_bytes();
    let mut model = vec![0u8; size as usize];
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for round in 0..200u64 {
        let length = rng.gen_range(1..=3 * CHUNK as usize * 2);
        let offset = rng.gen_range(0..size - length as u64);
        let data = pattern(round, length);
        volume.write(offset, &data, round % 7 == 0).unwrap();
        model[offset as usize..][..length].copy_from_slice(&data);
    }
    let mut back = vec![0u8; size as usize];
    volume.read(0, &mut back).unwrap();
    assert!(back == model, "volume differs from the model");
    volume.close().unwrap();
    assert_eq!(mismatches(&paths), 0);
}

#[test]
fn concurrent_writes_on_one_stripe_serialize() {
    let dir = tempfile::tempdir().unwrap();
    let paths = make_array(dir.path(), Level::Raid5, 4);
    let (volume, _) = open(&paths, dir.path());
    let stripe_bytes = volume.geometry().stripe_data_bytes();
    // Eight threads, each its own 512-byte slices of stripe 3 (unaligned: each write
    // reads and rewrites the 4 KiB block it shares with others).
    std::thread::scope(|scope| {
        for thread in 0..8u64 {
            let volume = &volume;
            scope.spawn(move || {
                for round in 0..20u64 {
                    let slot = (round * 8 + thread) % (stripe_bytes / 512);
                    let offset = 3 * stripe_bytes + slot * 512;
                    volume
                        .write(offset, &[thread as u8 + 1; 512], false)
                        .unwrap();
                }
            });
        }
    });
    let mut back = vec![0u8; stripe_bytes as usize];
    volume.read(3 * stripe_bytes, &mut back).unwrap();
    for slot in 0..(stripe_bytes / 512).min(160) {
        let expected = (slot % 8) as u8 + 1;
        let piece = &back[slot as usize * 512..][..512];
        assert!(piece.iter().all(|&b| b == expected), "slice {slot}");
    }
    volume.close().unwrap();
    assert_eq!(mismatches(&paths), 0);
}

/// Writes an intent for stripe `stripe` by hand and half the stripe write (the new data on
/// its member, parity untouched), as a crash between member writes leaves it.
fn crash_mid_write(dir: &Path, paths: &[PathBuf], stripe: u64, data: &[u8], corrupt: bool) {
    let array = Array::open(paths, true).unwrap();
    let geometry = array.geometry;
    let (header, mut records) = encode_slot(
        99,
        stripe,
        array.superblock.generation,
        &[BlockRun {
            first_block: 1,
            bytes: data.into(),
        }],
    );
    if corrupt {
        records[HEADER_BYTES + 10] ^= 0x40;
    }
    let layout = Layout::for_store(&geometry, u64::MAX, journal::FILE_SLOTS).unwrap();
    let journal = OpenOptions::new()
        .write(true)
        .open(dir.join(INTENT_FILE))
        .unwrap();
    use std::os::unix::fs::FileExt;
    let slot = layout.slot_offset(2);
    journal
        .write_all_at(&records, slot + HEADER_BYTES as u64)
        .unwrap();
    journal.write_all_at(&header, slot).unwrap();
    let member = geometry.data_member(stripe, 0);
    let offset = geometry.stripe_member_offset(stripe) + 4096;
    array
        .member(member)
        .unwrap()
        .write_data(offset, data)
        .unwrap();
}

#[test]
fn intent_replay_after_a_crash_between_member_writes() {
    let dir = tempfile::tempdir().unwrap();
    let paths = make_array(dir.path(), Level::Raid6, 6);
    open(&paths, dir.path()).0.close().unwrap();
    let data = pattern(5, 8192);
    crash_mid_write(dir.path(), &paths, 9, &data, false);
    assert_eq!(mismatches(&paths), 2, "the half write leaves P and Q stale");
    let (volume, recovery) = open(&paths, dir.path());
    assert_eq!((recovery.replayed, recovery.discarded), (1, 0));
    assert_eq!(recovery.stripes, vec![9]);
    let mut back = vec![0u8; 8192];
    let offset = 9 * volume.geometry().stripe_data_bytes() + 4096;
    volume.read(offset, &mut back).unwrap();
    assert_eq!(back, data);
    volume.close().unwrap();
    assert_eq!(mismatches(&paths), 0);
    // A second start finds nothing left: the slots were freed.
    let (volume, recovery) = open(&paths, dir.path());
    assert_eq!(recovery, Recovery::default());
    volume.close().unwrap();
}

#[test]
fn a_corrupt_intent_is_discarded_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let paths = make_array(dir.path(), Level::Raid5, 4);
    open(&paths, dir.path()).0.close().unwrap();
    crash_mid_write(dir.path(), &paths, 4, &pattern(6, 4096), true);
    let (volume, recovery) = open(&paths, dir.path());
    assert_eq!((recovery.replayed, recovery.discarded), (0, 1));
    volume.close().unwrap();
}

#[test]
fn members_failing_underneath_degrade_then_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let paths = make_array(dir.path(), Level::Raid5, 4);
    let (volume, _) = open(&paths, dir.path());
    let data = pattern(11, volume.size_bytes() as usize);
    volume.write(0, &data, true).unwrap();
    // Member 1 loses its data area: reads hit its end and fail.
    OpenOptions::new()
        .write(true)
        .open(&paths[1])
        .unwrap()
        .set_len(4096)
        .unwrap();
    let mut back = vec![0u8; data.len()];
    volume.read(0, &mut back).unwrap();
    assert!(back == data, "degraded read returned wrong data");
    assert_eq!(volume.failed_members().iter().collect::<Vec<_>>(), vec![1]);
    let generation = volume.stats().generation;
    // Writes go on degraded, and read back.
    let update = pattern(12, 100_000);
    volume.write(12_345, &update, true).unwrap();
    let mut back = vec![0u8; update.len()];
    volume.read(12_345, &mut back).unwrap();
    assert_eq!(back, update);
    // The survivors' superblocks say so.
    let superblock = Array::open(&paths[2..3], false).unwrap().superblock;
    assert_eq!(superblock.generation, generation);
    assert_eq!(superblock.member_states[1], MemberState::Failed);
    // One more is one too many: errors, not data.
    OpenOptions::new()
        .write(true)
        .open(&paths[3])
        .unwrap()
        .set_len(4096)
        .unwrap();
    let error = volume.read(0, &mut back).unwrap_err();
    assert!(matches!(error, BlockError::Unavailable(_)), "{error}");
    assert_eq!(error.nbd_errno(), 5);
    assert!(matches!(
        volume.write(0, &update, false),
        Err(BlockError::Unavailable(_))
    ));
}

#[test]
fn degraded_replay_uses_the_lost_chunk_image_not_torn_parity() {
    let dir = tempfile::tempdir().unwrap();
    let paths = make_array(dir.path(), Level::Raid5, 4);
    let (volume, _) = open(&paths, dir.path());
    let original = pattern(21, volume.size_bytes() as usize);
    volume.write(0, &original, true).unwrap();
    let geometry = *volume.geometry();
    volume.close().unwrap();
    let stripe = 3u64;
    let chunk = u64::from(CHUNK);
    let lost = geometry.data_member(stripe, 1);
    std::fs::remove_file(&paths[lost as usize]).unwrap();
    let survivors: Vec<PathBuf> = paths
        .iter()
        .enumerate()
        .filter(|&(index, _)| index != lost as usize)
        .map(|(_, path)| path.clone())
        .collect();
    // The crash: an intent with the lost chunk's image and one new block of data chunk 0,
    // and only that block written (P still describes the old block).
    let stripe_start = (stripe * geometry.stripe_data_bytes()) as usize;
    let image = original[stripe_start + chunk as usize..][..chunk as usize].to_vec();
    let new_block = pattern(22, 4096);
    let runs = [
        BlockRun {
            first_block: (chunk / 4096) as u32,
            bytes: image.as_slice().into(),
        },
        BlockRun {
            first_block: 0,
            bytes: new_block.as_slice().into(),
        },
    ];
    let array = Array::open(&survivors, true).unwrap();
    let (header, records) = encode_slot(7, stripe, array.superblock.generation, &runs);
    let layout = Layout::for_store(&geometry, u64::MAX, journal::FILE_SLOTS).unwrap();
    let journal = OpenOptions::new()
        .write(true)
        .open(dir.path().join(INTENT_FILE))
        .unwrap();
    use std::os::unix::fs::FileExt;
    journal
        .write_all_at(&records, layout.slot_offset(0) + HEADER_BYTES as u64)
        .unwrap();
    journal
        .write_all_at(&header, layout.slot_offset(0))
        .unwrap();
    let data0 = array.member(geometry.data_member(stripe, 0)).unwrap();
    data0
        .write_data(geometry.stripe_member_offset(stripe), &new_block)
        .unwrap();
    drop(array);
    // Without the image, the lost chunk would be rebuilt from the stale P and come out wrong.
    let (volume, recovery) = open(&survivors, dir.path());
    assert_eq!(recovery.replayed, 1);
    let mut back = vec![0u8; chunk as usize];
    volume
        .read((stripe_start as u64) + chunk, &mut back)
        .unwrap();
    assert!(back == image, "the lost chunk reads back as it was");
    let mut block = vec![0u8; 4096];
    volume.read(stripe_start as u64, &mut block).unwrap();
    assert_eq!(block, new_block);
    volume.close().unwrap();
}

/// Truncates a member's data area away: its reads fail, so the volume fails it.
fn lose_member(path: &Path) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(4096)
        .unwrap();
}

fn read_all(volume: &Volume) -> Vec<u8> {
    let mut back = vec![0u8; volume.size_bytes() as usize];
    volume.read(0, &mut back).unwrap();
    back
}

#[test]
fn online_rebuild_under_writes_restores_the_member() {
    let dir = tempfile::tempdir().unwrap();
    let paths = make_array(dir.path(), Level::Raid6, 5);
    let (volume, _) = open(&paths, dir.path());
    let size = volume.size_bytes() as usize;
    let mut model = pattern(21, size);
    volume.write(0, &model, true).unwrap();
    lose_member(&paths[2]);
    assert_eq!(read_all(&volume), model);
    assert_eq!(volume.failed_members().iter().collect::<Vec<_>>(), vec![2]);
    let replacement = dir.path().join("replacement.img");
    let started = volume.begin_rebuild(2, &replacement).unwrap();
    assert_eq!(started.next_stripe, 0);
    // Writes land between batches, on rebuilt stripes and on stripes still to come.
    let mut rng = ChaCha8Rng::seed_from_u64(22);
    let mut batches = 0;
    loop {
        let length = rng.gen_range(1..=2 * CHUNK as usize);
        let offset = rng.gen_range(0..size - length);
        let data = pattern(100 + batches, length);
        volume.write(offset as u64, &data, false).unwrap();
        model[offset..offset + length].copy_from_slice(&data);
        batches += 1;
        if volume.rebuild_batch(3).unwrap().is_done() {
            break;
        }
    }
    assert!(batches > 3, "the rebuild took {batches} batches");
    assert!(volume.failed_members().is_empty());
    assert_eq!(volume.rebuild_progress(), None);
    assert_eq!(read_all(&volume), model);
    volume.close().unwrap();
    // The replacement is member 2 now, in service, and the parity agrees.
    let mut members = paths.clone();
    members[2] = replacement;
    let array = Array::open(&members, false).unwrap();
    assert!(array.unusable_members().is_empty());
    assert_eq!(array.superblock.rebuild_next_stripe, 0);
    assert_eq!(mismatches(&members), 0);
    let (volume, _) = open(&members, dir.path());
    assert_eq!(read_all(&volume), model);
}

#[test]
fn a_rebuild_resumes_from_its_checkpoint_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let paths = make_array(dir.path(), Level::Raid5, 4);
    let (volume, _) = open(&paths, dir.path());
    let mut model = pattern(31, volume.size_bytes() as usize);
    volume.write(0, &model, true).unwrap();
    lose_member(&paths[1]);
    assert_eq!(read_all(&volume), model);
    let replacement = dir.path().join("new-member-01.img");
    volume.begin_rebuild(1, &replacement).unwrap();
    volume.rebuild_batch(5).unwrap();
    let progress = volume.rebuild_batch(5).unwrap().next_stripe;
    assert_eq!(progress, 10);
    // A write on a rebuilt stripe reaches the replacement; then the process dies.
    let update = pattern(32, 3 * CHUNK as usize);
    volume.write(1000, &update, false).unwrap();
    model[1000..1000 + update.len()].copy_from_slice(&update);
    drop(volume);
    let mut members = paths.clone();
    members[1] = replacement;
    let (volume, _) = open(&members, dir.path());
    let resumed = volume.rebuild_progress().unwrap();
    assert_eq!((resumed.member, resumed.next_stripe), (1, progress));
    assert_eq!(
        read_all(&volume),
        model,
        "reads while the rebuild is resumed"
    );
    while !volume.rebuild_batch(7).unwrap().is_done() {}
    volume.close().unwrap();
    // Parity agrees, and with member 0 left out every read that touches slot 1 takes the
    // replacement's own chunks (or rebuilds member 0's through them).
    assert_eq!(mismatches(&members), 0);
    let without_zero: Vec<PathBuf> = members[1..].to_vec();
    let (volume, _) = open(&without_zero, dir.path());
    assert_eq!(read_all(&volume), model);
}

#[test]
fn rebuild_refuses_what_it_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let paths = make_array(dir.path(), Level::Raid5, 4);
    let (volume, _) = open(&paths, dir.path());
    let elsewhere = dir.path().join("spare.img");
    assert!(matches!(
        volume.begin_rebuild(1, &elsewhere),
        Err(RebuildError::InService { member: 1 })
    ));
    assert!(matches!(
        volume.begin_rebuild(9, &elsewhere),
        Err(RebuildError::UnknownMember { member: 9, .. })
    ));
    assert!(matches!(
        volume.rebuild_batch(1),
        Err(RebuildError::NotRunning)
    ));
    lose_member(&paths[1]);
    read_all(&volume);
    assert!(matches!(
        volume.begin_rebuild(1, &paths[3]),
        Err(RebuildError::InUse { member: 3, .. })
    ));
    volume.begin_rebuild(1, &elsewhere).unwrap();
    assert!(matches!(
        volume.begin_rebuild(1, &elsewhere),
        Err(RebuildError::Busy { running: 1 })
    ));
}

/// The `flags` line of `/proc/self/fdinfo` for `member`'s descriptor.
fn open_flags(member: &Member) -> u32 {
    let fdinfo =
        std::fs::read_to_string(format!("/proc/self/fdinfo/{}", member.descriptor())).unwrap();
    let flags = fdinfo
        .lines()
        .find_map(|line| line.strip_prefix("flags:"))
        .unwrap();
    u32::from_str_radix(flags.trim(), 8).unwrap()
}

#[test]
fn direct_member_io_reads_back_at_any_offset_and_length() {
    let dir = tempfile::tempdir().unwrap();
    let paths = make_array(dir.path(), Level::Raid5, 3);
    let direct = Member::open_with(&paths[0], true, MemberCaching::Direct).unwrap();
    let cached = Member::open(&paths[0], false).unwrap();
    assert_ne!(open_flags(&direct) & libc::O_DIRECT as u32, 0);
    assert_eq!(open_flags(&cached) & libc::O_DIRECT as u32, 0);
    let data_bytes = direct.superblock.data_bytes;
    let mut model = vec![0u8; data_bytes as usize];
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for round in 0..300u64 {
        // Sub-sector, sector-aligned, block-aligned and straddling lengths and offsets.
        let length = match round % 3 {
            0 => rng.gen_range(1..600),
            1 => 512 * rng.gen_range(1..20),
            _ => rng.gen_range(1..3 * 4096),
        };
        let offset = match round % 2 {
            0 => rng.gen_range(0..data_bytes - length as u64),
            _ => 512 * rng.gen_range(0..(data_bytes - length as u64) / 512),
        };
        let bytes = pattern(round, length);
        direct.write_data(offset, &bytes).unwrap();
        model[offset as usize..][..length].copy_from_slice(&bytes);
        let mut back = vec![0u8; length];
        direct.read_data(offset, &mut back).unwrap();
        assert!(back == bytes, "round {round}: direct read differs");
    }
    // The page cache of another descriptor sees what went around it.
    let mut through_cache = vec![0u8; data_bytes as usize];
    cached.read_data(0, &mut through_cache).unwrap();
    assert!(
        through_cache == model,
        "page-cache read differs from the model"
    );
    let mut through_direct = vec![0u8; data_bytes as usize];
    direct.read_data(0, &mut through_direct).unwrap();
    assert!(
        through_direct == model,
        "direct read differs from the model"
    );
}
