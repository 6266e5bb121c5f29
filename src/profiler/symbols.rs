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

/// Longest build id written: GNU ld's are 20 bytes (SHA-1), `--build-id=0x…`
/// allows any length; longer ones are left out.
const BUILD_ID_MAX: usize = 32;
/// Room for a build id in hex.
pub const BUILD_ID_HEX: usize = 2 * BUILD_ID_MAX;

/// The file's GNU build id (`.note.gnu.build-id`) in hex, in `out`; empty
/// if it has none or cannot be read.
pub fn build_id<'a>(path: &[u8], out: &'a mut [u8; BUILD_ID_HEX]) -> &'a [u8] {
    let mut len = 0;
    with_file(path, |data| {
        let Some(id) = data.and_then(gnu_build_id) else { return };
        if id.len() <= BUILD_ID_MAX {
            for (pair, &b) in out.chunks_exact_mut(2).zip(id) {
                pair.copy_from_slice(&[HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
            }
            len = 2 * id.len();
        }
    });
    &out[..len]
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The descriptor of the `NT_GNU_BUILD_ID` note in a `PT_NOTE` segment.
fn gnu_build_id(data: &[u8]) -> Option<&[u8]> {
    let e = Elf::new(data)?;
    let (phoff, phentsize, phnum) = e.program_headers()?;
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        // PT_NOTE; its file offset and size are the 2nd and 5th words.
        if e.int(ph, 4)? != 4 {
            continue;
        }
        let (mut at, size) =
            if e.wide { (e.int(ph + 8, 8)?, e.int(ph + 32, 8)?) } else { (e.int(ph + 4, 4)?, e.int(ph + 16, 4)?) };
        let end = at.checked_add(size)?;
        // Notes: name size, descriptor size, type, then name and
        // descriptor, each padded to 4 bytes.
        while at + 12 <= end {
            let (namesz, descsz, kind) = (e.int(at, 4)?, e.int(at + 4, 4)?, e.int(at + 8, 4)?);
            let name = at + 12;
            let desc = name + namesz.next_multiple_of(4);
            if kind == NT_GNU_BUILD_ID && data.get(name..name + namesz)? == b"GNU\0" {
                return data.get(desc..desc.checked_add(descsz)?);
            }
            at = desc + descsz.next_multiple_of(4);
        }
    }
    None
}

/// `elf.h`'s note type of the build id.
const NT_GNU_BUILD_ID: usize = 3;

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

impl<'a> Elf<'a> {
    /// The file, if it is ELF (of either class).
    fn new(data: &'a [u8]) -> Option<Elf<'a>> {
        (data.get(..4)? == b"\x7fELF").then_some(Elf { data, wide: *data.get(4)? == 2 })
    }

    /// Where the program headers are: offset, entry size, count.
    fn program_headers(&self) -> Option<(usize, usize, usize)> {
        let phoff = self.word(0x1c, 0x20)?;
        let (size, count) =
            if self.wide { (self.int(0x36, 2)?, self.int(0x38, 2)?) } else { (self.int(0x2a, 2)?, self.int(0x2c, 2)?) };
        Some((phoff, size, count))
    }

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
    let e = Elf::new(data)?;
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
    let (phoff, phentsize, phnum) = e.program_headers()?;
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
/// `vaddr`, or else the nearest unsized one below it (hand-written assembly
/// such as `_start` often has no size). A sized symbol that ends below the
/// address is not taken: in a stripped library the code there is a static
/// function `.dynsym` does not name, and the exported neighbour's name would
/// mislead.
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
        let covers = vaddr < value + sym_size;
        if info & 0xf != 2 || shndx == 0 || value > vaddr || (sym_size != 0 && !covers) {
            continue;
        }
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

    #[test]
    fn reads_the_build_id_readelf_shows() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let mut buf = [0u8; BUILD_ID_HEX];
        let id = core::str::from_utf8(build_id(exe.as_os_str().as_encoded_bytes(), &mut buf)).unwrap().to_owned();
        let notes = std::process::Command::new("readelf").arg("-n").arg(&exe).output().unwrap();
        let notes = String::from_utf8(notes.stdout).unwrap();
        let want = notes.lines().find_map(|l| l.trim().strip_prefix("Build ID: ")).unwrap_or("");
        assert_eq!(id, want, "readelf -n said:\n{notes}");
        assert_eq!(build_id(b"/nonexistent", &mut buf), b"");
    }
}
