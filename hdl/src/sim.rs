//! Clocking a block in rust-hdl's simulator without the threaded `Simulation` (an order of
//! magnitude faster), and moving bytes in and out of wide `Bits`: what the simulation
//! tests here and the speed reference in `testbench` use.
use rust_hdl::prelude::*;

/// Settle-loop bound: more passes than any of our blocks needs to settle.
const SETTLE_PASSES_MAX: usize = 1_000;

/// Settles `uut` and panics if it never does (a combinational loop).
pub fn settle<B: Block>(uut: &mut B) {
    assert!(simulate(uut, SETTLE_PASSES_MAX), "logic did not settle");
}

/// One rising edge of `clock`, then settle: registers take what they saw before the edge.
pub fn rising_edge<B: Block>(uut: &mut B, clock: impl Fn(&mut B) -> &mut Signal<In, Clock>) {
    clock(uut).next = Clock { clk: true };
    settle(uut);
    clock(uut).next = Clock { clk: false };
    settle(uut);
}

/// Little-endian bytes to `Bits<W>`: byte 0 in bits 7..0.
pub fn bits_from_bytes<const W: usize>(bytes: &[u8]) -> Bits<W> {
    assert_eq!(bytes.len() * 8, W, "{} bytes for {W} bits", bytes.len());
    bytes
        .chunks(8)
        .rev()
        .fold(Bits::<W>::default(), |acc, word| {
            let mut padded = [0u8; 8];
            padded[..word.len()].copy_from_slice(word);
            let word: Bits<W> = bit_cast(Bits::<64>::from(u64::from_le_bytes(padded)));
            if W > 64 { (acc << 64) | word } else { word }
        })
}

/// `Bits<W>` to little-endian bytes.
pub fn bytes_from_bits<const W: usize>(bits: Bits<W>) -> Vec<u8> {
    (0..W / 8)
        .map(|byte| bits.get_bits::<8>(byte * 8).to_u8())
        .collect()
}
