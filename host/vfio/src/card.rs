//! [`VfioCard`]: the amflink card through VFIO, as an [`amf_card::CardBackend`].
//!
//! Open checks, in this order, before the card is driven: the function exists, has the
//! card's vendor and device id (a wrong device is refused before it is even opened), is
//! bound to vfio-pci with a viable IOMMU group; then it is reset (when VFIO can), bus
//! mastering is enabled, BAR0 is mapped and must be large enough, and the `ID` and
//! `VERSION` registers must be an amflink card's of this major version. Registers go
//! through the BAR0 mapping, DMA buffers are IOMMU-mapped host memory, completions wake
//! the driver through the interrupt's eventfd. Closing (or dropping) stops the card,
//! resets the function and only then unmaps the DMA memory.

use crate::address::PciAddress;
use crate::bar::Bar;
use crate::device::Device;
use crate::dma::{DmaMapping, DmaMemory};
use crate::error::{InterruptKind, VfioError};
use crate::interrupt::Interrupt;
use crate::sysfs::VfioPaths;
use amf_card::{CardBackend, DmaBuffer, InterruptWait};
use shared_regs::{pci, regs};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// First device address handed out: below it sits nothing, so a zero or small garbage
/// address in a descriptor faults in the IOMMU.
const IOVA_BASE_DEFAULT: u64 = 1 << 20;
/// End of the IOVA space used: x86 reserves 0xfee00000.. for MSI writes.
const IOVA_LIMIT_DEFAULT: u64 = 0xfee0_0000;
/// How often the line is sampled when the card has no usable interrupt.
const LINE_POLL_INTERVAL: Duration = Duration::from_millis(1);

/// How [`VfioCard`] opens the card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VfioCardOptions {
    /// Where sysfs and `/dev/vfio` are.
    pub paths: VfioPaths,
    /// First IOVA of DMA buffers.
    pub iova_base: u64,
    /// IOVAs stay below this.
    pub iova_limit: u64,
}

impl Default for VfioCardOptions {
    fn default() -> Self {
        Self {
            paths: VfioPaths::default(),
            iova_base: IOVA_BASE_DEFAULT,
            iova_limit: IOVA_LIMIT_DEFAULT,
        }
    }
}

/// What the card's identity registers say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CardIdentity {
    /// `ID`, always `regs::ID_VALUE` once checked.
    pub id: u32,
    /// Register map major version.
    pub version_major: u16,
    /// Register map minor version.
    pub version_minor: u16,
    /// `CAPS`.
    pub caps: u32,
    /// `SRAM_BYTES`.
    pub sram_bytes: u64,
}

/// What [`VfioCard::probe`] learns of a card without resetting or driving it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardProbe {
    /// The function.
    pub address: PciAddress,
    /// Its IOMMU group.
    pub iommu_group: u32,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Identity registers.
    pub identity: CardIdentity,
    /// Whether VFIO can reset it.
    pub resettable: bool,
    /// The interrupt it would use (`None`: it would be polled).
    pub interrupt: Option<InterruptKind>,
}

/// An open amflink card.
#[derive(Debug)]
pub struct VfioCard {
    device: Device,
    bar0: Bar,
    interrupt: Option<Interrupt>,
    buffers: HashMap<u64, DmaMapping>,
    next_handle: u64,
    next_iova: u64,
    iova_limit: u64,
    probe: CardProbe,
    /// Set by `close`, so the drop that follows does not reset the card a second time.
    closed: bool,
}

impl VfioCard {
    /// Opens and resets the card at `address`.
    pub fn open(options: &VfioCardOptions, address: PciAddress) -> Result<Self, VfioError> {
        let (device, bar0) = attach(&options.paths, address)?;
        if device.can_reset() {
            device.reset()?;
        }
        device.enable_bus_master()?;
        let identity = read_identity(&bar0)?;
        let interrupt = match device.enable_best_interrupt() {
            Ok(interrupt) => Some(interrupt),
            Err(VfioError::InterruptUnavailable { .. }) => None,
            Err(error) => return Err(error),
        };
        let probe = describe(&device, identity, interrupt.as_ref().map(Interrupt::kind))?;
        Ok(Self {
            device,
            bar0,
            interrupt,
            buffers: HashMap::new(),
            next_handle: 1,
            next_iova: options.iova_base,
            iova_limit: options.iova_limit,
            probe,
            closed: false,
        })
    }

    /// Reads the card's identity without resetting it, enabling anything or keeping it
    /// open (for `amf status`).
    pub fn probe(paths: &VfioPaths, address: PciAddress) -> Result<CardProbe, VfioError> {
        let (device, bar0) = attach(paths, address)?;
        let identity = read_identity(&bar0)?;
        let interrupt = [InterruptKind::MsiX, InterruptKind::Msi, InterruptKind::Intx]
            .into_iter()
            .find(|kind| device.interrupt_count(*kind) > 0);
        describe(&device, identity, interrupt)
    }

    /// What the card said at open.
    pub fn info(&self) -> &CardProbe {
        &self.probe
    }

    /// Stops the card, resets the function, then unmaps every DMA buffer, reporting the
    /// first failure.
    pub fn close(mut self) -> Result<(), VfioError> {
        self.closed = true;
        let mut result = self.stop();
        if let Some(interrupt) = self.interrupt.take() {
            result = result.and(interrupt.disable());
        }
        for (_, buffer) in self.buffers.drain() {
            result = result.and(buffer.unmap());
        }
        result
    }

    /// Quiesces DMA before memory is unmapped: the card's own reset, then the function's.
    fn stop(&mut self) -> Result<(), VfioError> {
        self.bar0
            .write32(regs::CONTROL.into(), regs::CONTROL_RESET)?;
        if self.device.can_reset() {
            self.device.reset()?;
        }
        Ok(())
    }

    fn buffer(
        &self,
        buffer: &DmaBuffer,
        offset: u64,
        length: usize,
    ) -> Result<&DmaMapping, VfioError> {
        let address = self.probe.address;
        let mapping = self
            .buffers
            .get(&buffer.handle())
            .ok_or(VfioError::UnknownDmaBuffer {
                address,
                handle: buffer.handle(),
            })?;
        check_dma_range(address, buffer, offset, length)?;
        Ok(mapping)
    }

    /// Whether the card drives its interrupt line now (`CONTROL_IRQ_ENABLE` and a
    /// pending enabled cause), read from its registers.
    fn line_asserted(&self) -> Result<bool, VfioError> {
        let control = self.bar0.read32(regs::CONTROL.into())?;
        let pending = self.bar0.read32(regs::IRQ_STATUS.into())?;
        let mask = self.bar0.read32(regs::IRQ_MASK.into())?;
        Ok(control & regs::CONTROL_IRQ_ENABLE != 0 && pending & mask != 0)
    }

    fn poll_line(&self, timeout_ms: u32) -> Result<InterruptWait, VfioError> {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms.into());
        loop {
            if self.line_asserted()? {
                return Ok(InterruptWait::Raised);
            }
            if Instant::now() >= deadline {
                return Ok(InterruptWait::TimedOut);
            }
            std::thread::sleep(LINE_POLL_INTERVAL);
        }
    }
}

impl Drop for VfioCard {
    fn drop(&mut self) {
        // The buffers drop after this body: the card must not reach memory that goes back
        // to the allocator. A failed stop leaves that to the function reset closing the
        // device performs, which is all a drop can do.
        if !self.closed {
            let _ = self.stop();
        }
    }
}

/// `offset` if an access of `width_bytes` there stays inside the register map: the BAR
/// may be larger than `regs::BAR0_BYTES`, and the trait promises an `Err` past the map's
/// end, not an access the card never defined.
fn register_offset(address: PciAddress, offset: u32, width_bytes: u64) -> Result<u64, VfioError> {
    let offset = u64::from(offset);
    let map_bytes = u64::from(regs::BAR0_BYTES);
    if offset + width_bytes > map_bytes {
        return Err(VfioError::BarOutOfRange {
            address,
            bar: pci::REGISTER_BAR,
            offset,
            width_bytes,
            bar_bytes: map_bytes,
        });
    }
    Ok(offset)
}

/// `Err` unless `length` bytes at `offset` lie inside `buffer` as the driver asked for
/// it (the mapping behind it is rounded up to a page; the rest is not the driver's).
fn check_dma_range(
    address: PciAddress,
    buffer: &DmaBuffer,
    offset: u64,
    length: usize,
) -> Result<(), VfioError> {
    let inside = offset
        .checked_add(length as u64)
        .is_some_and(|end| end <= buffer.bytes());
    if inside {
        return Ok(());
    }
    Err(VfioError::DmaOutOfRange {
        address,
        iova: buffer.device_address(),
        offset,
        length_bytes: length as u64,
        buffer_bytes: buffer.bytes(),
    })
}

/// Checks the function's ids in sysfs, opens it, maps BAR0 and checks its size.
fn attach(paths: &VfioPaths, address: PciAddress) -> Result<(Device, Bar), VfioError> {
    let described = paths.describe(address)?;
    check_ids(address, described.vendor, described.device)?;
    let device = Device::open(paths, address)?;
    let bar0 = device.map_bar(pci::REGISTER_BAR)?;
    let needed_bytes = u64::from(regs::BAR0_BYTES);
    if bar0.bytes() < needed_bytes {
        return Err(VfioError::BarTooSmall {
            address,
            bar: pci::REGISTER_BAR,
            found_bytes: bar0.bytes(),
            needed_bytes,
        });
    }
    Ok((device, bar0))
}

/// [`VfioError::WrongDevice`] unless `vendor`:`device` are the card's.
pub(crate) fn check_ids(address: PciAddress, vendor: u16, device: u16) -> Result<(), VfioError> {
    if (vendor, device) == (pci::VENDOR_ID, pci::DEVICE_ID) {
        return Ok(());
    }
    Err(VfioError::WrongDevice {
        address,
        vendor,
        device,
        expected_vendor: pci::VENDOR_ID,
        expected_device: pci::DEVICE_ID,
    })
}

fn read_identity(bar0: &Bar) -> Result<CardIdentity, VfioError> {
    let address = bar0.address();
    let id = bar0.read32(regs::ID.into())?;
    if id != regs::ID_VALUE {
        return Err(VfioError::BadCardId {
            address,
            found: id,
            expected: regs::ID_VALUE,
        });
    }
    let version = bar0.read32(regs::VERSION.into())?;
    let (version_major, version_minor) = ((version >> 16) as u16, version as u16);
    if version_major != regs::VERSION_MAJOR {
        return Err(VfioError::CardVersion {
            address,
            found_major: version_major,
            found_minor: version_minor,
            expected_major: regs::VERSION_MAJOR,
        });
    }
    Ok(CardIdentity {
        id,
        version_major,
        version_minor,
        caps: bar0.read32(regs::CAPS.into())?,
        sram_bytes: bar0.read64(regs::SRAM_BYTES.into())?,
    })
}

fn describe(
    device: &Device,
    identity: CardIdentity,
    interrupt: Option<InterruptKind>,
) -> Result<CardProbe, VfioError> {
    let (vendor, device_id) = device.ids()?;
    Ok(CardProbe {
        address: device.address(),
        iommu_group: device.iommu_group(),
        vendor,
        device: device_id,
        identity,
        resettable: device.can_reset(),
        interrupt,
    })
}

impl CardBackend for VfioCard {
    type Error = VfioError;

    fn name(&self) -> &'static str {
        "vfio"
    }

    fn read32(&mut self, offset: u32) -> Result<u32, VfioError> {
        self.bar0
            .read32(register_offset(self.probe.address, offset, 4)?)
    }

    fn write32(&mut self, offset: u32, value: u32) -> Result<(), VfioError> {
        self.bar0
            .write32(register_offset(self.probe.address, offset, 4)?, value)
    }

    fn read64(&mut self, offset: u32) -> Result<u64, VfioError> {
        self.bar0
            .read64(register_offset(self.probe.address, offset, 8)?)
    }

    fn write64(&mut self, offset: u32, value: u64) -> Result<(), VfioError> {
        self.bar0
            .write64(register_offset(self.probe.address, offset, 8)?, value)
    }

    fn dma_alloc(&mut self, bytes: u64) -> Result<DmaBuffer, VfioError> {
        let address = self.probe.address;
        let container = self.device.container();
        let page_bytes = container.page_bytes();
        let memory =
            DmaMemory::allocate(bytes, page_bytes).map_err(|source| VfioError::DmaAllocation {
                address,
                bytes,
                source,
            })?;
        let iova = self.next_iova;
        // A page left unmapped after each buffer: a card overrunning one faults.
        let next_iova = iova
            .checked_add(memory.bytes() + page_bytes)
            .filter(|end| *end <= self.iova_limit)
            .ok_or(VfioError::IovaExhausted { address, bytes })?;
        let mapping = container.map_dma(memory, iova)?;
        self.next_iova = next_iova;
        let handle = self.next_handle;
        self.next_handle += 1;
        self.buffers.insert(handle, mapping);
        Ok(DmaBuffer::new(handle, iova, bytes))
    }

    fn dma_free(&mut self, buffer: DmaBuffer) -> Result<(), VfioError> {
        let mapping = self
            .buffers
            .remove(&buffer.handle())
            .ok_or(VfioError::UnknownDmaBuffer {
                address: self.probe.address,
                handle: buffer.handle(),
            })?;
        mapping.unmap()
    }

    fn dma_write(
        &mut self,
        buffer: &DmaBuffer,
        offset: u64,
        source: &[u8],
    ) -> Result<(), VfioError> {
        self.buffer(buffer, offset, source.len())?
            .write(offset, source)
    }

    fn dma_read(
        &mut self,
        buffer: &DmaBuffer,
        offset: u64,
        target: &mut [u8],
    ) -> Result<(), VfioError> {
        self.buffer(buffer, offset, target.len())?
            .read(offset, target)
    }

    fn advance(&mut self) -> Result<(), VfioError> {
        // The card runs on its own.
        Ok(())
    }

    fn wait_interrupt(&mut self, timeout_ms: u32) -> Result<InterruptWait, VfioError> {
        // A cause already pending raised its message before this wait began.
        if self.line_asserted()? {
            return Ok(InterruptWait::Raised);
        }
        let Some(interrupt) = self.interrupt.as_mut() else {
            return self.poll_line(timeout_ms);
        };
        if interrupt.wait(timeout_ms)? > 0 || self.line_asserted()? {
            return Ok(InterruptWait::Raised);
        }
        Ok(InterruptWait::TimedOut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysfs::fake::FakeHost;

    #[test]
    fn only_the_cards_ids_pass() {
        let address: PciAddress = "0000:03:00.0".parse().unwrap();
        check_ids(address, pci::VENDOR_ID, pci::DEVICE_ID).unwrap();
        let error = check_ids(address, 0x1234, 0x11e8).unwrap_err();
        assert!(
            matches!(error, VfioError::WrongDevice { vendor: 0x1234, .. }),
            "{error}"
        );
        let text = error.to_string();
        assert!(
            text.contains("0000:03:00.0") && text.contains("1234:11e8"),
            "{text}"
        );
    }

    #[test]
    fn register_accesses_stay_inside_the_register_map() {
        let address: PciAddress = "0000:03:00.0".parse().unwrap();
        let last = regs::BAR0_BYTES - 8;
        assert_eq!(register_offset(address, last, 8).unwrap(), u64::from(last));
        assert_eq!(
            register_offset(address, last + 4, 4).unwrap(),
            u64::from(last + 4)
        );
        for (offset, width) in [(last + 4, 8), (regs::BAR0_BYTES, 4), (u32::MAX, 8)] {
            let error = register_offset(address, offset, width).unwrap_err();
            assert!(
                matches!(error, VfioError::BarOutOfRange { bar_bytes, .. } if bar_bytes == u64::from(regs::BAR0_BYTES)),
                "{offset:#x}: {error}"
            );
            assert!(error.to_string().contains("0000:03:00.0"));
        }
    }

    #[test]
    fn dma_accesses_stay_inside_the_buffer_asked_for() {
        let address: PciAddress = "0000:03:00.0".parse().unwrap();
        let buffer = DmaBuffer::new(1, 0x10_0000, 100);
        check_dma_range(address, &buffer, 0, 100).unwrap();
        check_dma_range(address, &buffer, 99, 1).unwrap();
        check_dma_range(address, &buffer, 100, 0).unwrap();
        for (offset, length) in [(0, 101), (100, 1), (u64::MAX, 2)] {
            let error = check_dma_range(address, &buffer, offset, length).unwrap_err();
            assert!(
                matches!(
                    error,
                    VfioError::DmaOutOfRange {
                        iova: 0x10_0000,
                        buffer_bytes: 100,
                        ..
                    }
                ),
                "{offset}+{length}: {error}"
            );
        }
    }

    #[test]
    fn a_missing_card_is_one_clear_error() {
        let host = FakeHost::new();
        let options = VfioCardOptions {
            paths: host.paths.clone(),
            ..Default::default()
        };
        let address: PciAddress = "0000:03:00.0".parse().unwrap();
        let error = VfioCard::open(&options, address).unwrap_err();
        assert!(matches!(error, VfioError::NoSuchDevice { .. }), "{error}");
        assert_eq!(error.address(), Some(address));
        let error = VfioCard::probe(&host.paths, address).unwrap_err();
        assert!(matches!(error, VfioError::NoSuchDevice { .. }), "{error}");
    }

    #[test]
    fn another_device_is_refused_before_it_is_opened() {
        let host = FakeHost::new();
        // No /dev/vfio/vfio exists: reaching VFIO would be a container error instead.
        let edu = host.add(
            "0000:00:03.0",
            ("0x1234", "0x11e8"),
            Some("vfio-pci"),
            Some(3),
        );
        let options = VfioCardOptions {
            paths: host.paths.clone(),
            ..Default::default()
        };
        let error = VfioCard::open(&options, edu).unwrap_err();
        assert!(matches!(error, VfioError::WrongDevice { .. }), "{error}");
    }

    #[test]
    fn the_card_on_a_host_without_vfio_fails_at_the_container_naming_it() {
        let host = FakeHost::new();
        let ids = (
            format!("{:#06x}", pci::VENDOR_ID),
            format!("{:#06x}", pci::DEVICE_ID),
        );
        let card = host.add("0000:05:00.0", (&ids.0, &ids.1), Some("vfio-pci"), Some(5));
        let error = VfioCard::probe(&host.paths, card).unwrap_err();
        assert!(matches!(error, VfioError::Container { .. }), "{error}");
        assert!(error.to_string().contains("0000:05:00.0"), "{error}");
    }
}
