//! BAR0 register map of the amflink card.
//!
//! BAR0 is [`BAR0_BYTES`] long: 32-bit and 64-bit registers below [`SRAM_WINDOW_OFFSET`],
//! then a [`SRAM_WINDOW_BYTES`] window onto the card SRAM, paged by
//! [`SRAM_WINDOW_SELECT`]. Every register is described once in [`REGISTERS`]; the sim card,
//! the register file in `hdl/` and the driver all look offsets up there.
//!
//! 64-bit registers are accessed as one 64-bit access or as two 32-bit halves (low half at
//! the register's offset, high half at offset + 4); ring base addresses take effect when
//! the ring is enabled, so a torn 64-bit write by two halves is never observed.

use crate::limits::{RING_ENTRIES_MAX, SRAM_WINDOW_BYTES};

/// Size of BAR0.
pub const BAR0_BYTES: u32 = 0x2_0000;
/// Where the SRAM window starts in BAR0.
pub const SRAM_WINDOW_OFFSET: u32 = 0x1_0000;

/// Value of [`ID`]: ASCII "AMFL" read as a little-endian u32.
pub const ID_VALUE: u32 = u32::from_le_bytes(*b"AMFL");
/// Major version a driver must match exactly.
pub const VERSION_MAJOR: u16 = 1;
/// Minor version: additions a driver may ignore.
pub const VERSION_MINOR: u16 = 1;
/// Register-map version this crate describes: major in bits 31..16, minor in 15..0.
pub const VERSION_VALUE: u32 = ((VERSION_MAJOR as u32) << 16) | VERSION_MINOR as u32;

// ---- identity (read-only) ----
/// Card identity, always [`ID_VALUE`].
pub const ID: u32 = 0x000;
/// Register-map version, [`VERSION_VALUE`] for this crate.
pub const VERSION: u32 = 0x004;
/// Capability bits, `CAP_*`.
pub const CAPS: u32 = 0x008;
/// Packed limits: bits 7..0 parity sources max, 15..8 fabric ports, 23..16 log2 of the
/// largest ring; see [`Limits`].
pub const LIMITS: u32 = 0x00C;
/// SRAM size in bytes (64-bit).
pub const SRAM_BYTES: u32 = 0x010;

// ---- control and status ----
/// Control bits, `CONTROL_*`.
pub const CONTROL: u32 = 0x020;
/// Status bits, `STATUS_*` (read-only).
pub const STATUS: u32 = 0x024;
/// First error latched since the last clear, an [`ErrorCode`]; write any value to clear.
pub const ERROR_CODE: u32 = 0x028;
/// Detail of [`ERROR_CODE`]: the offending register offset or ring index.
pub const ERROR_INFO: u32 = 0x02C;
/// Pending interrupt causes, `IRQ_*`; write 1 to clear a bit.
pub const IRQ_STATUS: u32 = 0x030;
/// Enabled interrupt causes, `IRQ_*`.
pub const IRQ_MASK: u32 = 0x034;
/// Free read/write register for driver liveness checks.
pub const SCRATCH: u32 = 0x038;
/// This card's port number on the broadcast fabric (read-only).
pub const FABRIC_PORT_ID: u32 = 0x03C;
/// Bitmap of live fabric ports (read-only).
pub const FABRIC_MEMBERSHIP: u32 = 0x040;
/// Which [`SRAM_WINDOW_BYTES`] page of SRAM the window at [`SRAM_WINDOW_OFFSET`] shows.
pub const SRAM_WINDOW_SELECT: u32 = 0x044;

// ---- rings ----
/// Parity engine submission ring (host produces [`crate::ring::ParityDescriptor`]s).
pub const PARITY_SQ: u32 = 0x100;
/// Parity engine completion ring (card produces [`crate::ring::Completion`]s).
pub const PARITY_CQ: u32 = 0x120;
/// Fabric transmit ring (host produces [`crate::ring::FabricBuffer`]s holding frames).
pub const FABRIC_TX_SQ: u32 = 0x200;
/// Fabric transmit completions (card produces [`crate::ring::Completion`]s).
pub const FABRIC_TX_CQ: u32 = 0x220;
/// Fabric receive buffers (host posts empty [`crate::ring::FabricBuffer`]s).
pub const FABRIC_RX_SQ: u32 = 0x240;
/// Fabric receive completions (card produces [`crate::ring::Completion`]s, one per frame).
pub const FABRIC_RX_CQ: u32 = 0x260;
/// Every ring block, in register order.
pub const RINGS: [u32; 6] = [
    PARITY_SQ,
    PARITY_CQ,
    FABRIC_TX_SQ,
    FABRIC_TX_CQ,
    FABRIC_RX_SQ,
    FABRIC_RX_CQ,
];

/// Offsets within one ring block.
pub mod ring_block {
    /// DMA address of entry 0 (64-bit, aligned to the entry size).
    pub const BASE: u32 = 0x00;
    /// Number of entries, a power of two within the ring limits.
    pub const ENTRIES: u32 = 0x08;
    /// Index of the next entry the consumer takes (consumer writes, producer reads).
    pub const HEAD: u32 = 0x0C;
    /// Index of the next entry the producer fills (producer writes, consumer reads). For a
    /// submission ring, writing TAIL is the doorbell.
    pub const TAIL: u32 = 0x10;
    /// Ring control: bit 0 enables the ring.
    pub const CONTROL: u32 = 0x14;
    /// Bytes one ring block spans.
    pub const BYTES: u32 = 0x20;
}

/// Ring control bit: ring enabled (base and entries latched).
pub const RING_ENABLE: u32 = 1 << 0;

// ---- bits ----
/// Card computes P (XOR).
pub const CAP_PARITY_P: u32 = 1 << 0;
/// Card computes P and Q (GF(2^8), generator 2, polynomial 0x11d).
pub const CAP_PARITY_PQ: u32 = 1 << 1;
/// Card has a broadcast fabric port.
pub const CAP_FABRIC: u32 = 1 << 2;
/// Card has SRAM that peers write through the fabric.
pub const CAP_SRAM: u32 = 1 << 3;
/// Card raises interrupts (otherwise the driver polls).
pub const CAP_INTERRUPTS: u32 = 1 << 4;

/// Control: the card processes its rings.
pub const CONTROL_ENABLE: u32 = 1 << 0;
/// Control: reset the card (self-clearing; SRAM contents survive).
pub const CONTROL_RESET: u32 = 1 << 1;
/// Control: interrupts may be raised.
pub const CONTROL_IRQ_ENABLE: u32 = 1 << 2;
/// Every control bit.
pub const CONTROL_ALL: u32 = CONTROL_ENABLE | CONTROL_RESET | CONTROL_IRQ_ENABLE;

/// Status: out of reset and ready.
pub const STATUS_READY: u32 = 1 << 0;
/// Status: an error is latched in [`ERROR_CODE`].
pub const STATUS_ERROR: u32 = 1 << 1;
/// Status: the parity engine holds unfinished descriptors.
pub const STATUS_PARITY_BUSY: u32 = 1 << 2;
/// Status: the fabric link is up.
pub const STATUS_FABRIC_LINK_UP: u32 = 1 << 3;

/// Interrupt cause: a parity completion was posted.
pub const IRQ_PARITY_CQ: u32 = 1 << 0;
/// Interrupt cause: a fabric transmit completion was posted.
pub const IRQ_FABRIC_TX_CQ: u32 = 1 << 1;
/// Interrupt cause: a fabric frame was received.
pub const IRQ_FABRIC_RX_CQ: u32 = 1 << 2;
/// Interrupt cause: an error was latched.
pub const IRQ_ERROR: u32 = 1 << 3;
/// Interrupt cause: the fabric link went down (`STATUS_FABRIC_LINK_UP` cleared), so a
/// driver waiting for fabric traffic learns it will not come (minor version 1).
pub const IRQ_FABRIC_LINK: u32 = 1 << 4;
/// Every interrupt cause.
pub const IRQ_ALL: u32 =
    IRQ_PARITY_CQ | IRQ_FABRIC_TX_CQ | IRQ_FABRIC_RX_CQ | IRQ_ERROR | IRQ_FABRIC_LINK;

crate::wire_enum! {
    /// Errors the card latches in [`ERROR_CODE`] (register-level faults; per-descriptor faults
    /// are reported in completions instead).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum ErrorCode: u32, from_u32 {
        /// No error.
        None = 0,
        /// Access to an offset where no register is mapped.
        BadOffset = 1,
        /// Write to a read-only register.
        ReadOnly = 2,
        /// Access of a width or alignment the register does not take.
        BadAccess = 3,
        /// Ring enabled with entries not a power of two in range, or a misaligned base.
        BadRingConfig = 4,
        /// Producer index moved more than the ring's size ahead of the consumer.
        RingOverflow = 5,
        /// A ring was used while the card or the ring was disabled.
        NotEnabled = 6,
        /// SRAM window page beyond the SRAM.
        BadWindow = 7,
        /// The completion ring was full when a completion had to be posted.
        CompletionOverflow = 8,
    }
}

/// Limits the card reports in [`LIMITS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most data sources in one parity descriptor.
    pub parity_sources_max: u8,
    /// Number of fabric ports.
    pub fabric_ports: u8,
    /// log2 of the most entries in a ring.
    pub ring_entries_log2_max: u8,
}

impl Limits {
    /// Packs into the register's layout.
    pub const fn to_register(self) -> u32 {
        self.parity_sources_max as u32
            | (self.fabric_ports as u32) << 8
            | (self.ring_entries_log2_max as u32) << 16
    }

    /// Unpacks from the register's layout.
    pub const fn from_register(value: u32) -> Self {
        Self {
            parity_sources_max: value as u8,
            fabric_ports: (value >> 8) as u8,
            ring_entries_log2_max: (value >> 16) as u8,
        }
    }
}

/// How a register may be accessed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read-only; writes latch [`ErrorCode::ReadOnly`].
    ReadOnly,
    /// Read/write.
    ReadWrite,
    /// Read; writing 1 to a bit clears it.
    WriteOneToClear,
    /// Read; any write clears the whole register.
    WriteToClear,
}

/// Width of a register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    /// 32 bits.
    W32,
    /// 64 bits (also accessible as two 32-bit halves).
    W64,
}

/// One register of the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Register {
    /// Name as in the docs.
    pub name: &'static str,
    /// Offset in BAR0.
    pub offset: u32,
    /// Width.
    pub width: Width,
    /// Access.
    pub access: Access,
}

const fn reg(name: &'static str, offset: u32, width: Width, access: Access) -> Register {
    Register {
        name,
        offset,
        width,
        access,
    }
}

/// Every register outside the ring blocks, in offset order.
pub const REGISTERS: [Register; 15] = [
    reg("ID", ID, Width::W32, Access::ReadOnly),
    reg("VERSION", VERSION, Width::W32, Access::ReadOnly),
    reg("CAPS", CAPS, Width::W32, Access::ReadOnly),
    reg("LIMITS", LIMITS, Width::W32, Access::ReadOnly),
    reg("SRAM_BYTES", SRAM_BYTES, Width::W64, Access::ReadOnly),
    reg("CONTROL", CONTROL, Width::W32, Access::ReadWrite),
    reg("STATUS", STATUS, Width::W32, Access::ReadOnly),
    reg("ERROR_CODE", ERROR_CODE, Width::W32, Access::WriteToClear),
    reg("ERROR_INFO", ERROR_INFO, Width::W32, Access::ReadOnly),
    reg(
        "IRQ_STATUS",
        IRQ_STATUS,
        Width::W32,
        Access::WriteOneToClear,
    ),
    reg("IRQ_MASK", IRQ_MASK, Width::W32, Access::ReadWrite),
    reg("SCRATCH", SCRATCH, Width::W32, Access::ReadWrite),
    reg(
        "FABRIC_PORT_ID",
        FABRIC_PORT_ID,
        Width::W32,
        Access::ReadOnly,
    ),
    reg(
        "FABRIC_MEMBERSHIP",
        FABRIC_MEMBERSHIP,
        Width::W32,
        Access::ReadOnly,
    ),
    reg(
        "SRAM_WINDOW_SELECT",
        SRAM_WINDOW_SELECT,
        Width::W32,
        Access::ReadWrite,
    ),
];

/// Access of one register inside a ring block, from the producer/consumer roles: the host
/// writes BASE, ENTRIES, CONTROL and its own index; the card owns the other index.
pub const fn ring_field_access(ring: u32, field: u32) -> Access {
    let host_produces = matches!(ring, PARITY_SQ | FABRIC_TX_SQ | FABRIC_RX_SQ);
    match field {
        ring_block::TAIL if host_produces => Access::ReadWrite,
        ring_block::HEAD if !host_produces => Access::ReadWrite,
        ring_block::HEAD | ring_block::TAIL => Access::ReadOnly,
        _ => Access::ReadWrite,
    }
}

/// What lives at a BAR0 offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// A register of [`REGISTERS`]; `high_half` when the offset is the upper 32 bits of a
    /// 64-bit register.
    Register { register: Register, high_half: bool },
    /// A field of a ring block: the ring's base offset and the field's offset in the block.
    Ring {
        ring: u32,
        field: u32,
        high_half: bool,
    },
    /// A byte offset into the current SRAM window page.
    SramWindow { offset: u32 },
}

/// Decodes a BAR0 offset for an access of `width_bytes` (4 or 8); `None` when nothing is
/// mapped there or the access is misaligned or of the wrong width.
pub fn locate(offset: u32, width_bytes: u32) -> Option<Location> {
    if !(width_bytes == 4 || width_bytes == 8) || !offset.is_multiple_of(width_bytes) {
        return None;
    }
    if offset >= SRAM_WINDOW_OFFSET {
        let window_offset = offset - SRAM_WINDOW_OFFSET;
        return (window_offset + width_bytes <= SRAM_WINDOW_BYTES).then_some(
            Location::SramWindow {
                offset: window_offset,
            },
        );
    }
    if let Some(location) = locate_ring(offset, width_bytes) {
        return Some(location);
    }
    locate_register(offset, width_bytes)
}

fn locate_register(offset: u32, width_bytes: u32) -> Option<Location> {
    REGISTERS.iter().find_map(|register| {
        let is_wide = register.width == Width::W64;
        if offset == register.offset && (width_bytes == 4 || is_wide) {
            Some(Location::Register {
                register: *register,
                high_half: false,
            })
        } else if is_wide && width_bytes == 4 && offset == register.offset + 4 {
            Some(Location::Register {
                register: *register,
                high_half: true,
            })
        } else {
            None
        }
    })
}

fn locate_ring(offset: u32, width_bytes: u32) -> Option<Location> {
    let ring = *RINGS
        .iter()
        .find(|&&ring| (ring..ring + ring_block::BYTES).contains(&offset))?;
    let field = offset - ring;
    match (field, width_bytes) {
        (ring_block::BASE, _) => Some(Location::Ring {
            ring,
            field,
            high_half: false,
        }),
        (f, 4) if f == ring_block::BASE + 4 => Some(Location::Ring {
            ring,
            field: ring_block::BASE,
            high_half: true,
        }),
        (ring_block::ENTRIES | ring_block::HEAD | ring_block::TAIL | ring_block::CONTROL, 4) => {
            Some(Location::Ring {
                ring,
                field,
                high_half: false,
            })
        }
        _ => None,
    }
}

/// True when `entries` is a ring size the card accepts.
pub const fn ring_entries_valid(entries: u32) -> bool {
    entries.is_power_of_two()
        && entries >= crate::limits::RING_ENTRIES_MIN
        && entries <= RING_ENTRIES_MAX
}

const _: () = {
    assert!(SRAM_WINDOW_OFFSET + SRAM_WINDOW_BYTES == BAR0_BYTES);
    assert!(FABRIC_RX_CQ + ring_block::BYTES <= SRAM_WINDOW_OFFSET);
    assert!(REGISTERS[REGISTERS.len() - 1].offset < PARITY_SQ);
    assert!(SRAM_BYTES.is_multiple_of(8) && PARITY_SQ.is_multiple_of(ring_block::BYTES));
    assert!(VERSION_VALUE >> 16 == VERSION_MAJOR as u32);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_register_locates_to_itself() {
        for register in &REGISTERS {
            assert_eq!(
                locate(register.offset, 4),
                Some(Location::Register {
                    register: *register,
                    high_half: false
                }),
                "{}",
                register.name
            );
        }
    }

    #[test]
    fn sixty_four_bit_register_has_two_halves() {
        assert!(matches!(
            locate(SRAM_BYTES, 8),
            Some(Location::Register {
                high_half: false,
                ..
            })
        ));
        assert!(matches!(
            locate(SRAM_BYTES + 4, 4),
            Some(Location::Register {
                high_half: true,
                ..
            })
        ));
        assert_eq!(locate(SRAM_BYTES + 4, 8), None, "misaligned 64-bit access");
        assert_eq!(
            locate(CONTROL, 8),
            None,
            "64-bit access to a 32-bit register"
        );
    }

    #[test]
    fn ring_fields_locate() {
        for ring in RINGS {
            assert_eq!(
                locate(ring + ring_block::TAIL, 4),
                Some(Location::Ring {
                    ring,
                    field: ring_block::TAIL,
                    high_half: false
                })
            );
            assert_eq!(
                locate(ring + ring_block::BASE + 4, 4),
                Some(Location::Ring {
                    ring,
                    field: ring_block::BASE,
                    high_half: true
                })
            );
            assert_eq!(locate(ring + 0x18, 4), None);
        }
    }

    #[test]
    fn unmapped_and_misaligned_offsets_are_rejected() {
        assert_eq!(locate(0x0FC, 4), None);
        assert_eq!(locate(0x001, 4), None);
        assert_eq!(locate(0x080, 4), None);
        assert_eq!(locate(ID, 2), None);
        assert_eq!(locate(BAR0_BYTES, 4), None);
        assert_eq!(locate(BAR0_BYTES - 4, 8), None);
        assert_eq!(
            locate(BAR0_BYTES - 4, 4),
            Some(Location::SramWindow {
                offset: SRAM_WINDOW_BYTES - 4
            })
        );
    }

    #[test]
    fn limits_round_trip() {
        let limits = Limits {
            parity_sources_max: 30,
            fabric_ports: 8,
            ring_entries_log2_max: 12,
        };
        assert_eq!(Limits::from_register(limits.to_register()), limits);
    }

    #[test]
    fn error_codes_round_trip() {
        for value in 0..=8 {
            assert_eq!(
                ErrorCode::from_u32(value).map(|code| code as u32),
                Some(value)
            );
        }
        assert_eq!(ErrorCode::from_u32(9), None);
    }

    #[test]
    fn ring_index_ownership() {
        assert_eq!(
            ring_field_access(PARITY_SQ, ring_block::TAIL),
            Access::ReadWrite
        );
        assert_eq!(
            ring_field_access(PARITY_SQ, ring_block::HEAD),
            Access::ReadOnly
        );
        assert_eq!(
            ring_field_access(PARITY_CQ, ring_block::HEAD),
            Access::ReadWrite
        );
        assert_eq!(
            ring_field_access(PARITY_CQ, ring_block::TAIL),
            Access::ReadOnly
        );
    }
}
