//! `mallocator-prof run`: a program run with the allocator preloaded and
//! profiling on; when it ends, the stacks that held the most at the peak and
//! the peak's flame graph.

use crate::cli::Run;
use crate::heap::{Heap, Measure};
use crate::symbolize::Symbolizer;
use crate::target::{self, Target};
use crate::{flame, report};
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

pub fn run(args: &Run, symbolizer: &mut Symbolizer) -> Result<ExitCode, String> {
    let target = target::inspect(&args.program[0])?;
    let lib = match &args.lib {
        Some(lib) => PathBuf::from(lib),
        None => library(target.bits)?,
    };
    check_library(&lib, &target)?;
    let name = Path::new(&args.program[0]).file_name().map_or("program".into(), |n| n.to_string_lossy());
    let prefix = absolute(args.prefix.clone().unwrap_or_else(|| format!("mallocator.{name}")))?;
    let mut preload = OsString::from(&lib);
    if let Some(theirs) = std::env::var_os("LD_PRELOAD").filter(|p| !p.is_empty()) {
        preload.push(":");
        preload.push(theirs);
    }
    let mut command = Command::new(target::find(&args.program[0])?);
    command.args(&args.program[1..]).env("LD_PRELOAD", preload).env("MALLOCATOR_PROFILE", &prefix);
    for (var, value) in &args.env {
        command.env(var, value);
    }
    let mut child = command.spawn().map_err(|e| format!("cannot run {}: {e}", args.program[0]))?;
    // As a shell waiting for a command: ^C and ^\ are the program's to act
    // on; this process stays to report.
    let _shield = Shield::new();
    let status = child.wait().map_err(|e| format!("waiting for {}: {e}", args.program[0]))?;
    let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    let pid = child.id();
    let (exit_file, peak_file) = (format!("{prefix}.{pid}.pb.gz"), format!("{prefix}.{pid}.peak.pb.gz"));
    if !Path::new(&peak_file).exists() {
        let why = match status.signal() {
            Some(signal) => format!(
                "was killed by signal {signal}: profiles are written when a program exits; one that is killed \
                 can be profiled while it runs with --signal or --interval"
            ),
            None => format!(
                "exited with status {code}: the folder of the prefix must exist and be writable (the \
                 library said why above), and a program that leaves by _exit or exec writes none"
            ),
        };
        // Said, but the program's status stays the answer.
        eprintln!("mallocator-prof: {} wrote no profile {peak_file}; it {why}", args.program[0]);
        return Ok(exit_code(code));
    }
    let peak = Heap::load(&peak_file, symbolizer)?;
    let exit = Heap::load(&exit_file, symbolizer)?;
    let (at_peak, at_exit) = (peak.total().inuse_bytes, exit.total().inuse_bytes);
    let mut out = format!(
        "\nmallocator-prof: {} exited with status {code}; in use at the peak {at_peak} bytes, at exit {at_exit} \
         (estimated: {})\n",
        args.program[0],
        rate_text(args)
    );
    out += &report::stacks(&peak, Measure::InUse, args.limit);
    let svg_path = args.flamegraph.clone().unwrap_or_else(|| format!("{prefix}.{pid}.svg"));
    match flame::svg(&peak, Measure::InUse) {
        Ok(svg) => {
            std::fs::write(&svg_path, svg).map_err(|e| format!("cannot write {svg_path}: {e}"))?;
            out += &format!("Flame graph of the peak: {svg_path}\n");
        }
        Err(e) => out += &format!("No flame graph: {e}\n"),
    }
    out += &format!("Profiles: {peak_file} (the peak), {exit_file} (at exit)");
    let dumps = format!("{prefix}.{pid}.0001.pb.gz");
    if Path::new(&dumps).exists() {
        out += &format!(", {prefix}.{pid}.<seq>.pb.gz (dumps; mallocator-prof timeline draws them)");
    }
    out.push('\n');
    crate::print(&out)?;
    Ok(exit_code(code))
}

/// The program's status as this process's (128 + the signal that killed
/// it, as a shell says).
fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn rate_text(args: &Run) -> String {
    let rate = args.env.iter().find(|(var, _)| *var == "MALLOCATOR_PROFILE_RATE").map_or("524288", |(_, v)| v);
    format!("one sample per {rate} bytes")
}

/// The prefix as an absolute path: the program may change directory.
fn absolute(prefix: String) -> Result<String, String> {
    let path = Path::new(&prefix);
    if path.is_absolute() {
        return Ok(prefix);
    }
    let here = std::env::current_dir().map_err(|e| format!("the current directory: {e}"))?;
    Ok(here.join(path).to_string_lossy().into_owned())
}

/// Where the library of a width is found beside this tool: in the build
/// tree (`target/<triple>/release/`, the tool being in the x86_64 one), or
/// installed (`bin/`, `lib/`, `lib32/` under one prefix, as `make install`
/// puts them).
fn library(bits: u32) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("where this tool is: {e}"))?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let candidates = candidates(dir, bits);
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        format!(
            "no {bits}-bit libmemory.so found (looked at {}); build it (make) or name one with --lib",
            looked.join(", ")
        )
    })
}

fn candidates(dir: &Path, bits: u32) -> Vec<PathBuf> {
    let (triple, libdir) =
        if bits == 32 { ("i686-unknown-linux-gnu", "lib32") } else { ("x86_64-unknown-linux-gnu", "lib") };
    vec![dir.join("../..").join(triple).join("release/libmemory.so"), dir.join("..").join(libdir).join("libmemory.so")]
}

/// The library must be of the program's width: the dynamic linker skips a
/// library of the other one with a warning, and the program would run
/// unprofiled.
fn check_library(lib: &Path, target: &Target) -> Result<(), String> {
    let head = std::fs::read(lib).map_err(|e| format!("cannot read {}: {e}", lib.display()))?;
    let bits = match head.get(4) {
        Some(1) if head.starts_with(b"\x7fELF") => 32,
        Some(2) if head.starts_with(b"\x7fELF") => 64,
        _ => return Err(format!("{} is not an ELF library", lib.display())),
    };
    if bits != target.bits {
        return Err(format!(
            "{} is {bits}-bit, {} is {}-bit: the dynamic linker would skip it",
            lib.display(),
            target.path.display(),
            target.bits
        ));
    }
    let text = lib.to_string_lossy();
    if text.contains([' ', ':']) {
        return Err(format!("{text}: LD_PRELOAD cannot name a path with a space or a colon"));
    }
    Ok(())
}

/// Ignores `SIGINT` and `SIGQUIT` while it lives (they go to the program,
/// which shares the terminal), as `system(3)` does.
struct Shield {
    old: [libc::sighandler_t; 2],
}

impl Shield {
    fn new() -> Shield {
        // SAFETY: ignoring a signal has no preconditions.
        unsafe {
            Shield { old: [libc::signal(libc::SIGINT, libc::SIG_IGN), libc::signal(libc::SIGQUIT, libc::SIG_IGN)] }
        }
    }
}

impl Drop for Shield {
    fn drop(&mut self) {
        // SAFETY: puts back the handlers `new` found.
        unsafe {
            libc::signal(libc::SIGINT, self.old[0]);
            libc::signal(libc::SIGQUIT, self.old[1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libraries_are_looked_for_in_the_build_tree_then_the_installation() {
        let dir = Path::new("/x/target/x86_64-unknown-linux-gnu/release");
        assert_eq!(
            candidates(dir, 32),
            [
                PathBuf::from(
                    "/x/target/x86_64-unknown-linux-gnu/release/../../i686-unknown-linux-gnu/release/libmemory.so"
                ),
                PathBuf::from("/x/target/x86_64-unknown-linux-gnu/release/../lib32/libmemory.so"),
            ]
        );
        assert!(candidates(dir, 64)[1].ends_with("../lib/libmemory.so"));
    }

    #[test]
    fn prefixes_are_made_absolute() {
        assert_eq!(absolute("/tmp/p".into()).unwrap(), "/tmp/p");
        let here = std::env::current_dir().unwrap();
        assert_eq!(absolute("p".into()).unwrap(), here.join("p").to_string_lossy());
    }
}
