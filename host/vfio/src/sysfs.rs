//! What sysfs says about a PCI function before VFIO is asked anything: whether it exists,
//! its ids, its driver and its IOMMU group. Asking first turns the kernel's bare errno
//! (ENOENT, EPERM) into an error that says what to fix.

use crate::address::PciAddress;
use crate::error::VfioError;
use std::io;
use std::path::{Path, PathBuf};

/// Where the kernel's VFIO and PCI interfaces live; tests point these at a fake tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VfioPaths {
    /// `/sys/bus/pci/devices`: one directory per PCI function.
    pub sysfs_devices: PathBuf,
    /// `/dev/vfio`: the container node `vfio` and one node per group.
    pub dev_vfio: PathBuf,
}

impl Default for VfioPaths {
    fn default() -> Self {
        Self {
            sysfs_devices: PathBuf::from("/sys/bus/pci/devices"),
            dev_vfio: PathBuf::from("/dev/vfio"),
        }
    }
}

/// The driver VFIO hands devices out from.
pub const VFIO_PCI_DRIVER: &str = "vfio-pci";

/// What sysfs says about one function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysfsDevice {
    /// The function.
    pub address: PciAddress,
    /// Vendor id from its configuration space.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Bound driver, if any.
    pub driver: Option<String>,
    /// IOMMU group, `None` without an IOMMU.
    pub iommu_group: Option<u32>,
}

impl VfioPaths {
    /// The function's sysfs directory.
    pub fn device_dir(&self, address: PciAddress) -> PathBuf {
        self.sysfs_devices.join(address.to_string())
    }

    /// Reads what sysfs says about `address`; [`VfioError::NoSuchDevice`] when it has
    /// no directory.
    pub fn describe(&self, address: PciAddress) -> Result<SysfsDevice, VfioError> {
        let directory = self.device_dir(address);
        if !directory.is_dir() {
            return Err(VfioError::NoSuchDevice {
                address,
                path: directory,
            });
        }
        Ok(SysfsDevice {
            address,
            vendor: read_id(address, &directory.join("vendor"))?,
            device: read_id(address, &directory.join("device"))?,
            driver: link_name(address, &directory.join("driver"))?,
            iommu_group: group_of(address, &directory)?,
        })
    }

    /// [`Self::describe`], then [`VfioError::NotBoundToVfio`] unless the function is bound
    /// to vfio-pci and [`VfioError::NoIommuGroup`] unless it has a group.
    pub fn describe_vfio(&self, address: PciAddress) -> Result<(SysfsDevice, u32), VfioError> {
        let described = self.describe(address)?;
        if described.driver.as_deref() != Some(VFIO_PCI_DRIVER) {
            return Err(VfioError::NotBoundToVfio {
                address,
                driver: described.driver,
            });
        }
        let group = described
            .iommu_group
            .ok_or(VfioError::NoIommuGroup { address })?;
        Ok((described, group))
    }

    /// The other functions of `address`'s IOMMU group, each as `ADDRESS (driver NAME)`.
    /// Best effort: it only decorates an error, so an unreadable entry is skipped.
    pub fn group_peers(&self, address: PciAddress) -> Vec<String> {
        let devices = self.device_dir(address).join("iommu_group/devices");
        let Ok(entries) = std::fs::read_dir(devices) else {
            return Vec::new();
        };
        let mut peers: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().to_str()?.parse::<PciAddress>().ok())
            .filter(|peer| *peer != address)
            .map(|peer| {
                let driver = link_name(peer, &self.device_dir(peer).join("driver"))
                    .ok()
                    .flatten();
                format!("{peer} (driver {})", driver.as_deref().unwrap_or("none"))
            })
            .collect();
        peers.sort();
        peers
    }
}

fn sysfs_error(address: PciAddress, path: &Path) -> impl FnOnce(io::Error) -> VfioError {
    let path = path.to_path_buf();
    move |source| VfioError::Sysfs {
        address,
        path,
        source,
    }
}

/// A sysfs id file: `0x1234` and a newline.
fn read_id(address: PciAddress, path: &Path) -> Result<u16, VfioError> {
    let text = std::fs::read_to_string(path).map_err(sysfs_error(address, path))?;
    let digits = text.trim().strip_prefix("0x").unwrap_or("");
    u16::from_str_radix(digits, 16).map_err(|_| {
        sysfs_error(address, path)(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("'{}' is not a 16-bit hex id", text.trim()),
        ))
    })
}

/// The last component of the symlink at `path`, `None` when there is no link.
fn link_name(address: PciAddress, path: &Path) -> Result<Option<String>, VfioError> {
    match std::fs::read_link(path) {
        Ok(target) => Ok(target
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(sysfs_error(address, path)(error)),
    }
}

fn group_of(address: PciAddress, directory: &Path) -> Result<Option<u32>, VfioError> {
    let path = directory.join("iommu_group");
    let Some(name) = link_name(address, &path)? else {
        return Ok(None);
    };
    name.parse().map(Some).map_err(|_| {
        sysfs_error(address, &path)(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("group '{name}' is not a number"),
        ))
    })
}

#[cfg(test)]
pub(crate) mod fake {
    //! A fake sysfs and /dev/vfio in a temporary directory.

    use super::VfioPaths;
    use crate::address::PciAddress;
    use std::os::unix::fs::symlink;
    use std::path::Path;

    /// A fake tree; dropped with its directory.
    pub(crate) struct FakeHost {
        pub(crate) directory: tempfile::TempDir,
        pub(crate) paths: VfioPaths,
    }

    impl FakeHost {
        pub(crate) fn new() -> Self {
            let directory = tempfile::tempdir().unwrap();
            let paths = VfioPaths {
                sysfs_devices: directory.path().join("devices"),
                dev_vfio: directory.path().join("dev-vfio"),
            };
            for sub in ["devices", "dev-vfio", "drivers", "groups"] {
                std::fs::create_dir(directory.path().join(sub)).unwrap();
            }
            Self { directory, paths }
        }

        /// Adds a function with ids, an optional driver and an optional group.
        pub(crate) fn add(
            &self,
            address: &str,
            ids: (&str, &str),
            driver: Option<&str>,
            group: Option<u32>,
        ) -> PciAddress {
            let address: PciAddress = address.parse().unwrap();
            let root = self.directory.path();
            let device = self.paths.device_dir(address);
            std::fs::create_dir(&device).unwrap();
            std::fs::write(device.join("vendor"), format!("{}\n", ids.0)).unwrap();
            std::fs::write(device.join("device"), format!("{}\n", ids.1)).unwrap();
            if let Some(driver) = driver {
                link(&root.join("drivers").join(driver), &device.join("driver"));
            }
            if let Some(group) = group {
                let group_dir = root.join("groups").join(group.to_string());
                std::fs::create_dir_all(group_dir.join("devices")).unwrap();
                link(&group_dir, &device.join("iommu_group"));
                link(
                    &device,
                    &group_dir.join("devices").join(address.to_string()),
                );
            }
            address
        }
    }

    fn link(target: &Path, at: &Path) {
        std::fs::create_dir_all(target).unwrap();
        symlink(target, at).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeHost;
    use super::*;

    #[test]
    fn a_bound_device_is_described() {
        let host = FakeHost::new();
        let address = host.add(
            "0000:00:03.0",
            ("0x1234", "0x11e8"),
            Some("vfio-pci"),
            Some(7),
        );
        let (described, group) = host.paths.describe_vfio(address).unwrap();
        assert_eq!((described.vendor, described.device), (0x1234, 0x11e8));
        assert_eq!(group, 7);
        assert_eq!(described.driver.as_deref(), Some("vfio-pci"));
    }

    #[test]
    fn a_missing_device_is_named() {
        let host = FakeHost::new();
        let address: PciAddress = "0000:42:00.0".parse().unwrap();
        let error = host.paths.describe_vfio(address).unwrap_err();
        assert!(matches!(error, VfioError::NoSuchDevice { .. }), "{error}");
        assert!(error.to_string().contains("0000:42:00.0"), "{error}");
    }

    #[test]
    fn a_device_on_another_driver_or_none_is_refused() {
        let host = FakeHost::new();
        let on_nvme = host.add("0000:01:00.0", ("0x144d", "0xa808"), Some("nvme"), Some(3));
        let unbound = host.add("0000:02:00.0", ("0x1234", "0x11e8"), None, Some(4));
        let error = host.paths.describe_vfio(on_nvme).unwrap_err();
        assert!(
            matches!(&error, VfioError::NotBoundToVfio { driver: Some(name), .. } if name == "nvme"),
            "{error}"
        );
        assert!(error.to_string().contains("0000:01:00.0"));
        let error = host.paths.describe_vfio(unbound).unwrap_err();
        assert!(error.to_string().contains("no driver"), "{error}");
    }

    #[test]
    fn a_device_without_iommu_group_is_refused() {
        let host = FakeHost::new();
        let address = host.add("0000:00:04.0", ("0x1234", "0x11e8"), Some("vfio-pci"), None);
        let error = host.paths.describe_vfio(address).unwrap_err();
        assert!(matches!(error, VfioError::NoIommuGroup { .. }), "{error}");
        assert!(error.to_string().contains("intel_iommu=on"));
    }

    #[test]
    fn garbage_in_an_id_file_is_a_typed_error() {
        let host = FakeHost::new();
        let address = host.add("0000:00:05.0", ("zz", "0x11e8"), Some("vfio-pci"), Some(1));
        let error = host.paths.describe(address).unwrap_err();
        assert!(matches!(error, VfioError::Sysfs { .. }), "{error}");
        assert!(error.to_string().contains("vendor"), "{error}");
    }

    #[test]
    fn group_peers_list_the_others_with_drivers() {
        let host = FakeHost::new();
        let card = host.add(
            "0000:05:00.0",
            ("0x10ee", "0xa3f1"),
            Some("vfio-pci"),
            Some(9),
        );
        host.add("0000:05:00.1", ("0x8086", "0x1533"), Some("igb"), Some(9));
        assert_eq!(
            host.paths.group_peers(card),
            vec!["0000:05:00.1 (driver igb)".to_owned()]
        );
    }
}
