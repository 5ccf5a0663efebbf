//! The VFIO container (one IOMMU address space) and the groups in it.
//!
//! A container is `/dev/vfio/vfio`; a group is `/dev/vfio/N`, the unit the IOMMU
//! isolates. A group joins a container, the first one fixes the IOMMU model (Type1 v2),
//! and from then on DMA mappings made on the container apply to every device of every
//! group in it.

use crate::address::PciAddress;
use crate::error::{VfioError, ioctl_failed};
use crate::sys;
use crate::sysfs::VfioPaths;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use vfio_bindings::bindings::vfio::{
    VFIO_API_VERSION, VFIO_GROUP_FLAGS_VIABLE, VFIO_TYPE1v2_IOMMU,
};

/// Smallest IOMMU page assumed until the IOMMU reports its own.
const PAGE_BYTES_DEFAULT: u64 = 4096;

/// An open VFIO container.
#[derive(Debug)]
pub struct Container {
    file: Arc<File>,
    /// The device it was opened for, named in its errors.
    address: PciAddress,
    /// Smallest IOMMU page, known once the first group set the IOMMU model.
    page_bytes: Mutex<Option<u64>>,
}

fn open_read_write(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}

impl Container {
    /// Opens `/dev/vfio/vfio` for the device at `address` and checks the API version and
    /// Type1 v2 IOMMU support.
    pub fn open(paths: &VfioPaths, address: PciAddress) -> Result<Arc<Self>, VfioError> {
        let path = paths.dev_vfio.join("vfio");
        let fail = |operation| {
            let path = path.clone();
            move |source| VfioError::Container {
                address,
                path,
                operation,
                source,
            }
        };
        let file = open_read_write(&path).map_err(fail("opening"))?;
        let version = sys::api_version(&file).map_err(fail("VFIO_GET_API_VERSION"))?;
        if version != VFIO_API_VERSION as i32 {
            let found = io::Error::other(format!(
                "API version {version}, expected {VFIO_API_VERSION}"
            ));
            return Err(fail("checking the API version")(found));
        }
        let type1v2 =
            sys::has_extension(&file, VFIO_TYPE1v2_IOMMU).map_err(fail("VFIO_CHECK_EXTENSION"))?;
        if !type1v2 {
            let missing = io::Error::other("the kernel lacks the Type1 v2 IOMMU model");
            return Err(fail("checking IOMMU support")(missing));
        }
        Ok(Arc::new(Self {
            file: Arc::new(file),
            address,
            page_bytes: Mutex::new(None),
        }))
    }

    /// The device the container was opened for.
    pub fn address(&self) -> PciAddress {
        self.address
    }

    /// Smallest page the IOMMU maps: DMA memory and IOVAs are multiples of it.
    pub fn page_bytes(&self) -> u64 {
        self.page_bytes
            .lock()
            .expect("no panic while held")
            .unwrap_or(PAGE_BYTES_DEFAULT)
    }

    pub(crate) fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// Sets the IOMMU model after the first group joined; later groups share it.
    fn ensure_iommu(&self) -> Result<(), VfioError> {
        let mut page_bytes = self.page_bytes.lock().expect("no panic while held");
        if page_bytes.is_some() {
            return Ok(());
        }
        sys::set_iommu(&self.file, VFIO_TYPE1v2_IOMMU)
            .map_err(ioctl_failed(self.address, "VFIO_SET_IOMMU (Type1 v2)"))?;
        let sizes = sys::iommu_page_sizes(&self.file)
            .map_err(ioctl_failed(self.address, "VFIO_IOMMU_GET_INFO"))?;
        let smallest = sizes
            .filter(|sizes| *sizes != 0)
            .map_or(PAGE_BYTES_DEFAULT, |sizes| 1 << sizes.trailing_zeros());
        *page_bytes = Some(smallest);
        Ok(())
    }
}

/// An IOMMU group, open and in a container.
#[derive(Debug)]
pub struct Group {
    container: Arc<Container>,
    file: File,
    id: u32,
    paths: VfioPaths,
}

impl Group {
    /// Opens group `id` (the group of the device at `address`, named in errors), checks
    /// it is viable and puts it into `container`.
    pub fn open(
        container: &Arc<Container>,
        paths: &VfioPaths,
        id: u32,
        address: PciAddress,
    ) -> Result<Arc<Self>, VfioError> {
        let path = paths.dev_vfio.join(id.to_string());
        let file = open_read_write(&path).map_err(|source| {
            if source.raw_os_error() == Some(libc::EBUSY) {
                VfioError::GroupBusy { address, group: id }
            } else {
                VfioError::GroupOpen {
                    address,
                    group: id,
                    path: path.clone(),
                    source,
                }
            }
        })?;
        let flags =
            sys::group_flags(&file).map_err(ioctl_failed(address, "VFIO_GROUP_GET_STATUS"))?;
        if flags & VFIO_GROUP_FLAGS_VIABLE == 0 {
            return Err(VfioError::GroupNotViable {
                address,
                group: id,
                others: paths.group_peers(address),
            });
        }
        sys::group_set_container(&file, &container.file)
            .map_err(ioctl_failed(address, "VFIO_GROUP_SET_CONTAINER"))?;
        container.ensure_iommu()?;
        Ok(Arc::new(Self {
            container: Arc::clone(container),
            file,
            id,
            paths: paths.clone(),
        }))
    }

    /// The group number (`/dev/vfio/N`).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The container the group is in.
    pub fn container(&self) -> &Arc<Container> {
        &self.container
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    pub(crate) fn paths(&self) -> &VfioPaths {
        &self.paths
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysfs::fake::FakeHost;

    #[test]
    fn a_missing_container_node_is_a_container_error_naming_the_device() {
        let host = FakeHost::new();
        let address: PciAddress = "0000:00:03.0".parse().unwrap();
        let error = Container::open(&host.paths, address).unwrap_err();
        assert!(
            matches!(
                error,
                VfioError::Container {
                    operation: "opening",
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("0000:00:03.0"), "{error}");
    }

    #[test]
    fn a_container_node_that_is_not_vfio_fails_its_first_ioctl() {
        let host = FakeHost::new();
        std::fs::write(host.paths.dev_vfio.join("vfio"), b"").unwrap();
        let address: PciAddress = "0000:00:03.0".parse().unwrap();
        let error = Container::open(&host.paths, address).unwrap_err();
        assert!(
            matches!(
                error,
                VfioError::Container {
                    operation: "VFIO_GET_API_VERSION",
                    ..
                }
            ),
            "{error}"
        );
    }
}
