//! Parity behind one object-safe trait, [`ParityEngine`], so that the RAID core computes P
//! and Q without knowing where: on the host ([`HostParity`], here) or on the card
//! (`amf_card::CardParity`). Every engine takes the same shapes ([`check_shape`]) and gives
//! the same bytes.
//!
//! The trait lives in this crate, not beside the card driver, because the RAID core must
//! not depend on the card crate (which maps files and runs threads): both depend on this
//! one.

use std::error::Error as StdError;

use shared_regs::limits::PARITY_SOURCES_MAX;

/// Fewest data sources any parity takes (a RAID-5 of three members).
pub const PARITY_SOURCES_MIN: u32 = 2;

const _: () = assert!(PARITY_SOURCES_MIN <= PARITY_SOURCES_MAX);

/// Why an engine did not compute parity.
///
/// [`EngineError::SourceCount`] and [`EngineError::LengthMismatch`] are the caller's fault
/// and every engine reports them alike; [`EngineError::Device`] is the engine's own
/// failure, its cause the device's typed error (for the card, `amf_card::CardParityError`,
/// reachable with [`StdError::source`] and `downcast_ref`).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Too few or too many data sources.
    #[error("{count} data sources given; parity takes {min} to {max}")]
    SourceCount {
        /// Given.
        count: usize,
        /// Fewest.
        min: u32,
        /// Most.
        max: u32,
    },
    /// A buffer's length differs from P's.
    #[error("{buffer} is {found} bytes long but P is {expected}")]
    LengthMismatch {
        /// Which buffer ("data source 3", "Q").
        buffer: String,
        /// P's length.
        expected: usize,
        /// This buffer's length.
        found: usize,
    },
    /// The device computing parity failed.
    #[error("{engine} parity engine failed")]
    Device {
        /// The engine's [`ParityEngine::name`].
        engine: &'static str,
        /// The device's own error.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
}

impl EngineError {
    /// A failure of the device behind `engine`.
    pub fn device(engine: &'static str, source: impl StdError + Send + Sync + 'static) -> Self {
        Self::Device {
            engine,
            source: Box::new(source),
        }
    }
}

/// Computes P (and Q) of equally long data buffers.
///
/// `data` are the data chunks in stripe order (`data[i]` is Q's coefficient `g^i`),
/// [`PARITY_SOURCES_MIN`] to [`PARITY_SOURCES_MAX`]; `p` and `q` have the same length as
/// each of them, any length. `q: None` computes P only (RAID-5). On error, `p` and `q`
/// hold unspecified bytes.
pub trait ParityEngine {
    /// Short name for messages and status: `"host"`, `"card:sim"`.
    fn name(&self) -> &'static str;

    /// P = XOR of `data`; Q (when given) = sum of `g^i * data[i]` in GF(2^8).
    fn compute(
        &mut self,
        data: &[&[u8]],
        p: &mut [u8],
        q: Option<&mut [u8]>,
    ) -> Result<(), EngineError>;
}

/// Checks the shape every engine takes: the source count, and every length equal to P's.
/// Engines call it first, so that they refuse bad shapes alike.
pub fn check_shape(
    data: &[&[u8]],
    p_bytes: usize,
    q_bytes: Option<usize>,
) -> Result<(), EngineError> {
    let count_range = PARITY_SOURCES_MIN as usize..=PARITY_SOURCES_MAX as usize;
    if !count_range.contains(&data.len()) {
        return Err(EngineError::SourceCount {
            count: data.len(),
            min: PARITY_SOURCES_MIN,
            max: PARITY_SOURCES_MAX,
        });
    }
    let mismatch = |buffer: String, found: usize| EngineError::LengthMismatch {
        buffer,
        expected: p_bytes,
        found,
    };
    if let Some((index, source)) = data.iter().enumerate().find(|(_, d)| d.len() != p_bytes) {
        return Err(mismatch(format!("data source {index}"), source.len()));
    }
    match q_bytes {
        Some(found) if found != p_bytes => Err(mismatch("Q".to_owned(), found)),
        _ => Ok(()),
    }
}

/// Parity on the host CPU, with this crate's best kernel ([`crate::gen_p`],
/// [`crate::gen_pq`]). Never fails on a good shape.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostParity;

impl ParityEngine for HostParity {
    fn name(&self) -> &'static str {
        "host"
    }

    fn compute(
        &mut self,
        data: &[&[u8]],
        p: &mut [u8],
        q: Option<&mut [u8]>,
    ) -> Result<(), EngineError> {
        check_shape(data, p.len(), q.as_ref().map(|q| q.len()))?;
        if p.is_empty() {
            return Ok(());
        }
        match q {
            Some(q) => crate::gen_pq(data, p, q),
            None => crate::gen_p(data, p),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_engine_matches_the_reference() {
        let data: Vec<Vec<u8>> = (0..5u8)
            .map(|index| {
                (0..300u32)
                    .map(|b| (b as u8).wrapping_mul(index + 3))
                    .collect()
            })
            .collect();
        let views: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let (mut expected_p, mut expected_q) = (vec![0u8; 300], vec![0u8; 300]);
        crate::reference::gen_pq(&views, &mut expected_p, &mut expected_q);
        let (mut p, mut q) = (vec![0xA5u8; 300], vec![0x5Au8; 300]);
        HostParity.compute(&views, &mut p, Some(&mut q)).unwrap();
        assert_eq!((p, q), (expected_p.clone(), expected_q));
        let mut p = vec![0xA5u8; 300];
        HostParity.compute(&views, &mut p, None).unwrap();
        assert_eq!(p, expected_p);
    }

    #[test]
    fn device_errors_keep_their_cause() {
        let cause = std::io::Error::other("bus fell off");
        let error = EngineError::device("card:test", cause);
        assert_eq!(error.to_string(), "card:test parity engine failed");
        let source = error.source().expect("the cause is the source");
        assert!(source.downcast_ref::<std::io::Error>().is_some());
        assert_eq!(source.to_string(), "bus fell off");
    }
}
