//! Every `unsafe` of the crate: the VFIO ioctls, the BAR mapping and its volatile
//! accessors, host memory shared with a device and its IOMMU mapping.
//!
//! Each function takes typed arguments, does one system call or one raw access, checks
//! its result and returns `io::Result`; callers add which device and what for. The ioctl
//! argument structures are the kernel's, from `vfio-bindings`.

use memmap2::{MmapMut, MmapOptions};
use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};
use vfio_bindings::bindings::vfio::{
    VFIO_BASE, VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_WRITE, VFIO_IOMMU_INFO_PGSIZES,
    VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_DATA_EVENTFD,
    VFIO_IRQ_SET_DATA_NONE, VFIO_TYPE, vfio_device_info, vfio_group_status,
    vfio_iommu_type1_dma_map, vfio_iommu_type1_dma_unmap, vfio_iommu_type1_info, vfio_irq_info,
    vfio_irq_set, vfio_region_info,
};

/// `_IO(VFIO_TYPE, VFIO_BASE + index)`: VFIO's ioctls carry no size or direction bits.
const fn vfio_ioctl(index: u32) -> libc::Ioctl {
    ((VFIO_TYPE as u32) << 8 | (VFIO_BASE + index)) as libc::Ioctl
}

const GET_API_VERSION: libc::Ioctl = vfio_ioctl(0);
const CHECK_EXTENSION: libc::Ioctl = vfio_ioctl(1);
const SET_IOMMU: libc::Ioctl = vfio_ioctl(2);
const GROUP_GET_STATUS: libc::Ioctl = vfio_ioctl(3);
const GROUP_SET_CONTAINER: libc::Ioctl = vfio_ioctl(4);
const GROUP_GET_DEVICE_FD: libc::Ioctl = vfio_ioctl(6);
const DEVICE_GET_INFO: libc::Ioctl = vfio_ioctl(7);
const DEVICE_GET_REGION_INFO: libc::Ioctl = vfio_ioctl(8);
const DEVICE_GET_IRQ_INFO: libc::Ioctl = vfio_ioctl(9);
const DEVICE_SET_IRQS: libc::Ioctl = vfio_ioctl(10);
const DEVICE_RESET: libc::Ioctl = vfio_ioctl(11);
const IOMMU_GET_INFO: libc::Ioctl = vfio_ioctl(12);
const IOMMU_MAP_DMA: libc::Ioctl = vfio_ioctl(13);
const IOMMU_UNMAP_DMA: libc::Ioctl = vfio_ioctl(14);

// The kernel's numbers, as linux/vfio.h spells them (0x3b64 is VFIO_GET_API_VERSION).
const _: () = assert!(GET_API_VERSION == 0x3b64 && IOMMU_UNMAP_DMA == 0x3b72);

/// A non-negative ioctl result, or the errno as an error.
fn checked(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// An argument-less ioctl, or one whose argument is a plain integer.
fn ioctl_value(file: &File, request: libc::Ioctl, value: libc::c_ulong) -> io::Result<libc::c_int> {
    // SAFETY: the requests passed here (GET_API_VERSION, CHECK_EXTENSION, SET_IOMMU,
    // DEVICE_RESET) take an integer or nothing, never a pointer, so the kernel reads no
    // memory of ours; the fd is open for the call's duration because `file` is borrowed.
    checked(unsafe { libc::ioctl(file.as_raw_fd(), request, value) })
}

/// An ioctl whose argument is a structure the kernel reads and may fill in.
fn ioctl_struct<T>(file: &File, request: libc::Ioctl, argument: &mut T) -> io::Result<libc::c_int> {
    // SAFETY: every caller pairs `request` with the structure linux/vfio.h defines for it,
    // whose leading `argsz` the caller set to the structure's size, so the kernel reads
    // and writes only within `argument`, which is exclusively borrowed for the call.
    checked(unsafe { libc::ioctl(file.as_raw_fd(), request, argument as *mut T) })
}

/// `VFIO_GET_API_VERSION` on the container.
pub(crate) fn api_version(container: &File) -> io::Result<i32> {
    ioctl_value(container, GET_API_VERSION, 0)
}

/// `VFIO_CHECK_EXTENSION`: whether the container supports IOMMU type `extension`.
pub(crate) fn has_extension(container: &File, extension: u32) -> io::Result<bool> {
    Ok(ioctl_value(container, CHECK_EXTENSION, extension.into())? > 0)
}

/// `VFIO_SET_IOMMU`: picks the IOMMU model once a group is in the container.
pub(crate) fn set_iommu(container: &File, model: u32) -> io::Result<()> {
    ioctl_value(container, SET_IOMMU, model.into()).map(drop)
}

/// `VFIO_IOMMU_GET_INFO`: the page sizes the IOMMU maps (a bit per size), if reported.
pub(crate) fn iommu_page_sizes(container: &File) -> io::Result<Option<u64>> {
    let mut info = vfio_iommu_type1_info {
        argsz: size_of::<vfio_iommu_type1_info>() as u32,
        ..Default::default()
    };
    ioctl_struct(container, IOMMU_GET_INFO, &mut info)?;
    Ok((info.flags & VFIO_IOMMU_INFO_PGSIZES != 0).then_some(info.iova_pgsizes))
}

/// `VFIO_GROUP_GET_STATUS`: the group's `VFIO_GROUP_FLAGS_*`.
pub(crate) fn group_flags(group: &File) -> io::Result<u32> {
    let mut status = vfio_group_status {
        argsz: size_of::<vfio_group_status>() as u32,
        flags: 0,
    };
    ioctl_struct(group, GROUP_GET_STATUS, &mut status)?;
    Ok(status.flags)
}

/// `VFIO_GROUP_SET_CONTAINER`: puts the group into the container.
pub(crate) fn group_set_container(group: &File, container: &File) -> io::Result<()> {
    let mut container_fd: libc::c_int = container.as_raw_fd();
    ioctl_struct(group, GROUP_SET_CONTAINER, &mut container_fd).map(drop)
}

/// `VFIO_GROUP_GET_DEVICE_FD`: opens the device `name` (its PCI address) of the group.
pub(crate) fn group_device(group: &File, name: &CStr) -> io::Result<File> {
    // SAFETY: the request takes a pointer to a NUL-terminated string, which `name` is and
    // which outlives the call; the kernel only reads it.
    let fd =
        checked(unsafe { libc::ioctl(group.as_raw_fd(), GROUP_GET_DEVICE_FD, name.as_ptr()) })?;
    // SAFETY: on success the ioctl returns a new file descriptor that nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// `VFIO_DEVICE_GET_INFO`.
pub(crate) fn device_info(device: &File) -> io::Result<vfio_device_info> {
    let mut info = vfio_device_info {
        argsz: size_of::<vfio_device_info>() as u32,
        ..Default::default()
    };
    ioctl_struct(device, DEVICE_GET_INFO, &mut info)?;
    Ok(info)
}

/// `VFIO_DEVICE_GET_REGION_INFO` for region `index`.
pub(crate) fn region_info(device: &File, index: u32) -> io::Result<vfio_region_info> {
    let mut info = vfio_region_info {
        argsz: size_of::<vfio_region_info>() as u32,
        index,
        ..Default::default()
    };
    ioctl_struct(device, DEVICE_GET_REGION_INFO, &mut info)?;
    Ok(info)
}

/// `VFIO_DEVICE_GET_IRQ_INFO` for interrupt index `index`.
pub(crate) fn irq_info(device: &File, index: u32) -> io::Result<vfio_irq_info> {
    let mut info = vfio_irq_info {
        argsz: size_of::<vfio_irq_info>() as u32,
        index,
        ..Default::default()
    };
    ioctl_struct(device, DEVICE_GET_IRQ_INFO, &mut info)?;
    Ok(info)
}

/// `vfio_irq_set` with one eventfd in its trailing data.
#[repr(C)]
struct IrqSetOneEventfd {
    header: vfio_irq_set,
    eventfd: i32,
}

const _: () = assert!(size_of::<vfio_irq_set>() == 20 && size_of::<IrqSetOneEventfd>() == 24);

/// `VFIO_DEVICE_SET_IRQS`: vector 0 of interrupt index `index` signals `eventfd`.
pub(crate) fn irq_trigger_eventfd(device: &File, index: u32, eventfd: &OwnedFd) -> io::Result<()> {
    let mut set = IrqSetOneEventfd {
        header: vfio_irq_set {
            argsz: size_of::<IrqSetOneEventfd>() as u32,
            flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
            index,
            start: 0,
            count: 1,
            ..Default::default()
        },
        eventfd: eventfd.as_raw_fd(),
    };
    ioctl_struct(device, DEVICE_SET_IRQS, &mut set).map(drop)
}

/// `VFIO_DEVICE_SET_IRQS` with no data: `count` 0 with TRIGGER disables the index,
/// `count` 1 with UNMASK unmasks a level interrupt VFIO masked when it fired.
fn irq_set_none(device: &File, index: u32, action: u32, count: u32) -> io::Result<()> {
    let mut set = vfio_irq_set {
        argsz: size_of::<vfio_irq_set>() as u32,
        flags: VFIO_IRQ_SET_DATA_NONE | action,
        index,
        start: 0,
        count,
        ..Default::default()
    };
    ioctl_struct(device, DEVICE_SET_IRQS, &mut set).map(drop)
}

/// Disables every vector of interrupt index `index`.
pub(crate) fn irq_disable(device: &File, index: u32) -> io::Result<()> {
    irq_set_none(device, index, VFIO_IRQ_SET_ACTION_TRIGGER, 0)
}

/// Unmasks vector 0 of interrupt index `index` (INTx after it fired).
pub(crate) fn irq_unmask(device: &File, index: u32) -> io::Result<()> {
    irq_set_none(device, index, VFIO_IRQ_SET_ACTION_UNMASK, 1)
}

/// `VFIO_DEVICE_RESET`.
pub(crate) fn device_reset(device: &File) -> io::Result<()> {
    ioctl_value(device, DEVICE_RESET, 0).map(drop)
}

/// A mapping of a device region (a BAR) or, in tests, of anonymous memory standing in
/// for one. Accessed only through volatile loads and stores, never through references:
/// each access is one bus transaction, and the device changes the bytes behind our back.
#[derive(Debug)]
pub(crate) struct Mmio {
    map: MmapMut,
}

impl Mmio {
    /// Maps `bytes` of `device` at file offset `offset` (where VFIO placed the region),
    /// shared, read and write.
    pub(crate) fn map_region(device: &File, offset: u64, bytes: usize) -> io::Result<Self> {
        // SAFETY: the mapping is of a device region, not of a file another process may
        // truncate; memmap2 owns it and unmaps it on drop, and this type reaches it only
        // through the volatile accessors below, never through a Rust reference.
        let map = unsafe {
            MmapOptions::new()
                .offset(offset)
                .len(bytes)
                .map_mut(device)?
        };
        Ok(Self { map })
    }

    /// Anonymous zeroed memory of `bytes`, for testing the checks above the accessors.
    #[cfg(test)]
    pub(crate) fn anonymous(bytes: usize) -> io::Result<Self> {
        Ok(Self {
            map: MmapOptions::new().len(bytes).map_anon()?,
        })
    }

    /// Length of the mapping.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The address of an in-bounds, aligned `T` at `offset`; panics otherwise (callers
    /// check first and return typed errors: this is the backstop).
    fn slot<T>(&self, offset: usize) -> *mut T {
        let width = size_of::<T>();
        assert!(
            offset
                .checked_add(width)
                .is_some_and(|end| end <= self.len())
        );
        assert!(
            offset.is_multiple_of(width),
            "MMIO accesses are naturally aligned"
        );
        // SAFETY: `offset + width` is within the mapping (asserted), so the result stays
        // inside the same allocation; the base is page aligned, so the slot is aligned.
        unsafe { self.map.as_ptr().cast_mut().add(offset).cast::<T>() }
    }

    /// One volatile load of a `u32` at `offset`.
    pub(crate) fn read32(&self, offset: usize) -> u32 {
        // SAFETY: `slot` returned an aligned pointer inside the live mapping; any bit
        // pattern is a valid u32.
        unsafe { self.slot::<u32>(offset).read_volatile() }
    }

    /// One volatile store of a `u32` at `offset`.
    pub(crate) fn write32(&self, offset: usize, value: u32) {
        // SAFETY: as in `read32`; the mapping is writable and no reference to it exists.
        unsafe { self.slot::<u32>(offset).write_volatile(value) }
    }

    /// One volatile load of a `u64` at `offset`.
    pub(crate) fn read64(&self, offset: usize) -> u64 {
        // SAFETY: as in `read32`.
        unsafe { self.slot::<u64>(offset).read_volatile() }
    }

    /// One volatile store of a `u64` at `offset`.
    pub(crate) fn write64(&self, offset: usize, value: u64) {
        // SAFETY: as in `write32`.
        unsafe { self.slot::<u64>(offset).write_volatile(value) }
    }
}

/// Host memory a device reaches by DMA. Like [`Mmio`], never borrowed as a Rust slice
/// while it exists: the device may write it at any moment, so bytes move in and out by
/// raw copies fenced against the device's accesses.
#[derive(Debug)]
pub(crate) struct HostMemory {
    map: MmapMut,
    hugepage: bool,
}

/// Hugepage size tried for large buffers: 2 MiB, as `log2`.
const HUGEPAGE_BITS: u8 = 21;

impl HostMemory {
    /// Zeroed anonymous memory of at least `bytes`, rounded up to a page (to a 2 MiB
    /// hugepage when `bytes` is at least one and the system has hugepages free).
    pub(crate) fn allocate(bytes: usize, page_bytes: usize) -> io::Result<Self> {
        let huge_bytes = 1usize << HUGEPAGE_BITS;
        if bytes >= huge_bytes {
            let rounded = bytes.next_multiple_of(huge_bytes);
            let mut options = MmapOptions::new();
            options.len(rounded).huge(Some(HUGEPAGE_BITS)).populate();
            if let Ok(map) = options.map_anon() {
                return Ok(Self {
                    map,
                    hugepage: true,
                });
            }
        }
        let map = MmapOptions::new()
            .len(bytes.next_multiple_of(page_bytes))
            .populate()
            .map_anon()?;
        Ok(Self {
            map,
            hugepage: false,
        })
    }

    /// Memory the caller mapped (any length: the IOMMU mapping checks it).
    pub(crate) fn from_map(map: MmapMut) -> Self {
        Self {
            map,
            hugepage: false,
        }
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether hugepages back the memory.
    pub(crate) fn is_hugepage(&self) -> bool {
        self.hugepage
    }

    /// The host virtual address, for the IOMMU.
    pub(crate) fn host_address(&self) -> u64 {
        self.map.as_ptr() as u64
    }

    fn checked_range(&self, offset: usize, length: usize) -> *mut u8 {
        assert!(
            offset
                .checked_add(length)
                .is_some_and(|end| end <= self.len())
        );
        // SAFETY: the range is inside the mapping (asserted above).
        unsafe { self.map.as_ptr().cast_mut().add(offset) }
    }

    /// Copies `source` to `offset`; the device sees it after the fence.
    pub(crate) fn write(&self, offset: usize, source: &[u8]) {
        let target = self.checked_range(offset, source.len());
        // SAFETY: `target..+len` is inside the mapping, which cannot overlap `source`
        // (a Rust slice, never a view of this memory); u8 has no invalid values, and no
        // reference to the mapping exists that the copy could alias.
        unsafe { std::ptr::copy_nonoverlapping(source.as_ptr(), target, source.len()) };
        fence(Ordering::SeqCst);
    }

    /// Copies bytes at `offset` into `target`, after a fence so the device's writes
    /// that came before are seen.
    pub(crate) fn read(&self, offset: usize, target: &mut [u8]) {
        let source = self.checked_range(offset, target.len());
        fence(Ordering::SeqCst);
        // SAFETY: as in `write`, with the roles swapped.
        unsafe { std::ptr::copy_nonoverlapping(source, target.as_mut_ptr(), target.len()) };
    }
}

/// Host memory mapped through the IOMMU at `iova`: while this exists the device may read
/// and write it. Dropping it unmaps first and frees the memory only once the IOMMU no
/// longer reaches it; if the kernel refuses to unmap, the memory is leaked rather than
/// handed back to the allocator while the device can still write it.
#[derive(Debug)]
pub(crate) struct IommuMapping {
    container: Arc<File>,
    memory: ManuallyDrop<HostMemory>,
    iova: u64,
    mapped: bool,
}

impl IommuMapping {
    /// `VFIO_IOMMU_MAP_DMA` of all of `memory` at `iova`, read and write. On failure the
    /// memory comes back with the error.
    pub(crate) fn new(
        container: Arc<File>,
        memory: HostMemory,
        iova: u64,
    ) -> Result<Self, (io::Error, HostMemory)> {
        let mut map = vfio_iommu_type1_dma_map {
            argsz: size_of::<vfio_iommu_type1_dma_map>() as u32,
            flags: VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
            vaddr: memory.host_address(),
            iova,
            size: memory.len() as u64,
        };
        match ioctl_struct(&container, IOMMU_MAP_DMA, &mut map) {
            Ok(_) => Ok(Self {
                container,
                memory: ManuallyDrop::new(memory),
                iova,
                mapped: true,
            }),
            Err(error) => Err((error, memory)),
        }
    }

    /// The memory (reached only through its copying accessors).
    pub(crate) fn memory(&self) -> &HostMemory {
        &self.memory
    }

    /// The device address of byte 0.
    pub(crate) fn iova(&self) -> u64 {
        self.iova
    }

    /// `VFIO_IOMMU_UNMAP_DMA`, once; an error leaves the memory leaked (see the type).
    pub(crate) fn unmap(mut self) -> io::Result<()> {
        self.unmap_once()
    }

    fn unmap_once(&mut self) -> io::Result<()> {
        if !self.mapped {
            return Ok(());
        }
        self.mapped = false;
        let bytes = self.memory.len() as u64;
        let mut unmap = vfio_iommu_type1_dma_unmap {
            argsz: size_of::<vfio_iommu_type1_dma_unmap>() as u32,
            iova: self.iova,
            size: bytes,
            ..Default::default()
        };
        let unmapped = ioctl_struct(&self.container, IOMMU_UNMAP_DMA, &mut unmap).and_then(|_| {
            match unmap.size == bytes {
                true => Ok(()),
                false => Err(io::Error::other(format!(
                    "the kernel unmapped {:#x} of {bytes:#x} bytes",
                    unmap.size
                ))),
            }
        });
        if unmapped.is_ok() {
            // SAFETY: the IOMMU no longer maps the memory and `mapped` is now false, so
            // this is the one place it is dropped, and no device access can follow.
            unsafe { ManuallyDrop::drop(&mut self.memory) };
        }
        unmapped
    }
}

impl Drop for IommuMapping {
    fn drop(&mut self) {
        // An unmap that fails here leaks the memory (see the type); the caller who wants
        // the error calls `unmap`.
        let _ = self.unmap_once();
    }
}
