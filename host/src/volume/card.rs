//! `--card SPEC`: where parity is computed (and, for `amf serve`, where intent records
//! live). Shared by `amf scrub`, `amf serve`/`amf up` and `amf status`.

use amf_card::{Card, CardConfig, CardError, CardParity, SimCard};
use amf_parity::{HostParity, ParityEngine};
use amf_vfio::{PciAddress, PciAddressError, VfioCard, VfioCardOptions};
use shared_regs::limits::SRAM_BYTES_DEFAULT;
use std::path::{Path, PathBuf};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where `--card` says parity is computed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CardSpec {
    /// This CPU, `amf_parity`'s best kernel.
    Host,
    /// A sim card whose SRAM is this file.
    Sim(PathBuf),
    /// A card bound to vfio-pci at this PCI address.
    Vfio(PciAddress),
    /// The Verilated card (`testbench::backend::RtlCard`): parity by the RTL's engine,
    /// cycle by cycle. Its SRAM lives in this process, so the journal stays in the intent
    /// file, as with `host`.
    Rtl,
}

/// A `--card` value that names no engine.
#[derive(Debug, thiserror::Error)]
pub enum CardSpecError {
    /// Not one of the forms.
    #[error(
        "--card '{spec}': expected 'host', 'sim:PATH' (a sim card's SRAM file), 'vfio:DDDD:BB:DD.F' (a card bound to vfio-pci) or 'rtl' (the Verilated card)"
    )]
    Unknown {
        /// The value given.
        spec: String,
    },
    /// `vfio:` with something that is not a PCI address.
    #[error("--card '{spec}'")]
    BadPciAddress {
        /// The value given.
        spec: String,
        /// What is wrong with the address.
        #[source]
        source: PciAddressError,
    },
}

impl CardSpec {
    /// Parses `host`, `sim:PATH`, `vfio:DDDD:BB:DD.F` or `rtl`.
    pub fn parse(spec: &str) -> Result<CardSpec, CardSpecError> {
        match spec.split_once(':') {
            None if spec == "host" => Ok(CardSpec::Host),
            None if spec == "rtl" => Ok(CardSpec::Rtl),
            Some(("sim", path)) if !path.is_empty() => Ok(CardSpec::Sim(PathBuf::from(path))),
            Some(("vfio", address)) => {
                address
                    .parse()
                    .map(CardSpec::Vfio)
                    .map_err(|source| CardSpecError::BadPciAddress {
                        spec: spec.to_owned(),
                        source,
                    })
            }
            _ => Err(CardSpecError::Unknown {
                spec: spec.to_owned(),
            }),
        }
    }
}

/// The sim card `--card` named did not open.
#[derive(Debug, thiserror::Error)]
#[error("--card sim:{}", path.display())]
pub struct SimCardError {
    path: PathBuf,
    #[source]
    source: BoxError,
}

/// The card `--card` named did not open.
#[derive(Debug, thiserror::Error)]
pub enum CardOpenError {
    /// A sim card.
    #[error(transparent)]
    Sim(#[from] SimCardError),
    /// A card through VFIO (the source names its PCI address).
    #[error("--card vfio")]
    Vfio {
        /// Why: the VFIO layer's or the driver's error.
        #[source]
        source: BoxError,
    },
    /// The Verilated card (missing Verilator at build time, or the driver refused it).
    #[error("--card rtl")]
    Rtl(#[source] BoxError),
    /// This `amf` was built without the rtl backend.
    #[error(
        "--card rtl: this amf was built without the rtl backend (rebuild with \
         `cargo build -p amflink --features rtl`; building it needs Verilator)"
    )]
    RtlNotBuilt,
}

/// The parity engine `--card` named, open until [`Engine::close`].
#[derive(Debug)]
pub enum Engine {
    /// The host CPU.
    Host(HostParity),
    /// A sim card (parity and SRAM).
    Sim(Box<CardParity<SimCard>>),
    /// A real card through VFIO (parity and SRAM).
    Vfio(Box<CardParity<VfioCard>>),
    /// The Verilated card (parity only).
    #[cfg(feature = "rtl")]
    Rtl(Box<CardParity<testbench::backend::RtlCard>>),
}

impl Engine {
    /// Opens the engine; a sim card's SRAM file keeps its size if it exists, else is
    /// created with [`SRAM_BYTES_DEFAULT`]; a vfio card is reset and checked.
    pub fn open(spec: &CardSpec) -> Result<Engine, CardOpenError> {
        match spec {
            CardSpec::Host => Ok(Engine::Host(HostParity)),
            CardSpec::Sim(path) => {
                let context = |source: BoxError| SimCardError {
                    path: path.clone(),
                    source,
                };
                let sram_bytes = existing_bytes(path)
                    .map_err(|error| context(error.into()))?
                    .unwrap_or(SRAM_BYTES_DEFAULT);
                let engine =
                    amf_card::open_sim(path, sram_bytes).map_err(|error| context(error.into()))?;
                Ok(Engine::Sim(Box::new(engine)))
            }
            CardSpec::Vfio(address) => open_vfio(*address)
                .map(|engine| Engine::Vfio(Box::new(engine)))
                .map_err(|source| CardOpenError::Vfio { source }),
            CardSpec::Rtl => open_rtl(),
        }
    }

    /// The engine as the RAID core takes it.
    pub fn as_dyn(&mut self) -> &mut dyn ParityEngine {
        match self {
            Engine::Host(engine) => engine,
            Engine::Sim(engine) => engine.as_mut(),
            Engine::Vfio(engine) => engine.as_mut(),
            #[cfg(feature = "rtl")]
            Engine::Rtl(engine) => engine.as_mut(),
        }
    }

    /// One line on a vfio card (address, IOMMU group, ids, register map, SRAM,
    /// interrupt) for `amf serve` to print; `None` for other engines.
    pub fn vfio_summary(&self) -> Option<String> {
        let Engine::Vfio(engine) = self else {
            return None;
        };
        let info = engine.card().backend().info();
        let identity = engine.card().identity();
        Some(format!(
            "card vfio {} (IOMMU group {}, {:04x}:{:04x}, register map {}.{}, SRAM {} bytes, interrupt {})",
            info.address,
            info.iommu_group,
            info.vendor,
            info.device,
            identity.version_major,
            identity.version_minor,
            identity.sram_bytes,
            info.interrupt.map_or("none (polled)", |kind| kind.name()),
        ))
    }

    /// The size of the card's SRAM when it outlives this process (sim, vfio); `None` for
    /// the host engine, which has none, and the rtl card, whose SRAM is simulated here.
    pub fn sram_bytes(&self) -> Option<u64> {
        match self {
            Engine::Host(_) => None,
            #[cfg(feature = "rtl")]
            Engine::Rtl(_) => None,
            Engine::Sim(card) => Some(card.card().identity().sram_bytes),
            Engine::Vfio(card) => Some(card.card().identity().sram_bytes),
        }
    }

    /// Writes the card's SRAM at `offset`. Panics on the host engine: only a card has
    /// SRAM, and callers ask [`Engine::sram_bytes`] first.
    pub fn sram_write(&mut self, offset: u64, source: &[u8]) -> Result<(), CardError> {
        match self {
            Engine::Host(_) => unreachable!("the host engine has no SRAM"),
            Engine::Sim(card) => card.card_mut().sram_write(offset, source),
            Engine::Vfio(card) => card.card_mut().sram_write(offset, source),
            #[cfg(feature = "rtl")]
            Engine::Rtl(_) => unreachable!("the rtl card's SRAM does not hold the journal"),
        }
    }

    /// Reads the card's SRAM at `offset`; panics on the host engine as
    /// [`Engine::sram_write`] does.
    pub fn sram_read(&mut self, offset: u64, target: &mut [u8]) -> Result<(), CardError> {
        match self {
            Engine::Host(_) => unreachable!("the host engine has no SRAM"),
            Engine::Sim(card) => card.card_mut().sram_read(offset, target),
            Engine::Vfio(card) => card.card_mut().sram_read(offset, target),
            #[cfg(feature = "rtl")]
            Engine::Rtl(_) => unreachable!("the rtl card's SRAM does not hold the journal"),
        }
    }

    /// Makes SRAM contents survive a machine crash: the sim card writes its SRAM file
    /// back; a real card's SRAM is the card's own and needs nothing from the host.
    pub fn flush_sram(&self) -> Result<(), BoxError> {
        match self {
            Engine::Host(_) => unreachable!("the host engine has no SRAM"),
            Engine::Sim(card) => Ok(card.card().backend().flush_sram()?),
            Engine::Vfio(_) => Ok(()),
            #[cfg(feature = "rtl")]
            Engine::Rtl(_) => unreachable!("the rtl card's SRAM does not hold the journal"),
        }
    }

    /// Stops a card (reset, rings and staging freed), then its backend: dropping the sim
    /// card joins its worker thread; the vfio card resets the function and unmaps its
    /// DMA memory.
    pub fn close(self) -> Result<(), BoxError> {
        match self {
            Engine::Host(_) => Ok(()),
            Engine::Sim(engine) => {
                let sim = engine.into_card()?.close()?;
                drop(sim);
                Ok(())
            }
            Engine::Vfio(engine) => Ok(engine.into_card()?.close()?.close()?),
            #[cfg(feature = "rtl")]
            Engine::Rtl(engine) => {
                engine.into_card()?.close()?;
                Ok(())
            }
        }
    }
}

/// Opens the card at `address` through VFIO, then the driver and parity engine on it.
fn open_vfio(address: PciAddress) -> Result<CardParity<VfioCard>, BoxError> {
    let card = VfioCard::open(&VfioCardOptions::default(), address)?;
    let card = Card::open(card, CardConfig::default())?;
    Ok(CardParity::new(card)?)
}

/// The Verilated card, opened by the driver like any other.
#[cfg(feature = "rtl")]
fn open_rtl() -> Result<Engine, CardOpenError> {
    use testbench::backend::{RtlCard, RtlConfig};
    let opened = || -> Result<CardParity<RtlCard>, BoxError> {
        let rtl = RtlCard::new(RtlConfig::default())?;
        let card = Card::open(rtl, CardConfig::default())?;
        Ok(CardParity::new(card)?)
    };
    opened()
        .map(|engine| Engine::Rtl(Box::new(engine)))
        .map_err(CardOpenError::Rtl)
}

#[cfg(not(feature = "rtl"))]
fn open_rtl() -> Result<Engine, CardOpenError> {
    Err(CardOpenError::RtlNotBuilt)
}

/// The length of the file at `path`, or `None` when there is none.
fn existing_bytes(path: &Path) -> std::io::Result<Option<u64>> {
    match std::fs::metadata(path) {
        Ok(metadata) => Ok(Some(metadata.len())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_specs_parse() {
        assert_eq!(CardSpec::parse("host").unwrap(), CardSpec::Host);
        assert_eq!(
            CardSpec::parse("sim:/tmp/a:b.sram").unwrap(),
            CardSpec::Sim(PathBuf::from("/tmp/a:b.sram"))
        );
        assert_eq!(
            CardSpec::parse("vfio:0000:03:00.0").unwrap(),
            CardSpec::Vfio("0000:03:00.0".parse().unwrap())
        );
        assert_eq!(CardSpec::parse("rtl").unwrap(), CardSpec::Rtl);
        for bad in [
            "", "Host", "host:", "sim", "sim:", "rtl:/x", "rtl:", "vfio", ":host",
        ] {
            let error = CardSpec::parse(bad).unwrap_err();
            assert!(error.to_string().contains("--card"), "{bad}: {error}");
        }
    }

    #[test]
    fn a_malformed_vfio_address_is_a_typed_error() {
        for bad in [
            "vfio:",
            "vfio:0000:03:00",
            "vfio:0000:03:20.0",
            "vfio:03:00.0.0",
        ] {
            let error = CardSpec::parse(bad).unwrap_err();
            assert!(
                matches!(error, CardSpecError::BadPciAddress { .. }),
                "{bad}: {error}"
            );
            let cause = std::error::Error::source(&error).expect("the address error");
            assert!(cause.to_string().contains("DDDD:BB:DD.F"), "{bad}: {cause}");
        }
    }

    #[cfg(not(feature = "rtl"))]
    #[test]
    fn rtl_in_an_amf_built_without_it_says_how_to_build_it() {
        let error = Engine::open(&CardSpec::Rtl).unwrap_err();
        assert!(matches!(error, CardOpenError::RtlNotBuilt), "{error:?}");
        assert!(error.to_string().contains("--features rtl"), "{error}");
    }
}
