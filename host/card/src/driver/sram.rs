//! SRAM access through the BAR0 window.
//!
//! The window shows [`SRAM_WINDOW_BYTES`] of SRAM at [`regs::SRAM_WINDOW_OFFSET`]; which
//! page is chosen with [`regs::SRAM_WINDOW_SELECT`]. The driver pages through it and moves
//! each page's part of a range with one [`CardBackend::window_write`] /
//! [`CardBackend::window_read`]: on the sim one copy, on a backend without a bulk path the
//! per-register sequence the trait defines (aligned 8-byte accesses for the body, 4-byte
//! ones at the edges, and a read-modify-write of the one word a range shares with its
//! neighbour at an unaligned edge, not atomic against a peer writing the other bytes of
//! that word: callers that share SRAM with peers keep their records 4-byte aligned).
//!
//! The page is selected afresh by every call, so nothing cached in the driver can go stale
//! after a reset.

use super::{Card, CardError, backend_error};
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
            let name = self.backend_name;
            self.backend
                .window_read(window_offset, &mut target[done..done + in_page])
                .map_err(backend_error(name, "reading the SRAM window"))?;
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
            let name = self.backend_name;
            self.backend
                .window_write(window_offset, &source[done..done + in_page])
                .map_err(backend_error(name, "writing the SRAM window"))?;
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
}
