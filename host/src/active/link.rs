//! Translation between the coherency core's transmits and fabric frames, without I/O.
//!
//! Outgoing: a [`Transmit`] becomes an [`OutFrame`]; each SRAM write is remembered, in the
//! order sent, until its target's card acknowledges it. Incoming frames are classified as a
//! [`Delivery`] for the core. An `SramWriteAck` is matched to the oldest write outstanding
//! with the card that sent it: writes to one card reach it in order (per-pair FIFO), it
//! applies and acknowledges them in that order, and its acks come back in order. The ack's
//! own payload (the write's fabric stamp) cannot be matched by this port: the fabric counts
//! every point-to-point frame of the port, and the card sends its acks of peers' writes
//! on that port without the host seeing them.

use amf_coherency::Transmit;
use amf_fabric::OwnedFrame;
use shared_regs::fabric::{MessageKind, PORT_BROADCAST, WelcomePayload};
use std::collections::BTreeMap;
use zerocopy::FromBytes;

/// One frame for the card to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutFrame {
    /// `Broadcast`, `Unicast` or `SramWrite`.
    pub kind: MessageKind,
    /// The target port, or `PORT_BROADCAST`.
    pub target: u8,
    /// For an SRAM write: where in the target's SRAM.
    pub sram_offset: u32,
    /// The core's bytes.
    pub payload: Vec<u8>,
}

/// What an incoming frame means to the core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The fabric took this port: live ports in join order, this one last.
    Welcome { live_ports: Vec<u8> },
    /// A broadcast in the total order.
    Broadcast { from: u8, payload: Vec<u8> },
    /// A point-to-point message.
    Unicast { from: u8, payload: Vec<u8> },
    /// `target`'s card holds the record written at `offset`.
    SramAck { target: u8, offset: u32 },
    /// Another port joined (this port's own `MemberUp` is part of its welcome).
    MemberUp { port: u8 },
    /// A port died, after everything it sent.
    MemberDown { port: u8 },
}

/// Why an incoming frame cannot be delivered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// An ack for no SRAM write this port has outstanding with that target.
    #[error("port {from} acknowledged SRAM write {sequence}, which is not outstanding")]
    UnknownAck { from: u8, sequence: u64 },
    /// A kind a card never hands its host (heartbeats, joins, peers' SRAM writes...).
    #[error("the card delivered a {0:?} frame, which it handles itself")]
    Unexpected(MessageKind),
}

/// An SRAM write in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PendingWrite {
    target: u8,
    offset: u32,
}

/// The translation state of one port; see the [module docs](self).
#[derive(Debug)]
pub struct FabricLink {
    port: u8,
    /// SRAM writes sent since the join: the key of the next one.
    writes_sent: u64,
    /// Writes not yet acknowledged, by the order they were sent.
    pending: BTreeMap<u64, PendingWrite>,
}

impl FabricLink {
    /// A link for `port`, fresh after its join.
    pub fn new(port: u8) -> Self {
        Self {
            port,
            writes_sent: 0,
            pending: BTreeMap::new(),
        }
    }

    /// SRAM writes sent and not yet acknowledged.
    pub fn writes_outstanding(&self) -> usize {
        self.pending.len()
    }

    /// The frame for `transmit`, remembering an SRAM write until its ack.
    pub fn outgoing(&mut self, transmit: Transmit) -> OutFrame {
        let frame = match transmit {
            Transmit::Broadcast { payload } => OutFrame {
                kind: MessageKind::Broadcast,
                target: PORT_BROADCAST,
                sram_offset: 0,
                payload,
            },
            Transmit::Unicast { target, payload } => OutFrame {
                kind: MessageKind::Unicast,
                target,
                sram_offset: 0,
                payload,
            },
            Transmit::SramWrite {
                target,
                offset,
                bytes,
            } => OutFrame {
                kind: MessageKind::SramWrite,
                target,
                sram_offset: offset,
                payload: bytes,
            },
        };
        if frame.kind == MessageKind::SramWrite {
            let pending = PendingWrite {
                target: frame.target,
                offset: frame.sram_offset,
            };
            self.writes_sent += 1;
            self.pending.insert(self.writes_sent, pending);
        }
        frame
    }

    /// What `frame` means to the core.
    pub fn incoming(&mut self, frame: OwnedFrame) -> Result<Delivery, LinkError> {
        let from = frame.source_port();
        Ok(match frame.kind() {
            MessageKind::Welcome => {
                let welcome =
                    WelcomePayload::read_from_bytes(frame.payload()).expect("length checked");
                Delivery::Welcome {
                    live_ports: welcome.live_ports().collect(),
                }
            }
            MessageKind::Broadcast => Delivery::Broadcast {
                from,
                payload: frame.into_payload(),
            },
            MessageKind::Unicast => Delivery::Unicast {
                from,
                payload: frame.into_payload(),
            },
            MessageKind::SramWriteAck => self.take_ack(from, frame.payload())?,
            MessageKind::MemberUp => Delivery::MemberUp { port: from },
            MessageKind::MemberDown => {
                // Its card will ack nothing more.
                self.pending.retain(|_, write| write.target != from);
                Delivery::MemberDown { port: from }
            }
            kind => return Err(LinkError::Unexpected(kind)),
        })
    }

    /// The write an ack from `from` acknowledges: the oldest outstanding with that card.
    /// `payload` (the write's fabric stamp) only names it in an error.
    fn take_ack(&mut self, from: u8, payload: &[u8]) -> Result<Delivery, LinkError> {
        let sequence = u64::from_le_bytes(payload.try_into().expect("8 bytes, checked by parse"));
        let (&key, &write) = self
            .pending
            .iter()
            .find(|(_, write)| write.target == from)
            .ok_or(LinkError::UnknownAck { from, sequence })?;
        self.pending.remove(&key);
        Ok(Delivery::SramAck {
            target: write.target,
            offset: write.offset,
        })
    }

    /// This link's port.
    pub fn port(&self) -> u8 {
        self.port
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(from: u8, to: u8, sequence: u64) -> OwnedFrame {
        let payload = sequence.to_le_bytes().to_vec();
        OwnedFrame::new(MessageKind::SramWriteAck, from, to, 0, payload).stamped(1)
    }

    fn sram_write(target: u8, offset: u32) -> Transmit {
        Transmit::SramWrite {
            target,
            offset,
            bytes: vec![1; 64],
        }
    }

    #[test]
    fn acks_match_the_oldest_write_outstanding_with_their_card() {
        let mut link = FabricLink::new(0);
        link.outgoing(Transmit::Broadcast { payload: vec![1] });
        link.outgoing(sram_write(1, 0x100));
        link.outgoing(Transmit::Unicast {
            target: 2,
            payload: vec![2],
        });
        link.outgoing(sram_write(2, 0x200));
        link.outgoing(sram_write(2, 0x300));
        assert_eq!(link.writes_outstanding(), 3);
        // The stamps are the fabric's and need not be what this port would count.
        assert_eq!(
            link.incoming(ack(2, 0, 17)),
            Ok(Delivery::SramAck {
                target: 2,
                offset: 0x200
            })
        );
        assert_eq!(
            link.incoming(ack(2, 0, 18)),
            Ok(Delivery::SramAck {
                target: 2,
                offset: 0x300
            })
        );
        assert_eq!(
            link.incoming(ack(2, 0, 19)),
            Err(LinkError::UnknownAck {
                from: 2,
                sequence: 19
            }),
            "port 2 holds no write of ours any more"
        );
        assert_eq!(
            link.incoming(ack(1, 0, 1)),
            Ok(Delivery::SramAck {
                target: 1,
                offset: 0x100
            })
        );
        assert!(link.incoming(ack(1, 0, 2)).is_err(), "acked once only");
    }

    #[test]
    fn member_down_forgets_its_outstanding_writes() {
        let mut link = FabricLink::new(0);
        link.outgoing(sram_write(1, 0));
        link.outgoing(sram_write(2, 8));
        let down = OwnedFrame::new(MessageKind::MemberDown, 1, PORT_BROADCAST, 0, vec![]);
        assert_eq!(link.incoming(down), Ok(Delivery::MemberDown { port: 1 }));
        assert_eq!(link.writes_outstanding(), 1);
        let heartbeat = OwnedFrame::new(MessageKind::Heartbeat, 0, PORT_BROADCAST, 0, vec![]);
        assert_eq!(
            link.incoming(heartbeat),
            Err(LinkError::Unexpected(MessageKind::Heartbeat))
        );
    }
}
