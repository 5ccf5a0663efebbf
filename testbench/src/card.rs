//! The co-simulation bridge of one card: the Verilated `card_top`, stepped by the caller.
//!
//! What the host's `rtl` card backend needs: reset, clock stepping, 32-bit register and SRAM
//! window access over BAR0 offsets, the parity DMA stream (beats in, results out), and the
//! fabric side (port number, link, membership, remote SRAM writes). Every access costs
//! simulated cycles, as on the card.
use crate::rtl::{Model, Port, TestbenchError};

/// The card top's ports.
#[derive(Clone, Copy, Debug)]
struct Ports {
    reset: Port,
    bus_read: Port,
    bus_write: Port,
    bus_address: Port,
    bus_write_data: Port,
    bus_done: Port,
    bus_read_data: Port,
    irq: Port,
    dma_in_valid: Port,
    dma_in_ready: Port,
    dma_in_first: Port,
    dma_in_last: Port,
    dma_in_pq: Port,
    dma_in_data: Port,
    dma_out_valid: Port,
    dma_out_ready: Port,
    dma_out_p: Port,
    dma_out_q: Port,
    fabric_port_id: Port,
    fabric_link_up: Port,
    fabric_membership: Port,
    fabric_sram_write: Port,
    fabric_sram_offset: Port,
    fabric_sram_data: Port,
}

/// Cycles a bus access may take before the bridge gives up (the card answers in one).
const BUS_CYCLES_MAX: u32 = 16;

/// Why a bus access failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// The card never raised `bus_done`.
    #[error("card did not answer the access at {offset:#x} within {BUS_CYCLES_MAX} cycles")]
    NoAnswer { offset: u32 },
}

/// A parity result from the DMA stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParityBeat {
    /// P words.
    pub p: Vec<u32>,
    /// Q words.
    pub q: Vec<u32>,
}

/// One Verilated card.
#[derive(Debug)]
pub struct CardModel {
    model: Model,
    ports: Ports,
}

impl CardModel {
    /// A card, held in reset for one cycle.
    pub fn new() -> Result<Self, TestbenchError> {
        Self::named("card_top")
    }

    /// A card from the Verilated model `name` (`card_top` or a variant with its ports).
    pub fn named(name: &str) -> Result<Self, TestbenchError> {
        let model = Model::new(name)?;
        let port = |name: &str| model.port(name);
        let ports = Ports {
            reset: port("reset")?,
            bus_read: port("bus_read")?,
            bus_write: port("bus_write")?,
            bus_address: port("bus_address")?,
            bus_write_data: port("bus_write_data")?,
            bus_done: port("bus_done")?,
            bus_read_data: port("bus_read_data")?,
            irq: port("irq")?,
            dma_in_valid: port("dma_in_valid")?,
            dma_in_ready: port("dma_in_ready")?,
            dma_in_first: port("dma_in_first")?,
            dma_in_last: port("dma_in_last")?,
            dma_in_pq: port("dma_in_pq")?,
            dma_in_data: port("dma_in_data")?,
            dma_out_valid: port("dma_out_valid")?,
            dma_out_ready: port("dma_out_ready")?,
            dma_out_p: port("dma_out_p")?,
            dma_out_q: port("dma_out_q")?,
            fabric_port_id: port("fabric_port_id")?,
            fabric_link_up: port("fabric_link_up")?,
            fabric_membership: port("fabric_membership")?,
            fabric_sram_write: port("fabric_sram_write")?,
            fabric_sram_offset: port("fabric_sram_offset")?,
            fabric_sram_data: port("fabric_sram_data")?,
        };
        let mut card = Self { model, ports };
        card.reset();
        Ok(card)
    }

    /// Power-on reset: one cycle with `reset` high. SRAM contents survive.
    pub fn reset(&mut self) {
        self.model.set_bit(self.ports.reset, true);
        self.model.rising_edge();
        self.model.set_bit(self.ports.reset, false);
        self.model.eval();
    }

    /// Clock edges so far.
    pub fn cycles(&self) -> u64 {
        self.model.cycles()
    }

    /// Runs `cycles` clock edges with the inputs as they are.
    pub fn step(&mut self, cycles: u32) {
        for _ in 0..cycles {
            self.model.rising_edge();
        }
    }

    /// Bits of one DMA beat.
    pub fn beat_bits(&self) -> u32 {
        self.ports.dma_in_data.width_bits()
    }

    /// The interrupt line.
    pub fn irq(&mut self) -> bool {
        self.model.get_bit(self.ports.irq)
    }

    fn access(&mut self, write: Option<u32>, offset: u32) -> Result<u32, BusError> {
        self.request(write, offset);
        self.answer(offset)
    }

    /// Drives a bus request (a write of `write`, else a read) for one clock edge.
    fn request(&mut self, write: Option<u32>, offset: u32) {
        let ports = self.ports;
        self.model.set_u64(ports.bus_address, u64::from(offset));
        self.model
            .set_u64(ports.bus_write_data, u64::from(write.unwrap_or(0)));
        self.model.set_bit(ports.bus_read, write.is_none());
        self.model.set_bit(ports.bus_write, write.is_some());
        self.model.rising_edge();
        self.model.set_bit(ports.bus_read, false);
        self.model.set_bit(ports.bus_write, false);
        self.model.eval();
    }

    /// Waits for the answer to the request at `offset`.
    fn answer(&mut self, offset: u32) -> Result<u32, BusError> {
        let ports = self.ports;
        for _ in 0..BUS_CYCLES_MAX {
            if self.model.get_bit(ports.bus_done) {
                return Ok(
                    u32::try_from(self.model.get_u64(ports.bus_read_data)).expect("32-bit bus")
                );
            }
            self.model.rising_edge();
        }
        Err(BusError::NoAnswer { offset })
    }

    /// 32-bit read at a BAR0 offset.
    pub fn read32(&mut self, offset: u32) -> Result<u32, BusError> {
        self.access(None, offset)
    }

    /// 32-bit write at a BAR0 offset.
    pub fn write32(&mut self, offset: u32, value: u32) -> Result<(), BusError> {
        self.access(Some(value), offset).map(|_| ())
    }

    /// Sets what the fabric side reports: this card's port, its link, the live ports.
    pub fn set_fabric(&mut self, port_id: u32, link_up: bool, membership: u32) {
        self.model
            .set_u64(self.ports.fabric_port_id, u64::from(port_id));
        self.model.set_bit(self.ports.fabric_link_up, link_up);
        self.model
            .set_u64(self.ports.fabric_membership, u64::from(membership));
        self.model.eval();
    }

    /// A remote write from the fabric into this card's SRAM (one cycle).
    pub fn fabric_write(&mut self, offset: u32, data: u64) {
        self.drive_fabric_write(Some((offset, data)));
        self.model.rising_edge();
        self.drive_fabric_write(None);
    }

    /// A 32-bit host access at a BAR0 offset (a write of `write`, else a read) in the same
    /// clock cycle as a remote write of `data` at SRAM byte offset `fabric_offset`: what
    /// happens when the window and a peer touch one SRAM word at once
    /// (`hdl::dual_port_sram` says how that resolves). Returns what the access returns.
    pub fn access_during_fabric_write(
        &mut self,
        write: Option<u32>,
        offset: u32,
        fabric_offset: u32,
        data: u64,
    ) -> Result<u32, BusError> {
        self.drive_fabric_write(Some((fabric_offset, data)));
        self.request(write, offset);
        self.drive_fabric_write(None);
        self.answer(offset)
    }

    /// Drives the fabric's SRAM write port: a write of (offset, data), or none.
    fn drive_fabric_write(&mut self, write: Option<(u32, u64)>) {
        let (offset, data) = write.unwrap_or((0, 0));
        self.model
            .set_bit(self.ports.fabric_sram_write, write.is_some());
        self.model
            .set_u64(self.ports.fabric_sram_offset, u64::from(offset));
        self.model.set_u64(self.ports.fabric_sram_data, data);
        self.model.eval();
    }

    /// Offers one DMA beat for a cycle; true when the engine took it.
    pub fn offer_beat(&mut self, words: &[u32], first: bool, last: bool, pq: bool) -> bool {
        let ports = self.ports;
        self.model.set(ports.dma_in_data, words);
        self.model.set_bit(ports.dma_in_first, first);
        self.model.set_bit(ports.dma_in_last, last);
        self.model.set_bit(ports.dma_in_pq, pq);
        self.model.set_bit(ports.dma_in_valid, true);
        self.model.eval();
        let taken = self.model.get_bit(ports.dma_in_ready);
        self.model.rising_edge();
        self.model.set_bit(ports.dma_in_valid, false);
        self.model.eval();
        taken
    }

    /// Takes a parity result if one is offered (one cycle).
    pub fn take_result(&mut self) -> Option<ParityBeat> {
        let ports = self.ports;
        self.model.set_bit(ports.dma_out_ready, true);
        self.model.eval();
        let result = self.model.get_bit(ports.dma_out_valid).then(|| ParityBeat {
            p: self.model.get(ports.dma_out_p),
            q: self.model.get(ports.dma_out_q),
        });
        self.model.rising_edge();
        self.model.set_bit(ports.dma_out_ready, false);
        self.model.eval();
        result
    }
}
