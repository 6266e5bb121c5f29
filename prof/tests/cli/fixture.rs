//! Real programs to symbolize: a small C file built with the flags a test
//! names, then run to learn where its functions and mappings really are.

use crate::encode::ProfileWriter;
use object::Object;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const SOURCE: &str = r#"
#include <stdio.h>
#include <stdlib.h>

void *volatile sink;
void *volatile site;

__attribute__((noinline, noclone)) void record_site(void) { site = __builtin_return_address(0); }

/* Its call of record_site is a call site inside outer_step's code. */
static inline __attribute__((always_inline)) void inlined_step(void) {
    record_site();
    sink = malloc(8);
}

__attribute__((noinline, noclone)) void outer_step(void) {
    inlined_step();
    sink = malloc(16);
}

__attribute__((noinline, noclone)) void alloc_alpha(void) { sink = malloc(1); }
__attribute__((noinline, noclone)) void alloc_beta(void) { alloc_alpha(); sink = malloc(2); }
__attribute__((noinline, noclone)) void alloc_gamma(void) { alloc_beta(); sink = malloc(3); }

int main(void) {
    alloc_gamma();
    outer_step();
    printf("alloc_alpha %p\nalloc_beta %p\nalloc_gamma %p\n", (void *)alloc_alpha, (void *)alloc_beta,
           (void *)alloc_gamma);
    /* As the profiler records a caller: its return address less one. */
    printf("site %p\n", (void *)((char *)site - 1));
    char line[4096];
    FILE *maps = fopen("/proc/self/maps", "r");
    while (maps && fgets(line, sizeof line, maps))
        printf("map %s", line);
    return 0;
}
"#;

pub struct Program {
    pub path: PathBuf,
    /// Where each function (and "site", the inlined call) was when it ran.
    pub addresses: HashMap<String, u64>,
    /// Its executable mappings: start, end, file offset.
    pub maps: Vec<(u64, u64, u64)>,
}

/// A fresh folder for one test's files.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("prof-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap()
}

impl Program {
    /// Builds the program as `name` in a scratch folder and runs it.
    pub fn build(name: &str, cflags: &[&str]) -> Program {
        let path = scratch(name).join(name);
        let src = path.with_extension("c");
        std::fs::write(&src, SOURCE).unwrap();
        let cc = Command::new("gcc").args(cflags).arg("-o").arg(&path).arg(&src).output().unwrap();
        assert!(
            cc.status.success(),
            "gcc {cflags:?} failed (-m32 needs gcc-multilib: `make setup`): {}",
            String::from_utf8_lossy(&cc.stderr)
        );
        let run = Command::new(&path).output().unwrap();
        assert!(run.status.success());
        let (mut addresses, mut maps) = (HashMap::new(), Vec::new());
        for line in String::from_utf8(run.stdout).unwrap().lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words[..] {
                // map start-end perms offset dev inode path
                ["map", range, perms, offset, _, _, file] if perms.contains('x') && Path::new(file) == path => {
                    let (start, end) = range.split_once('-').unwrap();
                    maps.push((hex(start), hex(end), hex(offset)));
                }
                ["map", ..] => {}
                [name, address] => {
                    addresses.insert(name.to_owned(), hex(address));
                }
                _ => panic!("unexpected output {line:?}"),
            }
        }
        assert!(!maps.is_empty(), "no executable mapping of {path:?} found");
        Program { path, addresses, maps }
    }

    /// Removes its symbol table (keeping `.dynsym`) and any DWARF.
    pub fn strip(&self) {
        assert!(Command::new("strip").arg(&self.path).status().unwrap().success());
    }

    /// Moves its DWARF and symbol table to `<name>.debug` beside it, named
    /// in its `.gnu_debuglink`, as distributions ship them.
    pub fn split_debug(&self) {
        let debug = self.path.with_extension("debug");
        let objcopy =
            |args: &[&std::ffi::OsStr]| assert!(Command::new("objcopy").args(args).status().unwrap().success());
        objcopy(&["--only-keep-debug".as_ref(), self.path.as_os_str(), debug.as_os_str()]);
        self.strip();
        objcopy(&[format!("--add-gnu-debuglink={}", debug.display()).as_ref(), self.path.as_os_str()]);
    }

    /// Its GNU build id in hex, as pprof writes them.
    pub fn build_id(&self) -> String {
        let data = std::fs::read(&self.path).unwrap();
        let file = object::File::parse(&*data).unwrap();
        file.build_id().unwrap().expect("gcc gave no build id").iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Adds its mappings and a location for each of its functions (an
    /// address inside it, as a caller's would be) and "site"; their ids.
    pub fn locations(&self, w: &mut ProfileWriter) -> HashMap<String, u64> {
        self.locations_with_build_id(w, "")
    }

    /// The same, with `build_id` in its mappings.
    pub fn locations_with_build_id(&self, w: &mut ProfileWriter, build_id: &str) -> HashMap<String, u64> {
        let file = self.path.to_str().unwrap();
        let mappings: Vec<(u64, u64, u64, u64)> = self
            .maps
            .iter()
            .map(|&(start, end, offset)| (start, end, offset, w.mapping(start, end, offset, file, build_id)))
            .collect();
        self.addresses
            .iter()
            .map(|(name, &address)| {
                let address = if name == "site" { address } else { address + 1 };
                let &(_, _, _, id) = mappings.iter().find(|m| (m.0..m.1).contains(&address)).unwrap();
                (name.clone(), w.location(id, address))
            })
            .collect()
    }

    /// `address` as the file offset the tool shows for unnamed code.
    pub fn file_offset(&self, address: u64) -> u64 {
        let &(start, _, offset) = self.maps.iter().find(|m| (m.0..m.1).contains(&address)).unwrap();
        address - start + offset
    }
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}
