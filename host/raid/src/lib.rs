//! amflink's RAID core (placeholder; filled by the RAID core work).
#![forbid(unsafe_code)]
