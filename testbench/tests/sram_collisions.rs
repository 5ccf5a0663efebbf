//! The card SRAM when both ports touch one word in one cycle, on the Verilated
//! `dual_port_sram` and through the Verilated card top: a host read of the word the fabric
//! writes returns the fabric's new word, a host read of the word the host writes returns the
//! word before that write, and when both write it the fabric's word stays. The Verilog and
//! rust-hdl's model (`hdl::dual_port_sram`, what the card top's simulation runs) agree bit for
//! bit, cycle by cycle, on random traffic crowded onto a few words.
use hdl::dual_port_sram::DualPortSram;
use hdl::sim::{rising_edge, settle};
use hdl::verilog::CARD_SRAM_WORDS_LOG2 as A;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_hdl::prelude::*;
use shared_regs::limits::SRAM_WINDOW_BYTES;
use shared_regs::regs;
use testbench::card::CardModel;
use testbench::rtl::{Model, Port};

/// Cycles of random traffic per seed.
const CYCLES: usize = 50_000;

/// What both ports do in one cycle.
#[derive(Clone, Copy, Debug, Default)]
struct Cycle {
    host_address: u64,
    host_write_low: bool,
    host_write_high: bool,
    host_write_data: u32,
    /// The fabric's write: (address, data).
    fabric: Option<(u64, u64)>,
}

/// The Verilated SRAM, by port.
struct Rtl {
    model: Model,
    host_address: Port,
    host_write_low: Port,
    host_write_high: Port,
    host_write_data: Port,
    host_read_data: Port,
    fabric_address: Port,
    fabric_write: Port,
    fabric_write_data: Port,
}

impl Rtl {
    fn new() -> Self {
        let model = Model::new("dual_port_sram").unwrap_or_else(|error| panic!("{error}"));
        let port = |name: &str| model.port(name).unwrap_or_else(|error| panic!("{error}"));
        Self {
            host_address: port("host_address"),
            host_write_low: port("host_write_low"),
            host_write_high: port("host_write_high"),
            host_write_data: port("host_write_data"),
            host_read_data: port("host_read_data"),
            fabric_address: port("fabric_address"),
            fabric_write: port("fabric_write"),
            fabric_write_data: port("fabric_write_data"),
            model,
        }
    }

    /// One clock edge; the read data after it.
    fn cycle(&mut self, cycle: Cycle) -> u64 {
        let (address, data) = cycle.fabric.unwrap_or((0, 0));
        let m = &mut self.model;
        m.set_u64(self.host_address, cycle.host_address);
        m.set_bit(self.host_write_low, cycle.host_write_low);
        m.set_bit(self.host_write_high, cycle.host_write_high);
        m.set_u64(self.host_write_data, u64::from(cycle.host_write_data));
        m.set_u64(self.fabric_address, address);
        m.set_bit(self.fabric_write, cycle.fabric.is_some());
        m.set_u64(self.fabric_write_data, data);
        m.rising_edge();
        m.get_u64(self.host_read_data)
    }
}

/// rust-hdl's model of the same SRAM.
struct Sim(DualPortSram<A>);

impl Sim {
    fn new() -> Self {
        let mut uut = DualPortSram::<A>::new();
        uut.connect_all();
        Self(uut)
    }

    fn cycle(&mut self, cycle: Cycle) -> u64 {
        let (address, data) = cycle.fabric.unwrap_or((0, 0));
        let uut = &mut self.0;
        uut.host_address.next = cycle.host_address.into();
        uut.host_write_low.next = cycle.host_write_low;
        uut.host_write_high.next = cycle.host_write_high;
        uut.host_write_data.next = u64::from(cycle.host_write_data).into();
        uut.fabric_address.next = address.into();
        uut.fabric_write.next = cycle.fabric.is_some();
        uut.fabric_write_data.next = data.into();
        rising_edge(uut, |u| &mut u.clock);
        settle(uut);
        uut.host_read_data.val().to_u64()
    }
}

/// The Verilated SRAM and rust-hdl's model, side by side.
struct Both {
    rtl: Rtl,
    sim: Sim,
}

impl Both {
    fn new() -> Self {
        Self {
            rtl: Rtl::new(),
            sim: Sim::new(),
        }
    }

    /// One cycle of both; panics where they differ.
    fn cycle(&mut self, cycle: Cycle) -> u64 {
        let from_rtl = self.rtl.cycle(cycle);
        let from_sim = self.sim.cycle(cycle);
        assert_eq!(
            from_rtl, from_sim,
            "Verilog {from_rtl:#x}, rust-hdl {from_sim:#x} after {cycle:x?}"
        );
        from_rtl
    }
}

fn read(address: u64) -> Cycle {
    Cycle {
        host_address: address,
        ..Cycle::default()
    }
}

/// A host read of `address` while the fabric writes `data` at `fabric_address`.
fn read_during_fabric_write(address: u64, fabric_address: u64, data: u64) -> Cycle {
    Cycle {
        fabric: Some((fabric_address, data)),
        ..read(address)
    }
}

#[test]
fn the_fabric_shows_through_the_host_does_not_and_the_fabric_wins() {
    let mut sram = Both::new();
    let word = 0x1234;
    sram.cycle(read_during_fabric_write(0, word, 0x1111));
    assert_eq!(
        sram.cycle(read_during_fabric_write(word, word, 0x2222)),
        0x2222,
        "a read of the word the fabric writes returns the new word"
    );
    assert_eq!(
        sram.cycle(read_during_fabric_write(word, word + 1, 9)),
        0x2222,
        "a write to another word does not show"
    );
    let host_high = Cycle {
        host_write_high: true,
        host_write_data: 0xCCCC_CCCC,
        ..read(word)
    };
    assert_eq!(
        sram.cycle(host_high),
        0x2222,
        "a read of the word the host writes returns the word before the write"
    );
    assert_eq!(sram.cycle(read(word)), 0xCCCC_CCCC_0000_2222);
    let host_both = Cycle {
        host_write_low: true,
        host_write_high: true,
        host_write_data: 0x5555_5555,
        ..read_during_fabric_write(word, word, 0x3333)
    };
    assert_eq!(
        sram.cycle(host_both),
        0x3333,
        "the read sees the fabric's word"
    );
    assert_eq!(sram.cycle(read(word)), 0x3333, "the fabric wins");
}

#[test]
fn verilog_and_rust_hdl_agree_on_random_collisions() {
    for seed in 0..3 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut sram = Both::new();
        // A few words at both ends of the address space, so that half the cycles collide.
        let words = [0, 1, 2, (1 << A) - 2, (1 << A) - 1];
        let mut collisions = 0;
        for _ in 0..CYCLES {
            let host_address = words[rng.gen_range(0..words.len())];
            let fabric = rng.gen_bool(0.6).then(|| {
                let address = if rng.gen_bool(0.5) {
                    host_address
                } else {
                    words[rng.gen_range(0..words.len())]
                };
                (address, rng.r#gen())
            });
            let write = rng.gen_bool(0.5);
            let cycle = Cycle {
                host_address,
                host_write_low: write && rng.gen_bool(0.7),
                host_write_high: write && rng.gen_bool(0.7),
                host_write_data: rng.r#gen(),
                fabric,
            };
            collisions += usize::from(fabric.is_some_and(|(a, _)| a == host_address));
            sram.cycle(cycle);
        }
        for &word in &words {
            sram.cycle(read(word));
        }
        assert!(collisions > CYCLES / 4, "seed {seed}: {collisions}");
    }
}

#[test]
fn the_card_window_and_a_remote_write_to_one_word_in_one_cycle() {
    let mut card = CardModel::new().unwrap_or_else(|error| panic!("{error}"));
    let sram = SRAM_WINDOW_BYTES + 0x40;
    let window = regs::SRAM_WINDOW_OFFSET + 0x40;
    card.write32(regs::SRAM_WINDOW_SELECT, 1).unwrap();
    card.fabric_write(sram, 0x1111_1111_2222_2222);
    let read = card
        .access_during_fabric_write(None, window + 4, sram, 0x3333_3333_4444_4444)
        .unwrap();
    assert_eq!(read, 0x3333_3333, "the window read sees the remote word");
    card.access_during_fabric_write(Some(0x5555_5555), window, sram, 0x6666_6666_7777_7777)
        .unwrap();
    assert_eq!(
        card.read32(window).unwrap(),
        0x7777_7777,
        "the remote write wins"
    );
    card.access_during_fabric_write(Some(0x8888_8888), window, sram + 8, 0x9999)
        .unwrap();
    assert_eq!(
        card.read32(window).unwrap(),
        0x8888_8888,
        "a remote write to the next word leaves the host's alone"
    );
    assert_eq!(card.read32(window + 8).unwrap(), 0x9999);
}
