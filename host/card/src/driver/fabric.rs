//! The card's fabric port through its rings: [`Card::fabric_send`], [`Card::fabric_recv`].
//!
//! At open, a card that advertises `CAP_FABRIC` gets four rings of
//! [`CardConfig::fabric_ring_entries`](super::CardConfig) each and one DMA buffer of
//! [`FRAME_BYTES_MAX`] per transmit and per receive slot. Every receive buffer is posted
//! at once; a frame taken from a receive buffer is copied out and the buffer posted again
//! (the ring entry in its slot already describes it, so re-posting is a doorbell). A send
//! writes the frame into its slot's buffer and rings; transmit completions are reaped as
//! later sends need their slots.
//!
//! Waiting uses the interrupt when the card has one: the driver unmasks only the cause it
//! waits for (`IRQ_FABRIC_RX_CQ` or `IRQ_FABRIC_TX_CQ`, with `IRQ_ERROR` and
//! `IRQ_FABRIC_LINK`, which it leaves set: a dead link stays dead) for the length of
//! the wait and puts the parity mask back after, so a waiting parity call is never woken
//! by fabric traffic nor a fabric wait by parity.

use super::{Card, CardError, Registers, backend_error, expect_register};
use crate::backend::{CardBackend, DmaBuffer, InterruptWait};
use amf_fabric::{FRAME_BYTES_MAX, OwnedFrame};
use shared_regs::fabric::{FabricHeader, FrameError, MessageKind};
use shared_regs::limits::FABRIC_PAYLOAD_BYTES_MAX;
use shared_regs::regs::{self, ring_block};
use shared_regs::ring::{Completion, CompletionStatus, FabricBuffer};
use std::mem::size_of;
use std::time::{Duration, Instant};
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, IntoBytes};

const BUFFER_ENTRY_BYTES: u64 = size_of::<FabricBuffer>() as u64;
const COMPLETION_BYTES: u64 = size_of::<Completion>() as u64;
const SLOT_BYTES: u64 = FRAME_BYTES_MAX as u64;

/// One direction: a buffer ring, its completion ring, and the frame buffers.
#[derive(Debug)]
pub(super) struct Direction {
    ring: DmaBuffer,
    completions: DmaBuffer,
    frames: DmaBuffer,
    /// Host-owned index of the buffer ring (`TAIL`).
    tail: u32,
    /// Host-owned index of the completion ring (`HEAD`).
    head: u32,
}

/// The host side of the fabric rings.
#[derive(Debug)]
pub(super) struct FabricRings {
    entries: u32,
    transmit: Direction,
    receive: Direction,
}

impl FabricRings {
    /// Every DMA buffer, for freeing.
    pub(super) fn into_buffers(self) -> [DmaBuffer; 6] {
        let (transmit, receive) = (self.transmit, self.receive);
        [
            transmit.ring,
            transmit.completions,
            transmit.frames,
            receive.ring,
            receive.completions,
            receive.frames,
        ]
    }

    fn slot(&self, index: u32) -> u64 {
        u64::from(index & (self.entries - 1))
    }
}

/// Sets the four rings up; [`Card::post_receive_buffers`] posts the buffers once the
/// card is enabled (a doorbell before that is a fault).
pub(super) fn setup<B: CardBackend>(
    backend: &mut B,
    name: &'static str,
    entries: u32,
    start: u32,
) -> Result<FabricRings, CardError> {
    let mut direction = |ring: u32, cq: u32| -> Result<Direction, CardError> {
        let allocate = |backend: &mut B, bytes: u64, what: &'static str| {
            backend.dma_alloc(bytes).map_err(backend_error(name, what))
        };
        let buffers = allocate(
            backend,
            u64::from(entries) * BUFFER_ENTRY_BYTES,
            "allocating a fabric ring",
        )?;
        let completions = allocate(
            backend,
            u64::from(entries) * COMPLETION_BYTES,
            "allocating a fabric completion ring",
        )?;
        let frames = allocate(
            backend,
            u64::from(entries) * SLOT_BYTES,
            "allocating fabric frame buffers",
        )?;
        let mut registers = Registers {
            backend: &mut *backend,
            name,
        };
        for (block, memory, host_index) in [
            (ring, &buffers, ring_block::TAIL),
            (cq, &completions, ring_block::HEAD),
        ] {
            registers.write64(
                block + ring_block::BASE,
                memory.device_address(),
                "writing a fabric ring base",
            )?;
            registers.write32(
                block + ring_block::ENTRIES,
                entries,
                "writing a fabric ring size",
            )?;
            registers.write32(
                block + host_index,
                start,
                "writing a fabric ring's start index",
            )?;
            registers.write32(
                block + ring_block::CONTROL,
                regs::RING_ENABLE,
                "enabling a fabric ring",
            )?;
        }
        registers.check_error()?;
        let card_index = registers.read32(ring + ring_block::HEAD, "reading a fabric ring head")?;
        expect_register("fabric ring HEAD after enable", start, card_index)?;
        Ok(Direction {
            ring: buffers,
            completions,
            frames,
            tail: start,
            head: start,
        })
    };
    let transmit = direction(regs::FABRIC_TX_SQ, regs::FABRIC_TX_CQ)?;
    let receive = direction(regs::FABRIC_RX_SQ, regs::FABRIC_RX_CQ)?;
    Ok(FabricRings {
        entries,
        transmit,
        receive,
    })
}

/// The ring entry for slot `slot`'s frame buffer.
fn buffer_entry(frames: &DmaBuffer, slot: u64, length_bytes: u64, tag: u32) -> FabricBuffer {
    FabricBuffer {
        addr: U64::new(frames.device_address() + slot * SLOT_BYTES),
        length_bytes: U32::new(u32::try_from(length_bytes).expect("a frame fits u32")),
        tag: U32::new(tag),
    }
}

impl<B: CardBackend> Card<B> {
    /// Posts every receive buffer: a ring entry per slot, then one doorbell.
    pub(super) fn post_receive_buffers(&mut self) -> Result<(), CardError> {
        let name = self.backend_name;
        let Some(rings) = self.fabric.as_mut() else {
            return Ok(());
        };
        let start = rings.receive.tail;
        assert_eq!(start, rings.receive.head, "posted once, at open");
        for offset in 0..rings.entries {
            let index = start.wrapping_add(offset);
            let slot = rings.slot(index);
            let entry = buffer_entry(&rings.receive.frames, slot, SLOT_BYTES, index);
            self.backend
                .dma_write(
                    &rings.receive.ring,
                    slot * BUFFER_ENTRY_BYTES,
                    entry.as_bytes(),
                )
                .map_err(backend_error(name, "posting a fabric receive buffer"))?;
        }
        let tail = start.wrapping_add(rings.entries);
        rings.receive.tail = tail;
        self.registers().write32(
            regs::FABRIC_RX_SQ + ring_block::TAIL,
            tail,
            "posting the fabric receive buffers",
        )
    }

    fn fabric_rings(&mut self) -> Result<&mut FabricRings, CardError> {
        self.fabric.as_mut().ok_or(CardError::MissingCapability {
            missing: regs::CAP_FABRIC,
            found: self.identity.caps,
        })
    }

    /// `STATUS_FABRIC_LINK_UP`.
    pub fn fabric_link_up(&mut self) -> Result<bool, CardError> {
        let status = self.registers().read32(regs::STATUS, "reading STATUS")?;
        Ok(status & regs::STATUS_FABRIC_LINK_UP != 0)
    }

    /// `FABRIC_MEMBERSHIP`: the live ports as the card knows them, one bit each.
    pub fn fabric_membership(&mut self) -> Result<u32, CardError> {
        self.registers()
            .read32(regs::FABRIC_MEMBERSHIP, "reading FABRIC_MEMBERSHIP")
    }

    /// Sends one frame from this card's port: `kind` (`Broadcast`, `Unicast` or
    /// `SramWrite`) to `target` (`PORT_BROADCAST` for a broadcast), `sram_offset` for an
    /// SRAM write. Returns once the card has the frame; waits (up to `timeout_ms`) only
    /// when every transmit slot is still in use. A payload longer than a frame carries is
    /// refused here; a kind or target the card refuses comes back as
    /// [`CardError::FabricCompletion`] from a later send or [`Card::fabric_flush`].
    pub fn fabric_send(
        &mut self,
        kind: MessageKind,
        target: u8,
        sram_offset: u32,
        payload: &[u8],
        timeout_ms: u32,
    ) -> Result<(), CardError> {
        let entries = self.fabric_rings()?.entries;
        if payload.len() > FABRIC_PAYLOAD_BYTES_MAX as usize {
            let bytes = u32::try_from(payload.len()).unwrap_or(u32::MAX);
            return Err(CardError::FabricFrame(FrameError::PayloadTooLarge(bytes)));
        }
        if !self.fabric_link_up()? {
            return Err(CardError::FabricLinkDown);
        }
        let port = u8::try_from(self.identity.fabric_port_id).expect("ports fit u8");
        let header = FabricHeader::new(kind, port, target, 0, sram_offset, payload);
        self.wait_transmit_in_flight_at_most(entries - 1, timeout_ms)?;
        let name = self.backend_name;
        let rings = self.fabric.as_mut().expect("checked above");
        let index = rings.transmit.tail;
        let slot = rings.slot(index);
        let frames = &rings.transmit.frames;
        let write = |backend: &mut B, offset: u64, bytes: &[u8]| {
            backend
                .dma_write(frames, offset, bytes)
                .map_err(backend_error(name, "writing a fabric frame"))
        };
        write(&mut self.backend, slot * SLOT_BYTES, header.as_bytes())?;
        write(
            &mut self.backend,
            slot * SLOT_BYTES + header.as_bytes().len() as u64,
            payload,
        )?;
        let entry = buffer_entry(frames, slot, header.frame_bytes() as u64, index);
        self.backend
            .dma_write(
                &rings.transmit.ring,
                slot * BUFFER_ENTRY_BYTES,
                entry.as_bytes(),
            )
            .map_err(backend_error(name, "writing a fabric transmit entry"))?;
        let tail = index.wrapping_add(1);
        rings.transmit.tail = tail;
        self.registers().write32(
            regs::FABRIC_TX_SQ + ring_block::TAIL,
            tail,
            "ringing the fabric transmit doorbell",
        )?;
        self.reap_transmit().map(|_| ())
    }

    /// Waits up to `timeout_ms` until the card has taken every frame sent so far (a
    /// stepped card takes frames only while the host waits on it).
    pub fn fabric_flush(&mut self, timeout_ms: u32) -> Result<(), CardError> {
        self.fabric_rings()?;
        self.wait_transmit_in_flight_at_most(0, timeout_ms)
    }

    fn wait_transmit_in_flight_at_most(
        &mut self,
        limit: u32,
        timeout_ms: u32,
    ) -> Result<(), CardError> {
        let deadline = Instant::now() + Duration::from_millis(u64::from(timeout_ms));
        while self.fabric_transmit_in_flight() > limit {
            if !self.fabric_link_up()? {
                return Err(CardError::FabricLinkDown);
            }
            if !self.reap_transmit()? {
                self.wait_fabric(regs::IRQ_FABRIC_TX_CQ, deadline, timeout_ms)?;
            }
        }
        Ok(())
    }

    fn fabric_transmit_in_flight(&self) -> u32 {
        self.fabric.as_ref().map_or(0, |rings| {
            rings.transmit.tail.wrapping_sub(rings.transmit.head)
        })
    }

    /// Takes every transmit completion posted; true if there was one. A frame the card
    /// refused is an error: the driver built it, so the card or the driver is broken.
    fn reap_transmit(&mut self) -> Result<bool, CardError> {
        let mut reaped = false;
        while let Some(completion) = self.take_completion(regs::FABRIC_TX_CQ)? {
            reaped = true;
            let status = completion.status.get();
            if status != CompletionStatus::Ok as u16 {
                return Err(CardError::FabricCompletion {
                    ring: "transmit",
                    status,
                    tag: completion.tag.get(),
                });
            }
        }
        Ok(reaped)
    }

    /// The next completion of the fabric completion ring `cq` (checked against what is in
    /// flight), its slot returned to the card; `None` when there is none.
    fn take_completion(&mut self, cq: u32) -> Result<Option<Completion>, CardError> {
        let tail = self
            .registers()
            .read32(cq + ring_block::TAIL, "reading a fabric completion tail")?;
        let name = self.backend_name;
        let rings = self.fabric.as_mut().expect("fabric rings exist");
        let entries = rings.entries;
        let direction = if cq == regs::FABRIC_TX_CQ {
            &mut rings.transmit
        } else {
            &mut rings.receive
        };
        let in_flight = direction.tail.wrapping_sub(direction.head);
        let available = tail.wrapping_sub(direction.head);
        let inconsistent = |reason| CardError::BadCompletion {
            reason,
            tail,
            head: direction.head,
            in_flight,
        };
        if available > in_flight {
            return Err(inconsistent("more fabric completions than buffers posted"));
        }
        if available == 0 {
            return Ok(None);
        }
        let slot = u64::from(direction.head & (entries - 1));
        let mut raw = [0u8; COMPLETION_BYTES as usize];
        self.backend
            .dma_read(&direction.completions, slot * COMPLETION_BYTES, &mut raw)
            .map_err(backend_error(name, "reading a fabric completion"))?;
        let completion = Completion::read_from_bytes(&raw).expect("16 bytes make a completion");
        if completion.submission_index.get() != direction.head {
            return Err(inconsistent("fabric completion out of order"));
        }
        let head = direction.head.wrapping_add(1);
        direction.head = head;
        self.registers().write32(
            cq + ring_block::HEAD,
            head,
            "returning a fabric completion slot",
        )?;
        Ok(Some(completion))
    }

    /// The next received frame if the card has one; `Ok(None)` otherwise.
    pub fn fabric_poll(&mut self) -> Result<Option<OwnedFrame>, CardError> {
        self.fabric_rings()?;
        let Some(completion) = self.take_completion(regs::FABRIC_RX_CQ)? else {
            self.check_error()?;
            return Ok(None);
        };
        let index = completion.submission_index.get();
        let length = completion.length_bytes.get();
        let status = completion.status.get();
        let frame = if status == CompletionStatus::Ok as u16 && u64::from(length) <= SLOT_BYTES {
            Some(self.read_received(index, length)?)
        } else {
            None
        };
        self.repost_receive()?;
        match frame {
            Some(bytes) => OwnedFrame::parse(&bytes)
                .map(Some)
                .map_err(CardError::FabricFrame),
            None => Err(CardError::FabricCompletion {
                ring: "receive",
                status,
                tag: completion.tag.get(),
            }),
        }
    }

    fn read_received(&mut self, index: u32, length: u32) -> Result<Vec<u8>, CardError> {
        let name = self.backend_name;
        let rings = self.fabric.as_ref().expect("fabric rings exist");
        let mut bytes = vec![0u8; length as usize];
        self.backend
            .dma_read(
                &rings.receive.frames,
                rings.slot(index) * SLOT_BYTES,
                &mut bytes,
            )
            .map_err(backend_error(name, "reading a received fabric frame"))?;
        Ok(bytes)
    }

    /// Gives the oldest consumed receive buffer back: its ring entry is unchanged, so
    /// moving `TAIL` is enough.
    fn repost_receive(&mut self) -> Result<(), CardError> {
        let rings = self.fabric.as_mut().expect("fabric rings exist");
        let tail = rings.receive.tail.wrapping_add(1);
        rings.receive.tail = tail;
        assert!(tail.wrapping_sub(rings.receive.head) <= rings.entries);
        self.registers().write32(
            regs::FABRIC_RX_SQ + ring_block::TAIL,
            tail,
            "reposting a fabric receive buffer",
        )
    }

    /// Waits up to `timeout_ms` for the next received frame; `Ok(None)` when none came.
    /// Frames the card received before its link went down are still handed out; after
    /// them, a down link is [`CardError::FabricLinkDown`].
    pub fn fabric_recv(&mut self, timeout_ms: u32) -> Result<Option<OwnedFrame>, CardError> {
        let deadline = Instant::now() + Duration::from_millis(u64::from(timeout_ms));
        loop {
            self.acknowledge(regs::IRQ_FABRIC_RX_CQ)?;
            if let Some(frame) = self.fabric_poll()? {
                return Ok(Some(frame));
            }
            if !self.fabric_link_up()? {
                return Err(CardError::FabricLinkDown);
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            self.wait_fabric(regs::IRQ_FABRIC_RX_CQ, deadline, timeout_ms)
                .or_else(|error| match error {
                    CardError::FabricTimeout { .. } => Ok(()),
                    other => Err(other),
                })?;
        }
    }

    fn acknowledge(&mut self, cause: u32) -> Result<(), CardError> {
        if self.interrupts {
            self.registers().write32(
                regs::IRQ_STATUS,
                cause,
                "acknowledging a fabric interrupt",
            )?;
        }
        Ok(())
    }

    /// Lets the card run until `cause` may have happened or `deadline` passed
    /// ([`CardError::FabricTimeout`]). With interrupts, unmasks only `cause` meanwhile.
    fn wait_fabric(
        &mut self,
        cause: u32,
        deadline: Instant,
        timeout_ms: u32,
    ) -> Result<(), CardError> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(CardError::FabricTimeout { timeout_ms });
        }
        let name = self.backend_name;
        if !self.interrupts {
            return self
                .backend
                .advance()
                .map_err(backend_error(name, "letting the card run"));
        }
        let mut registers = self.registers();
        registers.write32(
            regs::IRQ_MASK,
            cause | regs::IRQ_FABRIC_LINK | regs::IRQ_ERROR,
            "unmasking a fabric interrupt",
        )?;
        let remaining_ms = u32::try_from(remaining.as_millis())
            .unwrap_or(u32::MAX)
            .max(1);
        let waited = self
            .backend
            .wait_interrupt(remaining_ms)
            .map_err(backend_error(name, "waiting for a fabric interrupt"));
        self.registers()
            .write32(regs::IRQ_MASK, super::PARITY_IRQ_MASK, "restoring IRQ_MASK")?;
        self.acknowledge(cause)?;
        match waited? {
            InterruptWait::Raised => Ok(()),
            InterruptWait::TimedOut => Err(CardError::FabricTimeout { timeout_ms }),
        }
    }
}
