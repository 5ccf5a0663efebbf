//! Shared by the integration tests: deterministic noise and buffers at chosen alignments.
#![allow(dead_code)]

/// Deterministic noise (xorshift64*), so a failing case replays from its seed.
#[derive(Debug)]
pub struct Noise(u64);

impl Noise {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn fill(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

/// Owned storage for one buffer of `length` bytes starting `skew` bytes past a 64-byte
/// boundary; [`Buffer::bytes`] hands out that window.
#[derive(Debug)]
pub struct Buffer {
    storage: Vec<u8>,
    start: usize,
    length: usize,
}

impl Buffer {
    pub fn new(length: usize, skew: usize) -> Self {
        assert!(skew < 64);
        let storage = vec![0u8; length + 128];
        let start = storage.as_ptr().align_offset(64) + skew;
        Self {
            storage,
            start,
            length,
        }
    }

    pub fn noisy(length: usize, skew: usize, noise: &mut Noise) -> Self {
        let mut buffer = Self::new(length, skew);
        noise.fill(buffer.bytes_mut());
        buffer
    }

    pub fn bytes(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.length]
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.length]
    }
}

/// `count` noisy data buffers of `length` bytes at the given skews (cycled).
pub fn data_buffers(
    count: usize,
    length: usize,
    skews: &[usize],
    noise: &mut Noise,
) -> Vec<Buffer> {
    (0..count)
        .map(|index| Buffer::noisy(length, skews[index % skews.len()], noise))
        .collect()
}

pub fn views(buffers: &[Buffer]) -> Vec<&[u8]> {
    buffers.iter().map(Buffer::bytes).collect()
}
