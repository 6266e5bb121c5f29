//! A gzip stream of *stored* deflate blocks (RFC 1951 §3.2.4, RFC 1952):
//! every reader accepts it, and it needs neither a compressor nor memory
//! beyond one block's buffer. A profile is a few hundred kilobytes at most;
//! `gzip -9` on it afterwards is the user's choice.

use crate::os::{self, OS_PAGE};

/// Largest stored block (its length field has 16 bits).
const BLOCK: usize = 65535;
const BUF_CAP: usize = 16 * OS_PAGE;
const _: () = assert!(BUF_CAP > BLOCK);

pub struct Gzip {
    fd: libc::c_int,
    buf: *mut u8,
    len: usize,
    crc: u32,
    size: u32,
    crc_table: [u32; 256],
    failed: bool,
}

impl Gzip {
    /// Starts a stream into `fd`; None if no buffer could be mapped.
    pub fn new(fd: libc::c_int) -> Option<Gzip> {
        let buf = os::map_aligned(BUF_CAP, OS_PAGE);
        if buf.is_null() {
            return None;
        }
        let mut crc_table = [0u32; 256];
        for (n, slot) in crc_table.iter_mut().enumerate() {
            *slot = (0..8).fold(n as u32, |c, _| if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 });
        }
        let mut gz = Gzip { fd, buf, len: 0, crc: !0, size: 0, crc_table, failed: false };
        // Magic, deflate, no flags, no time, no extra flags, OS "unknown".
        gz.raw(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
        Some(gz)
    }

    /// Appends uncompressed bytes.
    pub fn write(&mut self, mut bytes: &[u8]) {
        for &b in bytes {
            self.crc = self.crc_table[((self.crc ^ b as u32) & 0xff) as usize] ^ (self.crc >> 8);
        }
        self.size = self.size.wrapping_add(bytes.len() as u32);
        while !bytes.is_empty() {
            let n = bytes.len().min(BLOCK - self.len);
            // SAFETY: the buffer holds BUF_CAP > BLOCK bytes; `len + n <= BLOCK`.
            unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), self.buf.add(self.len), n) };
            self.len += n;
            bytes = &bytes[n..];
            if self.len == BLOCK {
                self.block(false);
            }
        }
    }

    /// Ends the stream; false if any write failed.
    pub fn finish(mut self) -> bool {
        self.block(true);
        let (crc, size) = (!self.crc, self.size);
        self.raw(&crc.to_le_bytes());
        self.raw(&size.to_le_bytes());
        !self.failed
    }

    /// Writes the buffered bytes as one stored block.
    fn block(&mut self, last: bool) {
        let len = self.len as u16;
        let mut head = [u8::from(last), 0, 0, 0, 0];
        head[1..3].copy_from_slice(&len.to_le_bytes());
        head[3..5].copy_from_slice(&(!len).to_le_bytes());
        self.raw(&head);
        // SAFETY: the buffer holds `len` bytes.
        let data = unsafe { core::slice::from_raw_parts(self.buf, self.len) };
        self.failed |= !write_all(self.fd, data);
        self.len = 0;
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.failed |= !write_all(self.fd, bytes);
    }
}

impl Drop for Gzip {
    fn drop(&mut self) {
        // SAFETY: the buffer is our mapping, no longer used.
        unsafe { os::unmap(self.buf, BUF_CAP) };
    }
}

/// `write` until done (a pipe or a signal may cut it short); false on error.
fn write_all(fd: libc::c_int, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        // SAFETY: the slice is valid for its length.
        let n = unsafe { libc::syscall(libc::SYS_write, fd, bytes.as_ptr(), bytes.len()) };
        if n < 0 {
            // SAFETY: reads this thread's errno.
            if unsafe { *libc::__errno_location() } == libc::EINTR {
                continue;
            }
            return false;
        }
        bytes = &bytes[n as usize..];
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn gunzip_reads_it_back() {
        let path = std::env::temp_dir().join(format!("mallocator-gzip-{}.gz", std::process::id()));
        let file = std::fs::File::create(&path).unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut gz = Gzip::new(file.as_raw_fd()).unwrap();
        gz.write(&data[..10]);
        gz.write(&data[10..]);
        assert!(gz.finish());
        drop(file);
        let out = std::process::Command::new("gzip").arg("-dc").arg(&path).output().unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(out.status.success(), "gzip -d failed: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.stdout, data);
    }
}
