//! [`CardParity`]: the card's implementation of [`amf_parity::ParityEngine`], beside the
//! host's [`amf_parity::HostParity`]. Both take the same shapes and give the same bytes;
//! the RAID core and the I/O shell hold a `&mut dyn ParityEngine` and do not care which.
//! What only the card can get wrong is [`CardParityError`], carried to callers inside
//! [`EngineError::Device`].

use crate::backend::{CardBackend, DmaBuffer};
use crate::driver::{Card, CardError, backend_error};
use amf_parity::{EngineError, PARITY_SOURCES_MIN, ParityEngine, check_shape};
use shared_regs::limits::{PARITY_BEAT_BYTES, PARITY_SOURCE_BYTES_MAX};
use shared_regs::regs;
use shared_regs::ring::{CompletionStatus, ParityDescriptor, ParityOpcode};
use zerocopy::little_endian::{U32, U64};

/// How long [`CardParity`] waits for each completion by default.
pub const CARD_PARITY_TIMEOUT_MS_DEFAULT: u32 = 10_000;

const BEAT_BYTES: usize = PARITY_BEAT_BYTES as usize;
const DESCRIPTOR_SOURCE_BYTES_MAX: usize = PARITY_SOURCE_BYTES_MAX as usize;

// Every shape `check_shape` lets through is one the card's opcodes take.
const _: () = assert!(PARITY_SOURCES_MIN >= ParityOpcode::GenP.sources_min());
const _: () = assert!(PARITY_SOURCES_MIN >= ParityOpcode::GenPq.sources_min());

/// Why the card did not compute parity (the shape was fine: [`check_shape`] ran first).
#[derive(Debug, thiserror::Error)]
pub enum CardParityError {
    /// The card refused one of the descriptors.
    #[error("card refused parity descriptor with tag {tag}: {status}")]
    Descriptor {
        /// The descriptor's tag.
        tag: u32,
        /// The card's verdict.
        status: CompletionStatus,
    },
    /// A completion carried a tag this job did not submit.
    #[error("card completed tag {tag}, which is not part of the job in flight")]
    UnexpectedTag {
        /// The tag.
        tag: u32,
    },
    /// The card engine failed earlier in a way that leaves descriptors unaccounted for.
    #[error("card parity engine is unusable after an earlier failure")]
    Broken,
    /// The driver failed.
    #[error(transparent)]
    Card(#[from] CardError),
}

/// DMA memory [`CardParity`] stages a job in; grown on demand, never shrunk.
#[derive(Debug)]
struct Staging {
    /// `sources_max` sources, `stride` bytes apart.
    data: DmaBuffer,
    /// One source-address list per descriptor, `sources_max` addresses each.
    lists: DmaBuffer,
    p: DmaBuffer,
    q: DmaBuffer,
    sources_max: usize,
    stride: usize,
}

impl Staging {
    fn fits(&self, sources: usize, padded_bytes: usize) -> bool {
        sources <= self.sources_max && padded_bytes <= self.stride
    }
}

/// Parity computed by the card: data copied into DMA buffers, one descriptor per
/// [`PARITY_SOURCE_BYTES_MAX`] slice (as many in flight as the ring holds), results copied
/// back. Lengths that are not whole beats are padded with zeros, which changes neither P
/// nor Q of the real bytes.
#[derive(Debug)]
pub struct CardParity<B: CardBackend> {
    card: Card<B>,
    staging: Option<Staging>,
    timeout_ms: u32,
    next_tag: u32,
    broken: bool,
}

impl<B: CardBackend> CardParity<B> {
    /// Uses `card`'s parity engine; the card must compute P (Q is checked per call).
    pub fn new(card: Card<B>) -> Result<Self, CardError> {
        let caps = card.identity().caps;
        if caps & regs::CAP_PARITY_P == 0 {
            return Err(CardError::MissingCapability {
                missing: regs::CAP_PARITY_P,
                found: caps,
            });
        }
        Ok(Self {
            card,
            staging: None,
            timeout_ms: CARD_PARITY_TIMEOUT_MS_DEFAULT,
            next_tag: 0,
            broken: false,
        })
    }

    /// Sets how long each completion may take.
    pub fn with_timeout_ms(self, timeout_ms: u32) -> Self {
        Self { timeout_ms, ..self }
    }

    /// The card, for SRAM access and status.
    pub fn card_mut(&mut self) -> &mut Card<B> {
        &mut self.card
    }

    /// The card.
    pub fn card(&self) -> &Card<B> {
        &self.card
    }

    /// Frees the staging memory and gives the card back.
    pub fn into_card(mut self) -> Result<Card<B>, CardError> {
        if let Some(staging) = self.staging.take() {
            self.free_staging(staging)?;
        }
        Ok(self.card)
    }

    fn free_staging(&mut self, staging: Staging) -> Result<(), CardError> {
        self.free_buffers([staging.data, staging.lists, staging.p, staging.q])
    }

    /// Frees every buffer, even after one fails; reports the first failure.
    fn free_buffers(
        &mut self,
        buffers: impl IntoIterator<Item = DmaBuffer>,
    ) -> Result<(), CardError> {
        let name = self.card.backend().name();
        let mut first_error = Ok(());
        for buffer in buffers {
            let freed = self.card.backend_mut().dma_free(buffer);
            if first_error.is_ok() {
                first_error = freed.map_err(backend_error(name, "freeing parity staging memory"));
            }
        }
        first_error
    }

    /// Makes sure staging holds `sources` sources of `padded_bytes`.
    fn ensure_staging(&mut self, sources: usize, padded_bytes: usize) -> Result<(), CardError> {
        if self
            .staging
            .as_ref()
            .is_some_and(|s| s.fits(sources, padded_bytes))
        {
            return Ok(());
        }
        let (sources_max, stride) = match self.staging.take() {
            Some(old) => {
                let grown = (old.sources_max.max(sources), old.stride.max(padded_bytes));
                self.free_staging(old)?;
                grown
            }
            None => (sources, padded_bytes),
        };
        let descriptors_max = stride.div_ceil(DESCRIPTOR_SOURCE_BYTES_MAX);
        let sizes = [
            sources_max * stride,
            descriptors_max * sources_max * 8,
            stride,
            stride,
        ];
        let name = self.card.backend().name();
        let mut buffers = Vec::with_capacity(sizes.len());
        for bytes in sizes {
            match self.card.backend_mut().dma_alloc(bytes as u64) {
                Ok(buffer) => buffers.push(buffer),
                Err(error) => {
                    let error = backend_error(name, "allocating parity staging memory")(error);
                    // Give back what this attempt took; the allocation failure is the news.
                    self.free_buffers(buffers)?;
                    return Err(error);
                }
            }
        }
        let [data, lists, p, q]: [DmaBuffer; 4] = buffers.try_into().expect("four sizes");
        self.staging = Some(Staging {
            data,
            lists,
            p,
            q,
            sources_max,
            stride,
        });
        Ok(())
    }

    /// Copies the data (zero-padded to `padded_bytes`) and the source lists into staging;
    /// returns the descriptors to submit.
    fn stage(
        &mut self,
        data: &[&[u8]],
        padded_bytes: usize,
        opcode: ParityOpcode,
    ) -> Result<Vec<ParityDescriptor>, CardError> {
        let staging = self.staging.take().expect("ensure_staging ran");
        let result = self.stage_into(&staging, data, padded_bytes, opcode);
        self.staging = Some(staging);
        result
    }

    fn stage_into(
        &mut self,
        staging: &Staging,
        data: &[&[u8]],
        padded_bytes: usize,
        opcode: ParityOpcode,
    ) -> Result<Vec<ParityDescriptor>, CardError> {
        let name = self.card.backend().name();
        let backend = self.card.backend_mut();
        let padding = vec![0u8; padded_bytes - data[0].len()];
        for (index, source) in data.iter().enumerate() {
            let offset = (index * staging.stride) as u64;
            let write = backend
                .dma_write(&staging.data, offset, source)
                .and_then(|()| {
                    backend.dma_write(&staging.data, offset + source.len() as u64, &padding)
                });
            write.map_err(backend_error(name, "staging parity data"))?;
        }
        let descriptors = padded_bytes.div_ceil(DESCRIPTOR_SOURCE_BYTES_MAX);
        let mut list = Vec::with_capacity(data.len() * 8);
        let mut prepared = Vec::with_capacity(descriptors);
        for slice in 0..descriptors {
            let start = slice * DESCRIPTOR_SOURCE_BYTES_MAX;
            let length = (padded_bytes - start).min(DESCRIPTOR_SOURCE_BYTES_MAX);
            list.clear();
            for index in 0..data.len() {
                let address =
                    staging.data.device_address() + (index * staging.stride + start) as u64;
                list.extend_from_slice(&address.to_le_bytes());
            }
            let list_offset = (slice * staging.sources_max * 8) as u64;
            self.card
                .backend_mut()
                .dma_write(&staging.lists, list_offset, &list)
                .map_err(backend_error(name, "staging a parity source list"))?;
            let tag = self.next_tag;
            self.next_tag = tag.wrapping_add(1);
            prepared.push(ParityDescriptor {
                opcode: opcode as u8,
                source_count: data.len() as u8,
                tag: U32::new(tag),
                length_bytes: U32::new(length as u32),
                sources_addr: U64::new(staging.lists.device_address() + list_offset),
                p_addr: U64::new(staging.p.device_address() + start as u64),
                q_addr: U64::new(staging.q.device_address() + start as u64),
                ..Default::default()
            });
        }
        Ok(prepared)
    }

    /// Submits `descriptors`, keeping the ring as full as possible, and collects every
    /// completion; the first refused descriptor is reported after all have completed.
    fn run(&mut self, descriptors: &[ParityDescriptor]) -> Result<(), CardParityError> {
        let first_tag = descriptors[0].tag.get();
        let mut completed = vec![false; descriptors.len()];
        let mut refused = None;
        let mut submitted = 0;
        for _ in 0..descriptors.len() {
            while submitted < descriptors.len()
                && self.card.parity_in_flight() < self.card.parity_ring_entries()
            {
                self.card.submit_parity(&descriptors[submitted])?;
                submitted += 1;
            }
            let completion = self.card.wait_completion(self.timeout_ms)?;
            let position = completion.tag.wrapping_sub(first_tag) as usize;
            match completed.get_mut(position) {
                Some(done) if !*done => *done = true,
                _ => {
                    return Err(CardParityError::UnexpectedTag {
                        tag: completion.tag,
                    });
                }
            }
            if completion.status != CompletionStatus::Ok && refused.is_none() {
                refused = Some(CardParityError::Descriptor {
                    tag: completion.tag,
                    status: completion.status,
                });
            }
        }
        assert_eq!(submitted, descriptors.len());
        assert!(completed.iter().all(|&done| done));
        refused.map_or(Ok(()), Err)
    }

    fn copy_back(&mut self, p: &mut [u8], q: Option<&mut [u8]>) -> Result<(), CardError> {
        let staging = self.staging.take().expect("ensure_staging ran");
        let name = self.card.backend().name();
        let backend = self.card.backend_mut();
        let result = backend.dma_read(&staging.p, 0, p).and_then(|()| match q {
            Some(q) => backend.dma_read(&staging.q, 0, q),
            None => Ok(()),
        });
        self.staging = Some(staging);
        result.map_err(backend_error(name, "reading parity results"))
    }
}

impl<B: CardBackend> CardParity<B> {
    /// [`ParityEngine::compute`] once the shape is known good.
    fn compute_on_card(
        &mut self,
        data: &[&[u8]],
        p: &mut [u8],
        q: Option<&mut [u8]>,
    ) -> Result<(), CardParityError> {
        if self.broken {
            return Err(CardParityError::Broken);
        }
        let caps = self.card.identity().caps;
        if q.is_some() && caps & regs::CAP_PARITY_PQ == 0 {
            return Err(CardError::MissingCapability {
                missing: regs::CAP_PARITY_PQ,
                found: caps,
            }
            .into());
        }
        if p.is_empty() {
            return Ok(());
        }
        let opcode = if q.is_some() {
            ParityOpcode::GenPq
        } else {
            ParityOpcode::GenP
        };
        let padded_bytes = p.len().div_ceil(BEAT_BYTES) * BEAT_BYTES;
        self.ensure_staging(data.len(), padded_bytes)?;
        let descriptors = self.stage(data, padded_bytes, opcode)?;
        if let Err(error) = self.run(&descriptors) {
            // A refused descriptor leaves the ring consistent. Anything else may leave
            // descriptors in flight that point into staging: rather than risk the card
            // writing into a later job's memory, the engine refuses further work.
            self.broken = !matches!(error, CardParityError::Descriptor { .. });
            return Err(error);
        }
        Ok(self.copy_back(p, q)?)
    }
}

impl<B: CardBackend> ParityEngine for CardParity<B> {
    fn name(&self) -> &'static str {
        match self.card.backend().name() {
            "sim" => "card:sim",
            "rtl" => "card:rtl",
            "vfio" => "card:vfio",
            _ => "card",
        }
    }

    fn compute(
        &mut self,
        data: &[&[u8]],
        p: &mut [u8],
        q: Option<&mut [u8]>,
    ) -> Result<(), EngineError> {
        check_shape(data, p.len(), q.as_ref().map(|q| q.len()))?;
        self.compute_on_card(data, p, q)
            .map_err(|error| EngineError::device(self.name(), error))
    }
}
