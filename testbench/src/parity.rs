//! A parity engine model fed stripes, column by column, with valid/ready on both sides.
//!
//! The stream is the engine's (see `hdl::parity_lane`): for each beat-wide column of the
//! stripe, the data chunks from the highest index down, `first` on the highest and `last`
//! on chunk 0; one P (and Q) result per column comes back and is put in place.
use crate::rtl::{Model, Port, TestbenchError, bytes_from_words, words_from_bytes};
use rand::Rng;
use std::collections::VecDeque;

/// A stripe to compute: equal-length data chunks, in data index order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stripe {
    /// Data chunks `0..k`.
    pub chunks: Vec<Vec<u8>>,
    /// P and Q (RAID-6); P only (RAID-5) when false, and Q then comes back zero.
    pub pq: bool,
}

/// What the engine computed for one stripe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parity {
    /// P.
    pub p: Vec<u8>,
    /// Q (zeros in P-only mode).
    pub q: Vec<u8>,
}

/// How often each side of the engine stalls, in percent of cycles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pacing {
    /// Percent of cycles the producer offers nothing.
    pub input_gap_percent: u32,
    /// Percent of cycles the consumer is not ready.
    pub output_stall_percent: u32,
}

impl Pacing {
    /// Neither side ever stalls.
    pub const FULL_SPEED: Self = Self {
        input_gap_percent: 0,
        output_stall_percent: 0,
    };
}

/// One beat of the input stream, and where its column's result goes.
struct Beat {
    words: Vec<u32>,
    first: bool,
    last: bool,
}

/// The engine's ports.
#[derive(Debug)]
struct Ports {
    reset: Port,
    in_valid: Port,
    in_ready: Port,
    in_first: Port,
    in_last: Port,
    in_pq: Port,
    in_data: Port,
    out_valid: Port,
    out_ready: Port,
    out_p: Port,
    out_q: Port,
}

/// A Verilated `parity_engine_W`.
#[derive(Debug)]
pub struct ParityEngineModel {
    model: Model,
    ports: Ports,
    beat_bytes: usize,
}

impl ParityEngineModel {
    /// The `width_bits`-wide engine (64, 256 or 512), out of reset.
    pub fn new(width_bits: u32) -> Result<Self, TestbenchError> {
        let model = Model::new(&format!("parity_engine_{width_bits}"))?;
        let port = |name: &str| model.port(name);
        let ports = Ports {
            reset: port("reset")?,
            in_valid: port("in_valid")?,
            in_ready: port("in_ready")?,
            in_first: port("in_first")?,
            in_last: port("in_last")?,
            in_pq: port("in_pq")?,
            in_data: port("in_data")?,
            out_valid: port("out_valid")?,
            out_ready: port("out_ready")?,
            out_p: port("out_p")?,
            out_q: port("out_q")?,
        };
        let beat_bytes = usize::try_from(width_bits / 8).expect("fits usize");
        let mut engine = Self {
            model,
            ports,
            beat_bytes,
        };
        engine.model.set_bit(engine.ports.reset, true);
        engine.model.rising_edge();
        engine.model.set_bit(engine.ports.reset, false);
        Ok(engine)
    }

    /// Bytes per beat: chunk lengths must be a multiple of it.
    pub fn beat_bytes(&self) -> usize {
        self.beat_bytes
    }

    /// Clock edges so far.
    pub fn cycles(&self) -> u64 {
        self.model.cycles()
    }

    fn beats(&self, stripe: &Stripe) -> Vec<Beat> {
        let length = stripe.chunks[0].len();
        assert!(
            length > 0 && length.is_multiple_of(self.beat_bytes),
            "chunk length {length} is not whole beats of {}",
            self.beat_bytes
        );
        assert!(
            stripe.chunks.iter().all(|c| c.len() == length),
            "chunk lengths differ"
        );
        let highest = stripe.chunks.len() - 1;
        let mut beats = Vec::new();
        for start in (0..length).step_by(self.beat_bytes) {
            for (index, chunk) in stripe.chunks.iter().enumerate().rev() {
                beats.push(Beat {
                    words: words_from_bytes(&chunk[start..start + self.beat_bytes]),
                    first: index == highest,
                    last: index == 0,
                });
            }
        }
        beats
    }

    /// Streams `stripes` through the engine (one P/Q mode for all of them), stalling as
    /// `pacing` says, and returns each stripe's P and Q.
    pub fn run(&mut self, stripes: &[Stripe], pacing: Pacing, rng: &mut impl Rng) -> Vec<Parity> {
        let Some(pq) = stripes.first().map(|s| s.pq) else {
            return Vec::new();
        };
        assert!(stripes.iter().all(|s| s.pq == pq), "one mode per run");
        let mut beats: VecDeque<Beat> = stripes.iter().flat_map(|s| self.beats(s)).collect();
        let mut columns_owed: usize = beats.iter().filter(|b| b.last).count();
        let mut results: Vec<Parity> = stripes
            .iter()
            .map(|s| {
                Parity {
                    p: Vec::new(),
                    q: Vec::new(),
                }
                .with_capacity(s.chunks[0].len())
            })
            .collect();
        let mut stripe = 0;
        let idle_cycles_max = 1_000 + beats.len() * 10;
        self.model.set_bit(self.ports.in_pq, pq);
        let mut idle = 0;
        while columns_owed > 0 {
            let offer = !beats.is_empty() && !rng.gen_ratio(pacing.input_gap_percent, 100);
            let ready = !rng.gen_ratio(pacing.output_stall_percent, 100);
            self.model.set_bit(self.ports.in_valid, offer);
            if let Some(beat) = beats.front() {
                self.model.set(self.ports.in_data, &beat.words);
                self.model.set_bit(self.ports.in_first, beat.first);
                self.model.set_bit(self.ports.in_last, beat.last);
            }
            self.model.set_bit(self.ports.out_ready, ready);
            self.model.eval();
            let mut progressed = false;
            if offer && self.model.get_bit(self.ports.in_ready) {
                beats.pop_front();
                progressed = true;
            }
            if ready && self.model.get_bit(self.ports.out_valid) {
                let result = &mut results[stripe];
                result
                    .p
                    .extend(bytes_from_words(&self.model.get(self.ports.out_p)));
                result
                    .q
                    .extend(bytes_from_words(&self.model.get(self.ports.out_q)));
                if result.p.len() == stripes[stripe].chunks[0].len() {
                    stripe += 1;
                }
                columns_owed -= 1;
                progressed = true;
            }
            self.model.rising_edge();
            idle = if progressed { 0 } else { idle + 1 };
            assert!(
                idle < idle_cycles_max,
                "engine stalled with {columns_owed} columns owed"
            );
        }
        results
    }
}

impl Parity {
    fn with_capacity(self, bytes: usize) -> Self {
        Self {
            p: Vec::with_capacity(bytes),
            q: Vec::with_capacity(bytes),
        }
    }
}
