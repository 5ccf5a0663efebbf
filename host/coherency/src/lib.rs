//! amflink's coherency core: several AMFs serving one RAID-5/6 group at once.
//!
//! A deterministic state machine without I/O, in quinn-proto's style: the caller feeds
//! host requests ([`Amf::handle_request`]), fabric deliveries
//! ([`Amf::handle_broadcast`], [`Amf::handle_unicast`], [`Amf::handle_sram_ack`],
//! [`Amf::handle_member_down`], [`Amf::handle_member_up`]) and member I/O completions
//! ([`Amf::handle_member_completion`]), then drains what the core wants done:
//! [`Amf::poll_transmit`] (fabric broadcasts, unicasts and remote SRAM writes, strictly in
//! the order they were produced), [`Amf::poll_member_io`] (stripe reads and writes for the
//! RAID path) and [`Amf::poll_event`] (host completions). No clock, randomness, thread or
//! socket inside; every queue is bounded; asserts stay on.
//!
//! The protocol (`docs/PROTOCOL.md`): the stripe is the unit of ownership. An AMF that
//! already holds a stripe in the mode an operation needs runs it without a broadcast
//! (the sharing determination, claims 10, 11, 16). Otherwise it broadcasts an
//! [`Message::Acquire`]; in the fabric's total order every live peer sees it at the same
//! point, and each answers with one [`Message::Reply`] once it no longer conflicts:
//! dropping its copy for an exclusive acquire (write-invalidate, claims 3, 14) or
//! forwarding the requested blocks for a shared one (read search, claims 5-9). A write
//! places its intent record (`shared_regs::intent`) in every live peer's SRAM before any
//! member write and is acknowledged once durable (claims 1, 11, 15, 16); when an owner
//! dies, the oldest live AMF completes its recorded writes from the records.
#![forbid(unsafe_code)]

mod amf;
mod message;
mod ports;

pub use amf::{
    Amf, Config, Counters, Event, INCARNATIONS_MAX, LocalWrite, MemberOutcome, MemberRequest,
    MembershipEvent, Mutation, REBUILD_BATCH_STRIPES, RebuildRefusal, Request, RequestError, Sram,
    Transmit, id_incarnation,
};
pub use message::{
    DecodeError, Message, Mode, REPLACEMENT_PATH_BYTES_MAX, REPLY_DATA_BYTES_MAX, RebuildId,
    RebuildView,
};
pub use ports::PortSet;
