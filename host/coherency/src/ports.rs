//! A set of fabric ports, one bit each.

use shared_regs::limits::FABRIC_PORTS_MAX;

/// A set of fabric ports (AMFs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PortSet {
    bits: u32,
}

impl PortSet {
    pub const fn new() -> PortSet {
        PortSet { bits: 0 }
    }

    /// # Panics
    /// If `port` is not a fabric port.
    pub fn insert(&mut self, port: u8) {
        assert!(
            u32::from(port) < FABRIC_PORTS_MAX,
            "port {port} beyond the fabric"
        );
        self.bits |= 1 << port;
    }

    pub fn remove(&mut self, port: u8) {
        assert!(
            u32::from(port) < FABRIC_PORTS_MAX,
            "port {port} beyond the fabric"
        );
        self.bits &= !(1 << port);
    }

    pub fn contains(self, port: u8) -> bool {
        u32::from(port) < FABRIC_PORTS_MAX && self.bits & (1 << port) != 0
    }

    pub fn is_empty(self) -> bool {
        self.bits == 0
    }

    /// Whether every port of `self` is in `other`.
    pub fn is_subset(self, other: PortSet) -> bool {
        self.bits & !other.bits == 0
    }

    pub fn iter(self) -> impl Iterator<Item = u8> {
        (0..FABRIC_PORTS_MAX as u8).filter(move |&port| self.contains(port))
    }
}

impl FromIterator<u8> for PortSet {
    fn from_iter<I: IntoIterator<Item = u8>>(ports: I) -> PortSet {
        let mut set = PortSet::new();
        for port in ports {
            set.insert(port);
        }
        set
    }
}
