//! `--card SPEC`: where parity is computed (and, for `amf serve`, where intent records
//! live). Shared by `amf scrub` and `amf serve`/`amf up`.

use amf_card::{CardParity, SimCard};
use amf_parity::{HostParity, ParityEngine};
use shared_regs::limits::SRAM_BYTES_DEFAULT;
use std::path::{Path, PathBuf};

/// Where `--card` says parity is computed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CardSpec {
    /// This CPU, `amf_parity`'s best kernel.
    Host,
    /// A sim card whose SRAM is this file.
    Sim(PathBuf),
}

/// A `--card` value that names no engine.
#[derive(Debug, thiserror::Error)]
#[error("--card '{spec}': expected 'host' or 'sim:PATH' (a sim card's SRAM file)")]
pub struct CardSpecError {
    spec: String,
}

impl CardSpec {
    /// Parses `host` or `sim:PATH`.
    pub fn parse(spec: &str) -> Result<CardSpec, CardSpecError> {
        match spec.split_once(':') {
            None if spec == "host" => Ok(CardSpec::Host),
            Some(("sim", path)) if !path.is_empty() => Ok(CardSpec::Sim(PathBuf::from(path))),
            _ => Err(CardSpecError {
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
    source: Box<dyn std::error::Error + Send + Sync>,
}

/// The parity engine `--card` named, open until [`Engine::close`].
#[derive(Debug)]
pub enum Engine {
    /// The host CPU.
    Host(HostParity),
    /// A sim card (parity and SRAM).
    Sim(Box<CardParity<SimCard>>),
}

impl Engine {
    /// Opens the engine; a sim card's SRAM file keeps its size if it exists, else is
    /// created with [`SRAM_BYTES_DEFAULT`].
    pub fn open(spec: &CardSpec) -> Result<Engine, SimCardError> {
        match spec {
            CardSpec::Host => Ok(Engine::Host(HostParity)),
            CardSpec::Sim(path) => {
                let context = |source: Box<dyn std::error::Error + Send + Sync>| SimCardError {
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
        }
    }

    /// The engine as the RAID core takes it.
    pub fn as_dyn(&mut self) -> &mut dyn ParityEngine {
        match self {
            Engine::Host(engine) => engine,
            Engine::Sim(engine) => engine.as_mut(),
        }
    }

    /// Stops a card (reset, rings and staging freed), then its worker thread, which
    /// dropping the sim card joins.
    pub fn close(self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        match self {
            Engine::Host(_) => Ok(()),
            Engine::Sim(engine) => {
                let sim = engine.into_card()?.close()?;
                drop(sim);
                Ok(())
            }
        }
    }
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
        for bad in [
            "", "Host", "host:", "sim", "sim:", "rtl:/x", "vfio", ":host",
        ] {
            let error = CardSpec::parse(bad).unwrap_err();
            assert!(error.to_string().contains("--card"), "{bad}: {error}");
        }
    }
}
