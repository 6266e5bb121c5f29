//! Reporting a bad `free`: one line on standard error, built in a stack
//! buffer (reporting must not allocate), then either carry on or abort.

use crate::text::Line;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misuse {
    /// The block is already free.
    DoubleFree,
    /// The pointer is not in memory of this allocator.
    Foreign,
    /// The pointer is in our memory but not at the start of a live block.
    Interior,
}

impl Misuse {
    fn describe(self) -> &'static [u8] {
        match self {
            Misuse::DoubleFree => b"double free",
            Misuse::Foreign => b"invalid free (foreign pointer)",
            Misuse::Interior => b"invalid free (interior or unallocated pointer)",
        }
    }
}

/// Reports a misuse of `addr`; `block_size` is the block size where known.
#[cold]
pub fn report(kind: Misuse, addr: *const u8, block_size: Option<usize>) {
    let mut line = Line::new();
    line.push(b"mallocator: ").push(kind.describe()).push(b" of 0x").hex(addr as usize);
    if let Some(size) = block_size {
        line.push(b" (block of ").dec(size as u64).push(b" bytes)");
    }
    if crate::options::abort_on_error() {
        line.push(b"; aborting\n").write_to(2);
        // SAFETY: abort never returns and has no preconditions.
        unsafe { libc::abort() };
    }
    line.push(b"; ignored\n").write_to(2);
}

/// Reports a free block that was written after it was freed (its marker or
/// link is gone) and aborts: the free list can no longer be trusted.
#[cold]
#[inline(never)]
pub fn corrupted(addr: *const u8) -> ! {
    Line::new()
        .push(b"mallocator: heap corruption at 0x")
        .hex(addr as usize)
        .push(b" (free block overwritten: use after free?); aborting\n")
        .write_to(2);
    // SAFETY: abort never returns and has no preconditions.
    unsafe { libc::abort() }
}
