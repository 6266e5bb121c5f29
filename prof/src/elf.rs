//! One ELF file (32- or 64-bit) opened for symbolization: where its loaded
//! segments lie, its DWARF if it has any, and its function symbols.

use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, SymbolKind};
use std::borrow::Cow;
use std::path::Path;
use std::rc::Rc;

/// Owned section data, so that the file's bytes can go once it is loaded.
type Reader = gimli::EndianRcSlice<gimli::RunTimeEndian>;

pub struct Elf {
    /// The GNU build id, in hex as pprof writes it; None if the file has none.
    pub build_id: Option<String>,
    segments: Vec<Segment>,
    dwarf: Option<addr2line::Context<Reader>>,
    /// By address; one per address.
    symbols: Vec<Symbol>,
}

/// A `PT_LOAD` program header: the file bytes it maps, and where.
struct Segment {
    file_offset: u64,
    file_size: u64,
    vaddr: u64,
}

struct Symbol {
    address: u64,
    /// 0 if not known (hand-written assembly often leaves it out).
    size: u64,
    /// As stored: only the few that are looked up get demangled.
    name: String,
}

impl Elf {
    pub fn open(path: &str) -> Result<Elf, String> {
        let data = std::fs::read(path).map_err(|e| e.to_string())?;
        let file = object::File::parse(&*data).map_err(|e| format!("not an ELF file we can read: {e}"))?;
        let segments = file
            .segments()
            .map(|s| {
                let (file_offset, file_size) = s.file_range();
                Segment { file_offset, file_size, vaddr: s.address() }
            })
            .collect();
        let build_id = file.build_id().ok().flatten().filter(|id| !id.is_empty()).map(hex);
        // The tables may be in a separate file, whose addresses are this
        // one's. Its `.dynsym` is empty (stripped there), so where it has
        // no `.symtab` either, this file's symbols are the fallback.
        let debug_data =
            if file.has_debug_symbols() { None } else { separate_debug_file(path, &file, build_id.as_deref()) };
        let debug = debug_data.as_deref().and_then(|d| object::File::parse(d).ok());
        let tables = debug.as_ref().unwrap_or(&file);
        // Broken DWARF is not fatal: the symbol tables still name functions.
        let dwarf = if tables.has_debug_symbols() { load_dwarf(tables).ok() } else { None };
        let mut symbols = function_symbols(tables);
        if symbols.is_empty() {
            symbols = function_symbols(&file);
        }
        Ok(Elf { build_id, segments, dwarf, symbols })
    }

    /// The virtual address (as the file's tables use them) that the byte at
    /// `file_offset` is loaded at; None outside every loaded segment.
    pub fn vaddr(&self, file_offset: u64) -> Option<u64> {
        let s = self.segments.iter().find(|s| file_offset.wrapping_sub(s.file_offset) < s.file_size)?;
        Some((file_offset - s.file_offset).wrapping_add(s.vaddr))
    }

    /// The functions at `vaddr`, the innermost inlined one first: from
    /// DWARF where it covers the address, else the symbol containing it.
    /// Empty if neither knows.
    pub fn functions(&self, vaddr: u64) -> Vec<String> {
        let from_dwarf = self.dwarf.as_ref().map(|d| dwarf_functions(d, vaddr)).unwrap_or_default();
        if !from_dwarf.is_empty() {
            return from_dwarf;
        }
        self.symbol(vaddr)
            .map(|s| addr2line::demangle_auto(Cow::from(&s.name), None).into_owned())
            .into_iter()
            .collect()
    }

    /// The nearest symbol at or below `vaddr`, unless its size says that
    /// `vaddr` lies past its end: there it is some other (local, stripped)
    /// function, and naming it after its neighbour would mislead.
    fn symbol(&self, vaddr: u64) -> Option<&Symbol> {
        let below = self.symbols.partition_point(|s| s.address <= vaddr);
        let s = &self.symbols[below.checked_sub(1)?];
        (s.size == 0 || vaddr - s.address < s.size).then_some(s)
    }
}

/// Where distributions put the DWARF and full symbol table of the files
/// they strip (Debian's `-dbg` and `-dbgsym` packages), looked for as gdb
/// does: by build id, then by the name and CRC in `.gnu_debuglink`, beside
/// the file, in `.debug/` there, or under /usr/lib/debug.
fn separate_debug_file(path: &str, file: &object::File, build_id: Option<&str>) -> Option<Vec<u8>> {
    const ROOT: &str = "/usr/lib/debug";
    if let Some(id) = build_id.filter(|id| id.len() > 2)
        && let Ok(data) = std::fs::read(format!("{ROOT}/.build-id/{}/{}.debug", &id[..2], &id[2..]))
    {
        return Some(data);
    }
    let (name, crc) = file.gnu_debuglink().ok()??;
    let name = Path::new(std::str::from_utf8(name).ok()?);
    let dir = Path::new(path).parent()?;
    let places =
        [dir.join(name), dir.join(".debug").join(name), Path::new(ROOT).join(dir.strip_prefix("/").ok()?).join(name)];
    // The CRC tells a stale debug file (from another build) from the right one.
    places.iter().filter_map(|p| std::fs::read(p).ok()).find(|data| {
        let mut sum = flate2::Crc::new();
        sum.update(data);
        sum.sum() == crc
    })
}

fn load_dwarf(file: &object::File) -> Result<addr2line::Context<Reader>, gimli::Error> {
    let endian = if file.is_little_endian() { gimli::RunTimeEndian::Little } else { gimli::RunTimeEndian::Big };
    let dwarf = gimli::Dwarf::load(|id| {
        let data = match file.section_by_name(id.name()) {
            // Decompresses a compressed section.
            Some(section) => section.uncompressed_data().map_err(|_| gimli::Error::Io)?,
            None => Cow::Borrowed(&[][..]),
        };
        Ok::<_, gimli::Error>(Reader::new(Rc::from(&*data), endian))
    })?;
    addr2line::Context::from_dwarf(dwarf)
}

fn dwarf_functions(dwarf: &addr2line::Context<Reader>, vaddr: u64) -> Vec<String> {
    let mut names = Vec::new();
    // Split DWARF (.dwo files) is not looked for: what the main file holds.
    let Ok(mut frames) = dwarf.find_frames(vaddr).skip_all_loads() else { return names };
    while let Ok(Some(frame)) = frames.next() {
        if let Some(name) = frame.function.as_ref().and_then(|f| f.demangle().ok()) {
            names.push(name.into_owned());
        }
    }
    names
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Function symbols from `.symtab`, or from `.dynsym` where the file was
/// stripped (its exported functions are still named there).
fn function_symbols(file: &object::File) -> Vec<Symbol> {
    let collect = |symbols: object::SymbolIterator| {
        let mut found: Vec<(bool, Symbol)> = symbols
            .filter(|s| s.kind() == SymbolKind::Text && s.is_definition() && s.address() != 0)
            .filter_map(|s| {
                let name = s.name().ok()?.to_owned();
                Some((s.is_global(), Symbol { address: s.address(), size: s.size(), name }))
            })
            .collect();
        // Of aliases at one address keep a global one: the name callers
        // know it by, where a local one is often an internal label.
        found.sort_by_key(|(global, s)| (s.address, !global));
        found.dedup_by_key(|(_, s)| s.address);
        found.into_iter().map(|(_, s)| s).collect::<Vec<_>>()
    };
    let symtab = collect(file.symbols());
    if symtab.is_empty() { collect(file.dynamic_symbols()) } else { symtab }
}
