//! The process's mappings, from `/proc/self/maps`: where each code address
//! came from (file and offset), for the profile's mapping table, for the leak
//! report's symbols, and to tell the allocator's own frames from the caller's.
//! Read into a scratch mapping, since nothing here may allocate.

use crate::os::{self, OS_PAGE};

/// A text of the whole file, kept while a profile is written.
pub struct Maps {
    buf: *mut u8,
    cap: usize,
    len: usize,
}

/// One line: an executable mapping of a file.
#[derive(Clone, Copy)]
pub struct Mapping<'a> {
    pub start: usize,
    pub end: usize,
    pub offset: usize,
    pub path: &'a [u8],
}

/// The first read: 64 KiB holds the maps of most processes (about 70 bytes
/// a line); it doubles as needed.
const FIRST_CAP: usize = 16 * OS_PAGE;

impl Maps {
    /// Reads the file; None if it cannot be read (no /proc) or no memory.
    pub fn read() -> Option<Maps> {
        // SAFETY: the path is a NUL-terminated static string.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat,
                libc::AT_FDCWD,
                c"/proc/self/maps".as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        } as libc::c_int;
        if fd < 0 {
            return None;
        }
        let mut maps = Maps { buf: os::map_aligned(FIRST_CAP, OS_PAGE), cap: FIRST_CAP, len: 0 };
        let ok = !maps.buf.is_null() && maps.fill(fd);
        // SAFETY: `fd` was opened above.
        unsafe { libc::syscall(libc::SYS_close, fd) };
        ok.then_some(maps)
    }

    fn fill(&mut self, fd: libc::c_int) -> bool {
        loop {
            if self.len == self.cap {
                let bigger = os::map_aligned(self.cap * 2, OS_PAGE);
                if bigger.is_null() {
                    return false;
                }
                // SAFETY: both mappings are ours and hold `len` bytes.
                unsafe {
                    core::ptr::copy_nonoverlapping(self.buf, bigger, self.len);
                    os::unmap(self.buf, self.cap);
                }
                self.buf = bigger;
                self.cap *= 2;
            }
            // SAFETY: the buffer has `cap - len` bytes free.
            let n = unsafe { libc::syscall(libc::SYS_read, fd, self.buf.add(self.len), self.cap - self.len) };
            match n {
                0 => return true,
                n if n < 0 => return false,
                n => self.len += n as usize,
            }
        }
    }

    fn text(&self) -> &[u8] {
        // SAFETY: the buffer holds `len` bytes read from the file.
        unsafe { core::slice::from_raw_parts(self.buf, self.len) }
    }

    /// The executable mappings of files, in address order.
    pub fn code(&self) -> impl Iterator<Item = Mapping<'_>> {
        self.text().split(|&c| c == b'\n').filter_map(parse)
    }

    /// The mapping holding `addr`, and its number (from 1) in [`Self::code`].
    pub fn find(&self, addr: usize) -> Option<(usize, Mapping<'_>)> {
        self.code().enumerate().find(|(_, m)| (m.start..m.end).contains(&addr)).map(|(i, m)| (i + 1, m))
    }
}

impl Drop for Maps {
    fn drop(&mut self) {
        // SAFETY: the buffer is a mapping of ours, no longer used.
        unsafe { os::unmap(self.buf, self.cap) };
    }
}

/// `start-end perms offset dev inode path`, if executable and of a file.
fn parse(line: &[u8]) -> Option<Mapping<'_>> {
    let mut fields = line.splitn(6, |&c| c == b' ');
    let (range, perms, offset) = (fields.next()?, fields.next()?, fields.next()?);
    let path = fields.nth(2)?.trim_ascii_start();
    if perms.get(2) != Some(&b'x') || !path.starts_with(b"/") {
        return None;
    }
    let dash = range.iter().position(|&c| c == b'-')?;
    Some(Mapping { start: hex(&range[..dash])?, end: hex(&range[dash + 1..])?, offset: hex(offset)?, path })
}

fn hex(s: &[u8]) -> Option<usize> {
    s.iter().try_fold(0usize, |v, &c| Some(v.checked_mul(16)? + (c as char).to_digit(16)? as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_code_lines_only() {
        let m = parse(b"7f12a000-7f12c000 r-xp 00002000 fd:01 1234     /usr/lib/libc.so.6").unwrap();
        assert_eq!((m.start, m.end, m.offset, m.path), (0x7f12a000, 0x7f12c000, 0x2000, &b"/usr/lib/libc.so.6"[..]));
        assert!(parse(b"7f12a000-7f12c000 rw-p 00000000 00:00 0 ").is_none());
        assert!(parse(b"7ffd000-7ffe000 r-xp 00000000 00:00 0                          [vdso]").is_none());
        assert!(parse(b"7f12a000-7f12c000 r--p 00000000 fd:01 1234 /usr/lib/libc.so.6").is_none());
    }

    #[test]
    fn finds_this_function() {
        let maps = Maps::read().expect("/proc/self/maps");
        let here = finds_this_function as fn() as usize;
        let (id, m) = maps.find(here).expect("our code is mapped");
        assert!(id >= 1 && m.path.starts_with(b"/") && (m.start..m.end).contains(&here));
    }
}
