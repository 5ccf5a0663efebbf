//! A broadcast fabric model with every port driven from a queue of messages.
//!
//! [`Traffic`] holds what each port still has to send, what the fabric took from it, what
//! it delivered to it, and the remote writes presented on its SRAM port. [`FabricModel`]
//! runs cycles over it with random pacing (ports pause offering, receivers pause taking)
//! and lets a test drop or raise a port's link between cycles.
use crate::rtl::{Model, Port, TestbenchError};
use rand::Rng;
use shared_regs::fabric::MessageKind;
use std::collections::VecDeque;

/// A message a port offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    /// `Broadcast`, `Unicast` or `SramWrite` (the fabric drops any other kind a port sends).
    pub kind: MessageKind,
    /// Target port (ignored for broadcasts).
    pub target: u8,
    /// Payload word.
    pub payload: u64,
    /// Target SRAM byte offset (`SramWrite`).
    pub sram_offset: u32,
}

/// A message a port took from its receive register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// The kind byte (a `MessageKind`).
    pub kind: u8,
    /// Sender.
    pub source: u8,
    /// Grant number.
    pub sequence: u64,
    /// Payload word.
    pub payload: u64,
    /// Clock edges before the cycle it was taken in.
    pub cycle: u64,
}

impl Delivered {
    /// Whether this is a message of `kind`.
    pub fn is(&self, kind: MessageKind) -> bool {
        self.kind == kind as u8
    }
}

/// A remote write presented on a port's SRAM port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SramWrite {
    /// Byte offset.
    pub offset: u32,
    /// Data.
    pub data: u64,
    /// Clock edges before the cycle it was presented in.
    pub cycle: u64,
}

/// Every port's queues and records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Messages each port has yet to send, in order.
    pub outbox: Vec<VecDeque<Message>>,
    /// Messages the fabric took from each port, in order.
    pub accepted: Vec<Vec<Message>>,
    /// Messages each port received, in order.
    pub inbox: Vec<Vec<Delivered>>,
    /// Remote writes presented on each port's SRAM port, in order.
    pub sram_writes: Vec<Vec<SramWrite>>,
    /// Each port's link.
    pub link_up: Vec<bool>,
}

impl Traffic {
    /// `ports` idle ports, links up.
    pub fn new(ports: usize) -> Self {
        Self {
            outbox: vec![VecDeque::new(); ports],
            accepted: vec![Vec::new(); ports],
            inbox: vec![Vec::new(); ports],
            sram_writes: vec![Vec::new(); ports],
            link_up: vec![true; ports],
        }
    }

    fn delivered_total(&self) -> usize {
        self.inbox.iter().map(Vec::len).sum()
    }
}

/// Percent of cycles a port offers its next message, and a receiver takes one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FabricPacing {
    /// Percent of cycles a port with a message offers it.
    pub offer_percent: u32,
    /// Percent of cycles a receiver is ready.
    pub ready_percent: u32,
}

/// One port's signals.
#[derive(Clone, Copy, Debug)]
struct PortSignals {
    link_up: Port,
    tx_valid: Port,
    tx_ready: Port,
    tx_kind: Port,
    tx_target: Port,
    tx_payload: Port,
    tx_sram_offset: Port,
    rx_valid: Port,
    rx_ready: Port,
    rx_kind: Port,
    rx_source: Port,
    rx_sequence: Port,
    rx_payload: Port,
    sram_write: Port,
    sram_offset: Port,
    sram_data: Port,
}

impl PortSignals {
    fn find(model: &Model, port: usize) -> Result<Self, TestbenchError> {
        let signal = |name: &str| model.port(&format!("ports_{port}_{name}"));
        Ok(Self {
            link_up: signal("link_up")?,
            tx_valid: signal("tx_valid")?,
            tx_ready: signal("tx_ready")?,
            tx_kind: signal("tx_kind")?,
            tx_target: signal("tx_target")?,
            tx_payload: signal("tx_payload")?,
            tx_sram_offset: signal("tx_sram_offset")?,
            rx_valid: signal("rx_valid")?,
            rx_ready: signal("rx_ready")?,
            rx_kind: signal("rx_kind")?,
            rx_source: signal("rx_source")?,
            rx_sequence: signal("rx_sequence")?,
            rx_payload: signal("rx_payload")?,
            sram_write: signal("sram_write")?,
            sram_offset: signal("sram_offset")?,
            sram_data: signal("sram_data")?,
        })
    }
}

/// A Verilated `broadcast_fabric_N`.
#[derive(Debug)]
pub struct FabricModel {
    model: Model,
    ports: Vec<PortSignals>,
    membership: Port,
}

impl FabricModel {
    /// The fabric of `ports` ports (a model built for that count), out of reset.
    pub fn new(ports: usize) -> Result<Self, TestbenchError> {
        let mut model = Model::new(&format!("broadcast_fabric_{ports}"))?;
        let signals = (0..ports)
            .map(|port| PortSignals::find(&model, port))
            .collect::<Result<_, _>>()?;
        let membership = model.port("membership")?;
        let reset = model.port("reset")?;
        model.set_bit(reset, true);
        model.rising_edge();
        model.set_bit(reset, false);
        Ok(Self {
            model,
            ports: signals,
            membership,
        })
    }

    /// Ports of the fabric.
    pub fn port_count(&self) -> usize {
        self.ports.len()
    }

    /// Clock edges so far.
    pub fn cycles(&self) -> u64 {
        self.model.cycles()
    }

    /// Bitmap of member ports.
    pub fn membership(&mut self) -> u32 {
        let membership = self.membership;
        u32::try_from(self.model.get_u64(membership)).expect("32-bit port")
    }

    /// Drives every port's inputs; returns, per port, whether it offered and was ready.
    fn drive(
        &mut self,
        traffic: &Traffic,
        pacing: FabricPacing,
        rng: &mut impl Rng,
    ) -> Vec<(bool, bool)> {
        let mut driven = Vec::with_capacity(self.ports.len());
        for (port, signals) in self.ports.iter().enumerate() {
            let offer = traffic.outbox[port]
                .front()
                .filter(|_| rng.gen_ratio(pacing.offer_percent, 100));
            self.model.set_bit(signals.link_up, traffic.link_up[port]);
            self.model.set_bit(signals.tx_valid, offer.is_some());
            if let Some(message) = offer {
                self.model
                    .set_u64(signals.tx_kind, u64::from(message.kind as u8));
                self.model
                    .set_u64(signals.tx_target, u64::from(message.target));
                self.model.set_u64(signals.tx_payload, message.payload);
                self.model
                    .set_u64(signals.tx_sram_offset, u64::from(message.sram_offset));
            }
            let ready = rng.gen_ratio(pacing.ready_percent, 100);
            self.model.set_bit(signals.rx_ready, ready);
            driven.push((offer.is_some(), ready));
        }
        driven
    }

    fn observe(&mut self, traffic: &mut Traffic, driven: &[(bool, bool)]) {
        let cycle = self.model.cycles();
        for (port, signals) in self.ports.clone().into_iter().enumerate() {
            let (offered, ready) = driven[port];
            if offered && self.model.get_bit(signals.tx_ready) {
                let message = traffic.outbox[port].pop_front().expect("offered a message");
                traffic.accepted[port].push(message);
            }
            if ready && self.model.get_bit(signals.rx_valid) {
                traffic.inbox[port].push(Delivered {
                    kind: self.model.get_u64(signals.rx_kind) as u8,
                    source: self.model.get_u64(signals.rx_source) as u8,
                    sequence: self.model.get_u64(signals.rx_sequence),
                    payload: self.model.get_u64(signals.rx_payload),
                    cycle,
                });
            }
            if self.model.get_bit(signals.sram_write) {
                traffic.sram_writes[port].push(SramWrite {
                    offset: self.model.get_u64(signals.sram_offset) as u32,
                    data: self.model.get_u64(signals.sram_data),
                    cycle,
                });
            }
        }
    }
}

impl FabricModel {
    /// One cycle: drive, settle, record what moved, clock.
    pub fn cycle(&mut self, traffic: &mut Traffic, pacing: FabricPacing, rng: &mut impl Rng) {
        assert_eq!(
            traffic.outbox.len(),
            self.ports.len(),
            "traffic for another port count"
        );
        let driven = self.drive(traffic, pacing, rng);
        self.model.eval();
        self.observe(traffic, &driven);
        self.model.rising_edge();
    }

    /// Runs cycles until every outbox is empty and nothing was delivered for
    /// `quiet_cycles`; panics after `cycles_max`.
    pub fn run_until_quiet(
        &mut self,
        traffic: &mut Traffic,
        pacing: FabricPacing,
        rng: &mut impl Rng,
        quiet_cycles: usize,
        cycles_max: usize,
    ) {
        let mut quiet = 0;
        for _ in 0..cycles_max {
            let before = traffic.delivered_total();
            self.cycle(traffic, pacing, rng);
            let idle = traffic.outbox.iter().all(VecDeque::is_empty)
                && before == traffic.delivered_total();
            quiet = if idle { quiet + 1 } else { 0 };
            if quiet == quiet_cycles {
                return;
            }
        }
        panic!("fabric still busy after {cycles_max} cycles");
    }
}
