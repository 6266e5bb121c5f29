//! How to find a caller's frame from a return address: the row of DWARF
//! call-frame information (`.eh_frame`) that covers it, reduced to the three
//! rules a stack walk needs (the canonical frame address, the return
//! address, the frame pointer), or a verdict that the walk must stop or
//! leave the frame to libgcc.
//!
//! The object holding the address comes from glibc's `_dl_find_object`
//! (2.35 and later; lock-free), its FDE from the sorted table of
//! `.eh_frame_hdr`, as libgcc finds them. Only what compilers emit for
//! ordinary functions is understood: a CFA of the stack or frame pointer
//! plus an offset (or the word there, gcc's realigned `main` on i386), and
//! registers saved at an offset. Anything else (signal frames, general
//! DWARF expressions, 64-bit DWARF, a header without its table) is
//! [`Verdict::Unsupported`]: the caller unwinds that stack with libgcc.
//!
//! The tables are read in place: the loader maps them read-only for as
//! long as the object is loaded (an object `dlclose`d during the walk is
//! as much a hazard for libgcc's unwinder).

use core::ffi::c_void;

/// DWARF register numbers of the System V psABIs.
#[cfg(target_arch = "x86_64")]
mod reg {
    pub const SP: u64 = 7;
    pub const BP: u64 = 6;
    pub const RA: u64 = 16;
}
#[cfg(target_arch = "x86")]
mod reg {
    pub const SP: u64 = 4;
    pub const BP: u64 = 5;
    pub const RA: u64 = 8;
}

/// A register of the walk, or the frame's CFA.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Base {
    Sp,
    Bp,
    Cfa,
}

/// Where the CFA is: `base + offset`, or the word stored there.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Cfa {
    pub base: Base,
    pub offset: i32,
    pub deref: bool,
}

/// Where the caller's value of a register is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Saved {
    /// Unchanged by this frame.
    Same,
    /// Lost: the outermost frame says so of its return address.
    Undefined,
    /// In the word at `base + offset`.
    At(Base, i32),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Rule {
    pub cfa: Cfa,
    pub ra: Saved,
    pub bp: Saved,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    Frame(Rule),
    /// No caller: the return address is undefined (`_start`, a thread's
    /// start).
    End,
    /// Rules beyond these, or no FDE for the address (libgcc may know the
    /// code anyway, as it knows the signal trampolines).
    Unsupported,
}

/// glibc's `struct dl_find_object` up to the field read here, with room for
/// the rest (its reserved words and i386's data base).
#[repr(C)]
struct DlFindObject {
    flags: u64,
    map_start: *mut c_void,
    map_end: *mut c_void,
    link_map: *mut c_void,
    eh_frame: *const u8,
    rest: [u64; 10],
}

unsafe extern "C" {
    /// `dlfcn.h` (glibc 2.35): the object that maps `address`; 0 if found.
    fn _dl_find_object(address: *mut c_void, result: *mut DlFindObject) -> i32;
}

/// The rule for the frame whose code returns to `ra` (the row of `ra - 1`,
/// inside the call, as libgcc looks it up; for the walk's first frame `ra`
/// is just past an instruction that no rule changes at).
pub fn verdict(ra: usize) -> Verdict {
    let pc = ra.wrapping_sub(1);
    let mut found = DlFindObject {
        flags: 0,
        map_start: core::ptr::null_mut(),
        map_end: core::ptr::null_mut(),
        link_map: core::ptr::null_mut(),
        eh_frame: core::ptr::null(),
        rest: [0; 10],
    };
    // SAFETY: `found` is writable and larger than glibc's structure.
    if unsafe { _dl_find_object(pc as *mut c_void, &mut found) } != 0 || found.eh_frame.is_null() {
        return Verdict::Unsupported;
    }
    // SAFETY: `eh_frame` is the object's mapped PT_GNU_EH_FRAME segment.
    unsafe { from_header(found.eh_frame, pc) }.unwrap_or(Verdict::Unsupported)
}

/// `None`: unsupported.
///
/// # Safety
/// `hdr` is a mapped `.eh_frame_hdr`, its `.eh_frame` mapped with it.
unsafe fn from_header(hdr: *const u8, pc: usize) -> Option<Verdict> {
    // SAFETY: per the contract, for every read below: the header's fields,
    // its table of `count` entries, and the FDE and CIE it points to.
    unsafe {
        let mut r = Reader::at(hdr);
        let (version, frame_enc, count_enc, table_enc) = (r.u8(), r.u8(), r.u8(), r.u8());
        if version != 1 {
            return None;
        }
        r.pointer(frame_enc)?;
        let count = r.pointer(count_enc)?;
        // The table as linkers write it: pairs of 32-bit offsets from the
        // header, (first address of a function, its FDE), sorted.
        if table_enc != PE_DATAREL | PE_SDATA4 {
            return None;
        }
        let table = r.p.cast::<[i32; 2]>();
        let entry = |i: usize| table.add(i).read_unaligned();
        let (mut lo, mut hi) = (0, count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if hdr.wrapping_offset(entry(mid)[0] as isize) as usize <= pc {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == 0 {
            return None;
        }
        from_fde(hdr.wrapping_offset(entry(lo - 1)[1] as isize), pc)
    }
}

// Pointer encodings (`DW_EH_PE_*` of the LSB): the format in the low four
// bits, what it is relative to in the next three, indirection on top.
const PE_OMIT: u8 = 0xff;
const PE_SDATA4: u8 = 0x0b;
const PE_PCREL: u8 = 0x10;
const PE_DATAREL: u8 = 0x30;
const PE_INDIRECT: u8 = 0x80;

/// # Safety
/// `fde` is an FDE in a mapped `.eh_frame`.
unsafe fn from_fde(fde: *const u8, pc: usize) -> Option<Verdict> {
    // SAFETY: the FDE and its CIE lie in the mapped section; each is read
    // within its stated length.
    unsafe {
        let (mut f, fde_end) = Reader::entry(fde)?;
        let id_at = f.p;
        let cie = id_at.sub(f.u32() as usize);
        let (mut c, cie_end) = Reader::entry(cie)?;
        let cie = Cie::parse(&mut c)?;
        let start = f.pointer(cie.enc)?;
        let range = f.pointer(cie.enc & 0x0f)?;
        if pc < start || pc - start >= range {
            return None;
        }
        if cie.augmented {
            let n = f.uleb()?;
            f.p = f.p.add(n as usize);
        }
        let mut m = Machine::new(&cie);
        m.run(Reader { p: c.p, end: cie_end }, usize::MAX)?;
        m.initial = m.row;
        m.loc = start;
        m.run(Reader { p: f.p, end: fde_end }, pc)?;
        Some(m.verdict())
    }
}

/// The fields of a CIE that matter here.
struct Cie {
    code_align: u64,
    data_align: i64,
    enc: u8,
    augmented: bool,
}

impl Cie {
    /// Reads up to the initial instructions, where it leaves `r`.
    ///
    /// # Safety
    /// As [`Reader`]'s reads, within the CIE.
    unsafe fn parse(r: &mut Reader) -> Option<Cie> {
        // SAFETY: per the contract.
        unsafe {
            if r.u32() != 0 {
                return None;
            }
            let version = r.u8();
            if version != 1 && version != 3 {
                return None;
            }
            let aug = r.p;
            let mut len = 0;
            while *aug.add(len) != 0 {
                len += 1;
            }
            let aug = core::slice::from_raw_parts(aug, len);
            r.p = r.p.add(len + 1);
            let mut cie = Cie { code_align: r.uleb()?, data_align: r.sleb()?, enc: 0, augmented: false };
            let ra = if version == 1 { r.u8() as u64 } else { r.uleb()? };
            if ra != reg::RA {
                return None;
            }
            let Some((&b'z', rest)) = aug.split_first() else {
                return aug.is_empty().then_some(cie);
            };
            cie.augmented = true;
            let n = r.uleb()? as usize;
            let data_end = r.p.add(n);
            for &a in rest {
                match a {
                    b'R' => cie.enc = r.u8(),
                    b'L' => _ = r.u8(),
                    b'P' => {
                        let enc = r.u8();
                        r.pointer(enc & 0x0f)?;
                    }
                    // 'S' (a signal frame), 'B' and the rest.
                    _ => return None,
                }
            }
            r.p = data_end;
            Some(cie)
        }
    }
}

/// Bytes of a section, read where they lie.
struct Reader {
    p: *const u8,
    end: *const u8,
}

impl Reader {
    /// A reader of fields whose extent the format does not bound.
    fn at(p: *const u8) -> Reader {
        Reader { p, end: core::ptr::without_provenance(usize::MAX) }
    }

    /// A CIE or FDE: a reader past its length, and its end. `None` for
    /// the 64-bit format or the terminator.
    ///
    /// # Safety
    /// `p` is the start of an entry in a mapped `.eh_frame`.
    unsafe fn entry(p: *const u8) -> Option<(Reader, *const u8)> {
        // SAFETY: per the contract.
        let len = unsafe { p.cast::<u32>().read_unaligned() };
        if len == 0 || len == u32::MAX {
            return None;
        }
        let end = p.wrapping_add(4 + len as usize);
        Some((Reader { p: p.wrapping_add(4), end }, end))
    }

    /// # Safety
    /// `N` bytes at `p` are mapped.
    unsafe fn take<const N: usize>(&mut self) -> [u8; N] {
        // SAFETY: per the contract.
        let v = unsafe { self.p.cast::<[u8; N]>().read_unaligned() };
        self.p = self.p.wrapping_add(N);
        v
    }

    /// # Safety
    /// A byte at `p` is mapped (so for the other fixed-size reads).
    unsafe fn u8(&mut self) -> u8 {
        // SAFETY: per the contract.
        unsafe { self.take::<1>()[0] }
    }

    unsafe fn u32(&mut self) -> u32 {
        // SAFETY: as for `u8`.
        u32::from_ne_bytes(unsafe { self.take() })
    }

    /// LEB128, `None` past the end or past 64 bits.
    ///
    /// # Safety
    /// The bytes up to `end` are mapped.
    unsafe fn leb(&mut self) -> Option<(u64, u32)> {
        let (mut value, mut shift) = (0u64, 0u32);
        loop {
            if self.p >= self.end || shift >= 64 {
                return None;
            }
            // SAFETY: per the contract.
            let b = unsafe { self.u8() };
            value |= ((b & 0x7f) as u64) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                return Some((value, shift));
            }
        }
    }

    unsafe fn uleb(&mut self) -> Option<u64> {
        // SAFETY: as for `leb`.
        unsafe { self.leb() }.map(|(v, _)| v)
    }

    unsafe fn sleb(&mut self) -> Option<i64> {
        // SAFETY: as for `leb`.
        let (v, shift) = unsafe { self.leb() }?;
        Some(if shift < 64 && v >> (shift - 1) & 1 != 0 { (v | !0 << shift) as i64 } else { v as i64 })
    }

    /// A pointer in encoding `enc`, absolute or relative to where it lies
    /// (`None` if omitted, indirect, or of another encoding: FDEs' are
    /// `pcrel`).
    ///
    /// # Safety
    /// The encoded bytes are mapped.
    unsafe fn pointer(&mut self, enc: u8) -> Option<usize> {
        if enc == PE_OMIT || enc & PE_INDIRECT != 0 {
            return None;
        }
        let here = self.p as usize;
        // SAFETY: per the contract, for each format's width.
        let value = unsafe {
            match enc & 0x0f {
                0x00 => usize::from_ne_bytes(self.take()),
                0x01 => self.uleb()? as usize,
                0x02 => u16::from_ne_bytes(self.take()) as usize,
                0x03 => u32::from_ne_bytes(self.take()) as usize,
                0x04 => u64::from_ne_bytes(self.take()) as usize,
                0x09 => self.sleb()? as usize,
                0x0a => i16::from_ne_bytes(self.take()) as usize,
                0x0b => i32::from_ne_bytes(self.take()) as usize,
                0x0c => i64::from_ne_bytes(self.take()) as usize,
                _ => return None,
            }
        };
        let base = match enc & 0x70 {
            0 => 0,
            PE_PCREL => here,
            _ => return None,
        };
        Some(base.wrapping_add(value))
    }
}

/// Depth of `DW_CFA_remember_state`: compilers nest one or two.
const STATE_STACK: usize = 8;

/// The CFA program's interpreter, for the rules of the three registers
/// the walk follows (the rest are ignored).
struct Machine {
    row: Row,
    initial: Row,
    saved: [Row; STATE_STACK],
    depth: usize,
    loc: usize,
    code_align: u64,
    data_align: i64,
}

/// A row of the table; `None` for a rule this walk cannot follow.
#[derive(Clone, Copy)]
struct Row {
    cfa: Option<Cfa>,
    ra: Option<Saved>,
    bp: Option<Saved>,
}

// DW_CFA_* opcodes (DWARF 5, section 6.4.2, and the GNU extensions).
const ADVANCE_LOC: u8 = 0x40;
const OFFSET: u8 = 0x80;
const RESTORE: u8 = 0xc0;

impl Machine {
    fn new(cie: &Cie) -> Machine {
        // Unspecified registers keep their value (libgcc's default), the
        // return address included until the CIE says where it is.
        let row = Row { cfa: None, ra: None, bp: Some(Saved::Same) };
        Machine {
            row,
            initial: row,
            saved: [row; STATE_STACK],
            depth: 0,
            loc: 0,
            code_align: cie.code_align,
            data_align: cie.data_align,
        }
    }

    fn verdict(&self) -> Verdict {
        match (self.row.cfa, self.row.ra, self.row.bp) {
            (_, Some(Saved::Undefined), _) => Verdict::End,
            (Some(cfa), Some(ra @ Saved::At(..)), Some(bp)) => Verdict::Frame(Rule { cfa, ra, bp }),
            _ => Verdict::Unsupported,
        }
    }

    fn rule(&mut self, reg: u64) -> Option<&mut Option<Saved>> {
        if reg == reg::RA {
            Some(&mut self.row.ra)
        } else if reg == reg::BP {
            Some(&mut self.row.bp)
        } else {
            None
        }
    }

    fn set(&mut self, reg: u64, rule: Option<Saved>) {
        if let Some(r) = self.rule(reg) {
            *r = rule;
        }
    }

    fn restore(&mut self, reg: u64) {
        let initial = if reg == reg::RA { self.initial.ra } else { self.initial.bp };
        self.set(reg, initial);
    }

    fn at_cfa(&self, factored: i64) -> Option<Saved> {
        i32::try_from(factored.checked_mul(self.data_align)?).ok().map(|o| Saved::At(Base::Cfa, o))
    }

    fn def_cfa(&mut self, reg: Option<u64>, offset: i64) {
        let base = match reg {
            Some(r) => base_of(r),
            None => self.row.cfa.filter(|c| !c.deref).map(|c| c.base),
        };
        self.row.cfa = base.zip(i32::try_from(offset).ok()).map(|(base, offset)| Cfa { base, offset, deref: false });
    }

    /// Runs instructions while the location is at most `pc`. `None` on an
    /// instruction unknown here or malformed.
    ///
    /// # Safety
    /// The bytes up to `r.end` are mapped.
    unsafe fn run(&mut self, mut r: Reader, pc: usize) -> Option<()> {
        // SAFETY: per the contract, for every read below.
        unsafe {
            while r.p < r.end && self.loc <= pc {
                let op = r.u8();
                let low = (op & 0x3f) as u64;
                match op & 0xc0 {
                    ADVANCE_LOC => self.advance(low),
                    OFFSET => {
                        let rule = self.at_cfa(r.uleb()? as i64);
                        self.set(low, rule);
                    }
                    RESTORE => self.restore(low),
                    _ => match op {
                        0x00 => {}
                        0x02 => self.advance(r.u8() as u64),
                        0x03 => self.advance(u16::from_ne_bytes(r.take()) as u64),
                        0x04 => self.advance(r.u32() as u64),
                        0x05 => {
                            let (reg, off) = (r.uleb()?, r.uleb()? as i64);
                            let rule = self.at_cfa(off);
                            self.set(reg, rule);
                        }
                        0x06 => self.restore(r.uleb()?),
                        0x07 => self.set(r.uleb()?, Some(Saved::Undefined)),
                        0x08 => self.set(r.uleb()?, Some(Saved::Same)),
                        0x09 => {
                            let reg = r.uleb()?;
                            r.uleb()?;
                            self.set(reg, None);
                        }
                        0x0a => {
                            *self.saved.get_mut(self.depth)? = self.row;
                            self.depth += 1;
                        }
                        0x0b => {
                            // The CFA rule too (DWARF 5, 6.4.2.4): gcc's
                            // epilogues in mid-function rely on it.
                            self.depth = self.depth.checked_sub(1)?;
                            self.row = self.saved[self.depth];
                        }
                        0x0c => {
                            let (reg, off) = (r.uleb()?, r.uleb()? as i64);
                            self.def_cfa(Some(reg), off);
                        }
                        0x0d => {
                            let reg = r.uleb()?;
                            let off = self.row.cfa.map_or(0, |c| c.offset as i64);
                            self.def_cfa(Some(reg), off);
                        }
                        0x0e => {
                            let off = r.uleb()? as i64;
                            self.def_cfa(None, off);
                        }
                        0x0f => self.row.cfa = cfa_expression(&mut r)?,
                        0x10 => {
                            let reg = r.uleb()?;
                            let rule = reg_expression(&mut r)?;
                            self.set(reg, rule);
                        }
                        0x11 => {
                            let (reg, off) = (r.uleb()?, r.sleb()?);
                            let rule = self.at_cfa(off);
                            self.set(reg, rule);
                        }
                        0x12 => {
                            let (reg, off) = (r.uleb()?, r.sleb()?);
                            self.def_cfa(Some(reg), off.checked_mul(self.data_align)?);
                        }
                        0x13 => {
                            let off = r.sleb()?.checked_mul(self.data_align)?;
                            self.def_cfa(None, off);
                        }
                        0x14 | 0x15 => {
                            let reg = r.uleb()?;
                            if op == 0x14 {
                                r.uleb()?
                            } else {
                                r.sleb()? as u64
                            };
                            self.set(reg, None);
                        }
                        0x16 => {
                            let reg = r.uleb()?;
                            let n = r.uleb()?;
                            r.p = r.p.wrapping_add(n as usize);
                            self.set(reg, None);
                        }
                        // DW_CFA_GNU_args_size: for landing pads only.
                        0x2e => _ = r.uleb()?,
                        0x2f => {
                            let (reg, off) = (r.uleb()?, r.uleb()? as i64);
                            let rule = self.at_cfa(-off);
                            self.set(reg, rule);
                        }
                        _ => return None,
                    },
                }
            }
            Some(())
        }
    }

    fn advance(&mut self, delta: u64) {
        self.loc = self.loc.wrapping_add((delta * self.code_align) as usize);
    }
}

fn base_of(reg: u64) -> Option<Base> {
    match reg {
        reg::SP => Some(Base::Sp),
        reg::BP => Some(Base::Bp),
        _ => None,
    }
}

// DWARF expression operators of the two forms understood here.
const OP_BREG0: u8 = 0x70;
const OP_DEREF: u8 = 0x06;

/// One `DW_OP_breg<sp|bp> offset` at the head of an expression block (if
/// it is one), and a reader of what follows it in the block; `None` if
/// malformed.
///
/// # Safety
/// The block is mapped (within `r.end`).
unsafe fn breg(r: &mut Reader) -> Option<(Option<(Base, i32)>, Reader)> {
    // SAFETY: per the contract.
    unsafe {
        let n = r.uleb()? as usize;
        let end = r.p.wrapping_add(n);
        if end > r.end {
            return None;
        }
        let mut e = Reader { p: r.p, end };
        r.p = end;
        if n == 0 {
            return Some((None, e));
        }
        let op = e.u8();
        let base = match op.checked_sub(OP_BREG0) {
            Some(reg) if reg < 32 => base_of(reg as u64),
            _ => None,
        };
        let off = e.sleb()?;
        Some((base.zip(i32::try_from(off).ok()), e))
    }
}

/// `DW_CFA_def_cfa_expression`: `breg; deref` (gcc's realigned frames)
/// gives a CFA; other expressions none (`Some(None)`).
///
/// # Safety
/// As [`breg`].
unsafe fn cfa_expression(r: &mut Reader) -> Option<Option<Cfa>> {
    // SAFETY: per the contract; the operator read is inside the block.
    let (head, rest) = unsafe { breg(r) }?;
    let deref = rest.p.wrapping_add(1) == rest.end && unsafe { *rest.p } == OP_DEREF;
    Some(head.filter(|_| deref).map(|(base, offset)| Cfa { base, offset, deref: true }))
}

/// `DW_CFA_expression`: a register saved at `breg` alone (gcc's realigned
/// frames on i386); other expressions no rule.
///
/// # Safety
/// As [`breg`].
unsafe fn reg_expression(r: &mut Reader) -> Option<Option<Saved>> {
    // SAFETY: per the contract.
    let (head, rest) = unsafe { breg(r) }?;
    Some(head.filter(|_| rest.p == rest.end).map(|(base, offset)| Saved::At(base, offset)))
}
