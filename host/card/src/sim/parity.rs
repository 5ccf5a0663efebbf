//! The sim card's parity engine: one descriptor in, one completion status out.
//!
//! Every fault is a status, never a panic: a descriptor that fails
//! [`ParityDescriptor::check`] gets that status; a source list, source, P or Q address that
//! is misaligned or not wholly inside one mapped DMA buffer gets
//! [`CompletionStatus::DmaFault`]. All addresses are resolved before anything is written,
//! so a faulting descriptor leaves P and Q untouched.

use super::dma::DmaSpace;
use shared_regs::ring::{CompletionStatus, ParityDescriptor, ParityOpcode};
pub use shared_regs::ring::{PARITY_BUFFER_ALIGN_BYTES, SOURCE_LIST_ALIGN_BYTES};

/// Runs `descriptor` against `dma`; returns the status to post.
pub fn execute(dma: &mut DmaSpace, descriptor: &ParityDescriptor) -> CompletionStatus {
    match compute(dma, descriptor) {
        Ok(()) => CompletionStatus::Ok,
        Err(status) => status,
    }
}

fn compute(dma: &mut DmaSpace, descriptor: &ParityDescriptor) -> Result<(), CompletionStatus> {
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
        if with_q {
            amf_parity::gen_pq(&sources, &mut p, &mut q);
        } else {
            amf_parity::gen_p(&sources, &mut p);
        }
    }
    store(dma, p_address, &p)?;
    if with_q {
        store(dma, q_address, &q)?;
    }
    Ok(())
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
