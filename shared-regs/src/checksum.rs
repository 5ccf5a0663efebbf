//! The one checksum used by every self-checking structure (fabric frames, intent
//! records, superblocks): CRC-32C (Castagnoli), computed over the whole structure with its
//! own checksum field taken as zero.

/// CRC-32C of `bytes` where the four bytes at `field_offset` count as zero.
///
/// Computing over the structure with the field zeroed (instead of over "everything but
/// the field") lets hardware stream the structure once, substituting zeros on the fly.
///
/// # Panics
/// Never for well-formed callers: `field_offset + 4` must lie within `bytes`; callers pass
/// a structure's own `offset_of!` constant, so a violation is a programming error and is
/// asserted.
pub fn crc32c_with_zeroed_field(bytes: &[u8], field_offset: usize) -> u32 {
    assert!(
        field_offset + 4 <= bytes.len(),
        "checksum field outside structure"
    );
    let before = crc32c::crc32c(&bytes[..field_offset]);
    let zeroed = crc32c::crc32c_append(before, &[0u8; 4]);
    crc32c::crc32c_append(zeroed, &bytes[field_offset + 4..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_field_equals_crc_of_copy_with_zeros() {
        let mut bytes: Vec<u8> = (0..100u8).collect();
        let with_field = crc32c_with_zeroed_field(&bytes, 40);
        bytes[40..44].fill(0);
        assert_eq!(with_field, crc32c::crc32c(&bytes));
    }

    #[test]
    fn field_content_does_not_change_checksum() {
        let mut bytes = vec![7u8; 64];
        let first = crc32c_with_zeroed_field(&bytes, 60);
        bytes[60..64].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(first, crc32c_with_zeroed_field(&bytes, 60));
        bytes[0] ^= 1;
        assert_ne!(first, crc32c_with_zeroed_field(&bytes, 60));
    }
}
