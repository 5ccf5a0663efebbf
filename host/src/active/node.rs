//! One AMF's coherency core on its card's fabric port.

use super::link::{Delivery, FabricLink, LinkError};
use super::port::FabricPort;
use amf_coherency::{Amf, Config, DecodeError, Sram};
use amf_fabric::OwnedFrame;
use shared_regs::fabric::MessageKind;

/// Why a frame could not be given to the core.
#[derive(Debug, thiserror::Error)]
pub enum ActiveError {
    /// The frame makes no sense on this link.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// A peer's payload is not a coherency message (it speaks another version).
    #[error("port {from} sent a payload that is not a coherency message")]
    Decode {
        /// The sender.
        from: u8,
        /// Why.
        #[source]
        source: DecodeError,
    },
    /// The first frame of a link must be the fabric's welcome.
    #[error("the card's first frame was a {0:?}, not the fabric's Welcome")]
    NoWelcome(MessageKind),
    /// The welcome is for another port, or does not list this one last.
    #[error(
        "the fabric welcomed port {welcomed:?} as live ports {live_ports:?}, this AMF is port {port}"
    )]
    WrongWelcome {
        /// This AMF's port.
        port: u8,
        /// The port the welcome names.
        welcomed: u8,
        /// Its join order.
        live_ports: Vec<u8>,
    },
}

/// The core and the link state; see [`super`].
#[derive(Debug)]
pub struct ActiveNode {
    amf: Amf,
    link: FabricLink,
}

impl ActiveNode {
    /// Starts the core at the fabric's welcome (the first frame the card delivers):
    /// `config.live_ports` is replaced by the welcome's join order.
    pub fn from_welcome(
        mut config: Config,
        welcome: OwnedFrame,
        sram: &mut dyn Sram,
    ) -> Result<Self, ActiveError> {
        let port = config.port;
        let welcomed = welcome.source_port();
        let mut link = FabricLink::new(port);
        let Delivery::Welcome { live_ports } = link.incoming(welcome.clone())? else {
            return Err(ActiveError::NoWelcome(welcome.kind()));
        };
        if welcomed != port || live_ports.last() != Some(&port) {
            return Err(ActiveError::WrongWelcome {
                port,
                welcomed,
                live_ports,
            });
        }
        config.live_ports = live_ports;
        Ok(Self {
            amf: Amf::new(config, sram),
            link,
        })
    }

    /// The core: host requests in, member I/O and host events out.
    pub fn amf_mut(&mut self) -> &mut Amf {
        &mut self.amf
    }

    /// The core, read-only.
    pub fn amf(&self) -> &Amf {
        &self.amf
    }

    /// SRAM writes sent to peers and not yet acknowledged.
    pub fn writes_outstanding(&self) -> usize {
        self.link.writes_outstanding()
    }

    /// Gives one frame the card received to the core.
    pub fn deliver(
        &mut self,
        now: u64,
        frame: OwnedFrame,
        sram: &mut dyn Sram,
    ) -> Result<(), ActiveError> {
        let port = self.link.port();
        match self.link.incoming(frame)? {
            Delivery::Welcome { .. } => return Err(ActiveError::NoWelcome(MessageKind::Welcome)),
            Delivery::Broadcast { from, payload } => self
                .amf
                .handle_broadcast(now, from, &payload, sram)
                .map_err(|source| ActiveError::Decode { from, source })?,
            Delivery::Unicast { from, payload } => self
                .amf
                .handle_unicast(now, from, &payload)
                .map_err(|source| ActiveError::Decode { from, source })?,
            Delivery::SramAck { target, offset } => self.amf.handle_sram_ack(now, target, offset),
            // Our own MemberUp: the welcome's join order already holds us.
            Delivery::MemberUp { port: joined } if joined == port => {}
            Delivery::MemberUp { port: joined } => self.amf.handle_member_up(now, joined),
            Delivery::MemberDown { port: dead } => self.amf.handle_member_down(now, dead, sram),
        }
        Ok(())
    }

    /// Writes what the core wants in this card's own SRAM (before any member I/O can be
    /// taken), then sends everything it wants on the fabric, in its order; returns how
    /// many frames went.
    pub fn transmit<P: FabricPort>(&mut self, port: &mut P) -> Result<usize, P::Error> {
        while let Some(write) = self.amf.poll_local_write() {
            port.write_own_sram(write.offset, &write.bytes)?;
        }
        let mut sent = 0;
        while let Some(transmit) = self.amf.poll_transmit() {
            port.send(&self.link.outgoing(transmit))?;
            sent += 1;
        }
        Ok(sent)
    }
}
