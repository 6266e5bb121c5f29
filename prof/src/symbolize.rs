//! Names for locations that carry only an address, from the files the
//! profiled process had mapped.

use crate::elf::Elf;
use crate::profile::Mapping;
use std::collections::HashMap;

/// Each mapped file is opened once, however many locations and profiles
/// refer to it.
#[derive(Default)]
pub struct Symbolizer {
    /// By path and the build id the profile gives (two profiles of a
    /// program rebuilt in between give two); None where the file could not
    /// be read or is not the one that was mapped.
    files: HashMap<(String, String), Option<Elf>>,
}

impl Symbolizer {
    /// The functions at `address` of the profiled process, innermost inlined
    /// one first; where nothing names it, the address itself (with the file
    /// and offset in it, if known).
    pub fn functions(&mut self, address: u64, mapping: Option<&Mapping>) -> Vec<String> {
        let Some(m) = mapping.filter(|m| (m.memory_start..m.memory_limit).contains(&address)) else {
            return vec![format!("{address:#x}")];
        };
        // The kernel maps the file's bytes from `file_offset` on at
        // `memory_start`; the file's own tables speak of the virtual
        // address its program headers give that byte. (Wrapping: a bad
        // profile may say anything; it then finds no segment.)
        let file_offset = (address - m.memory_start).wrapping_add(m.file_offset);
        let names = self.elf(m).and_then(|elf| elf.vaddr(file_offset).map(|vaddr| elf.functions(vaddr)));
        match names {
            Some(names) if !names.is_empty() => names,
            _ => match m.filename.rsplit('/').next().filter(|base| !base.is_empty()) {
                Some(base) => vec![format!("{address:#x} ({base}+{file_offset:#x})")],
                None => vec![format!("{address:#x}")],
            },
        }
    }

    fn elf(&mut self, m: &Mapping) -> Option<&Elf> {
        let path = &m.filename;
        // Only absolute paths name files: pseudo-mappings like "[vdso]" do not.
        if !path.starts_with('/') {
            return None;
        }
        self.files
            .entry((path.clone(), m.build_id.clone()))
            .or_insert_with(|| {
                let elf = Elf::open(path).and_then(|elf| match &elf.build_id {
                    // Its addresses would name some other build's functions.
                    Some(id) if !m.build_id.is_empty() && !id.eq_ignore_ascii_case(&m.build_id) => {
                        Err(format!("build id {id}, not the profiled {}: rebuilt since?", m.build_id))
                    }
                    _ => Ok(elf),
                });
                elf.map_err(|e| eprintln!("mallocator-prof: warning: {path}: {e}; its addresses stay unnamed")).ok()
            })
            .as_ref()
    }
}
