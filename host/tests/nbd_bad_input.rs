//! Raw TCP clients that break the protocol: each gets the error reply NBD specifies, or a
//! closed connection where the protocol says so, while a well-behaved client connected
//! beside it keeps being served.

mod nbd_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use amflink::nbd::ServerOptions;
use amflink::nbd::protocol::*;
use nbd_support::{MemoryDevice, TestServer};

const SIZE_BYTES: usize = 1 << 20;

struct Client {
    stream: TcpStream,
}

/// One option reply: its type and data.
type OptionReply = (u32, Vec<u8>);

impl Client {
    /// Connects and reads the greeting; `flags` are the client flags sent back.
    fn connect(server: &TestServer, flags: u32) -> Client {
        let stream = TcpStream::connect(server.address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut client = Client { stream };
        let greeting = client.read_bytes(GREETING_BYTES);
        assert_eq!(&greeting[..16], b"NBDMAGICIHAVEOPT");
        client.send(&flags.to_be_bytes());
        client
    }

    /// A client in transmission, simple or structured replies.
    fn ready(server: &TestServer, structured: bool) -> Client {
        let mut client =
            Client::connect(server, CLIENT_FLAG_FIXED_NEWSTYLE | CLIENT_FLAG_NO_ZEROES);
        if structured {
            assert_eq!(
                client.option(OPT_STRUCTURED_REPLY, &[]),
                vec![(REP_ACK, vec![])]
            );
        }
        let replies = client.option(OPT_GO, &info_data("", &[INFO_BLOCK_SIZE]));
        assert_eq!(replies.last().unwrap().0, REP_ACK);
        client
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    fn read_bytes(&mut self, length: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; length];
        self.stream.read_exact(&mut bytes).unwrap();
        bytes
    }

    /// True once the server has closed the connection (EOF or reset), nothing else sent.
    fn closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(error) => {
                error.kind() != std::io::ErrorKind::WouldBlock
                    && error.kind() != std::io::ErrorKind::TimedOut
            }
        }
    }

    /// Sends an option and reads replies up to the final one (ACK or an error).
    fn option(&mut self, option: u32, data: &[u8]) -> Vec<OptionReply> {
        let mut message = OPTION_MAGIC.to_be_bytes().to_vec();
        message.extend_from_slice(&option.to_be_bytes());
        message.extend_from_slice(&(data.len() as u32).to_be_bytes());
        message.extend_from_slice(data);
        self.send(&message);
        let mut replies = Vec::new();
        loop {
            let header = self.read_bytes(20);
            assert_eq!(&header[..8], &OPTION_REPLY_MAGIC.to_be_bytes());
            assert_eq!(&header[8..12], &option.to_be_bytes());
            let reply_type = u32::from_be_bytes(header[12..16].try_into().unwrap());
            let length = u32::from_be_bytes(header[16..20].try_into().unwrap());
            let data = self.read_bytes(length as usize);
            replies.push((reply_type, data));
            if reply_type != REP_INFO && reply_type != REP_SERVER {
                return replies;
            }
        }
    }

    fn request(&mut self, command: u16, flags: u16, offset: u64, length: u32, cookie: u64) {
        let header = RequestHeader {
            flags,
            command,
            cookie,
            offset,
            length,
        };
        self.send(&header.encode());
    }

    /// Reads a simple reply: (errno, cookie).
    fn simple_reply(&mut self) -> (u32, u64) {
        let reply = self.read_bytes(SIMPLE_REPLY_BYTES);
        assert_eq!(&reply[..4], &SIMPLE_REPLY_MAGIC.to_be_bytes());
        let errno = u32::from_be_bytes(reply[4..8].try_into().unwrap());
        (errno, u64::from_be_bytes(reply[8..16].try_into().unwrap()))
    }

    /// Reads one structured chunk: (flags, type, cookie, payload).
    fn chunk(&mut self) -> (u16, u16, u64, Vec<u8>) {
        let header = self.read_bytes(CHUNK_HEADER_BYTES);
        assert_eq!(&header[..4], &STRUCTURED_REPLY_MAGIC.to_be_bytes());
        let flags = u16::from_be_bytes(header[4..6].try_into().unwrap());
        let reply_type = u16::from_be_bytes(header[6..8].try_into().unwrap());
        let cookie = u64::from_be_bytes(header[8..16].try_into().unwrap());
        let length = u32::from_be_bytes(header[16..20].try_into().unwrap());
        (flags, reply_type, cookie, self.read_bytes(length as usize))
    }

    /// Writes a pattern, reads it back with simple replies: this client is still served.
    fn round_trip(&mut self, seed: u8) {
        let offset = 4096 * u64::from(seed);
        self.request(CMD_WRITE, CMD_FLAG_FUA, offset, 4096, 1);
        self.send(&[seed; 4096]);
        assert_eq!(self.simple_reply(), (0, 1));
        self.request(CMD_READ, 0, offset, 4096, 2);
        assert_eq!(self.simple_reply(), (0, 2));
        assert_eq!(self.read_bytes(4096), vec![seed; 4096]);
    }
}

fn info_data(name: &str, requests: &[u16]) -> Vec<u8> {
    let mut data = (name.len() as u32).to_be_bytes().to_vec();
    data.extend_from_slice(name.as_bytes());
    data.extend_from_slice(&(requests.len() as u16).to_be_bytes());
    for request in requests {
        data.extend_from_slice(&request.to_be_bytes());
    }
    data
}

fn server() -> TestServer {
    TestServer::start(
        MemoryDevice::new(SIZE_BYTES),
        ServerOptions {
            export_name: "vol".into(),
            max_request_bytes: 64 * 1024,
            handshake_timeout: Duration::from_millis(500),
            ..ServerOptions::default()
        },
    )
}

#[test]
fn garbage_handshakes_close_only_their_own_connection() {
    let server = server();
    let mut witness = Client::ready(&server, false);
    witness.round_trip(1);

    let mut unknown_flags = Client::connect(&server, 0x8000_0000);
    assert!(unknown_flags.closed(), "unknown client flags must close");
    witness.round_trip(2);

    let mut bad_magic = Client::connect(&server, CLIENT_FLAG_FIXED_NEWSTYLE);
    bad_magic.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(bad_magic.closed(), "bad option magic must close");
    witness.round_trip(3);

    let mut unknown_export = Client::connect(&server, CLIENT_FLAG_FIXED_NEWSTYLE);
    let mut message = OPTION_MAGIC.to_be_bytes().to_vec();
    message.extend_from_slice(&OPT_EXPORT_NAME.to_be_bytes());
    message.extend_from_slice(&4u32.to_be_bytes());
    message.extend_from_slice(b"nope");
    unknown_export.send(&message);
    assert!(
        unknown_export.closed(),
        "EXPORT_NAME of an unknown export must close"
    );

    let mut silent = TcpStream::connect(server.address).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut greeting = [0u8; GREETING_BYTES];
    silent.read_exact(&mut greeting).unwrap();
    let mut rest = Vec::new();
    assert_eq!(
        silent.read_to_end(&mut rest).unwrap(),
        0,
        "handshake timeout closes"
    );
    witness.round_trip(4);

    let stats = server.stop();
    assert_eq!(stats.protocol_errors, 4);
}

#[test]
fn options_get_the_specified_error_replies() {
    let server = server();
    let mut witness = Client::ready(&server, false);
    let mut client = Client::connect(&server, CLIENT_FLAG_FIXED_NEWSTYLE);
    assert_eq!(client.option(42, b"xyz")[0].0, REP_ERR_UNSUP);
    assert_eq!(client.option(OPT_LIST, b"x")[0].0, REP_ERR_INVALID);
    assert_eq!(
        client.option(OPT_STRUCTURED_REPLY, b"x")[0].0,
        REP_ERR_INVALID
    );
    let mut malformed = info_data("vol", &[INFO_NAME]);
    malformed.truncate(malformed.len() - 1);
    assert_eq!(client.option(OPT_GO, &malformed)[0].0, REP_ERR_INVALID);
    assert_eq!(client.option(OPT_INFO, &[0xff; 3])[0].0, REP_ERR_INVALID);
    assert_eq!(
        client.option(OPT_GO, &info_data("other", &[]))[0].0,
        REP_ERR_UNKNOWN
    );
    witness.round_trip(1);

    let listing = client.option(OPT_LIST, &[]);
    assert_eq!(listing.len(), 2);
    assert_eq!(listing[0].0, REP_SERVER);
    assert_eq!(&listing[0].1[..7], &[0, 0, 0, 3, b'v', b'o', b'l']);
    let info = client.option(OPT_INFO, &info_data("vol", &[INFO_NAME, INFO_BLOCK_SIZE]));
    let types: Vec<u16> = info
        .iter()
        .filter(|(reply_type, _)| *reply_type == REP_INFO)
        .map(|(_, data)| u16::from_be_bytes([data[0], data[1]]))
        .collect();
    assert!(types.contains(&INFO_EXPORT));
    assert!(types.contains(&INFO_NAME));
    assert!(types.contains(&INFO_BLOCK_SIZE));
    let export = &info.iter().find(|(_, data)| data[..2] == [0, 0]).unwrap().1;
    assert_eq!(
        u64::from_be_bytes(export[2..10].try_into().unwrap()),
        SIZE_BYTES as u64
    );
    let block = &info.iter().find(|(_, data)| data[..2] == [0, 3]).unwrap().1;
    assert_eq!(&block[2..], &[0, 0, 2, 0, 0, 0, 16, 0, 0, 1, 0, 0]);
    // After all that, GO still works on the same connection.
    assert_eq!(
        client
            .option(OPT_GO, &info_data("vol", &[]))
            .last()
            .unwrap()
            .0,
        REP_ACK
    );
    client.round_trip(2);
    client.disconnect();
    witness.round_trip(3);
}

impl Client {
    /// Soft disconnect from transmission: DISC gets no reply, then EOF.
    fn disconnect(&mut self) {
        self.request(CMD_DISC, 0, 0, 0, 9);
        assert!(self.closed());
    }
}

#[test]
fn abort_is_acknowledged_then_closed() {
    let server = server();
    let mut client = Client::connect(&server, CLIENT_FLAG_FIXED_NEWSTYLE);
    assert_eq!(client.option(OPT_ABORT, &[]), vec![(REP_ACK, vec![])]);
    assert!(client.closed());
    assert_eq!(server.stop().protocol_errors, 0);
}

#[test]
fn bad_requests_get_the_specified_errnos() {
    let server = server();
    let mut witness = Client::ready(&server, false);
    let mut client = Client::ready(&server, false);
    let end = SIZE_BYTES as u64;
    client.request(CMD_READ, 0, end - 512, 1024, 10);
    assert_eq!(client.simple_reply(), (EINVAL, 10));
    client.request(CMD_WRITE, 0, end, 512, 11);
    client.send(&[7; 512]);
    assert_eq!(client.simple_reply(), (ENOSPC, 11));
    client.request(CMD_WRITE_ZEROES, 0, end - 1, 2, 12);
    assert_eq!(client.simple_reply(), (ENOSPC, 12));
    client.request(CMD_TRIM, 0, u64::MAX, 4096, 13);
    assert_eq!(client.simple_reply(), (EINVAL, 13));
    client.request(CMD_READ, 0, 0, 64 * 1024 + 512, 14);
    assert_eq!(client.simple_reply(), (EINVAL, 14));
    // A write just over the maximum is skipped and refused; the connection goes on.
    client.request(CMD_WRITE, 0, 0, 64 * 1024 + 512, 15);
    client.send(&vec![3; 64 * 1024 + 512]);
    assert_eq!(client.simple_reply(), (EINVAL, 15));
    client.request(99, 0, 0, 0, 16);
    assert_eq!(client.simple_reply(), (EINVAL, 16));
    client.request(CMD_READ, 1 << 7, 0, 512, 17);
    assert_eq!(client.simple_reply(), (EINVAL, 17));
    client.request(CMD_FLUSH, 0, 0, 0, 18);
    assert_eq!(client.simple_reply(), (0, 18));
    client.round_trip(5);
    witness.round_trip(1);

    // A write payload too large to skip: an EINVAL reply, then the connection closes.
    let mut huge = Client::ready(&server, false);
    huge.request(CMD_WRITE, 0, 0, u32::MAX, 20);
    assert_eq!(huge.simple_reply(), (EINVAL, 20));
    assert!(huge.closed());
    witness.round_trip(2);

    let mut bad_magic = Client::ready(&server, false);
    bad_magic.send(&[0xde; REQUEST_BYTES]);
    assert!(bad_magic.closed(), "bad request magic must close");
    witness.round_trip(3);
    let stats = server.stop();
    assert_eq!(stats.protocol_errors, 2);
}

#[test]
fn structured_replies_carry_data_and_errors() {
    let server = server();
    let mut client = Client::ready(&server, true);
    client.request(CMD_WRITE, 0, 8192, 4096, 1);
    client.send(&[0x42; 4096]);
    assert_eq!(
        client.chunk(),
        (REPLY_FLAG_DONE, REPLY_TYPE_NONE, 1, vec![])
    );
    client.request(CMD_READ, 0, 8192, 4096, 2);
    let (flags, reply_type, cookie, payload) = client.chunk();
    assert_eq!(
        (flags, reply_type, cookie),
        (REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, 2)
    );
    assert_eq!(u64::from_be_bytes(payload[..8].try_into().unwrap()), 8192);
    assert_eq!(&payload[8..], &[0x42; 4096][..]);
    client.request(CMD_READ, 0, SIZE_BYTES as u64, 512, 3);
    let (flags, reply_type, cookie, payload) = client.chunk();
    assert_eq!(
        (flags, reply_type, cookie),
        (REPLY_FLAG_DONE, REPLY_TYPE_ERROR, 3)
    );
    assert_eq!(u32::from_be_bytes(payload[..4].try_into().unwrap()), EINVAL);
    let message_bytes = u16::from_be_bytes([payload[4], payload[5]]) as usize;
    assert_eq!(payload.len(), 6 + message_bytes);
}

#[test]
fn read_only_export_refuses_changes_with_eperm() {
    let server = TestServer::start(
        MemoryDevice::new(SIZE_BYTES),
        ServerOptions {
            read_only: true,
            ..ServerOptions::default()
        },
    );
    let mut client = Client::ready(&server, false);
    client.request(CMD_WRITE, 0, 0, 512, 1);
    client.send(&[1; 512]);
    assert_eq!(client.simple_reply(), (EPERM, 1));
    client.request(CMD_TRIM, 0, 0, 512, 2);
    assert_eq!(client.simple_reply(), (EPERM, 2));
    client.request(CMD_READ, 0, 0, 512, 3);
    assert_eq!(client.simple_reply(), (0, 3));
    assert_eq!(client.read_bytes(512), vec![0; 512]);
}

#[test]
fn shutdown_finishes_requests_in_flight_and_replies() {
    let device = MemoryDevice::with_delay(SIZE_BYTES, Duration::from_millis(300));
    let server = TestServer::start(device.clone(), ServerOptions::default());
    let mut client = Client::ready(&server, false);
    for cookie in 0..4u64 {
        client.request(CMD_WRITE, 0, cookie * 4096, 4096, cookie);
        client.send(&[cookie as u8 + 1; 4096]);
    }
    // Let the server read the requests before it is told to stop.
    std::thread::sleep(Duration::from_millis(100));
    let stopper = std::thread::spawn(move || server.stop());
    let mut cookies: Vec<u64> = (0..4)
        .map(|_| {
            let (errno, cookie) = client.simple_reply();
            assert_eq!(errno, 0);
            cookie
        })
        .collect();
    cookies.sort_unstable();
    assert_eq!(cookies, vec![0, 1, 2, 3]);
    assert!(client.closed());
    let stats = stopper.join().unwrap();
    assert_eq!(stats.requests, 4);
    assert_eq!(device.writes.load(std::sync::atomic::Ordering::Relaxed), 4);
}
