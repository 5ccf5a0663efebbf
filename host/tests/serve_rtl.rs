//! `amf serve --card rtl`: the whole NBD data path with parity from the Verilated card's
//! engine. qemu-io writes patterns and reads them back, qemu-img copies an image in and
//! out, the server stops cleanly, and a scrub (on the RTL card, and on the host) finds
//! parity consistent. Small data: the RTL is simulated clock cycle by clock cycle.
#![cfg(feature = "rtl")]

mod serve_support;

use serve_support::{Pattern, Server, amf, create, qemu_io, scrub_mismatches, text};
use std::process::Command;

const KIB: u64 = 1024;

/// Inside a block, unaligned, and across chunks and stripes (RAID-6 of 5, 64 KiB chunks:
/// 192 KiB of data a stripe).
fn patterns() -> Vec<Pattern> {
    [
        (0, 4 * KIB),
        (4 * KIB + 513, 512),
        (64 * KIB - 512, 1024),
        (192 * KIB - 2000, 5000),
        (400 * KIB + 7, 70 * KIB),
    ]
    .iter()
    .enumerate()
    .map(|(index, &(offset, length))| Pattern {
        offset,
        length,
        byte: 0x21 + index as u8 * 0x13,
    })
    .collect()
}

fn qemu_img(arguments: &[&str]) {
    let output = Command::new("qemu-img")
        .args(arguments)
        .output()
        .expect("qemu-img runs");
    assert!(
        output.status.success(),
        "qemu-img {arguments:?}: {}",
        text(&output)
    );
}

#[test]
fn qemu_round_trips_and_a_clean_scrub_with_parity_from_the_rtl_card() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("array");
    create(&dir, "6", 5, "2M");
    let server = Server::start(&dir, &["--card", "rtl"]);
    let patterns = patterns();
    let mut commands: Vec<String> = patterns.iter().map(Pattern::write).collect();
    commands.push("flush".to_owned());
    let (ok, output) = qemu_io(&server.uri(), &commands);
    assert!(ok, "writes failed:\n{output}\nlog:\n{}", server.log_text());
    let reads: Vec<String> = patterns.iter().map(Pattern::read).collect();
    let (ok, output) = qemu_io(&server.uri(), &reads);
    assert!(ok, "reads failed:\n{output}");

    // An image in through qemu-img at an offset past the patterns, and out again.
    let image: Vec<u8> = (0..256 * KIB as usize)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let source = root.path().join("in.raw");
    std::fs::write(&source, &image).unwrap();
    let offset = 1024 * KIB;
    let opts = format!(
        "driver=raw,offset={offset},size={},file.driver=nbd,file.host=127.0.0.1,file.port={}",
        image.len(),
        server.port
    );
    qemu_img(&[
        "convert",
        "-n",
        "-f",
        "raw",
        "--target-image-opts",
        source.to_str().unwrap(),
        &opts,
    ]);
    let copied = root.path().join("out.raw");
    qemu_img(&[
        "convert",
        "-O",
        "raw",
        "--image-opts",
        &opts,
        copied.to_str().unwrap(),
    ]);
    assert!(
        std::fs::read(&copied).unwrap() == image,
        "qemu-img read back other bytes"
    );

    let (status, log) = server.terminate_with_log();
    assert!(status.success(), "amf serve exited {status}; log:\n{log}");
    let rtl_scrub = amf(&["scrub", "--card", "rtl", "--json", dir.to_str().unwrap()]);
    let report: serde_json::Value = serde_json::from_slice(&rtl_scrub.stdout)
        .unwrap_or_else(|_| panic!("{}", text(&rtl_scrub)));
    assert_eq!(report["parity_engine"], "card:rtl", "{report}");
    assert!(report["stripes_checked"].as_u64() > Some(0), "{report}");
    assert_eq!(
        report["mismatches"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );
    assert_eq!(scrub_mismatches(&dir), 0, "the host's scrub disagrees");
}
