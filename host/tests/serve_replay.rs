//! A crash between member writes, laid down by hand: an intent committed in the sim card's
//! SRAM and only the data half of the stripe write on the members (parity stale). `amf
//! serve` replays it at start-up, the new data reads back through NBD and scrub finds the
//! parity consistent again; a corrupt intent is discarded with a log line, never replayed.

mod serve_support;

use amflink::array::Array;
use amflink::volume::journal::{BlockRun, HEADER_BYTES, Layout, SLOTS_MAX, encode_slot};
use serve_support::{Pattern, Server, create, qemu_io, scrub_mismatches};
use shared_regs::limits::SRAM_BYTES_DEFAULT;
use std::path::Path;

const STRIPE: u64 = 5;

/// Commits an intent for 3 blocks at block 2 of `STRIPE` in slot 7 of the card's SRAM and
/// writes only the data to the members. Returns the volume offset and the data.
fn crash_between_member_writes(dir: &Path, byte: u8, corrupt: bool) -> (u64, Vec<u8>) {
    let paths = amflink::array::member_paths(&[dir.to_path_buf()]).unwrap();
    let array = Array::open(&paths, true).unwrap();
    let geometry = array.geometry;
    let data = vec![byte; 3 * 4096];
    let run = BlockRun {
        first_block: 2,
        bytes: data.as_slice().into(),
    };
    let (header, mut records) = encode_slot(4242, STRIPE, array.superblock.generation, &[run]);
    if corrupt {
        records[HEADER_BYTES + 5000] ^= 1;
    }
    let layout = Layout::for_store(&geometry, SRAM_BYTES_DEFAULT, SLOTS_MAX).unwrap();
    let slot = layout.slot_offset(7);
    let mut card = amf_card::open_sim(&dir.join("card.sram"), SRAM_BYTES_DEFAULT).unwrap();
    card.card_mut()
        .sram_write(slot + HEADER_BYTES as u64, &records)
        .unwrap();
    card.card_mut().sram_write(slot, &header).unwrap();
    card.into_card().unwrap().close().unwrap();
    // Data chunk 0 of the stripe, blocks 2..5: the data lands, P and Q do not.
    let member = array.member(geometry.data_member(STRIPE, 0)).unwrap();
    member
        .write_data(geometry.stripe_member_offset(STRIPE) + 2 * 4096, &data)
        .unwrap();
    member.sync().unwrap();
    let offset = STRIPE * geometry.stripe_data_bytes() + 2 * 4096;
    (offset, data)
}

fn prepared_array(base: &Path) -> std::path::PathBuf {
    let dir = base.join("array");
    create(&dir, "6", 5, "16M");
    // A first start lays the journal's region header for this array into the card.
    let server = Server::start(&dir, &[]);
    assert!(server.terminate().success());
    dir
}

#[test]
fn serve_replays_an_intent_left_in_card_sram() {
    let base = tempfile::tempdir().unwrap();
    let dir = prepared_array(base.path());
    let (offset, data) = crash_between_member_writes(&dir, 0xC3, false);
    assert_eq!(
        scrub_mismatches(&dir),
        2,
        "the half write leaves P and Q stale"
    );
    let server = Server::start(&dir, &[]);
    let pattern = Pattern {
        offset,
        length: data.len() as u64,
        byte: 0xC3,
    };
    let (ok, output) = qemu_io(&server.uri(), &[pattern.read()]);
    assert!(ok, "{output}");
    let (status, log) = server.terminate_with_log();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("replaying an unfinished stripe write"),
        "{log}"
    );
    assert_eq!(scrub_mismatches(&dir), 0, "replay made parity whole");
}

#[test]
fn serve_discards_a_corrupt_intent() {
    let base = tempfile::tempdir().unwrap();
    let dir = prepared_array(base.path());
    crash_between_member_writes(&dir, 0x3C, true);
    let server = Server::start(&dir, &[]);
    let (status, log) = server.terminate_with_log();
    assert!(status.success(), "{log}");
    assert!(log.contains("intent slot discarded"), "{log}");
    assert!(
        !log.contains("replaying an unfinished stripe write"),
        "{log}"
    );
}
