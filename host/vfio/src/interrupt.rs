//! [`Interrupt`]: one interrupt vector of a device delivered to an eventfd.

use crate::address::PciAddress;
use crate::device::interrupt_index;
use crate::error::{InterruptKind, VfioError, ioctl_failed};
use crate::sys;
use rustix::event::{EventfdFlags, PollFd, PollFlags, Timespec, eventfd, poll};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::Arc;

/// Vector 0 of one interrupt kind, routed by VFIO to an eventfd; disabled on drop.
///
/// INTx is level triggered: VFIO masks it each time it fires, so the next [`Self::wait`]
/// unmasks it first (by then the caller has cleared the cause in the device, or the line
/// fires again at once, which the waiter sees as a spurious wake-up).
#[derive(Debug)]
pub struct Interrupt {
    device: Arc<File>,
    address: PciAddress,
    kind: InterruptKind,
    eventfd: OwnedFd,
    masked: bool,
    enabled: bool,
}

impl Interrupt {
    pub(crate) fn enable(
        device: Arc<File>,
        address: PciAddress,
        kind: InterruptKind,
    ) -> Result<Self, VfioError> {
        let eventfd =
            eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).map_err(|error| {
                VfioError::Eventfd {
                    address,
                    kind,
                    operation: "creating it",
                    source: error.into(),
                }
            })?;
        sys::irq_trigger_eventfd(&device, interrupt_index(kind), &eventfd)
            .map_err(ioctl_failed(address, "VFIO_DEVICE_SET_IRQS (eventfd)"))?;
        Ok(Self {
            device,
            address,
            kind,
            eventfd,
            masked: false,
            enabled: true,
        })
    }

    /// The kind of interrupt.
    pub fn kind(&self) -> InterruptKind {
        self.kind
    }

    /// Waits up to `timeout_ms` for the interrupt; returns how many times it fired since
    /// the last wait (0: timed out).
    pub fn wait(&mut self, timeout_ms: u32) -> Result<u64, VfioError> {
        self.unmask_if_masked()?;
        let timeout = Timespec {
            tv_sec: i64::from(timeout_ms / 1000),
            tv_nsec: i64::from(timeout_ms % 1000) * 1_000_000,
        };
        let mut fds = [PollFd::new(&self.eventfd, PollFlags::IN)];
        let ready =
            poll(&mut fds, Some(&timeout)).map_err(|error| self.eventfd_error("poll", error))?;
        if ready == 0 {
            return Ok(0);
        }
        let mut counter = [0u8; 8];
        rustix::io::read(&self.eventfd, &mut counter)
            .map_err(|error| self.eventfd_error("read", error))?;
        self.masked = self.kind == InterruptKind::Intx;
        Ok(u64::from_ne_bytes(counter))
    }

    fn unmask_if_masked(&mut self) -> Result<(), VfioError> {
        if self.masked {
            sys::irq_unmask(&self.device, interrupt_index(self.kind))
                .map_err(ioctl_failed(self.address, "VFIO_DEVICE_SET_IRQS (unmask)"))?;
            self.masked = false;
        }
        Ok(())
    }

    fn eventfd_error(&self, operation: &'static str, error: rustix::io::Errno) -> VfioError {
        VfioError::Eventfd {
            address: self.address,
            kind: self.kind,
            operation,
            source: error.into(),
        }
    }

    /// Disables the vector now, reporting the kernel's refusal.
    pub fn disable(mut self) -> Result<(), VfioError> {
        self.enabled = false;
        sys::irq_disable(&self.device, interrupt_index(self.kind))
            .map_err(ioctl_failed(self.address, "VFIO_DEVICE_SET_IRQS (disable)"))
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        // Closing the device would disable it too; this only frees the vector sooner, so
        // a refusal here changes nothing worth reporting.
        if self.enabled {
            let _ = sys::irq_disable(&self.device, interrupt_index(self.kind));
        }
    }
}
