//! Function names for the leak report, read in the process from the ELF
//! symbol tables of the mapped files (`.symtab`, else `.dynsym`), without
//! allocating: the file is mapped read-only, searched, and unmapped. Names
//! only; lines and inlined frames are `mallocator-prof`'s job (DWARF), on the
//! profile file.

use super::maps::Mapping;
use crate::diag::text::Line;

/// Appends `name+0xoff (path)` for the code address `addr` of mapping `m`,
/// or `0xaddr (path+0xoff)` when no symbol covers it.
pub fn describe(line: &mut Line, addr: usize, m: &Mapping) {
    let offset = addr - m.start + m.offset;
    let mut found = false;
    with_file(m.path, |elf| {
        if let Some((name, off)) = elf.and_then(|e| lookup(e, offset)) {
            line.push(name).push(b"+0x").hex(off);
            found = true;
        }
    });
    if found {
        line.push(b" (").push(m.path).push(b")");
    } else {
        line.push(b"0x").hex(addr).push(b" (").push(m.path).push(b"+0x").hex(offset).push(b")");
    }
}

/// Calls `f` with the file's bytes mapped, or None if it cannot be read.
fn with_file(path: &[u8], f: impl FnOnce(Option<&[u8]>)) {
    let mut cpath = [0u8; 4096];
    if path.len() >= cpath.len() {
        return f(None);
    }
    cpath[..path.len()].copy_from_slice(path);
    // SAFETY: `cpath` is NUL-terminated; the descriptor is closed below and
    // the mapping unmapped after `f`, which cannot keep the slice.
    unsafe {
        let fd = libc::syscall(libc::SYS_openat, libc::AT_FDCWD, cpath.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC)
            as libc::c_int;
        if fd < 0 {
            return f(None);
        }
        let mut st: libc::stat = core::mem::zeroed();
        let size = if libc::fstat(fd, &mut st) == 0 { st.st_size as usize } else { 0 };
        let p = if size == 0 {
            libc::MAP_FAILED
        } else {
            libc::mmap(core::ptr::null_mut(), size, libc::PROT_READ, libc::MAP_PRIVATE, fd, 0)
        };
        libc::syscall(libc::SYS_close, fd);
        if p == libc::MAP_FAILED {
            return f(None);
        }
        f(Some(core::slice::from_raw_parts(p.cast::<u8>(), size)));
        libc::munmap(p, size);
    }
}

/// Reads little-endian integers of an ELF file of either class, bounds
/// checked (a truncated or odd file gives None, never a fault).
struct Elf<'a> {
    data: &'a [u8],
    wide: bool,
}

impl Elf<'_> {
    fn int(&self, at: usize, bytes: usize) -> Option<usize> {
        let b = self.data.get(at..at.checked_add(bytes)?)?;
        Some(b.iter().rev().fold(0usize, |v, &x| v << 8 | x as usize))
    }

    /// A field that is 4 bytes in ELF32 and 8 in ELF64, at either offset.
    fn word(&self, at32: usize, at64: usize) -> Option<usize> {
        if self.wide { self.int(at64, 8) } else { self.int(at32, 4) }
    }
}

/// The function symbol covering file offset `offset`: its name and the
/// offset into it.
fn lookup(data: &[u8], offset: usize) -> Option<(&[u8], usize)> {
    if data.get(..4)? != b"\x7fELF" {
        return None;
    }
    let e = Elf { data, wide: *data.get(4)? == 2 };
    let vaddr = vaddr_of(&e, offset)?;
    let shoff = e.word(0x20, 0x28)?;
    let (shentsize, shnum) =
        if e.wide { (e.int(0x3a, 2)?, e.int(0x3c, 2)?) } else { (e.int(0x2e, 2)?, e.int(0x30, 2)?) };
    let section = |i: usize| shoff + i * shentsize;
    // `.symtab` (2) names static functions too; stripped files keep `.dynsym` (11).
    for wanted in [2, 11] {
        for i in 0..shnum {
            let sh = section(i);
            if e.int(sh + 4, 4)? != wanted {
                continue;
            }
            let (off, size) = (e.word(sh + 0x10, sh + 0x18)?, e.word(sh + 0x14, sh + 0x20)?);
            let link = if e.wide { e.int(sh + 0x28, 4)? } else { e.int(sh + 0x18, 4)? };
            let strtab = e.word(section(link) + 0x10, section(link) + 0x18)?;
            if let Some(hit) = nearest_function(&e, off, size, strtab, vaddr) {
                return Some(hit);
            }
        }
    }
    None
}

/// The virtual address of file offset `offset`, from the loadable segments.
fn vaddr_of(e: &Elf, offset: usize) -> Option<usize> {
    let phoff = e.word(0x1c, 0x20)?;
    let (phentsize, phnum) =
        if e.wide { (e.int(0x36, 2)?, e.int(0x38, 2)?) } else { (e.int(0x2a, 2)?, e.int(0x2c, 2)?) };
    (0..phnum).find_map(|i| {
        let ph = phoff + i * phentsize;
        let is_load = e.int(ph, 4)? == 1;
        let (p_offset, p_vaddr, p_filesz) = if e.wide {
            (e.int(ph + 8, 8)?, e.int(ph + 16, 8)?, e.int(ph + 32, 8)?)
        } else {
            (e.int(ph + 4, 4)?, e.int(ph + 8, 4)?, e.int(ph + 16, 4)?)
        };
        (is_load && (p_offset..p_offset + p_filesz).contains(&offset)).then(|| offset - p_offset + p_vaddr)
    })
}

/// The function symbol of the table at `off` (`size` bytes) that covers
/// `vaddr`, or else the nearest one below it.
fn nearest_function<'a>(
    e: &Elf<'a>,
    off: usize,
    size: usize,
    strtab: usize,
    vaddr: usize,
) -> Option<(&'a [u8], usize)> {
    let entsize = if e.wide { 24 } else { 16 };
    let mut best: Option<(usize, usize, bool)> = None; // (value, name, covers)
    for s in (off..off + size).step_by(entsize) {
        let (value, sym_size, info, shndx) = if e.wide {
            (e.int(s + 8, 8)?, e.int(s + 16, 8)?, e.int(s + 4, 1)?, e.int(s + 6, 2)?)
        } else {
            (e.int(s + 4, 4)?, e.int(s + 8, 4)?, e.int(s + 12, 1)?, e.int(s + 14, 2)?)
        };
        // STT_FUNC, defined here, at or below the address.
        if info & 0xf != 2 || shndx == 0 || value > vaddr {
            continue;
        }
        let covers = vaddr < value + sym_size;
        if best.is_none_or(|(v, _, c)| (covers && !c) || (covers == c && value > v)) {
            best = Some((value, e.int(s, 4)?, covers));
        }
    }
    let (value, name, _) = best?;
    let start = strtab + name;
    let len = e.data.get(start..)?.iter().position(|&c| c == 0)?;
    Some((&e.data[start..start + len], vaddr - value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiler::maps::Maps;

    #[inline(never)]
    fn a_function_to_find() -> usize {
        a_function_to_find as fn() -> usize as usize
    }

    #[test]
    fn names_a_function_of_this_binary() {
        let addr = a_function_to_find() + 1;
        let maps = Maps::read().unwrap();
        let (_, m) = maps.find(addr).unwrap();
        let mut line = Line::new();
        describe(&mut line, addr, &m);
        let text = core::str::from_utf8(line.as_bytes()).unwrap();
        assert!(text.contains("a_function_to_find") && text.contains("+0x1 ("), "{text}");
    }
}
