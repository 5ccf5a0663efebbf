//! The sim card's parity engine: one descriptor in, one completion status out.
//!
//! The descriptor and address rules live here once; what computes P and Q from the resolved
//! buffers is a [`ParityUnit`]: [`SoftwareParity`] on the sim card, the Verilated engine on
//! the rtl card (`testbench::backend`), so both cards judge descriptors the same way.
//!
//! Every fault is a status, never a panic: a descriptor that fails
//! [`ParityDescriptor::check`] gets that status; a source list, source, P or Q address that
//! is misaligned or not wholly inside one mapped DMA buffer gets
//! [`CompletionStatus::DmaFault`]. All addresses are resolved before anything is written,
//! so a faulting descriptor leaves P and Q untouched.

use super::dma::DmaSpace;
use shared_regs::ring::{CompletionStatus, ParityDescriptor, ParityOpcode};
pub use shared_regs::ring::{PARITY_BUFFER_ALIGN_BYTES, SOURCE_LIST_ALIGN_BYTES};

/// What computes P (and Q) once a descriptor's buffers are resolved.
pub trait ParityUnit {
    /// Why the unit could not compute (never a descriptor fault: those are statuses).
    type Error;
    /// P of `sources` into `p`, and Q into `q` when given; all the same length, a multiple
    /// of the parity beat.
    fn generate(
        &mut self,
        sources: &[&[u8]],
        p: &mut [u8],
        q: Option<&mut [u8]>,
    ) -> Result<(), Self::Error>;
}

/// A deliberate bug for tests to catch (the driver suite must tell a wrong card apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimMutation {
    /// Q reduced with `0x100 | low` instead of 0x11d.
    QPolynomial {
        /// Low byte of the wrong polynomial.
        low: u8,
    },
}

/// The sim card's parity unit: `amf_parity`, or a mutated Q.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SoftwareParity {
    /// The deliberate bug, if any.
    pub mutation: Option<SimMutation>,
}

impl ParityUnit for SoftwareParity {
    type Error = std::convert::Infallible;

    fn generate(
        &mut self,
        sources: &[&[u8]],
        p: &mut [u8],
        q: Option<&mut [u8]>,
    ) -> Result<(), Self::Error> {
        match (q, self.mutation) {
            (Some(q), Some(SimMutation::QPolynomial { low })) => {
                amf_parity::gen_p(sources, p);
                horner_q(sources, q, low);
            }
            (Some(q), None) => amf_parity::gen_pq(sources, p, q),
            (None, _) => amf_parity::gen_p(sources, p),
        }
        Ok(())
    }
}

/// Q by Horner's rule (highest source first) with reduction byte `low`.
fn horner_q(sources: &[&[u8]], q: &mut [u8], low: u8) {
    let double = |x: u8| (x << 1) ^ if x & 0x80 != 0 { low } else { 0 };
    for (index, byte) in q.iter_mut().enumerate() {
        *byte = sources
            .iter()
            .rev()
            .fold(0, |acc, source| double(acc) ^ source[index]);
    }
}

/// Runs `descriptor` against `dma` on the sim's software unit; returns the status to post.
pub fn execute(
    dma: &mut DmaSpace,
    descriptor: &ParityDescriptor,
    unit: &mut SoftwareParity,
) -> CompletionStatus {
    match execute_on(dma, descriptor, unit) {
        Ok(status) => status,
        Err(never) => match never {},
    }
}

/// Runs `descriptor` against `dma` on `unit`: the status to post, or the unit's failure.
pub fn execute_on<U: ParityUnit>(
    dma: &mut DmaSpace,
    descriptor: &ParityDescriptor,
    unit: &mut U,
) -> Result<CompletionStatus, U::Error> {
    match compute(dma, descriptor, unit) {
        Ok(Ok(())) => Ok(CompletionStatus::Ok),
        Ok(Err(failure)) => Err(failure),
        Err(status) => Ok(status),
    }
}

/// `Err(status)` for a faulting descriptor, `Ok(Err)` when the unit failed.
fn compute<U: ParityUnit>(
    dma: &mut DmaSpace,
    descriptor: &ParityDescriptor,
    unit: &mut U,
) -> Result<Result<(), U::Error>, CompletionStatus> {
    let checked = descriptor.check()?;
    let length_bytes = u64::from(checked.length_bytes);
    let with_q = checked.opcode == ParityOpcode::GenPq;
    let p_address = descriptor.p_addr.get();
    let q_address = descriptor.q_addr.get();
    // Resolve the destinations first: a descriptor either completes or writes nothing.
    dma.device_bytes(p_address, length_bytes, PARITY_BUFFER_ALIGN_BYTES)
        .ok_or(CompletionStatus::DmaFault)?;
    if with_q {
        dma.device_bytes(q_address, length_bytes, PARITY_BUFFER_ALIGN_BYTES)
            .ok_or(CompletionStatus::DmaFault)?;
    }
    let mut p = vec![0u8; checked.length_bytes as usize];
    let mut q = vec![0u8; if with_q { p.len() } else { 0 }];
    {
        let sources = resolve_sources(dma, descriptor, checked.source_count, length_bytes)?;
        assert_eq!(sources.len(), checked.source_count as usize);
        let q = with_q.then_some(q.as_mut_slice());
        if let Err(failure) = unit.generate(&sources, &mut p, q) {
            return Ok(Err(failure));
        }
    }
    store(dma, p_address, &p)?;
    if with_q {
        store(dma, q_address, &q)?;
    }
    Ok(Ok(()))
}

fn resolve_sources<'a>(
    dma: &'a DmaSpace,
    descriptor: &ParityDescriptor,
    source_count: u32,
    length_bytes: u64,
) -> Result<Vec<&'a [u8]>, CompletionStatus> {
    let list = dma
        .device_bytes(
            descriptor.sources_addr.get(),
            u64::from(source_count) * 8,
            SOURCE_LIST_ALIGN_BYTES,
        )
        .ok_or(CompletionStatus::DmaFault)?;
    list.chunks_exact(8)
        .map(|entry| {
            let address = u64::from_le_bytes(entry.try_into().expect("chunks of 8"));
            dma.device_bytes(address, length_bytes, PARITY_BUFFER_ALIGN_BYTES)
                .ok_or(CompletionStatus::DmaFault)
        })
        .collect()
}

fn store(dma: &mut DmaSpace, address: u64, bytes: &[u8]) -> Result<(), CompletionStatus> {
    let target = dma
        .device_bytes_mut(address, bytes.len() as u64, PARITY_BUFFER_ALIGN_BYTES)
        .ok_or(CompletionStatus::DmaFault)?;
    target.copy_from_slice(bytes);
    Ok(())
}
