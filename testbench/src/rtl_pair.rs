//! Two Verilated cards joined by the Verilated fabric, in one process, in lockstep.
//!
//! [`RtlPair`] holds a `broadcast_fabric_2` and two `card_top`s behind the host driver
//! (`amf_card::Card` over [`RtlCard`]), card `k` on fabric port `k`. Every
//! [`RtlPair::cycle`] is one clock edge of the fabric and one of each card: a remote SRAM
//! write the fabric presents on port `k`'s SRAM port in a cycle drives card `k`'s fabric
//! SRAM port in that same cycle, so it lands in the card's SRAM as it would on a board, and
//! each card's `FABRIC_MEMBERSHIP` and link follow the fabric's from the next cycle.
//!
//! The RTL fabric carries one 64-bit word per message (docs/CARD.md); longer payloads are
//! the business of the card's DMA side, which the RTL does not have yet. Until it does,
//! this module plays that part in software, over the RTL's messages:
//!
//! * a broadcast or unicast payload goes as a length word and then its bytes, eight to a
//!   message, all of one kind, and is put together again at each receiver per sender. The
//!   fabric keeps one sender's messages in order, so one payload's words arrive in order;
//!   broadcasts complete in the same order everywhere, since their last words do;
//! * an SRAM write of `n` words goes as `n` `SramWrite` messages at consecutive offsets.
//!   The fabric acknowledges each once it was presented to the target's SRAM, and the
//!   acknowledgements come back in order per pair, so the `n`-th means the whole write is
//!   in the target's SRAM: that is when [`Delivery::SramWriteAcked`] is reported.
//!
//! A host access to a card's registers or SRAM window runs that card's clock while the
//! fabric's stands still: the fabric then waits (nothing it presents is dropped), as if its
//! clock were slower. Tests access a card between cycles, never during one.
use crate::backend::{RtlCard, RtlConfig, RtlError};
use crate::fabric::{FabricModel, FabricPacing, Message, Traffic};
use crate::rtl::TestbenchError;
use amf_card::{Card, CardConfig, CardError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use shared_regs::fabric::{MessageKind, PORT_BROADCAST};
use std::collections::VecDeque;

/// Ports of the pair's fabric, one card on each.
pub const PAIR_PORTS: usize = 2;

/// Bytes one fabric message carries.
pub const WORD_BYTES: usize = 8;

/// Why the pair could not be built or used.
#[derive(Debug, thiserror::Error)]
pub enum PairError {
    /// The fabric model is not there (built without Verilator).
    #[error("the fabric model cannot start")]
    Fabric(#[from] TestbenchError),
    /// A card model is not there.
    #[error("a card model cannot start")]
    Rtl(#[from] RtlError),
    /// The host driver refused a card.
    #[error("the host driver refused card {port}")]
    Card {
        /// The card's port.
        port: u8,
        /// What the driver said.
        #[source]
        error: CardError,
    },
    /// The fabric writes whole 64-bit words at 8-byte-aligned offsets, within 4 GiB.
    #[error(
        "an SRAM write of {length_bytes} bytes at {offset:#x} is not whole aligned words within 4 GiB"
    )]
    Unaligned {
        /// Target offset.
        offset: u32,
        /// Bytes to write.
        length_bytes: usize,
    },
}

/// What a port received, in the order the fabric delivered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// `port` joined; `sequence` is its place in the fabric's total order.
    MemberUp {
        /// The port that joined.
        port: u8,
        /// Grant number of the announcement.
        sequence: u64,
    },
    /// `port` left, after everything it sent.
    MemberDown {
        /// The port that left.
        port: u8,
    },
    /// A whole broadcast payload.
    Broadcast {
        /// Sender.
        from: u8,
        /// The bytes sent.
        payload: Vec<u8>,
    },
    /// A whole unicast payload.
    Unicast {
        /// Sender.
        from: u8,
        /// The bytes sent.
        payload: Vec<u8>,
    },
    /// Every word of this port's SRAM write at `offset` is in `target`'s SRAM.
    SramWriteAcked {
        /// The card written.
        target: u8,
        /// Where the write started.
        offset: u32,
    },
}

/// A payload being put together at one receiver from one sender.
#[derive(Clone, Debug)]
struct Partial {
    kind: MessageKind,
    length_bytes: usize,
    payload: Vec<u8>,
}

/// An SRAM write sent, awaiting the acknowledgement of its last word.
#[derive(Clone, Copy, Debug)]
struct WriteInFlight {
    offset: u32,
    words_unacked: usize,
}

/// The fabric, both cards, and the software DMA side around them.
#[derive(Debug)]
pub struct RtlPair {
    fabric: FabricModel,
    traffic: Traffic,
    pacing: FabricPacing,
    rng: ChaCha8Rng,
    cards: Vec<Card<RtlCard>>,
    /// The membership and link each card was last shown.
    shown: Vec<(u32, bool)>,
    /// Whether each card's fabric SRAM port is wired to the fabric.
    sram_port_wired: Vec<bool>,
    /// How much of each port's inbox and SRAM-write record has been handled.
    inbox_seen: Vec<usize>,
    writes_seen: Vec<usize>,
    /// `[receiver][sender]`: the payload being put together.
    partial: Vec<Vec<Option<Partial>>>,
    /// `[writer][target]`: SRAM writes in flight, oldest first.
    writes: Vec<Vec<VecDeque<WriteInFlight>>>,
    deliveries: Vec<VecDeque<Delivery>>,
}

impl RtlPair {
    /// The fabric out of reset with both links down (see [`RtlPair::raise_link`]), and
    /// both cards opened by the host driver. `pacing` paces the ports (100/100: every port offers and takes each cycle it
    /// can); `seed` seeds the pacing's randomness.
    pub fn new(pacing: FabricPacing, seed: u64) -> Result<Self, PairError> {
        let cards = (0..PAIR_PORTS)
            .map(|port| {
                let backend = RtlCard::new(RtlConfig::default())?;
                Card::open(backend, CardConfig::default()).map_err(|error| PairError::Card {
                    port: port as u8,
                    error,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut pair = Self {
            fabric: FabricModel::new(PAIR_PORTS)?,
            traffic: Traffic::new(PAIR_PORTS),
            pacing,
            rng: ChaCha8Rng::seed_from_u64(seed),
            cards,
            shown: vec![(u32::MAX, false); PAIR_PORTS],
            sram_port_wired: vec![true; PAIR_PORTS],
            inbox_seen: vec![0; PAIR_PORTS],
            writes_seen: vec![0; PAIR_PORTS],
            partial: vec![vec![None; PAIR_PORTS]; PAIR_PORTS],
            writes: vec![vec![VecDeque::new(); PAIR_PORTS]; PAIR_PORTS],
            deliveries: vec![VecDeque::new(); PAIR_PORTS],
        };
        pair.traffic.link_up.fill(false);
        pair.show_fabric();
        Ok(pair)
    }

    /// Fabric clock edges so far: the pair's time.
    pub fn cycles(&self) -> u64 {
        self.fabric.cycles()
    }

    /// Card `port` as the host driver sees it (its SRAM window, its registers).
    pub fn card_mut(&mut self, port: u8) -> &mut Card<RtlCard> {
        &mut self.cards[usize::from(port)]
    }

    /// Bitmap of the fabric's member ports.
    pub fn membership(&mut self) -> u32 {
        self.fabric.membership()
    }

    /// What `port` received next, if anything.
    pub fn poll_delivery(&mut self, port: u8) -> Option<Delivery> {
        self.deliveries[usize::from(port)].pop_front()
    }

    /// Nothing waits to be offered to the fabric and no SRAM write awaits its
    /// acknowledgement (messages the fabric took may still be on their way).
    pub fn sent_all(&self) -> bool {
        self.traffic.outbox.iter().all(VecDeque::is_empty)
            && self.writes.iter().flatten().all(VecDeque::is_empty)
    }

    /// Words the fabric has presented on `target`'s SRAM port so far (each one a cycle of
    /// that card's fabric SRAM port).
    pub fn sram_words_presented(&self, target: u8) -> usize {
        self.traffic.sram_writes[usize::from(target)].len()
    }
}

// Sending: payloads into fabric messages.
impl RtlPair {
    /// Broadcasts `payload` from `from` (delivered to every member, `from` included).
    pub fn broadcast(&mut self, from: u8, payload: &[u8]) {
        self.send_payload(from, MessageKind::Broadcast, PORT_BROADCAST, payload);
    }

    /// Sends `payload` from `from` to `target` alone.
    pub fn unicast(&mut self, from: u8, target: u8, payload: &[u8]) {
        self.send_payload(from, MessageKind::Unicast, target, payload);
    }

    /// Writes `bytes` from `from` into `target`'s SRAM at `offset`, one word per message;
    /// [`Delivery::SramWriteAcked`] reaches `from` once all of it is there.
    pub fn sram_write(
        &mut self,
        from: u8,
        target: u8,
        offset: u32,
        bytes: &[u8],
    ) -> Result<(), PairError> {
        let whole_words = (offset as usize).is_multiple_of(WORD_BYTES)
            && bytes.len().is_multiple_of(WORD_BYTES)
            && !bytes.is_empty();
        let fits = u32::try_from(bytes.len())
            .ok()
            .and_then(|length| offset.checked_add(length))
            .is_some();
        if !whole_words || !fits {
            return Err(PairError::Unaligned {
                offset,
                length_bytes: bytes.len(),
            });
        }
        for (index, word) in bytes.chunks_exact(WORD_BYTES).enumerate() {
            self.traffic.outbox[usize::from(from)].push_back(Message {
                kind: MessageKind::SramWrite,
                target,
                payload: u64::from_le_bytes(word.try_into().expect("a whole word")),
                // Within u32: the whole write was checked to fit.
                sram_offset: offset + (index * WORD_BYTES) as u32,
            });
        }
        self.writes[usize::from(from)][usize::from(target)].push_back(WriteInFlight {
            offset,
            words_unacked: bytes.len() / WORD_BYTES,
        });
        Ok(())
    }

    /// The length word, then the bytes eight to a message, zero-padded.
    fn send_payload(&mut self, from: u8, kind: MessageKind, target: u8, payload: &[u8]) {
        let outbox = &mut self.traffic.outbox[usize::from(from)];
        let message = |word: u64| Message {
            kind,
            target,
            payload: word,
            sram_offset: 0,
        };
        outbox.push_back(message(payload.len() as u64));
        for chunk in payload.chunks(WORD_BYTES) {
            let mut word = [0; WORD_BYTES];
            word[..chunk.len()].copy_from_slice(chunk);
            outbox.push_back(message(u64::from_le_bytes(word)));
        }
    }

    /// Brings `port`'s link up: the fabric announces it with `MemberUp` to every member and
    /// to `port` itself, where `port`'s view of the order starts.
    pub fn raise_link(&mut self, port: u8) {
        self.traffic.link_up[usize::from(port)] = true;
    }

    /// Cuts the wires from the fabric's SRAM port `port` to its card: the fabric still
    /// presents and acknowledges writes, the card never sees them. For tests that show a
    /// check depends on the write reaching the card's SRAM.
    pub fn unwire_sram_port(&mut self, port: u8) {
        self.sram_port_wired[usize::from(port)] = false;
    }

    /// Takes `port`'s link down, as its card dying would: what it had not yet offered is
    /// lost, and the fabric announces its departure after what it took.
    pub fn drop_link(&mut self, port: u8) {
        let port = usize::from(port);
        self.traffic.link_up[port] = false;
        self.traffic.outbox[port].clear();
        self.writes[port].iter_mut().for_each(VecDeque::clear);
    }
}

// Stepping: one clock edge everywhere, then what it delivered.
impl RtlPair {
    /// One cycle of the fabric and both cards.
    pub fn cycle(&mut self) {
        self.fabric
            .cycle(&mut self.traffic, self.pacing, &mut self.rng);
        for port in 0..PAIR_PORTS {
            self.step_card(port);
        }
        self.show_fabric();
        for port in 0..PAIR_PORTS {
            self.take_deliveries(port);
        }
    }

    /// Card `port`'s clock edge, with the remote write the fabric presented this cycle.
    fn step_card(&mut self, port: usize) {
        let model = self.cards[port].backend_mut().model_mut();
        let presented = &self.traffic.sram_writes[port];
        if self.writes_seen[port] == presented.len() {
            model.step(1);
            return;
        }
        assert_eq!(
            self.writes_seen[port] + 1,
            presented.len(),
            "one SRAM write a cycle at most"
        );
        let write = presented[self.writes_seen[port]];
        assert_eq!(
            write.cycle + 1,
            self.fabric.cycles(),
            "a write of this cycle"
        );
        if self.sram_port_wired[port] {
            model.fabric_write(write.offset, write.data);
        } else {
            model.step(1);
        }
        self.writes_seen[port] += 1;
    }

    /// Shows each card the fabric's membership and its own link, when they change.
    fn show_fabric(&mut self) {
        let membership = self.fabric.membership();
        for (port, card) in self.cards.iter_mut().enumerate() {
            let state = (membership, self.traffic.link_up[port]);
            if self.shown[port] != state {
                self.shown[port] = state;
                let model = card.backend_mut().model_mut();
                model.set_fabric(port as u32, state.1, state.0);
            }
        }
    }

    fn take_deliveries(&mut self, port: usize) {
        while let Some(&delivered) = self.traffic.inbox[port].get(self.inbox_seen[port]) {
            self.inbox_seen[port] += 1;
            let source = delivered.source;
            let delivery = match MessageKind::from_u8(delivered.kind) {
                Some(MessageKind::MemberUp) => Some(Delivery::MemberUp {
                    port: source,
                    sequence: delivered.sequence,
                }),
                Some(MessageKind::MemberDown) => Some(self.departed(port, source)),
                Some(MessageKind::SramWriteAck) => self.acked(port, source),
                Some(kind @ (MessageKind::Broadcast | MessageKind::Unicast)) => {
                    self.assemble(port, source, kind, delivered.payload)
                }
                other => panic!("port {port} received a {other:?} the fabric does not make"),
            };
            self.deliveries[port].extend(delivery);
        }
    }

    /// `source` left: a payload it had not finished is lost, and so are the
    /// acknowledgements `port` awaited from it (the fabric voids them).
    fn departed(&mut self, port: usize, source: u8) -> Delivery {
        self.partial[port][usize::from(source)] = None;
        self.writes[port][usize::from(source)].clear();
        Delivery::MemberDown { port: source }
    }

    /// One word of a write from `port` is in `target`'s SRAM.
    fn acked(&mut self, port: usize, target: u8) -> Option<Delivery> {
        let in_flight = &mut self.writes[port][usize::from(target)];
        let oldest = in_flight
            .front_mut()
            .unwrap_or_else(|| panic!("port {port} got an ack from {target} for no write"));
        oldest.words_unacked -= 1;
        if oldest.words_unacked > 0 {
            return None;
        }
        let offset = oldest.offset;
        in_flight.pop_front();
        Some(Delivery::SramWriteAcked { target, offset })
    }

    /// One word of a payload from `source`; the whole payload once its last word came.
    fn assemble(
        &mut self,
        port: usize,
        source: u8,
        kind: MessageKind,
        word: u64,
    ) -> Option<Delivery> {
        let slot = &mut self.partial[port][usize::from(source)];
        let partial = match slot {
            None => slot.insert(Partial {
                kind,
                length_bytes: usize::try_from(word).expect("a length word"),
                payload: Vec::new(),
            }),
            Some(partial) => {
                assert_eq!(partial.kind, kind, "words of one payload share its kind");
                partial.payload.extend_from_slice(&word.to_le_bytes());
                partial
            }
        };
        if partial.payload.len() < partial.length_bytes {
            return None;
        }
        let mut done = slot.take().expect("inserted above");
        done.payload.truncate(done.length_bytes);
        Some(match done.kind {
            MessageKind::Broadcast => Delivery::Broadcast {
                from: source,
                payload: done.payload,
            },
            _ => Delivery::Unicast {
                from: source,
                payload: done.payload,
            },
        })
    }
}
