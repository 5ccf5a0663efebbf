//! The NBD wire format we speak: constants, message layouts, parsers and encoders.
//!
//! Pure functions over byte slices, no I/O: the server (`super::server`) reads bytes off the
//! socket and hands them here; the fuzz targets hand any bytes at all. Nothing here panics on
//! any input. All integers on the wire are big-endian. The subset and its rules are written
//! out in `docs/PROTOCOL.md` ("The NBD subset we speak").

use std::fmt;

// ---------------------------------------------------------------------------------------
// Handshake

/// The server's first eight bytes: ASCII `NBDMAGIC`.
pub const INIT_MAGIC: u64 = 0x4e42_444d_4147_4943;
/// Second eight bytes, and the magic in front of every option: ASCII `IHAVEOPT`.
pub const OPTION_MAGIC: u64 = 0x4948_4156_454f_5054;
/// Magic in front of every option reply.
pub const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;

/// Server handshake flag: fixed newstyle (options may be refused and retried).
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
/// Server handshake flag: the client may ask us to omit the 124 zero bytes.
pub const FLAG_NO_ZEROES: u16 = 1 << 1;
/// The handshake flags we send.
pub const HANDSHAKE_FLAGS: u16 = FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES;

/// Client flag: the client speaks fixed newstyle.
pub const CLIENT_FLAG_FIXED_NEWSTYLE: u32 = 1 << 0;
/// Client flag: omit the 124 zero bytes after `NBD_OPT_EXPORT_NAME`'s reply.
pub const CLIENT_FLAG_NO_ZEROES: u32 = 1 << 1;
const CLIENT_FLAGS_KNOWN: u32 = CLIENT_FLAG_FIXED_NEWSTYLE | CLIENT_FLAG_NO_ZEROES;

/// Bytes of the server's greeting: two magics and the handshake flags.
pub const GREETING_BYTES: usize = 18;
/// Bytes of an option header: magic, option, length.
pub const OPTION_HEADER_BYTES: usize = 16;
/// Longest option payload we read; longer ones are skipped and answered `NBD_REP_ERR_TOO_BIG`.
pub const OPTION_DATA_BYTES_MAX: u32 = 64 * 1024;
/// Longest export name the protocol allows.
pub const EXPORT_NAME_BYTES_MAX: usize = 4096;
/// Zero bytes that follow `NBD_OPT_EXPORT_NAME`'s reply unless `NO_ZEROES` was agreed.
pub const EXPORT_NAME_ZEROES_BYTES: usize = 124;

pub const OPT_EXPORT_NAME: u32 = 1;
pub const OPT_ABORT: u32 = 2;
pub const OPT_LIST: u32 = 3;
pub const OPT_INFO: u32 = 6;
pub const OPT_GO: u32 = 7;
pub const OPT_STRUCTURED_REPLY: u32 = 8;

pub const REP_ACK: u32 = 1;
pub const REP_SERVER: u32 = 2;
pub const REP_INFO: u32 = 3;
const REP_ERROR_BIT: u32 = 1 << 31;
pub const REP_ERR_UNSUP: u32 = REP_ERROR_BIT | 1;
pub const REP_ERR_POLICY: u32 = REP_ERROR_BIT | 2;
pub const REP_ERR_INVALID: u32 = REP_ERROR_BIT | 3;
pub const REP_ERR_UNKNOWN: u32 = REP_ERROR_BIT | 6;
pub const REP_ERR_SHUTDOWN: u32 = REP_ERROR_BIT | 7;
pub const REP_ERR_TOO_BIG: u32 = REP_ERROR_BIT | 9;

pub const INFO_EXPORT: u16 = 0;
pub const INFO_NAME: u16 = 1;
pub const INFO_DESCRIPTION: u16 = 2;
pub const INFO_BLOCK_SIZE: u16 = 3;

/// Smallest request size and alignment we advertise.
pub const BLOCK_BYTES_MIN: u32 = 512;
/// Size and alignment at which the volume avoids read-modify-write (its 4 KiB block).
pub const BLOCK_BYTES_PREFERRED: u32 = 4096;

// ---------------------------------------------------------------------------------------
// Transmission

pub const TRANSMIT_HAS_FLAGS: u16 = 1 << 0;
pub const TRANSMIT_READ_ONLY: u16 = 1 << 1;
pub const TRANSMIT_SEND_FLUSH: u16 = 1 << 2;
pub const TRANSMIT_SEND_FUA: u16 = 1 << 3;
pub const TRANSMIT_SEND_TRIM: u16 = 1 << 5;
pub const TRANSMIT_SEND_WRITE_ZEROES: u16 = 1 << 6;
pub const TRANSMIT_CAN_MULTI_CONN: u16 = 1 << 8;

pub const REQUEST_MAGIC: u32 = 0x2560_9513;
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;
/// Bytes of a request header (without a write's payload).
pub const REQUEST_BYTES: usize = 28;
/// Bytes of a simple reply header (a read's data follows it).
pub const SIMPLE_REPLY_BYTES: usize = 16;
/// Bytes of a structured reply chunk header.
pub const CHUNK_HEADER_BYTES: usize = 20;
/// Bytes in front of a read's data in an `OFFSET_DATA` chunk: chunk header and offset.
pub const OFFSET_DATA_PREFIX_BYTES: usize = CHUNK_HEADER_BYTES + 8;

pub const CMD_READ: u16 = 0;
pub const CMD_WRITE: u16 = 1;
pub const CMD_DISC: u16 = 2;
pub const CMD_FLUSH: u16 = 3;
pub const CMD_TRIM: u16 = 4;
pub const CMD_WRITE_ZEROES: u16 = 6;

pub const CMD_FLAG_FUA: u16 = 1 << 0;
pub const CMD_FLAG_NO_HOLE: u16 = 1 << 1;

pub const REPLY_FLAG_DONE: u16 = 1 << 0;
pub const REPLY_TYPE_NONE: u16 = 0;
pub const REPLY_TYPE_OFFSET_DATA: u16 = 1;
pub const REPLY_TYPE_ERROR: u16 = (1 << 15) | 1;
/// Longest message we put in an error chunk.
pub const ERROR_MESSAGE_BYTES_MAX: usize = 1024;

pub const EPERM: u32 = 1;
pub const EIO: u32 = 5;
pub const EINVAL: u32 = 22;
pub const ENOSPC: u32 = 28;
pub const ESHUTDOWN: u32 = 108;

const _: () = assert!(BLOCK_BYTES_MIN.is_power_of_two());
const _: () = assert!(BLOCK_BYTES_PREFERRED.is_power_of_two());
const _: () = assert!(BLOCK_BYTES_PREFERRED >= BLOCK_BYTES_MIN);
const _: () = assert!(OFFSET_DATA_PREFIX_BYTES > SIMPLE_REPLY_BYTES);
const _: () = assert!(OPTION_DATA_BYTES_MAX as usize > EXPORT_NAME_BYTES_MAX + 6);

// ---------------------------------------------------------------------------------------
// Errors

/// A byte string that breaks the protocol badly enough that the connection must close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("input is {actual} bytes, a {what} needs {expected}")]
    Short {
        what: &'static str,
        expected: usize,
        actual: usize,
    },
    #[error("client flags {0:#x} carry bits we do not know")]
    UnknownClientFlags(u32),
    #[error("option magic {0:#018x} is not IHAVEOPT")]
    BadOptionMagic(u64),
    #[error("request magic {0:#010x} is not {REQUEST_MAGIC:#010x}")]
    BadRequestMagic(u32),
}

/// An option we answer with an error reply, the connection staying open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    /// Malformed data for a known option: `NBD_REP_ERR_INVALID`.
    #[error("option {option}: {reason}")]
    Invalid { option: u32, reason: &'static str },
    /// An option we do not implement: `NBD_REP_ERR_UNSUP`.
    #[error("option {0} is not supported")]
    Unsupported(u32),
}

impl OptionError {
    /// The option reply type that carries this error.
    pub fn reply_type(&self) -> u32 {
        match self {
            OptionError::Invalid { .. } => REP_ERR_INVALID,
            OptionError::Unsupported(_) => REP_ERR_UNSUP,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Handshake parsing

/// What the client said in its 32-bit flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientFlags {
    pub fixed_newstyle: bool,
    pub no_zeroes: bool,
}

/// Parses the client's flags; an unknown bit means we must close the connection.
pub fn parse_client_flags(bytes: &[u8]) -> Result<ClientFlags, ProtocolError> {
    let raw = be_u32(bytes, 0, "client flags")?;
    if raw & !CLIENT_FLAGS_KNOWN != 0 {
        return Err(ProtocolError::UnknownClientFlags(raw));
    }
    Ok(ClientFlags {
        fixed_newstyle: raw & CLIENT_FLAG_FIXED_NEWSTYLE != 0,
        no_zeroes: raw & CLIENT_FLAG_NO_ZEROES != 0,
    })
}

/// The server's greeting.
pub fn encode_greeting() -> [u8; GREETING_BYTES] {
    let mut out = [0u8; GREETING_BYTES];
    out[0..8].copy_from_slice(&INIT_MAGIC.to_be_bytes());
    out[8..16].copy_from_slice(&OPTION_MAGIC.to_be_bytes());
    out[16..18].copy_from_slice(&HANDSHAKE_FLAGS.to_be_bytes());
    out
}

/// The 16 bytes in front of every option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionHeader {
    pub option: u32,
    pub data_bytes: u32,
}

impl OptionHeader {
    pub fn parse(bytes: &[u8]) -> Result<OptionHeader, ProtocolError> {
        let magic = be_u64(bytes, 0, "option header")?;
        if magic != OPTION_MAGIC {
            return Err(ProtocolError::BadOptionMagic(magic));
        }
        Ok(OptionHeader {
            option: be_u32(bytes, 8, "option header")?,
            data_bytes: be_u32(bytes, 12, "option header")?,
        })
    }
}

/// An option, its data checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOption {
    /// Old way into transmission: no error reply is possible, an unknown name closes.
    ExportName {
        name: Vec<u8>,
    },
    Abort,
    List,
    /// `NBD_OPT_INFO` (`go == false`) or `NBD_OPT_GO`.
    Info {
        go: bool,
        name: String,
        requests: Vec<u16>,
    },
    StructuredReply,
}

/// Parses an option's data. `Err` is answered with the error's reply type.
pub fn parse_option(option: u32, data: &[u8]) -> Result<ClientOption, OptionError> {
    let invalid = |reason| OptionError::Invalid { option, reason };
    match option {
        OPT_EXPORT_NAME => Ok(ClientOption::ExportName {
            name: data.to_vec(),
        }),
        // The protocol asks servers to ignore data sent with ABORT.
        OPT_ABORT => Ok(ClientOption::Abort),
        OPT_LIST if data.is_empty() => Ok(ClientOption::List),
        OPT_LIST => Err(invalid("LIST carries no data")),
        OPT_STRUCTURED_REPLY if data.is_empty() => Ok(ClientOption::StructuredReply),
        OPT_STRUCTURED_REPLY => Err(invalid("STRUCTURED_REPLY carries no data")),
        OPT_INFO | OPT_GO => parse_info_request(option, data),
        _ => Err(OptionError::Unsupported(option)),
    }
}

/// `NBD_OPT_INFO`/`NBD_OPT_GO`: u32 name length, name, u16 count, count × u16 info types.
fn parse_info_request(option: u32, data: &[u8]) -> Result<ClientOption, OptionError> {
    let invalid = |reason| OptionError::Invalid { option, reason };
    let name_bytes = be_u32(data, 0, "").map_err(|_| invalid("shorter than a name length"))?;
    let name_end = usize::try_from(name_bytes)
        .ok()
        .and_then(|name_bytes| name_bytes.checked_add(4))
        .filter(|&end| end <= data.len())
        .ok_or(invalid("name length runs past the option data"))?;
    let name = std::str::from_utf8(&data[4..name_end])
        .map_err(|_| invalid("export name is not UTF-8"))?
        .to_owned();
    let count = be_u16(data, name_end, "").map_err(|_| invalid("no info request count"))?;
    let list = &data[name_end + 2..];
    if list.len() != usize::from(count) * 2 {
        return Err(invalid(
            "info request count disagrees with the option length",
        ));
    }
    let requests = list
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .collect();
    Ok(ClientOption::Info {
        go: option == OPT_GO,
        name,
        requests,
    })
}

/// One option reply: header and data.
pub fn encode_option_reply(option: u32, reply_type: u32, data: &[u8]) -> Vec<u8> {
    let data_bytes = u32::try_from(data.len()).expect("option replies are small");
    let mut out = Vec::with_capacity(20 + data.len());
    out.extend_from_slice(&OPTION_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&reply_type.to_be_bytes());
    out.extend_from_slice(&data_bytes.to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// `NBD_REP_SERVER` data: the export's name, then its description.
pub fn encode_server_entry(name: &str, description: &str) -> Vec<u8> {
    let name_bytes = u32::try_from(name.len()).expect("export names are short");
    let mut out = Vec::with_capacity(4 + name.len() + description.len());
    out.extend_from_slice(&name_bytes.to_be_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(description.as_bytes());
    out
}

/// `NBD_INFO_EXPORT` data: size and transmission flags.
pub fn encode_info_export(size_bytes: u64, transmission_flags: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    out.extend_from_slice(&INFO_EXPORT.to_be_bytes());
    out.extend_from_slice(&size_bytes.to_be_bytes());
    out.extend_from_slice(&transmission_flags.to_be_bytes());
    out
}

/// `NBD_INFO_NAME` or `NBD_INFO_DESCRIPTION` data: the type, then the text.
pub fn encode_info_text(info_type: u16, text: &str) -> Vec<u8> {
    debug_assert!(info_type == INFO_NAME || info_type == INFO_DESCRIPTION);
    let mut out = Vec::with_capacity(2 + text.len());
    out.extend_from_slice(&info_type.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    out
}

/// `NBD_INFO_BLOCK_SIZE` data: minimum, preferred and maximum payload.
pub fn encode_info_block_size(request_bytes_max: u32) -> Vec<u8> {
    assert!(request_bytes_max >= BLOCK_BYTES_PREFERRED);
    assert!(request_bytes_max.is_multiple_of(BLOCK_BYTES_MIN));
    let mut out = Vec::with_capacity(14);
    out.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
    out.extend_from_slice(&BLOCK_BYTES_MIN.to_be_bytes());
    out.extend_from_slice(&BLOCK_BYTES_PREFERRED.to_be_bytes());
    out.extend_from_slice(&request_bytes_max.to_be_bytes());
    out
}

/// The reply to `NBD_OPT_EXPORT_NAME`: size, flags, and 124 zeros unless `NO_ZEROES`.
pub fn encode_export_name_reply(size_bytes: u64, transmission_flags: u16, zeroes: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + EXPORT_NAME_ZEROES_BYTES);
    out.extend_from_slice(&size_bytes.to_be_bytes());
    out.extend_from_slice(&transmission_flags.to_be_bytes());
    if zeroes {
        out.extend_from_slice(&[0u8; EXPORT_NAME_ZEROES_BYTES]);
    }
    out
}

// ---------------------------------------------------------------------------------------
// Requests

/// A request header as it came off the wire (only the magic checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    pub flags: u16,
    pub command: u16,
    pub cookie: u64,
    pub offset: u64,
    pub length: u32,
}

impl RequestHeader {
    pub fn parse(bytes: &[u8]) -> Result<RequestHeader, ProtocolError> {
        let magic = be_u32(bytes, 0, "request header")?;
        if magic != REQUEST_MAGIC {
            return Err(ProtocolError::BadRequestMagic(magic));
        }
        Ok(RequestHeader {
            flags: be_u16(bytes, 4, "request header")?,
            command: be_u16(bytes, 6, "request header")?,
            cookie: be_u64(bytes, 8, "request header")?,
            offset: be_u64(bytes, 16, "request header")?,
            length: be_u32(bytes, 24, "request header")?,
        })
    }

    pub fn encode(&self) -> [u8; REQUEST_BYTES] {
        let mut out = [0u8; REQUEST_BYTES];
        out[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        out[4..6].copy_from_slice(&self.flags.to_be_bytes());
        out[6..8].copy_from_slice(&self.command.to_be_bytes());
        out[8..16].copy_from_slice(&self.cookie.to_be_bytes());
        out[16..24].copy_from_slice(&self.offset.to_be_bytes());
        out[24..28].copy_from_slice(&self.length.to_be_bytes());
        out
    }
}

/// What the export allows, for request validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportLimits {
    pub size_bytes: u64,
    pub request_bytes_max: u32,
    pub read_only: bool,
}

/// A request that passed validation: what to ask the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Read {
        offset: u64,
        length: u32,
    },
    /// The payload of `length` bytes follows the header on the wire.
    Write {
        offset: u64,
        length: u32,
        fua: bool,
    },
    Disconnect,
    Flush,
    Trim {
        offset: u64,
        length: u32,
        fua: bool,
    },
    WriteZeroes {
        offset: u64,
        length: u32,
        fua: bool,
    },
}

/// What to do with the bytes after a refused request's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// Nothing follows the header.
    None,
    /// A write payload of this many bytes follows: read it and throw it away, then reply.
    Discard(u32),
    /// A payload too large to skip follows: reply, then close the connection.
    Disconnect,
}

/// A request refused with an errno; the connection stays usable unless `payload` says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("request refused with errno {errno}: {reason}")]
pub struct Refusal {
    pub errno: u32,
    pub payload: Payload,
    pub reason: &'static str,
}

/// The largest write payload we read only to throw away: the protocol asks that payloads up to
/// 32 MiB never be treated as a denial of service.
pub const DISCARD_BYTES_MAX: u32 = 32 * 1024 * 1024;

/// Checks a request against the export, in the protocol's order of concerns: command, flags,
/// payload size, read-only, range. Errnos: unknown command or flag, oversize, read/trim past
/// the end → `EINVAL`; write/write-zeroes past the end → `ENOSPC`; a change to a read-only
/// export → `EPERM`.
pub fn validate_request(header: &RequestHeader, limits: &ExportLimits) -> Result<Command, Refusal> {
    let is_write = header.command == CMD_WRITE;
    let payload = if !is_write {
        Payload::None
    } else if header.length <= DISCARD_BYTES_MAX {
        Payload::Discard(header.length)
    } else {
        Payload::Disconnect
    };
    let refuse = |errno, reason| Refusal {
        errno,
        payload,
        reason,
    };
    let allowed_flags = match header.command {
        CMD_READ | CMD_DISC | CMD_FLUSH | CMD_TRIM | CMD_WRITE => CMD_FLAG_FUA,
        CMD_WRITE_ZEROES => CMD_FLAG_FUA | CMD_FLAG_NO_HOLE,
        _ => return Err(refuse(EINVAL, "unknown command")),
    };
    if header.flags & !allowed_flags != 0 {
        return Err(refuse(EINVAL, "command flag not valid for this command"));
    }
    let fua = header.flags & CMD_FLAG_FUA != 0;
    let (offset, length) = (header.offset, header.length);
    match header.command {
        CMD_DISC => return Ok(Command::Disconnect),
        CMD_FLUSH if offset != 0 || length != 0 => {
            return Err(refuse(EINVAL, "flush with a nonzero offset or length"));
        }
        CMD_FLUSH => return Ok(Command::Flush),
        _ => {}
    }
    let carries_payload = header.command == CMD_READ || is_write;
    if carries_payload && length > limits.request_bytes_max {
        return Err(refuse(EINVAL, "length above the maximum payload"));
    }
    if limits.read_only && header.command != CMD_READ {
        return Err(refuse(EPERM, "the export is read-only"));
    }
    let inside = offset
        .checked_add(u64::from(length))
        .is_some_and(|end| end <= limits.size_bytes);
    if !inside {
        let errno = match header.command {
            CMD_WRITE | CMD_WRITE_ZEROES => ENOSPC,
            _ => EINVAL,
        };
        return Err(refuse(errno, "range reaches past the end of the export"));
    }
    Ok(match header.command {
        CMD_READ => Command::Read { offset, length },
        CMD_WRITE => Command::Write {
            offset,
            length,
            fua,
        },
        CMD_TRIM => Command::Trim {
            offset,
            length,
            fua,
        },
        _ => Command::WriteZeroes {
            offset,
            length,
            fua,
        },
    })
}

// ---------------------------------------------------------------------------------------
// Replies

/// A simple reply header; a successful read's data follows it.
pub fn encode_simple_reply(cookie: u64, errno: u32) -> [u8; SIMPLE_REPLY_BYTES] {
    let mut out = [0u8; SIMPLE_REPLY_BYTES];
    write_simple_reply(&mut out, cookie, errno);
    out
}

/// Writes a simple reply header into the first 16 bytes of `out`.
pub fn write_simple_reply(out: &mut [u8], cookie: u64, errno: u32) {
    out[0..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    out[4..8].copy_from_slice(&errno.to_be_bytes());
    out[8..16].copy_from_slice(&cookie.to_be_bytes());
}

/// Writes a structured chunk header into the first 20 bytes of `out`.
pub fn write_chunk_header(out: &mut [u8], flags: u16, reply_type: u16, cookie: u64, length: u32) {
    out[0..4].copy_from_slice(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
    out[4..6].copy_from_slice(&flags.to_be_bytes());
    out[6..8].copy_from_slice(&reply_type.to_be_bytes());
    out[8..16].copy_from_slice(&cookie.to_be_bytes());
    out[16..20].copy_from_slice(&length.to_be_bytes());
}

/// Writes the prefix of a final `OFFSET_DATA` chunk carrying `data_bytes` of data at `offset`
/// into the first 28 bytes of `out`.
pub fn write_offset_data_prefix(out: &mut [u8], cookie: u64, offset: u64, data_bytes: u32) {
    let length = data_bytes
        .checked_add(8)
        .expect("reads are at most the maximum payload");
    write_chunk_header(out, REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, cookie, length);
    out[20..28].copy_from_slice(&offset.to_be_bytes());
}

/// A final `NONE` chunk: the command succeeded and carries no data.
pub fn encode_structured_done(cookie: u64) -> [u8; CHUNK_HEADER_BYTES] {
    let mut out = [0u8; CHUNK_HEADER_BYTES];
    write_chunk_header(&mut out, REPLY_FLAG_DONE, REPLY_TYPE_NONE, cookie, 0);
    out
}

/// A final `ERROR` chunk: errno and a short human-readable message (cut at a char boundary).
pub fn encode_structured_error(cookie: u64, errno: u32, message: &str) -> Vec<u8> {
    let mut end = message.len().min(ERROR_MESSAGE_BYTES_MAX);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let message = &message.as_bytes()[..end];
    let message_bytes = u16::try_from(message.len()).expect("message is cut to 1 KiB");
    let mut out = vec![0u8; CHUNK_HEADER_BYTES];
    let length = 6 + u32::from(message_bytes);
    write_chunk_header(&mut out, REPLY_FLAG_DONE, REPLY_TYPE_ERROR, cookie, length);
    out.extend_from_slice(&errno.to_be_bytes());
    out.extend_from_slice(&message_bytes.to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// The name of a command, for logs.
pub fn command_name(command: u16) -> CommandName {
    CommandName(command)
}

/// Displays a command number as its protocol name.
#[derive(Debug, Clone, Copy)]
pub struct CommandName(u16);

impl fmt::Display for CommandName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            CMD_READ => formatter.write_str("READ"),
            CMD_WRITE => formatter.write_str("WRITE"),
            CMD_DISC => formatter.write_str("DISC"),
            CMD_FLUSH => formatter.write_str("FLUSH"),
            CMD_TRIM => formatter.write_str("TRIM"),
            CMD_WRITE_ZEROES => formatter.write_str("WRITE_ZEROES"),
            other => write!(formatter, "command {other}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Byte helpers: checked big-endian reads.

fn field<const N: usize>(
    bytes: &[u8],
    at: usize,
    what: &'static str,
) -> Result<[u8; N], ProtocolError> {
    bytes
        .get(at..)
        .and_then(|rest| rest.get(..N))
        .and_then(|slice| <[u8; N]>::try_from(slice).ok())
        .ok_or(ProtocolError::Short {
            what,
            expected: at.saturating_add(N),
            actual: bytes.len(),
        })
}

fn be_u16(bytes: &[u8], at: usize, what: &'static str) -> Result<u16, ProtocolError> {
    field::<2>(bytes, at, what).map(u16::from_be_bytes)
}

fn be_u32(bytes: &[u8], at: usize, what: &'static str) -> Result<u32, ProtocolError> {
    field::<4>(bytes, at, what).map(u32::from_be_bytes)
}

fn be_u64(bytes: &[u8], at: usize, what: &'static str) -> Result<u64, ProtocolError> {
    field::<8>(bytes, at, what).map(u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ExportLimits = ExportLimits {
        size_bytes: 1 << 20,
        request_bytes_max: 1 << 16,
        read_only: false,
    };

    fn request(command: u16, flags: u16, offset: u64, length: u32) -> RequestHeader {
        RequestHeader {
            flags,
            command,
            cookie: 7,
            offset,
            length,
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

    #[test]
    fn greeting_is_nbdmagic_ihaveopt_and_flags() {
        let greeting = encode_greeting();
        assert_eq!(&greeting[..16], b"NBDMAGICIHAVEOPT");
        assert_eq!(&greeting[16..], &[0, 3]);
    }

    #[test]
    fn client_flags_unknown_bits_refused() {
        assert_eq!(
            parse_client_flags(&[0, 0, 0, 3]),
            Ok(ClientFlags {
                fixed_newstyle: true,
                no_zeroes: true
            })
        );
        assert_eq!(
            parse_client_flags(&[0, 0, 0, 4]),
            Err(ProtocolError::UnknownClientFlags(4))
        );
        assert!(matches!(
            parse_client_flags(&[0, 0]),
            Err(ProtocolError::Short { .. })
        ));
    }

    #[test]
    fn option_header_checks_magic() {
        let mut bytes = OPTION_MAGIC.to_be_bytes().to_vec();
        bytes.extend_from_slice(&OPT_GO.to_be_bytes());
        bytes.extend_from_slice(&9u32.to_be_bytes());
        let header = OptionHeader::parse(&bytes).unwrap();
        assert_eq!(header.option, OPT_GO);
        assert_eq!(header.data_bytes, 9);
        bytes[0] ^= 1;
        assert!(matches!(
            OptionHeader::parse(&bytes),
            Err(ProtocolError::BadOptionMagic(_))
        ));
    }

    #[test]
    fn go_parses_name_and_requests() {
        let data = info_data("vol", &[INFO_BLOCK_SIZE, INFO_NAME]);
        assert_eq!(
            parse_option(OPT_GO, &data),
            Ok(ClientOption::Info {
                go: true,
                name: "vol".into(),
                requests: vec![INFO_BLOCK_SIZE, INFO_NAME],
            })
        );
    }

    #[test]
    fn malformed_info_is_invalid_and_unknown_is_unsupported() {
        let mut data = info_data("vol", &[INFO_BLOCK_SIZE]);
        data.push(0);
        let error = parse_option(OPT_INFO, &data).unwrap_err();
        assert_eq!(error.reply_type(), REP_ERR_INVALID);
        let huge_name = [0xff, 0xff, 0xff, 0xff, 0, 0];
        assert_eq!(
            parse_option(OPT_GO, &huge_name).unwrap_err().reply_type(),
            REP_ERR_INVALID
        );
        assert_eq!(
            parse_option(OPT_LIST, &[1]).unwrap_err().reply_type(),
            REP_ERR_INVALID
        );
        assert_eq!(
            parse_option(42, &[]).unwrap_err().reply_type(),
            REP_ERR_UNSUP
        );
        assert_eq!(parse_option(OPT_ABORT, &[9, 9]), Ok(ClientOption::Abort));
    }

    #[test]
    fn request_round_trips_and_bad_magic_is_fatal() {
        let header = request(CMD_WRITE, CMD_FLAG_FUA, 4096, 512);
        let bytes = header.encode();
        assert_eq!(RequestHeader::parse(&bytes), Ok(header));
        let mut bad = bytes;
        bad[3] ^= 0xff;
        assert!(matches!(
            RequestHeader::parse(&bad),
            Err(ProtocolError::BadRequestMagic(_))
        ));
    }

    #[test]
    fn validation_errnos_follow_the_protocol() {
        let errno = |header: RequestHeader| validate_request(&header, &LIMITS).unwrap_err();
        assert_eq!(errno(request(CMD_READ, 0, 1 << 20, 512)).errno, EINVAL);
        assert_eq!(errno(request(CMD_TRIM, 0, u64::MAX, 512)).errno, EINVAL);
        let past_end_write = errno(request(CMD_WRITE, 0, 1 << 20, 512));
        assert_eq!(past_end_write.errno, ENOSPC);
        assert_eq!(past_end_write.payload, Payload::Discard(512));
        assert_eq!(
            errno(request(CMD_WRITE_ZEROES, 0, 1 << 20, 1)).errno,
            ENOSPC
        );
        assert_eq!(errno(request(CMD_READ, 0, 0, 1 << 17)).errno, EINVAL);
        assert_eq!(errno(request(99, 0, 0, 0)).errno, EINVAL);
        assert_eq!(
            errno(request(CMD_READ, CMD_FLAG_NO_HOLE, 0, 1)).errno,
            EINVAL
        );
        let huge_write = errno(request(CMD_WRITE, 0, 0, u32::MAX));
        assert_eq!(huge_write.errno, EINVAL);
        assert_eq!(huge_write.payload, Payload::Disconnect);
        let read_only = ExportLimits {
            read_only: true,
            ..LIMITS
        };
        let refusal = validate_request(&request(CMD_WRITE, 0, 0, 512), &read_only).unwrap_err();
        assert_eq!(refusal.errno, EPERM);
        assert_eq!(refusal.payload, Payload::Discard(512));
    }

    #[test]
    fn validation_accepts_what_the_export_allows() {
        let valid = |header| validate_request(&header, &LIMITS).unwrap();
        assert_eq!(
            valid(request(
                CMD_WRITE_ZEROES,
                CMD_FLAG_NO_HOLE | CMD_FLAG_FUA,
                0,
                1 << 20
            )),
            Command::WriteZeroes {
                offset: 0,
                length: 1 << 20,
                fua: true
            }
        );
        assert_eq!(valid(request(CMD_FLUSH, 0, 0, 0)), Command::Flush);
        assert_eq!(valid(request(CMD_DISC, 0, 0, 0)), Command::Disconnect);
        assert_eq!(
            valid(request(CMD_READ, 0, (1 << 20) - 512, 512)),
            Command::Read {
                offset: (1 << 20) - 512,
                length: 512
            }
        );
    }

    #[test]
    fn error_chunk_message_cut_at_char_boundary() {
        let message = "é".repeat(ERROR_MESSAGE_BYTES_MAX);
        let chunk = encode_structured_error(1, EIO, &message);
        let message_bytes = u16::from_be_bytes([chunk[24], chunk[25]]) as usize;
        assert!(message_bytes <= ERROR_MESSAGE_BYTES_MAX);
        assert_eq!(chunk.len(), CHUNK_HEADER_BYTES + 6 + message_bytes);
        assert!(std::str::from_utf8(&chunk[26..]).is_ok());
    }
}
