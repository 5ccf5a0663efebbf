//! Helpers shared by the integration tests.
#![allow(dead_code)]

use amf_card::{Card, CardConfig, Execution, SimCard, SimConfig};
use shared_regs::ring::{ParityDescriptor, ParityOpcode};
use tempfile::TempDir;
use zerocopy::little_endian::{U32, U64};

/// SRAM size most tests use: a few window pages.
pub const SRAM_BYTES: u64 = 4 * 64 * 1024;

/// A sim card on a fresh SRAM file; the directory lives as long as the returned guard.
pub fn sim(execution: Execution) -> (SimCard, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = SimConfig {
        execution,
        ..SimConfig::new(SRAM_BYTES)
    };
    let card = SimCard::open(&dir.path().join("sram"), config).expect("sim card opens");
    (card, dir)
}

/// The driver on a fresh sim card.
pub fn card(execution: Execution, config: CardConfig) -> (Card<SimCard>, TempDir) {
    let (sim, dir) = sim(execution);
    (
        Card::open(sim, config).expect("driver opens the sim card"),
        dir,
    )
}

/// Both ways the sim card can run.
pub const EXECUTIONS: [Execution; 2] = [Execution::Stepped, Execution::Threaded];

/// Deterministic bytes, different per `seed`.
pub fn pattern(seed: u64, length: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// P from the scalar reference model.
pub fn reference_p(data: &[Vec<u8>]) -> Vec<u8> {
    let sources: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
    let mut p = vec![0u8; data[0].len()];
    amf_parity::reference::gen_p(&sources, &mut p);
    p
}

/// Stages three 4 KiB sources and a P buffer for one raw descriptor; returns the
/// descriptor (tag `tag`) and the expected P.
pub struct RawJob {
    pub descriptor: ParityDescriptor,
    pub expected_p: Vec<u8>,
    pub p: amf_card::DmaBuffer,
    pub sources: amf_card::DmaBuffer,
    pub list: amf_card::DmaBuffer,
}

pub fn raw_job(card: &mut Card<SimCard>, tag: u32) -> RawJob {
    use amf_card::CardBackend;
    const LENGTH: usize = 4096;
    let data: Vec<Vec<u8>> = (0..3)
        .map(|i| pattern(u64::from(tag) * 8 + i, LENGTH))
        .collect();
    let backend = card.backend_mut();
    let sources = backend.dma_alloc((3 * LENGTH) as u64).unwrap();
    let list = backend.dma_alloc(24).unwrap();
    let p = backend.dma_alloc(LENGTH as u64).unwrap();
    let mut addresses = Vec::new();
    for (index, source) in data.iter().enumerate() {
        backend
            .dma_write(&sources, (index * LENGTH) as u64, source)
            .unwrap();
        let address = sources.device_address() + (index * LENGTH) as u64;
        addresses.extend_from_slice(&address.to_le_bytes());
    }
    backend.dma_write(&list, 0, &addresses).unwrap();
    let descriptor = ParityDescriptor {
        opcode: ParityOpcode::GenP as u8,
        source_count: 3,
        tag: U32::new(tag),
        length_bytes: U32::new(LENGTH as u32),
        sources_addr: U64::new(list.device_address()),
        p_addr: U64::new(p.device_address()),
        ..Default::default()
    };
    RawJob {
        descriptor,
        expected_p: reference_p(&data),
        p,
        sources,
        list,
    }
}
