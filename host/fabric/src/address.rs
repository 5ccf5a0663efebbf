//! Where the fabric listens and ports connect: `tcp:HOST:PORT`, `HOST:PORT` or
//! `unix:PATH`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A fabric address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// A TCP `HOST:PORT` (a name or an IP address; port 0 when listening: any free port).
    Tcp(String),
    /// A Unix stream socket's path.
    Unix(PathBuf),
}

/// Why a string is not a fabric address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Nothing given.
    #[error("empty fabric address (expected tcp:HOST:PORT, HOST:PORT or unix:PATH)")]
    Empty,
    /// A TCP address without a `:PORT` or with a port that is not a number.
    #[error("fabric address '{0}' lacks a numeric :PORT (expected tcp:HOST:PORT or unix:PATH)")]
    BadTcp(String),
    /// `unix:` with no path.
    #[error("fabric address 'unix:' has no path")]
    EmptyPath,
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Self, AddressError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(AddressError::Empty);
        }
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(AddressError::EmptyPath);
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        let host_port = text.strip_prefix("tcp:").unwrap_or(text);
        let valid = host_port
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid {
            return Err(AddressError::BadTcp(text.to_string()));
        }
        Ok(Self::Tcp(host_port.to_string()))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(host_port) => write!(formatter, "tcp:{host_port}"),
            Self::Unix(path) => write!(formatter, "unix:{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_parse() {
        assert_eq!(
            "tcp:127.0.0.1:7000".parse(),
            Ok(Address::Tcp("127.0.0.1:7000".into()))
        );
        assert_eq!(
            "localhost:0".parse(),
            Ok(Address::Tcp("localhost:0".into()))
        );
        assert_eq!("[::1]:9".parse(), Ok(Address::Tcp("[::1]:9".into())));
        assert_eq!(
            "unix:/tmp/f.sock".parse(),
            Ok(Address::Unix("/tmp/f.sock".into()))
        );
        let round: Address = "tcp:h:1".parse().unwrap();
        assert_eq!(round.to_string().parse(), Ok(round));
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!("".parse::<Address>(), Err(AddressError::Empty));
        assert_eq!("unix:".parse::<Address>(), Err(AddressError::EmptyPath));
        for bad in ["host", "host:", ":80", "host:http", "host:70000", "tcp:"] {
            assert!(
                matches!(bad.parse::<Address>(), Err(AddressError::BadTcp(_))),
                "{bad}"
            );
        }
    }
}
