//! The part of the card the RTL top does not have yet, played in software: the parity
//! rings (`PARITY_SQ`, `PARITY_CQ`) with the ring rules of `amf_card::sim::model`, and the
//! error latch and interrupt causes they raise. docs/CARD.md lists it under "not in the RTL
//! yet"; the fabric rings are not played at all (the RTL refuses them).

use amf_card::sim::model::Fault;
use shared_regs::limits::RING_ENTRIES_MAX;
use shared_regs::regs::{self, ErrorCode, ring_block};
use shared_regs::ring::{Completion, ParityDescriptor};
use std::mem::size_of;

/// One parity ring's registers.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ring {
    base: u64,
    entries: u32,
    /// Card-owned index for the submission ring, host-owned for the completion ring.
    pub head: u32,
    /// Host-owned index for the submission ring, card-owned for the completion ring.
    pub tail: u32,
    /// `RING_ENABLE` as last written.
    pub enabled: bool,
    active_base: u64,
    /// Entries latched at enable.
    pub active_entries: u32,
}

impl Ring {
    /// Entries queued.
    pub fn occupancy(&self) -> u32 {
        self.tail.wrapping_sub(self.head)
    }

    /// Device address of the slot `index` maps to.
    pub fn slot_address(&self, index: u32, entry_bytes: u64) -> u64 {
        let slot = u64::from(index & (self.active_entries - 1));
        self.active_base.wrapping_add(slot * entry_bytes)
    }
}

/// The software front end: both parity rings, its own first-error latch and IRQ causes.
#[derive(Clone, Copy, Debug, Default)]
pub struct FrontEnd {
    /// `PARITY_SQ`.
    pub submissions: Ring,
    /// `PARITY_CQ`.
    pub completions: Ring,
    /// The first fault the software part found (before any the RTL latched).
    pub error: Option<Fault>,
    /// Causes the software part raised (`IRQ_PARITY_CQ`, `IRQ_ERROR`).
    pub irq_status: u32,
}

/// Bytes of one entry of `ring`.
pub fn entry_bytes(ring: u32) -> u64 {
    if ring == regs::PARITY_SQ {
        size_of::<ParityDescriptor>() as u64
    } else {
        size_of::<Completion>() as u64
    }
}

impl FrontEnd {
    /// Whether the front end plays `ring` (the parity rings; the fabric rings go to the RTL).
    pub fn plays(ring: u32) -> bool {
        ring == regs::PARITY_SQ || ring == regs::PARITY_CQ
    }

    fn ring(&self, ring: u32) -> &Ring {
        if ring == regs::PARITY_SQ {
            &self.submissions
        } else {
            &self.completions
        }
    }

    fn ring_mut(&mut self, ring: u32) -> &mut Ring {
        if ring == regs::PARITY_SQ {
            &mut self.submissions
        } else {
            &mut self.completions
        }
    }

    /// Latches `fault` unless an earlier one (here, or in the RTL: `rtl_latched`) holds.
    pub fn latch(&mut self, fault: Fault, rtl_latched: bool) -> Fault {
        if self.error.is_none() && !rtl_latched {
            self.error = Some(fault);
        }
        self.irq_status |= regs::IRQ_ERROR;
        fault
    }

    /// The value of `field` of `ring` (a 64-bit field whole).
    pub fn read(&self, ring: u32, field: u32) -> u64 {
        let state = self.ring(ring);
        match field {
            ring_block::BASE => state.base,
            ring_block::ENTRIES => u64::from(state.entries),
            ring_block::HEAD => u64::from(state.head),
            ring_block::TAIL => u64::from(state.tail),
            _ => u64::from(if state.enabled { regs::RING_ENABLE } else { 0 }),
        }
    }

    /// A write of `value` to `field` of `ring`; `merged` gives the new 64-bit value of a
    /// half-written `BASE`. `card_enabled` is `CONTROL_ENABLE` as the RTL holds it.
    pub fn write(
        &mut self,
        ring: u32,
        field: u32,
        offset: u32,
        value: u64,
        card_enabled: bool,
    ) -> Result<(), Fault> {
        if regs::ring_field_access(ring, field) == regs::Access::ReadOnly {
            return Err(Fault {
                code: ErrorCode::ReadOnly,
                info: offset,
            });
        }
        match field {
            ring_block::BASE => self.ring_mut(ring).base = value,
            ring_block::ENTRIES => self.ring_mut(ring).entries = value as u32,
            ring_block::CONTROL => self.control(ring, value as u32)?,
            _ => self.move_index(ring, value as u32, card_enabled)?,
        }
        Ok(())
    }

    fn control(&mut self, ring: u32, value: u32) -> Result<(), Fault> {
        let state = self.ring_mut(ring);
        if value & regs::RING_ENABLE == 0 {
            state.enabled = false;
            return Ok(());
        }
        if !regs::ring_entries_valid(state.entries)
            || state.entries > RING_ENTRIES_MAX
            || !state.base.is_multiple_of(entry_bytes(ring))
        {
            return Err(Fault {
                code: ErrorCode::BadRingConfig,
                info: ring,
            });
        }
        state.enabled = true;
        state.active_base = state.base;
        state.active_entries = state.entries;
        // The ring starts empty at the host's index.
        if ring == regs::PARITY_SQ {
            state.head = state.tail;
        } else {
            state.tail = state.head;
        }
        Ok(())
    }

    fn move_index(&mut self, ring: u32, value: u32, card_enabled: bool) -> Result<(), Fault> {
        let partner_enabled = ring != regs::PARITY_SQ || self.completions.enabled;
        let state = self.ring_mut(ring);
        let mut moved = *state;
        if ring == regs::PARITY_SQ {
            moved.tail = value;
        } else {
            moved.head = value;
        }
        if state.enabled {
            if !card_enabled {
                return Err(Fault {
                    code: ErrorCode::NotEnabled,
                    info: ring,
                });
            }
            if !partner_enabled {
                return Err(Fault {
                    code: ErrorCode::NotEnabled,
                    info: regs::PARITY_CQ,
                });
            }
            if moved.occupancy() > state.active_entries {
                return Err(Fault {
                    code: ErrorCode::RingOverflow,
                    info: ring,
                });
            }
        }
        *state = moved;
        Ok(())
    }
}
