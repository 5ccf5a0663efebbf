//! SRAM access through the BAR0 window.
//!
//! The window shows [`SRAM_WINDOW_BYTES`] of SRAM at [`regs::SRAM_WINDOW_OFFSET`]; which
//! page is chosen with [`regs::SRAM_WINDOW_SELECT`]. The driver pages through it: aligned
//! 8-byte accesses for the body of a range, 4-byte ones at its edges, and a
//! read-modify-write of the one word a range shares with its neighbour at an unaligned
//! edge (not atomic against a peer writing the other bytes of that word: callers that
//! share SRAM with peers keep their records 4-byte aligned).
//!
//! The page is selected afresh by every call, so nothing cached in the driver can go stale
//! after a reset.

use super::{Card, CardError};
use crate::backend::CardBackend;
use shared_regs::limits::SRAM_WINDOW_BYTES;
use shared_regs::regs;

const WINDOW_BYTES: u64 = SRAM_WINDOW_BYTES as u64;

impl<B: CardBackend> Card<B> {
    /// Copies `target.len()` bytes of SRAM starting at `offset` into `target`.
    pub fn sram_read(&mut self, offset: u64, target: &mut [u8]) -> Result<(), CardError> {
        self.check_sram_range(offset, target.len())?;
        let mut done = 0usize;
        while done < target.len() {
            let (window_offset, in_page) =
                self.select_page(offset + done as u64, target.len() - done)?;
            self.window_read(window_offset, &mut target[done..done + in_page])?;
            done += in_page;
        }
        self.check_error()
    }

    /// Copies `source` into SRAM starting at `offset`.
    pub fn sram_write(&mut self, offset: u64, source: &[u8]) -> Result<(), CardError> {
        self.check_sram_range(offset, source.len())?;
        let mut done = 0usize;
        while done < source.len() {
            let (window_offset, in_page) =
                self.select_page(offset + done as u64, source.len() - done)?;
            self.window_write(window_offset, &source[done..done + in_page])?;
            done += in_page;
        }
        self.check_error()
    }

    fn check_sram_range(&self, offset: u64, length: usize) -> Result<(), CardError> {
        let sram_bytes = self.identity.sram_bytes;
        let fits = offset
            .checked_add(length as u64)
            .is_some_and(|end| end <= sram_bytes);
        if fits {
            Ok(())
        } else {
            Err(CardError::SramOutOfRange {
                offset,
                length_bytes: length as u64,
                sram_bytes,
            })
        }
    }

    /// Points the window at the page holding `address`; returns the window offset of
    /// `address` and how many of `remaining` bytes lie in that page.
    fn select_page(&mut self, address: u64, remaining: usize) -> Result<(u32, usize), CardError> {
        let page = u32::try_from(address / WINDOW_BYTES).expect("SRAM_BYTES_MAX bounds the page");
        let within = (address % WINDOW_BYTES) as u32;
        self.registers().write32(
            regs::SRAM_WINDOW_SELECT,
            page,
            "selecting the SRAM window page",
        )?;
        let in_page = remaining.min((WINDOW_BYTES - u64::from(within)) as usize);
        assert!(in_page > 0);
        Ok((within, in_page))
    }

    /// Reads `target.len()` bytes at `within` of the current window page.
    fn window_read(&mut self, within: u32, target: &mut [u8]) -> Result<(), CardError> {
        let end = within as usize + target.len();
        let mut position = within as usize;
        while position < end {
            let word_start = position & !3;
            if position.is_multiple_of(8) && end - position >= 8 {
                let value = self
                    .registers()
                    .read64(window(position), "reading the SRAM window")?;
                target[position - within as usize..][..8].copy_from_slice(&value.to_le_bytes());
                position += 8;
                continue;
            }
            let word = self
                .registers()
                .read32(window(word_start), "reading the SRAM window")?
                .to_le_bytes();
            let word_end = (word_start + 4).min(end);
            target[position - within as usize..word_end - within as usize]
                .copy_from_slice(&word[position - word_start..word_end - word_start]);
            position = word_end;
        }
        Ok(())
    }

    /// Writes `source` at `within` of the current window page.
    fn window_write(&mut self, within: u32, source: &[u8]) -> Result<(), CardError> {
        let end = within as usize + source.len();
        let mut position = within as usize;
        while position < end {
            let word_start = position & !3;
            let from = &source[position - within as usize..];
            if position.is_multiple_of(8) && end - position >= 8 {
                let value = u64::from_le_bytes(from[..8].try_into().expect("8 bytes"));
                self.registers()
                    .write64(window(position), value, "writing the SRAM window")?;
                position += 8;
                continue;
            }
            let word_end = (word_start + 4).min(end);
            let mut word = if position == word_start && word_end == word_start + 4 {
                [0u8; 4]
            } else {
                // A partial word: keep the bytes outside the range.
                self.registers()
                    .read32(window(word_start), "reading the SRAM window")?
                    .to_le_bytes()
            };
            word[position - word_start..word_end - word_start]
                .copy_from_slice(&from[..word_end - position]);
            self.registers().write32(
                window(word_start),
                u32::from_le_bytes(word),
                "writing the SRAM window",
            )?;
            position = word_end;
        }
        Ok(())
    }
}

/// BAR0 offset of byte `within` of the window.
fn window(within: usize) -> u32 {
    debug_assert!(within < SRAM_WINDOW_BYTES as usize);
    regs::SRAM_WINDOW_OFFSET + within as u32
}
