//! What the model tests share: a live block and the bytes it must still hold.

use mallocator::alloc::free;

pub struct Live {
    pub size: usize,
    pub fill: u8,
}

impl Live {
    /// Whether the block at `p` still holds its fill.
    pub fn intact(&self, p: usize) -> bool {
        // SAFETY: `p` is a live block of `self.size` bytes that the model filled.
        let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, self.size) };
        bytes.iter().all(|&b| b == self.fill)
    }
}

pub fn check_and_free(p: usize, live: &Live) {
    assert!(live.intact(p), "block {p:#x} lost its contents");
    // SAFETY: `p` is live and forgotten after this.
    unsafe { free(p as *mut u8) };
}
