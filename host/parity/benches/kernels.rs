//! Every kernel valid on this CPU beside ISA-L, on one 8 x 64 KiB stripe (in cache), and
//! the multiply-XOR that update and recovery use. `cargo bench -p amf-parity`.
//! The out-of-cache comparison is `amf bench parity`.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Buffer, Noise, data_buffers, views};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const DATA_MEMBERS: usize = 8;
const CHUNK_BYTES: usize = 65536;

fn generate(criterion: &mut Criterion) {
    let mut noise = Noise::new(1);
    let data = data_buffers(DATA_MEMBERS, CHUNK_BYTES, &[0], &mut noise);
    let data = views(&data);
    let (mut p, mut q) = (Buffer::new(CHUNK_BYTES, 0), Buffer::new(CHUNK_BYTES, 0));
    for pq in [false, true] {
        let mut group = criterion.benchmark_group(if pq { "gen_pq" } else { "gen_p" });
        group.throughput(Throughput::Bytes((DATA_MEMBERS * CHUNK_BYTES) as u64));
        for kernel in amf_parity::kernels() {
            group.bench_function(BenchmarkId::new(kernel.name(), "8x64KiB"), |bench| {
                bench.iter(|| {
                    if pq {
                        kernel.gen_pq(&data, p.bytes_mut(), q.bytes_mut());
                    } else {
                        kernel.gen_p(&data, p.bytes_mut());
                    }
                });
            });
        }
        if isal::available() {
            group.bench_function(BenchmarkId::new("isal", "8x64KiB"), |bench| {
                bench.iter(|| {
                    let outcome = if pq {
                        isal::pq_gen(&data, p.bytes_mut(), q.bytes_mut())
                    } else {
                        isal::xor_gen(&data, p.bytes_mut())
                    };
                    outcome.expect("aligned 8 x 64 KiB stripe");
                });
            });
        }
        group.finish();
    }
}

fn multiply(criterion: &mut Criterion) {
    let mut noise = Noise::new(2);
    let source = Buffer::noisy(CHUNK_BYTES, 0, &mut noise);
    let mut target = Buffer::noisy(CHUNK_BYTES, 0, &mut noise);
    let mut group = criterion.benchmark_group("mul_xor_into");
    group.throughput(Throughput::Bytes(CHUNK_BYTES as u64));
    for kernel in amf_parity::kernels() {
        group.bench_function(BenchmarkId::new(kernel.name(), "64KiB"), |bench| {
            bench.iter(|| kernel.mul_xor_into(target.bytes_mut(), 0x8e, source.bytes()));
        });
    }
    group.finish();
}

criterion_group!(benches, generate, multiply);
criterion_main!(benches);
