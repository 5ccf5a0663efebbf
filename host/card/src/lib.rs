//! amflink card interface (placeholder; filled by the card work).
#![deny(unsafe_code)]
