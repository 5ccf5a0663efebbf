//! `amf serve --metrics ADDR`: a scraper reads Prometheus text that follows what clients
//! did: requests and bytes by type, latency histograms, stripe writes by mode, degraded
//! reads once a member is gone, and the rebuild's progress; other paths get 404, other
//! methods 405, garbage 400, and the NBD clients are not disturbed.

mod serve_support;

use serve_support::{Server, amf, create, destroy_member, qemu_io, text};
use std::io::{Read, Write};
use std::net::TcpStream;

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn http(port: u16, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(request).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// The scrape, as (series with labels, value) pairs.
fn scrape(port: u16) -> Vec<(String, f64)> {
    let answer = http(port, b"GET /metrics HTTP/1.1\r\nHost: amf\r\n\r\n");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect()
}

fn value(samples: &[(String, f64)], series: &str) -> f64 {
    samples
        .iter()
        .find(|(name, _)| name == series)
        .unwrap_or_else(|| panic!("no {series} in {samples:#?}"))
        .1
}

fn run_qemu_io(server: &Server, commands: &[&str]) {
    let commands: Vec<String> = commands.iter().map(|each| each.to_string()).collect();
    let (ok, output) = qemu_io(&server.uri(), &commands);
    assert!(ok, "qemu-io:\n{output}");
}

#[test]
fn metrics_follow_requests_stripe_writes_degraded_reads_and_rebuild() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("array");
    create(&dir, "5", 4, "16M");
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let server = Server::start(&dir, &["--metrics", &address]);
    let before = scrape(port);
    assert_eq!(value(&before, "amf_nbd_requests_in_flight"), 0.0);
    assert_eq!(value(&before, "amf_failed_members"), 0.0);
    assert_eq!(value(&before, "amf_rebuild_member"), -1.0);

    // 3 writes: a whole stripe (192 KiB of data at 64 KiB chunks), one 4 KiB, and 1 MiB.
    run_qemu_io(
        &server,
        &[
            "write 0 192k",
            "write 1m 4k",
            "write 4m 1m",
            "read 0 192k",
            "flush",
        ],
    );
    let after = scrape(port);
    let write_ok = r#"amf_nbd_requests_total{kind="write",outcome="ok"}"#;
    assert_eq!(value(&after, write_ok), 3.0);
    assert_eq!(
        value(&after, r#"amf_nbd_bytes_total{kind="write"}"#),
        f64::from(192 * 1024 + 4096 + 1024 * 1024)
    );
    assert_eq!(
        value(&after, r#"amf_nbd_bytes_total{kind="read"}"#),
        f64::from(192 * 1024)
    );
    assert_eq!(
        value(
            &after,
            r#"amf_nbd_request_latency_seconds_count{kind="write"}"#
        ),
        3.0
    );
    assert!(
        value(
            &after,
            r#"amf_nbd_request_latency_seconds_sum{kind="write"}"#
        ) > 0.0
    );
    assert!(
        value(
            &after,
            r#"amf_nbd_requests_total{kind="flush",outcome="ok"}"#
        ) >= 1.0
    );
    assert!(value(&after, r#"amf_stripe_writes_total{mode="full_stripe"}"#) >= 1.0);
    // The 4 KiB write and the ends of the 1 MiB one update parity from a partial stripe.
    let partial = value(
        &after,
        r#"amf_stripe_writes_total{mode="read_modify_write"}"#,
    ) + value(
        &after,
        r#"amf_stripe_writes_total{mode="reconstruct_write"}"#,
    );
    assert!(partial >= 3.0, "{after:#?}");
    assert_eq!(value(&after, "amf_degraded_reads_total"), 0.0);
    assert_eq!(value(&after, "amf_nbd_requests_in_flight"), 0.0);

    // A member gone: reads reconstruct, and say so.
    destroy_member(&dir, 1);
    run_qemu_io(&server, &["read 0 192k"]);
    let degraded = scrape(port);
    assert_eq!(value(&degraded, "amf_failed_members"), 1.0);
    assert!(value(&degraded, "amf_degraded_reads_total") >= 1.0);

    let replacement = dir.join("member-01.img");
    let output = amf(&[
        "rebuild",
        "--member",
        "1",
        "--replacement",
        replacement.to_str().unwrap(),
        dir.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let rebuilt = scrape(port);
    let total = value(&rebuilt, r#"amf_job_stripes_total{job="rebuild"}"#);
    assert!(total > 0.0);
    assert_eq!(
        value(&rebuilt, r#"amf_job_stripes_done{job="rebuild"}"#),
        total
    );
    assert_eq!(value(&rebuilt, r#"amf_job_running{job="rebuild"}"#), 0.0);
    assert_eq!(value(&rebuilt, "amf_failed_members"), 0.0);

    // Other paths, methods and garbage get their HTTP errors; NBD goes on.
    assert!(http(port, b"GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    assert!(http(port, b"POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
    assert!(http(port, b"\x00\xff garbage\r\n\r\n").starts_with("HTTP/1.1 400"));
    run_qemu_io(&server, &["read 0 192k"]);
    assert!(server.terminate().success());
}
