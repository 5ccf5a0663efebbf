use hdl::parity_engine::ParityEngine;
use rust_hdl::prelude::*;
fn main() {
    let dir = std::env::args().nth(1).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    let mut uut = ParityEngine::<512>::new();
    uut.connect_all();
    std::fs::write(format!("{dir}/parity_engine_512.v"), hdl::verilog::generate(&uut, "parity_engine_512")).unwrap();
    let mut uut = ParityEngine::<64>::new();
    uut.connect_all();
    std::fs::write(format!("{dir}/parity_engine_64.v"), hdl::verilog::generate(&uut, "parity_engine_64")).unwrap();
}
