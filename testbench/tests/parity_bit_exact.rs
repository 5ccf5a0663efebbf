//! The Verilated parity engines against the host's scalar reference and ISA-L, bit for bit:
//! more than 10,000 random stripes over 64-, 256- and 512-bit datapaths, RAID-5 (P) and
//! RAID-6 (P+Q) over 3 to 32 members, several chunk lengths, with and without backpressure.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shared_regs::limits::{MEMBERS_MAX, RAID5_MEMBERS_MIN, RAID6_MEMBERS_MIN};
use testbench::parity::{Pacing, Parity, ParityEngineModel, Stripe};

/// Stripes per datapath width; three widths make more than 10,000 in all.
const STRIPES_PER_WIDTH: usize = 3_400;
/// Stripes streamed back to back in one run (one RAID level and pacing per run).
const STRIPES_PER_RUN: usize = 100;
/// Chunk lengths are whole multiples of this: every engine's beat and ISA-L's 32 bytes.
const LENGTH_UNIT_BYTES: usize = 64;
/// Longest chunk, in units.
const LENGTH_UNITS_MAX: usize = 4;

/// A buffer whose bytes start on a 32-byte boundary, as ISA-L requires.
struct Aligned {
    storage: Vec<u8>,
    start: usize,
    length: usize,
}

impl Aligned {
    fn zeroed(length: usize) -> Self {
        let storage = vec![0; length + isal::ALIGNMENT_BYTES];
        let start = storage.as_ptr().align_offset(isal::ALIGNMENT_BYTES);
        Self {
            storage,
            start,
            length,
        }
    }

    fn copy_of(bytes: &[u8]) -> Self {
        let mut buffer = Self::zeroed(bytes.len());
        buffer.bytes_mut().copy_from_slice(bytes);
        buffer
    }

    fn bytes(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.length]
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.length]
    }
}

fn random_stripe(rng: &mut ChaCha8Rng, pq: bool) -> Stripe {
    let (members_min, parity_members) = if pq {
        (RAID6_MEMBERS_MIN, 2)
    } else {
        (RAID5_MEMBERS_MIN, 1)
    };
    let members = rng.gen_range(members_min..=MEMBERS_MAX) as usize;
    let length = rng.gen_range(1..=LENGTH_UNITS_MAX) * LENGTH_UNIT_BYTES;
    let chunks = (0..members - parity_members)
        .map(|_| (0..length).map(|_| rng.r#gen()).collect())
        .collect();
    Stripe { chunks, pq }
}

/// P and Q from amf-parity's scalar reference (Q zero in P-only mode).
fn reference(stripe: &Stripe) -> Parity {
    let sources: Vec<&[u8]> = stripe.chunks.iter().map(Vec::as_slice).collect();
    let length = stripe.chunks[0].len();
    let (mut p, mut q) = (vec![0; length], vec![0; length]);
    if stripe.pq {
        amf_parity::reference::gen_pq(&sources, &mut p, &mut q);
    } else {
        amf_parity::reference::gen_p(&sources, &mut p);
    }
    Parity { p, q }
}

/// P and Q from ISA-L: `pq_gen` for RAID-6, `xor_gen` for RAID-5.
fn isa_l(stripe: &Stripe) -> Parity {
    let sources: Vec<Aligned> = stripe.chunks.iter().map(|c| Aligned::copy_of(c)).collect();
    let sources: Vec<&[u8]> = sources.iter().map(Aligned::bytes).collect();
    let length = stripe.chunks[0].len();
    let (mut p, mut q) = (Aligned::zeroed(length), Aligned::zeroed(length));
    if stripe.pq {
        isal::pq_gen(&sources, p.bytes_mut(), q.bytes_mut()).expect("ISA-L pq_gen");
    } else {
        isal::xor_gen(&sources, p.bytes_mut()).expect("ISA-L xor_gen");
    }
    Parity {
        p: p.bytes().to_vec(),
        q: q.bytes().to_vec(),
    }
}

/// Streams `STRIPES_PER_WIDTH` stripes through the `width_bits` engine; returns how many
/// were compared.
fn check_width(width_bits: u32, seed: u64) -> usize {
    assert!(
        isal::available(),
        "ISA-L is the outside oracle here: install libisal-dev and rebuild"
    );
    let mut engine = ParityEngineModel::new(width_bits).unwrap_or_else(|error| panic!("{error}"));
    assert!(LENGTH_UNIT_BYTES.is_multiple_of(engine.beat_bytes()));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut compared = 0;
    for run in 0..STRIPES_PER_WIDTH / STRIPES_PER_RUN {
        let pq = run % 3 != 0;
        let pacing = if run % 2 == 0 {
            Pacing::FULL_SPEED
        } else {
            Pacing {
                input_gap_percent: 20,
                output_stall_percent: 30,
            }
        };
        let stripes: Vec<Stripe> = (0..STRIPES_PER_RUN)
            .map(|_| random_stripe(&mut rng, pq))
            .collect();
        let results = engine.run(&stripes, pacing, &mut rng);
        assert_eq!(results.len(), stripes.len());
        for (index, (stripe, result)) in stripes.iter().zip(&results).enumerate() {
            let context = format!(
                "W={width_bits} seed {seed} run {run} stripe {index}: {} data chunks",
                stripe.chunks.len()
            );
            assert_eq!(
                *result,
                reference(stripe),
                "{context}: RTL differs from the reference"
            );
            assert_eq!(*result, isa_l(stripe), "{context}: RTL differs from ISA-L");
            compared += 1;
        }
    }
    compared
}

#[test]
fn more_than_ten_thousand_stripes_equal_the_reference_and_isa_l_bit_for_bit() {
    let compared: usize = [(64, 1), (256, 2), (512, 3)]
        .into_iter()
        .map(|(width_bits, seed)| check_width(width_bits, seed))
        .sum();
    assert!(compared >= 10_000, "only {compared} stripes compared");
}
