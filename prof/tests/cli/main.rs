//! The tool end to end: profiles written here, read by the built binary.

mod diff;
mod encode;
mod errors;
mod fixture;
mod flame;
mod formats;
mod names;
mod symbols;
mod timeline;
mod top;

use encode::ProfileWriter;
use fixture::Program;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn tool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mallocator-prof")).args(args).output().unwrap()
}

/// Runs the tool, which must succeed; its standard output.
pub fn tool_ok(args: &[&str]) -> String {
    let out = tool(args);
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

pub fn write(dir: &Path, name: &str, data: &[u8]) -> String {
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path.to_str().unwrap().to_owned()
}

/// `top`'s table: (function, flat, flat%, cum, cum%, the other measure).
pub fn top_rows(report: &str) -> Vec<(String, i64, String, i64, String, i64)> {
    report
        .lines()
        .skip(4)
        .map(|line| {
            let w: Vec<&str> = line.split_whitespace().collect();
            let number = |i: usize| w[i].parse::<i64>().unwrap();
            (w[5..].join(" "), number(0), w[1].to_owned(), number(2), w[3].to_owned(), number(4))
        })
        .collect()
}

/// The same rows with owned strings, for comparing with literals.
pub fn row(
    name: &str,
    flat: i64,
    flat_pct: &str,
    cum: i64,
    cum_pct: &str,
    other: i64,
) -> (String, i64, String, i64, String, i64) {
    (name.to_owned(), flat, flat_pct.to_owned(), cum, cum_pct.to_owned(), other)
}

/// `alloc_alpha` called by `alloc_beta` called by `alloc_gamma`, each with
/// bytes of its own. Flat in use: 600, 300, 100; allocated: 1000, 2000, 7000.
pub fn three_stacks(program: &Program) -> Vec<u8> {
    let mut w = ProfileWriter::heap();
    w.allocator_extras();
    let l = program.locations(&mut w);
    w.sample(&[l["alloc_alpha"], l["alloc_beta"], l["alloc_gamma"]], &[10, 1000, 6, 600]);
    w.sample(&[l["alloc_beta"], l["alloc_gamma"]], &[20, 2000, 3, 300]);
    w.sample(&[l["alloc_gamma"]], &[70, 7000, 1, 100]);
    encode::gzip_stored(&w.encode(), 65535)
}
