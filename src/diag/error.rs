//! Reporting a bad pointer given to `free`, `realloc` or
//! `malloc_usable_size`: one line on standard error, built in a stack buffer
//! (reporting must not allocate), then either carry on or abort.

use crate::diag::text::Line;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misuse {
    /// The block is already free.
    DoubleFree,
    /// The pointer is not in memory of this allocator.
    Foreign,
    /// The pointer is in our memory but not at the start of a live block.
    Interior,
}

/// The call that was given the bad pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Free,
    Realloc,
    UsableSize,
}

impl Op {
    fn name(self) -> &'static [u8] {
        match self {
            Op::Free => b"free",
            Op::Realloc => b"realloc",
            Op::UsableSize => b"malloc_usable_size",
        }
    }
}

/// Reports a misuse of `addr` by `op`; `block_size` is the block size where
/// known. For example `mallocator: double free of 0x...`, `mallocator:
/// invalid realloc (foreign pointer) of 0x...`.
#[cold]
pub fn report(kind: Misuse, op: Op, addr: *const u8, block_size: Option<usize>) {
    let mut line = Line::new();
    line.push(b"mallocator: ");
    match (kind, op) {
        (Misuse::DoubleFree, Op::Free) => line.push(b"double free"),
        (Misuse::DoubleFree, _) => line.push(op.name()).push(b" of a freed block"),
        (Misuse::Foreign, _) => line.push(b"invalid ").push(op.name()).push(b" (foreign pointer)"),
        (Misuse::Interior, _) => line.push(b"invalid ").push(op.name()).push(b" (interior or unallocated pointer)"),
    };
    line.push(b" of 0x").hex(addr as usize);
    if let Some(size) = block_size {
        line.push(b" (block of ").dec(size as u64).push(b" bytes)");
    }
    if crate::diag::options::abort_on_error() {
        line.push(b"; aborting\n").write_to(2);
        // SAFETY: abort never returns and has no preconditions.
        unsafe { libc::abort() };
    }
    line.push(b"; ignored\n").write_to(2);
}

/// Reports a free block that was written after it was freed (its link leads
/// outside the page's free blocks, or outside a heap's posted blocks: `what`
/// says which) and aborts: the list can no longer be trusted.
#[cold]
#[inline(never)]
pub fn corrupted(addr: *const u8, what: &[u8]) -> ! {
    Line::new()
        .push(b"mallocator: heap corruption at 0x")
        .hex(addr as usize)
        .push(b" (")
        .push(what)
        .push(b": use after free?); aborting\n")
        .write_to(2);
    // SAFETY: abort never returns and has no preconditions.
    unsafe { libc::abort() }
}

/// Reports a pointer that a block check refused.
#[cold]
#[inline(never)]
pub fn report_bad(bad: BadBlock, op: Op, p: *const u8, block_size: Option<usize>) {
    let kind = match bad {
        BadBlock::DoubleFree => Misuse::DoubleFree,
        BadBlock::Invalid => Misuse::Interior,
    };
    report(kind, op, p, block_size);
}

/// Why a pointer into a small segment is not a live block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadBlock {
    /// The block is on a free list already.
    DoubleFree,
    /// The pointer is not the start of a block that was ever handed out.
    Invalid,
}
