//! Reporting a bad `free`: one line on standard error, built in a stack
//! buffer (reporting must not allocate), then either carry on or abort.

use crate::os;

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
    line.push(b"mallocator: ");
    line.push(kind.describe());
    line.push(b" of 0x");
    line.hex(addr as usize);
    if let Some(size) = block_size {
        line.push(b" (block of ");
        line.dec(size);
        line.push(b" bytes)");
    }
    line.push(b"; ignored\n");
    if crate::options::abort_on_error() {
        line.len -= b"; ignored\n".len();
        line.push(b"; aborting\n");
        os::write_stderr(line.as_bytes());
        // SAFETY: abort never returns and has no preconditions.
        unsafe { libc::abort() };
    }
    os::write_stderr(line.as_bytes());
}

/// A fixed buffer for one diagnostic line; text past its end is dropped.
struct Line {
    buf: [u8; 160],
    len: usize,
}

impl Line {
    fn new() -> Self {
        Self { buf: [0; 160], len: 0 }
    }

    fn push(&mut self, s: &[u8]) {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
    }

    fn hex(&mut self, v: usize) {
        let mut digits = [0u8; 16];
        let mut n = 0;
        let mut v = v;
        loop {
            digits[n] = b"0123456789abcdef"[v & 15];
            n += 1;
            v >>= 4;
            if v == 0 {
                break;
            }
        }
        digits[..n].reverse();
        self.push(&digits[..n]);
    }

    fn dec(&mut self, v: usize) {
        let mut digits = [0u8; 20];
        let mut n = 0;
        let mut v = v;
        loop {
            digits[n] = b'0' + (v % 10) as u8;
            n += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        digits[..n].reverse();
        self.push(&digits[..n]);
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_hex_and_decimal() {
        let mut l = Line::new();
        l.hex(0xdead_beef);
        l.push(b" ");
        l.dec(1234);
        l.push(b" ");
        l.hex(0);
        assert_eq!(l.as_bytes(), b"deadbeef 1234 0");
    }

    #[test]
    fn long_lines_are_cut_not_overflowed() {
        let mut l = Line::new();
        for _ in 0..100 {
            l.push(b"abcdef");
        }
        assert_eq!(l.as_bytes().len(), 160);
    }
}
