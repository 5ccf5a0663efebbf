//! PCI addresses as Linux names them: `DDDD:BB:DD.F` (domain, bus, device, function).

use std::fmt;
use std::str::FromStr;

/// Most devices on one bus (5 bits).
const DEVICES_PER_BUS: u8 = 32;
/// Most functions of one device (3 bits).
const FUNCTIONS_PER_DEVICE: u8 = 8;

/// A PCI function's address, e.g. `0000:03:00.0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciAddress {
    domain: u16,
    bus: u8,
    device: u8,
    function: u8,
}

/// A string that is not a PCI address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("PCI address '{text}': {reason}; expected DDDD:BB:DD.F in hex, e.g. 0000:03:00.0")]
pub struct PciAddressError {
    text: String,
    reason: &'static str,
}

impl PciAddress {
    /// The address of `device`.`function` on `bus` in `domain`; `None` when the device
    /// or function number does not fit its field.
    pub fn new(domain: u16, bus: u8, device: u8, function: u8) -> Option<Self> {
        (device < DEVICES_PER_BUS && function < FUNCTIONS_PER_DEVICE).then_some(Self {
            domain,
            bus,
            device,
            function,
        })
    }

    /// PCI segment (domain).
    pub fn domain(&self) -> u16 {
        self.domain
    }

    /// Bus number.
    pub fn bus(&self) -> u8 {
        self.bus
    }

    /// Device number (0..32).
    pub fn device(&self) -> u8 {
        self.device
    }

    /// Function number (0..8).
    pub fn function(&self) -> u8 {
        self.function
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

impl FromStr for PciAddress {
    type Err = PciAddressError;

    /// Parses `DDDD:BB:DD.F`, or `BB:DD.F` (domain 0) as `lspci` prints it.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |reason| PciAddressError {
            text: text.to_owned(),
            reason,
        };
        let (slot, function) = text.rsplit_once('.').ok_or_else(|| fail("no '.F'"))?;
        let fields: Vec<&str> = slot.split(':').collect();
        let (domain, bus, device) = match fields[..] {
            [domain, bus, device] => (domain, bus, device),
            [bus, device] => ("0000", bus, device),
            _ => return Err(fail("not two or three ':'-separated fields before '.F'")),
        };
        let domain = hex_field(domain, 4).ok_or_else(|| fail("domain is not 1-4 hex digits"))?;
        let bus = hex_field(bus, 2).ok_or_else(|| fail("bus is not 1-2 hex digits"))?;
        let device = hex_field(device, 2).ok_or_else(|| fail("device is not 1-2 hex digits"))?;
        let function = hex_field(function, 1).ok_or_else(|| fail("function is not one digit"))?;
        let narrow = |value: u16| u8::try_from(value).expect("at most two hex digits");
        PciAddress::new(domain, narrow(bus), narrow(device), narrow(function))
            .ok_or_else(|| fail("device must be below 0x20 and function below 8"))
    }
}

/// `text` as a hex number of 1 to `digits_max` digits.
fn hex_field(text: &str, digits_max: usize) -> Option<u16> {
    let plain = !text.is_empty() && text.len() <= digits_max;
    let hex = text.bytes().all(|byte| byte.is_ascii_hexdigit());
    (plain && hex)
        .then(|| u16::from_str_radix(text, 16).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_short_forms_parse_and_print_canonically() {
        let address: PciAddress = "0000:03:00.0".parse().unwrap();
        assert_eq!(
            (address.bus(), address.device(), address.function()),
            (3, 0, 0)
        );
        assert_eq!(address.to_string(), "0000:03:00.0");
        let short: PciAddress = "1f:1f.7".parse().unwrap();
        assert_eq!(short.to_string(), "0000:1f:1f.7");
        let upper: PciAddress = "ABCD:EF:0A.3".parse().unwrap();
        assert_eq!(upper.to_string(), "abcd:ef:0a.3");
        assert_eq!(upper.domain(), 0xabcd);
    }

    #[test]
    fn malformed_addresses_are_typed_errors_naming_the_text() {
        for bad in [
            "",
            "0000:03:00",
            "0000:03:00.8",
            "0000:03:20.0",
            "00000:03:00.0",
            "0000:003:00.0",
            "0000:03:00.00",
            "0000:0g:00.0",
            "0000::00.0",
            "0:0:0:0.0",
            "03.0",
            "+000:03:00.0",
            "0000:03:00.-1",
        ] {
            let error = bad.parse::<PciAddress>().unwrap_err();
            assert!(
                error.to_string().contains(&format!("'{bad}'")),
                "{bad}: {error}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_is_refused_without_panic(text in "\\PC{0,20}") {
            if let Ok(address) = text.parse::<PciAddress>() {
                proptest::prop_assert_eq!(address.to_string().parse::<PciAddress>(), Ok(address));
            }
        }

        #[test]
        fn every_address_round_trips(domain: u16, bus: u8, device in 0u8..32, function in 0u8..8) {
            let address = PciAddress::new(domain, bus, device, function).unwrap();
            proptest::prop_assert_eq!(address.to_string().parse::<PciAddress>(), Ok(address));
        }
    }

    #[test]
    fn constructor_refuses_fields_out_of_range() {
        assert!(PciAddress::new(0, 0, 31, 7).is_some());
        assert!(PciAddress::new(0, 0, 32, 0).is_none());
        assert!(PciAddress::new(0, 0, 0, 8).is_none());
    }
}
