//! What a program to profile is, as far as preloading the allocator goes:
//! the width of the library it needs (its ELF class), and whether the
//! dynamic linker, which does `LD_PRELOAD`, will load it at all (not for a
//! static program, nor for a set-user-ID one run by someone else, which
//! runs in secure-execution mode). A script is judged by its interpreter.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The file that runs: the program, or its script's interpreter.
#[derive(Debug)]
pub struct Target {
    pub path: PathBuf,
    /// 32 or 64.
    pub bits: u32,
}

/// `#!` lines followed at most this deep (the kernel allows 4).
const MAX_INTERPRETERS: usize = 4;

/// The target of `program` (a path, or a name to find in `PATH`), or why
/// it cannot be profiled by preloading.
pub fn inspect(program: &str) -> Result<Target, String> {
    let mut path = find(program)?;
    for _ in 0..=MAX_INTERPRETERS {
        let head = read_at(&path, 0, 256)?;
        if let Some(interpreter) = interpreter(&head) {
            path = interpreter.map_err(|e| format!("{}: {e}", path.display()))?;
            continue;
        }
        let bits = elf(&path, &head)?;
        refuse_secure(&path)?;
        return Ok(Target { path, bits });
    }
    Err(format!("{program}: scripts nested more than {MAX_INTERPRETERS} deep"))
}

/// `name` as the shell finds it: a path if it has a `/`, else the first
/// executable file of that name in `PATH`.
pub fn find(name: &str) -> Result<PathBuf, String> {
    if name.contains('/') {
        let path = PathBuf::from(name);
        return if path.is_file() { Ok(path) } else { Err(format!("{name}: no such file")) };
    }
    let dirs = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&dirs)
        .map(|dir| dir.join(name))
        .find(|p| p.metadata().is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0))
        .ok_or_else(|| format!("{name}: not found in PATH"))
}

fn read_at(path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, String> {
    let file = File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut buf = vec![0; len];
    let mut got = 0;
    while got < len {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// A script's interpreter, if `head` starts with `#!`: the file named
/// there, or for `#!/usr/bin/env NAME`, NAME as found in `PATH`.
fn interpreter(head: &[u8]) -> Option<Result<PathBuf, String>> {
    let line = head.strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|&c| c == b'\n').unwrap_or(line.len())];
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let Some(first) = words.next() else { return Some(Err("a #! line without an interpreter".into())) };
    if Path::new(first).file_name().is_some_and(|n| n == "env") {
        // `env -S` and other options split or change the line: the first
        // word that is not one is the program.
        return Some(match words.find(|w| !w.starts_with('-') && !w.contains('=')) {
            Some(name) => find(name),
            None => Err("#!/usr/bin/env without a program".into()),
        });
    }
    Some(Ok(PathBuf::from(first)))
}

/// `EI_CLASS` values, `e_machine` values, and `PT_INTERP`.
const ELFCLASS32: u8 = 1;
const ELFCLASS64: u8 = 2;
const EM_386: u16 = 3;
const EM_X86_64: u16 = 62;
const PT_INTERP: u32 = 3;

/// The width of an x86 ELF program that asks for a dynamic linker.
fn elf(path: &Path, head: &[u8]) -> Result<u32, String> {
    let shown = path.display();
    if !head.starts_with(b"\x7fELF") || head.len() < 52 {
        return Err(format!("{shown} is neither an ELF program nor a script"));
    }
    let u16_at = |at: usize| u16::from_le_bytes([head[at], head[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes(head[at..at + 4].try_into().unwrap());
    let (bits, machine, phoff, phentsize, phnum) = match head[4] {
        ELFCLASS32 => (32, u16_at(18), u64::from(u32_at(28)), u16_at(42), u16_at(44)),
        ELFCLASS64 if head.len() >= 64 => {
            (64, u16_at(18), u64::from_le_bytes(head[32..40].try_into().unwrap()), u16_at(54), u16_at(56))
        }
        _ => return Err(format!("{shown}: not a 32- or 64-bit ELF file")),
    };
    if (bits, machine) != (32, EM_386) && (bits, machine) != (64, EM_X86_64) {
        return Err(format!("{shown} is built for another machine (ELF machine {machine}); libmemory.so is x86"));
    }
    let headers = read_at(path, phoff, usize::from(phentsize) * usize::from(phnum))?;
    let interp = headers
        .chunks_exact(usize::from(phentsize).max(4))
        .any(|h| u32::from_le_bytes(h[..4].try_into().unwrap()) == PT_INTERP);
    if !interp {
        return Err(format!(
            "{shown} is statically linked (it names no dynamic linker): nothing loads libmemory.so into it; \
             link it dynamically to profile it"
        ));
    }
    Ok(bits)
}

/// A set-user-ID or set-group-ID program that would change our ids runs
/// in secure-execution mode, where the dynamic linker ignores `LD_PRELOAD`
/// (but for libraries in the system's own directories).
fn refuse_secure(path: &Path) -> Result<(), String> {
    let m = path.metadata().map_err(|e| format!("{}: {e}", path.display()))?;
    // SAFETY: no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    match secure_bit(m.mode(), m.uid(), m.gid(), uid, gid) {
        Some(what) => Err(format!(
            "{} is {what}: for such a program the dynamic linker ignores LD_PRELOAD (secure-execution mode), \
             so it cannot be profiled this way",
            path.display()
        )),
        None => Ok(()),
    }
}

/// "set-user-ID" or "set-group-ID" if running a file of this mode and owner
/// as `uid`/`gid` changes the process's ids.
fn secure_bit(mode: u32, owner: u32, group: u32, uid: u32, gid: u32) -> Option<&'static str> {
    if mode & 0o4000 != 0 && owner != uid {
        Some("set-user-ID")
    } else if mode & 0o2000 != 0 && mode & 0o010 != 0 && group != gid {
        // Set-group-ID without group execute is mandatory locking, not an id change.
        Some("set-group-ID")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setid_only_when_it_changes_the_ids() {
        assert_eq!(secure_bit(0o4755, 0, 0, 1000, 1000), Some("set-user-ID"));
        assert_eq!(secure_bit(0o4755, 1000, 0, 1000, 1000), None, "our own file changes nothing");
        assert_eq!(secure_bit(0o2755, 0, 50, 1000, 1000), Some("set-group-ID"));
        assert_eq!(secure_bit(0o2745, 0, 50, 1000, 1000), None, "mandatory locking, not set-group-ID");
        assert_eq!(secure_bit(0o0755, 0, 0, 1000, 1000), None);
    }

    #[test]
    fn scripts_name_their_interpreter() {
        assert_eq!(interpreter(b"#!/bin/sh -e\necho").unwrap().unwrap(), PathBuf::from("/bin/sh"));
        let sh = find("sh").unwrap();
        assert_eq!(interpreter(b"#!/usr/bin/env -S VAR=1 sh -x\n").unwrap().unwrap(), sh);
        assert!(interpreter(b"\x7fELF").is_none());
        assert_eq!(interpreter(b"#!\n").unwrap().err().unwrap(), "a #! line without an interpreter");
    }

    #[test]
    fn finds_programs_as_the_shell_does() {
        let sh = find("sh").unwrap();
        assert!(sh.is_absolute() && sh.ends_with("sh"));
        assert_eq!(find("no-such-program-here").err().unwrap(), "no-such-program-here: not found in PATH");
        assert_eq!(find("./no/such").err().unwrap(), "./no/such: no such file");
    }

    #[test]
    fn judges_real_programs() {
        let sh = inspect("sh").unwrap();
        assert_eq!(sh.bits, 64);
        let me = std::env::current_exe().unwrap();
        assert_eq!(inspect(me.to_str().unwrap()).unwrap().bits, 64);
        let text = std::env::temp_dir().join(format!("target-test-{}.txt", std::process::id()));
        std::fs::write(&text, "plain text\n").unwrap();
        let err = inspect(text.to_str().unwrap()).err().unwrap();
        std::fs::remove_file(&text).unwrap();
        assert!(err.ends_with("is neither an ELF program nor a script"), "{err}");
    }
}
