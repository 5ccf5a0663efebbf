use hdl::broadcast_fabric::BroadcastFabric;
use hdl::parity_engine::ParityEngine;
use rust_hdl::prelude::*;
fn main() {
    let dir = std::env::args().nth(1).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    let mut uut = ParityEngine::<512>::new();
    uut.connect_all();
    std::fs::write(format!("{dir}/parity_engine_512.v"), hdl::verilog::generate(&uut, "parity_engine_512")).unwrap();
    let mut uut = BroadcastFabric::<4>::new(4096);
    uut.connect_all();
    std::fs::write(format!("{dir}/broadcast_fabric_4.v"), hdl::verilog::generate(&uut, "broadcast_fabric_4")).unwrap();
}
