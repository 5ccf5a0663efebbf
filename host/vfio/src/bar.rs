//! [`Bar`]: a mapped BAR that owns its mapping and checks every access.

use crate::address::PciAddress;
use crate::error::VfioError;
use crate::sys::Mmio;

/// A BAR mapped into this process. Every access is checked against the BAR's size and
/// its own width's alignment before it is issued, and is one volatile load or store:
/// one transaction on the bus. The mapping is unmapped when the `Bar` drops.
#[derive(Debug)]
pub struct Bar {
    address: PciAddress,
    index: u32,
    mmio: Mmio,
}

impl Bar {
    pub(crate) fn new(address: PciAddress, index: u32, mmio: Mmio) -> Self {
        Self {
            address,
            index,
            mmio,
        }
    }

    /// The function the BAR belongs to.
    pub fn address(&self) -> PciAddress {
        self.address
    }

    /// BAR index (0..6).
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Size of the BAR.
    pub fn bytes(&self) -> u64 {
        self.mmio.len() as u64
    }

    /// `offset` as an index, once the access of `width_bytes` there is known to be
    /// aligned and inside the BAR.
    fn check(&self, offset: u64, width_bytes: u64) -> Result<usize, VfioError> {
        if !offset.is_multiple_of(width_bytes) {
            return Err(VfioError::BarMisaligned {
                address: self.address,
                bar: self.index,
                offset,
                width_bytes,
            });
        }
        let inside = offset
            .checked_add(width_bytes)
            .is_some_and(|end| end <= self.bytes());
        if !inside {
            return Err(VfioError::BarOutOfRange {
                address: self.address,
                bar: self.index,
                offset,
                width_bytes,
                bar_bytes: self.bytes(),
            });
        }
        Ok(usize::try_from(offset).expect("inside a mapping"))
    }

    /// Reads the 32-bit register at `offset`.
    pub fn read32(&self, offset: u64) -> Result<u32, VfioError> {
        Ok(self.mmio.read32(self.check(offset, 4)?))
    }

    /// Writes the 32-bit register at `offset`.
    pub fn write32(&self, offset: u64, value: u32) -> Result<(), VfioError> {
        self.mmio.write32(self.check(offset, 4)?, value);
        Ok(())
    }

    /// Reads the 64-bit register at `offset` in one access.
    pub fn read64(&self, offset: u64) -> Result<u64, VfioError> {
        Ok(self.mmio.read64(self.check(offset, 8)?))
    }

    /// Writes the 64-bit register at `offset` in one access.
    pub fn write64(&self, offset: u64, value: u64) -> Result<(), VfioError> {
        self.mmio.write64(self.check(offset, 8)?, value);
        Ok(())
    }

    /// A BAR over anonymous memory, for testing the checks without a device.
    #[cfg(test)]
    pub(crate) fn anonymous(bytes: usize) -> Self {
        let address = "0000:00:00.0".parse().expect("a valid address");
        Self::new(
            address,
            0,
            Mmio::anonymous(bytes).expect("anonymous memory"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accesses_inside_the_bar_round_trip() {
        let bar = Bar::anonymous(4096);
        bar.write32(0, 0x1234_5678).unwrap();
        bar.write64(8, 0x0102_0304_0506_0708).unwrap();
        bar.write32(4092, 0xfeed_f00d).unwrap();
        assert_eq!(bar.read32(0).unwrap(), 0x1234_5678);
        assert_eq!(bar.read64(8).unwrap(), 0x0102_0304_0506_0708);
        assert_eq!(bar.read32(8).unwrap(), 0x0506_0708, "little-endian halves");
        assert_eq!(bar.read32(4092).unwrap(), 0xfeed_f00d);
        assert_eq!(bar.bytes(), 4096);
    }

    #[test]
    fn accesses_past_the_end_are_refused_before_they_are_issued() {
        let bar = Bar::anonymous(4096);
        for (offset, width) in [(4096, 4), (4096, 8), (u64::MAX - 3, 4), (u64::MAX - 7, 8)] {
            let error = match width {
                4 => bar.read32(offset).unwrap_err(),
                _ => bar.write64(offset, 1).unwrap_err(),
            };
            assert!(
                matches!(error, VfioError::BarOutOfRange { offset: o, .. } if o == offset),
                "{offset:#x}: {error}"
            );
            assert!(error.to_string().contains("0000:00:00.0"), "{error}");
        }
        assert_eq!(
            bar.read64(4088).unwrap(),
            0,
            "the last word is still reachable"
        );
    }

    #[test]
    fn misaligned_accesses_are_refused() {
        let bar = Bar::anonymous(4096);
        let error = bar.read32(2).unwrap_err();
        assert!(
            matches!(error, VfioError::BarMisaligned { width_bytes: 4, .. }),
            "{error}"
        );
        let error = bar.write64(4, 0).unwrap_err();
        assert!(
            matches!(error, VfioError::BarMisaligned { width_bytes: 8, .. }),
            "{error}"
        );
        assert_eq!(bar.read64(0).unwrap(), 0, "the refused write did not land");
    }
}
