//! Text output without allocation: a line built in a stack buffer, for
//! diagnostics and the statistics table (both run where `malloc` may not).

/// Longest line: a statistics row, a diagnostic or a leak report frame (a
/// symbol and a library path) fits.
const LINE_MAX: usize = 256;

/// A fixed buffer for one line; text past its end is dropped.
pub struct Line {
    buf: [u8; LINE_MAX],
    len: usize,
}

impl Line {
    pub fn new() -> Self {
        Self { buf: [0; LINE_MAX], len: 0 }
    }

    pub fn push(&mut self, s: &[u8]) -> &mut Self {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
        self
    }

    pub fn hex(&mut self, v: usize) -> &mut Self {
        let mut digits = [0u8; 20];
        let n = Self::digits(v as u64, 16, &mut digits);
        self.push(&digits[..n])
    }

    pub fn dec(&mut self, v: u64) -> &mut Self {
        let mut digits = [0u8; 20];
        let n = Self::digits(v, 10, &mut digits);
        self.push(&digits[..n])
    }

    /// A decimal right-aligned in `width` columns.
    pub fn dec_width(&mut self, v: u64, width: usize) -> &mut Self {
        let mut digits = [0u8; 20];
        let n = Self::digits(v, 10, &mut digits);
        for _ in n..width {
            self.push(b" ");
        }
        self.push(&digits[..n])
    }

    /// Writes `v` in `base` into `out`, most significant digit first.
    fn digits(mut v: u64, base: u64, out: &mut [u8; 20]) -> usize {
        let mut n = 0;
        loop {
            out[n] = b"0123456789abcdef"[(v % base) as usize];
            n += 1;
            v /= base;
            if v == 0 {
                break;
            }
        }
        out[..n].reverse();
        n
    }

    /// Ends the line with a newline, over its last byte if it is full.
    pub fn newline(&mut self) -> &mut Self {
        if self.len == self.buf.len() {
            self.len -= 1;
        }
        self.push(b"\n")
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Writes the line to a file descriptor.
    pub fn write_to(&self, fd: i32) {
        crate::sys::errno::write_fd(fd, self.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_hex_and_decimal() {
        let mut l = Line::new();
        l.hex(0xdead_beef).push(b" ").dec(1234).push(b" ").hex(0).push(b"|").dec_width(42, 5);
        assert_eq!(l.as_bytes(), b"deadbeef 1234 0|   42");
    }

    #[test]
    fn long_lines_are_cut_not_overflowed() {
        let mut l = Line::new();
        for _ in 0..100 {
            l.push(b"abcdef");
        }
        assert_eq!(l.as_bytes().len(), LINE_MAX);
    }
}
