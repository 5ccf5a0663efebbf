//! Translation between the coherency core's transmits and fabric frames, without I/O.
//!
//! Outgoing: a [`Transmit`] becomes an [`OutFrame`]. Point-to-point frames are numbered
//! by the fabric per sender (`docs/PROTOCOL.md`, "Fabric frame"), so this port counts its
//! own and remembers, for each SRAM write, the stamp it will get; the target card's
//! `SramWriteAck` carries that stamp back, and [`FabricLink::take_ack`] turns it into the
//! `(target, offset)` the core waits for. Incoming frames are classified as a
//! [`Delivery`] for the core.

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
    /// Point-to-point frames sent since the join: the last stamp given.
    sent_point_to_point: u64,
    pending: BTreeMap<u64, PendingWrite>,
}

impl FabricLink {
    /// A link for `port`, fresh after its join.
    pub fn new(port: u8) -> Self {
        Self {
            port,
            sent_point_to_point: 0,
            pending: BTreeMap::new(),
        }
    }

    /// SRAM writes sent and not yet acknowledged.
    pub fn writes_outstanding(&self) -> usize {
        self.pending.len()
    }

    /// The frame for `transmit`, noting the stamp a point-to-point frame will get.
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
        if frame.kind != MessageKind::Broadcast {
            self.sent_point_to_point += 1;
        }
        if frame.kind == MessageKind::SramWrite {
            let pending = PendingWrite {
                target: frame.target,
                offset: frame.sram_offset,
            };
            self.pending.insert(self.sent_point_to_point, pending);
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

    /// The write an ack from `from` carrying `payload` (the write's stamp) acknowledges.
    fn take_ack(&mut self, from: u8, payload: &[u8]) -> Result<Delivery, LinkError> {
        let sequence = u64::from_le_bytes(payload.try_into().expect("8 bytes, checked by parse"));
        let unknown = LinkError::UnknownAck { from, sequence };
        let write = self
            .pending
            .get(&sequence)
            .copied()
            .ok_or(unknown.clone())?;
        if write.target != from {
            return Err(unknown);
        }
        self.pending.remove(&sequence);
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
    fn acks_match_writes_by_the_senders_own_numbering() {
        let mut link = FabricLink::new(0);
        link.outgoing(Transmit::Broadcast { payload: vec![1] });
        link.outgoing(sram_write(1, 0x100));
        link.outgoing(Transmit::Unicast {
            target: 2,
            payload: vec![2],
        });
        link.outgoing(sram_write(2, 0x200));
        assert_eq!(link.writes_outstanding(), 2);
        // Stamps: broadcasts do not count; the write to 2 is the third point-to-point.
        assert_eq!(
            link.incoming(ack(2, 0, 3)),
            Ok(Delivery::SramAck {
                target: 2,
                offset: 0x200
            })
        );
        assert_eq!(
            link.incoming(ack(2, 0, 1)),
            Err(LinkError::UnknownAck {
                from: 2,
                sequence: 1
            }),
            "write 1 went to port 1"
        );
        assert_eq!(
            link.incoming(ack(1, 0, 1)),
            Ok(Delivery::SramAck {
                target: 1,
                offset: 0x100
            })
        );
        assert!(link.incoming(ack(1, 0, 1)).is_err(), "acked once only");
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
