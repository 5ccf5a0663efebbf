//! Placeholder: replaced by the ISA-L FFI.
#![deny(unsafe_code)]
