//! A fabric server on its own runtime thread, and port helpers, for the socket tests.
#![allow(dead_code)]

use amf_fabric::client::{self, Joined};
use amf_fabric::server::BackgroundFabric;
use amf_fabric::{Address, ArbiterConfig, ClientError, OwnedFrame, ServerConfig};
use shared_regs::fabric::{MessageKind, PORT_BROADCAST};
use std::time::Duration;

pub const ARRAY: [u8; 16] = [0x42; 16];
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A running fabric; dropping it stops the server.
pub struct Fabric {
    pub address: Address,
    _server: BackgroundFabric,
}

impl Fabric {
    pub fn start(address: &str, arbiter: ArbiterConfig) -> Fabric {
        let config = ServerConfig {
            arbiter,
            ..ServerConfig::default()
        };
        let server = BackgroundFabric::start(&address.parse().unwrap(), config).unwrap();
        Fabric {
            address: server.address().clone(),
            _server: server,
        }
    }

    pub fn tcp() -> Fabric {
        Fabric::start("127.0.0.1:0", ArbiterConfig::default())
    }

    /// Joins as `port`, beating at the fabric's interval.
    pub fn join(&self, port: u8) -> Port {
        let joined = client::join(&self.address, port, ARRAY, TIMEOUT).unwrap();
        Port::beating(joined)
    }
}

/// A joined port that beats.
pub struct Port {
    pub joined: Joined,
    _beat: client::HeartbeatGuard,
}

impl Port {
    pub fn beating(joined: Joined) -> Port {
        let interval = Duration::from_millis(u64::from(joined.welcome.heartbeat_interval_ms.get()));
        let beat = joined.writer.start_heartbeat(interval).unwrap();
        Port {
            joined,
            _beat: beat,
        }
    }

    pub fn port(&self) -> u8 {
        self.joined.writer.port()
    }

    pub fn broadcast(&mut self, payload: Vec<u8>) {
        let frame = OwnedFrame::new(
            MessageKind::Broadcast,
            self.port(),
            PORT_BROADCAST,
            0,
            payload,
        );
        self.joined.writer.send(&frame).unwrap();
    }

    pub fn unicast(&mut self, target: u8, payload: Vec<u8>) {
        let frame = OwnedFrame::new(MessageKind::Unicast, self.port(), target, 0, payload);
        self.joined.writer.send(&frame).unwrap();
    }

    pub fn recv(&mut self) -> Result<OwnedFrame, ClientError> {
        self.joined.reader.recv()
    }

    /// The next frame of `kind`, skipping others.
    pub fn recv_kind(&mut self, kind: MessageKind) -> OwnedFrame {
        loop {
            let frame = self.recv().unwrap();
            if frame.kind() == kind {
                return frame;
            }
        }
    }
}

/// Reads until the link fails; returns why (skipping the frames before).
pub fn link_error(reader: &mut client::LinkReader) -> ClientError {
    loop {
        if let Err(error) = reader.recv() {
            return error;
        }
    }
}
