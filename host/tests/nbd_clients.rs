//! Real NBD clients (qemu-io, qemu-img, nbdinfo, nbdcopy) against the in-process server.

mod nbd_support;

use amflink::nbd::ServerOptions;
use nbd_support::{MemoryDevice, TestServer, random_bytes, run_tool};

const MIB: usize = 1024 * 1024;

fn options(export_name: &str) -> ServerOptions {
    ServerOptions {
        export_name: export_name.into(),
        description: "test volume".into(),
        ..ServerOptions::default()
    }
}

/// Regions (offset, length, pattern) that do not overlap: aligned and unaligned, 512 B to 4 MiB.
fn regions(base: usize) -> Vec<(usize, usize, u8)> {
    vec![
        (base, 512, 0x11),
        (base + 4096, 4096, 0x22),
        (base + 3 * 4096 + 512, 1536, 0x33),
        (base + 65536 + 7, 1000, 0x44),
        (base + 128 * 1024, 64 * 1024, 0x55),
        (base + 256 * 1024 + 4095, 65 * 1024 + 3, 0x66),
        (base + MIB, MIB, 0x77),
        (base + 2 * MIB + 100, 4 * MIB, 0x88),
        (base + 7 * MIB - 1, 1, 0x99),
    ]
}

fn qemu_io(uri: &str, commands: &[String]) -> String {
    let mut arguments = vec!["-f".to_string(), "raw".to_string()];
    for command in commands {
        arguments.push("-c".into());
        arguments.push(command.clone());
    }
    arguments.push(uri.into());
    let output = run_tool("qemu-io", &arguments);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let lowered = text.to_lowercase();
    assert!(
        !lowered.contains("failed") && !lowered.contains("error"),
        "qemu-io reported a failure:\n{text}"
    );
    text
}

fn write_and_verify(uri: &str, regions: &[(usize, usize, u8)]) {
    let writes: Vec<String> = regions
        .iter()
        .map(|(offset, length, pattern)| format!("write -P {pattern:#x} {offset} {length}"))
        .collect();
    qemu_io(uri, &writes);
    let reads: Vec<String> = regions
        .iter()
        .map(|(offset, length, pattern)| format!("read -P {pattern:#x} {offset} {length}"))
        .collect();
    let text = qemu_io(uri, &reads);
    assert_eq!(text.matches("read ").count(), regions.len(), "{text}");
}

fn assert_device_holds(device: &MemoryDevice, regions: &[(usize, usize, u8)]) {
    let bytes = device.snapshot();
    for &(offset, length, pattern) in regions {
        let region = &bytes[offset..offset + length];
        assert!(
            region.iter().all(|&byte| byte == pattern),
            "region {offset}+{length} does not hold {pattern:#x}"
        );
    }
}

#[test]
fn qemu_io_writes_patterns_and_reads_them_back() {
    let device = MemoryDevice::new(64 * MIB);
    let server = TestServer::start(device.clone(), options("vol"));
    let regions = regions(0);
    write_and_verify(&server.uri("vol"), &regions);
    assert_device_holds(&device, &regions);
    // Flush, FUA writes, write-zeroes and discard through qemu-io.
    qemu_io(
        &server.uri("vol"),
        &[
            "write -f -P 0x5a 8M 64k".into(),
            "flush".into(),
            "write -z 8M 4k".into(),
            "discard 9M 64k".into(),
            "read -P 0 8M 4k".into(),
            "read -P 0x5a 8196k 60k".into(),
        ],
    );
    assert!(device.flushes.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    let stats = server.stop();
    assert!(stats.connections >= 3);
    assert!(stats.requests as usize >= 2 * regions.len());
    assert_eq!(stats.protocol_errors, 0);
}

#[test]
fn several_qemu_io_clients_at_once() {
    let device = MemoryDevice::new(64 * MIB);
    let server = TestServer::start(device.clone(), options(""));
    let uri = server.uri("");
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let uri = uri.clone();
            let regions: Vec<_> = regions(worker * 12 * MIB)
                .into_iter()
                .map(|(offset, length, pattern)| (offset, length, pattern ^ (worker as u8 + 1)))
                .collect();
            std::thread::spawn(move || {
                write_and_verify(&uri, &regions);
                regions
            })
        })
        .collect();
    for worker in workers {
        let regions = worker.join().expect("client thread");
        assert_device_holds(&device, &regions);
    }
    assert_eq!(server.stop().protocol_errors, 0);
}

#[test]
fn qemu_img_convert_round_trip_is_byte_identical() {
    let size_bytes = 16 * MIB;
    let device = MemoryDevice::new(size_bytes);
    device.bytes.write().unwrap().fill(0xaa);
    let server = TestServer::start(device.clone(), options("vol"));
    let directory = tempfile::tempdir().unwrap();
    let mut source = random_bytes(size_bytes, 1);
    // A zero run lets qemu-img use write-zeroes or trim over bytes that were 0xaa.
    source[3 * MIB..5 * MIB].fill(0);
    let source_path = directory.path().join("source.img");
    let back_path = directory.path().join("back.img");
    std::fs::write(&source_path, &source).unwrap();
    let path = |path: &std::path::Path| path.to_str().unwrap().to_string();
    run_tool(
        "qemu-img",
        &[
            "convert".into(),
            "-n".into(),
            "-f".into(),
            "raw".into(),
            "-O".into(),
            "raw".into(),
            path(&source_path),
            server.uri("vol"),
        ],
    );
    assert!(
        device.snapshot() == source,
        "export differs from the source"
    );
    run_tool(
        "qemu-img",
        &[
            "convert".into(),
            "-f".into(),
            "raw".into(),
            "-O".into(),
            "raw".into(),
            server.uri("vol"),
            path(&back_path),
        ],
    );
    assert!(
        std::fs::read(&back_path).unwrap() == source,
        "copy back differs"
    );
    assert_eq!(server.stop().protocol_errors, 0);
}

#[test]
fn nbdinfo_shows_size_block_sizes_and_flags() {
    let device = MemoryDevice::new(64 * MIB);
    let server = TestServer::start(device, options("vol"));
    let output = run_tool("nbdinfo", &[server.uri("vol")]);
    let text = String::from_utf8_lossy(&output.stdout);
    for expected in [
        "export-size: 67108864",
        "block_size_minimum: 512",
        "block_size_preferred: 4096",
        "block_size_maximum: 33554432",
        "can_multi_conn: true",
        "can_flush: true",
        "can_fua: true",
        "can_trim: true",
        "can_zero: true",
        "is_read_only: false",
        "description: test volume",
    ] {
        assert!(
            text.contains(expected),
            "nbdinfo lacks {expected:?}:\n{text}"
        );
    }
    let listing = run_tool(
        "nbdinfo",
        &[
            "--list".into(),
            format!("nbd://127.0.0.1:{}", server.port()),
        ],
    );
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("export=\"vol\""), "{listing}");
    assert_eq!(server.stop().protocol_errors, 0);
}

#[test]
fn nbdinfo_sees_a_read_only_export() {
    let server = TestServer::start(
        MemoryDevice::new(MIB),
        ServerOptions {
            read_only: true,
            ..options("")
        },
    );
    let output = run_tool("nbdinfo", &[server.uri("")]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("is_read_only: true"), "{text}");
}

#[test]
fn nbdcopy_round_trip_is_byte_identical() {
    let size_bytes = 24 * MIB;
    let device = MemoryDevice::new(size_bytes);
    let server = TestServer::start(device.clone(), options("vol"));
    let directory = tempfile::tempdir().unwrap();
    let source = random_bytes(size_bytes, 2);
    let source_path = directory.path().join("source.img");
    let back_path = directory.path().join("back.img");
    std::fs::write(&source_path, &source).unwrap();
    std::fs::write(&back_path, []).unwrap();
    let path = |path: &std::path::Path| path.to_str().unwrap().to_string();
    run_tool("nbdcopy", &[path(&source_path), server.uri("vol")]);
    assert!(
        device.snapshot() == source,
        "export differs from the source"
    );
    run_tool("nbdcopy", &[server.uri("vol"), path(&back_path)]);
    assert!(
        std::fs::read(&back_path).unwrap() == source,
        "copy back differs"
    );
    let stats = server.stop();
    assert!(stats.connections >= 2);
    assert_eq!(stats.protocol_errors, 0);
}
