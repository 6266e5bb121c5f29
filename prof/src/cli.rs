//! The command line.

use crate::heap::Measure;

pub const USAGE: &str = "\
mallocator-prof: reads heap profiles (pprof's profile.proto, gzipped) as
Mallocator writes them (MALLOCATOR_PROFILE=<prefix>), or as Go and other
pprof writers do; runs a program with profiling on.

Usage:
  mallocator-prof run [-p PREFIX] [-o OUT.svg] [-n N] [--rate BYTES]
                      [--interval BYTES] [--signal SIG] [--lib LIBMEMORY]
                      -- PROGRAM [ARGS...]
      Runs PROGRAM with libmemory.so preloaded (32- or 64-bit, as PROGRAM
      is) and profiling on; when it ends, prints the stacks that held the
      most at the peak and writes the peak's flame graph. Exits with
      PROGRAM's status (1 if it cannot be run or profiled).
  mallocator-prof top FILE [-n N] [--alloc] [--stacks]
      Functions by in-use bytes: what each holds itself (flat, as the
      leaf frame) and with its callees (cum), and what it allocated.
      --stacks: whole stacks instead, largest first.
  mallocator-prof flamegraph FILE -o OUT.svg [--alloc]
      A flame graph of in-use bytes by stack, as one SVG file.
  mallocator-prof diff A B [-n N] [--alloc]
      Functions by growth of their in-use bytes (flat) from A to B.
  mallocator-prof timeline FILE... -o OUT.svg [-n N] [--alloc]
      In-use bytes over time from profiles of one process (its numbered
      dumps, <prefix>.<pid>.*.pb.gz), split by the N stacks (default 8)
      that held the most, as one SVG file.
  mallocator-prof --help

Options:
  -n N        rows (stacks) to show (default 20; run: 10; timeline: 8)
  -o FILE     where to write the SVG (run: <prefix>.<pid>.svg)
  --alloc     count all allocated bytes, freed or not, instead of in-use
  -p PREFIX   run: the profile files' prefix (default mallocator.PROGRAM):
              PREFIX.<pid>.pb.gz at exit, PREFIX.<pid>.peak.pb.gz, and the
              numbered dumps PREFIX.<pid>.<seq>.pb.gz
  --rate, --interval, --signal
              run: MALLOCATOR_PROFILE_RATE (mean bytes between samples,
              default 524288), _INTERVAL (a dump every BYTES allocated) and
              _SIGNAL (a dump on each signal SIG, e.g. USR2)
  --lib FILE  run: the library to preload, instead of the build's or the
              installation's libmemory.so of the program's width
  -h, --help  show this text

Native code is named from the files the process had mapped, which must
still be there: from DWARF (theirs, or a separate debug file found by build
id under /usr/lib/debug or by .gnu_debuglink), else their symbol tables.
";

pub enum Command {
    Help,
    Top { file: String, limit: usize, measure: Measure, stacks: bool },
    Flamegraph { file: String, output: String, measure: Measure },
    Diff { before: String, after: String, limit: usize, measure: Measure },
    Timeline { files: Vec<String>, output: String, limit: usize, measure: Measure },
    Run(Run),
}

/// `run`'s arguments.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Run {
    /// The program and its arguments.
    pub program: Vec<String>,
    pub prefix: Option<String>,
    pub flamegraph: Option<String>,
    pub limit: usize,
    /// (variable, value) for the allocator: rate, interval, signal.
    pub env: Vec<(&'static str, String)>,
    pub lib: Option<String>,
}

/// What follows the command word, in any order.
#[derive(Default)]
struct Options {
    files: Vec<String>,
    limit: Option<usize>,
    output: Option<String>,
    alloc: bool,
    stacks: bool,
}

/// Parses the arguments after the program name. Errors are the message to
/// show above the usage.
pub fn parse(mut args: impl Iterator<Item = String>) -> Result<Command, String> {
    let command = args.next().ok_or("no command given")?;
    if command == "-h" || command == "--help" || command == "help" {
        return Ok(Command::Help);
    }
    if command == "run" {
        return parse_run(args).map(|run| run.map_or(Command::Help, Command::Run));
    }
    let mut o = Options::default();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--alloc" => o.alloc = true,
            "--stacks" => o.stacks = true,
            "-n" => o.limit = Some(count(&value("-n")?)?),
            "-o" => o.output = Some(value("-o")?),
            // "-" alone would be standard input, which we do not read.
            _ if arg.starts_with('-') => return Err(format!("unknown option {arg}")),
            _ => o.files.push(arg),
        }
    }
    let measure = if o.alloc { Measure::Alloc } else { Measure::InUse };
    let limit = o.limit.unwrap_or(20);
    match (command.as_str(), o.files.as_slice()) {
        (_, _) if o.stacks && command != "top" => Err(format!("{command} takes no --stacks")),
        ("top" | "diff", _) if o.output.is_some() => Err(format!("{command} takes no -o")),
        ("top", [file]) => Ok(Command::Top { file: file.clone(), limit, measure, stacks: o.stacks }),
        ("flamegraph", _) if o.limit.is_some() => Err("flamegraph takes no -n".into()),
        ("flamegraph", [file]) => {
            let output = o.output.ok_or("flamegraph needs -o OUT.svg")?;
            Ok(Command::Flamegraph { file: file.clone(), output, measure })
        }
        ("diff", [before, after]) => Ok(Command::Diff { before: before.clone(), after: after.clone(), limit, measure }),
        ("timeline", [_, _, ..]) => {
            let output = o.output.ok_or("timeline needs -o OUT.svg")?;
            Ok(Command::Timeline { files: o.files, output, limit: o.limit.unwrap_or(8), measure })
        }
        ("top" | "flamegraph", _) => Err(format!("{command} takes one profile, not {}", o.files.len())),
        ("diff", _) => Err(format!("diff takes two profiles, not {}", o.files.len())),
        ("timeline", _) => Err(format!("timeline takes two profiles or more, not {}", o.files.len())),
        _ => Err(format!("unknown command {command:?}")),
    }
}

/// `run`'s options, up to `--` or the first word that is not one; the rest
/// is the program and its arguments. None for `--help`.
fn parse_run(mut args: impl Iterator<Item = String>) -> Result<Option<Run>, String> {
    let mut run = Run { limit: 10, ..Run::default() };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--" => break,
            "-p" => run.prefix = Some(value("-p")?),
            "-o" => run.flamegraph = Some(value("-o")?),
            "-n" => run.limit = count(&value("-n")?)?,
            "--lib" => run.lib = Some(value("--lib")?),
            "--rate" => run.env.push(("MALLOCATOR_PROFILE_RATE", bytes("--rate", &value("--rate")?)?)),
            "--interval" => run.env.push(("MALLOCATOR_PROFILE_INTERVAL", bytes("--interval", &value("--interval")?)?)),
            "--signal" => run.env.push(("MALLOCATOR_PROFILE_SIGNAL", value("--signal")?)),
            _ if arg.starts_with('-') => return Err(format!("unknown option {arg} (the program goes after --)")),
            _ => {
                run.program.push(arg);
                break;
            }
        }
    }
    run.program.extend(args);
    if run.program.is_empty() {
        return Err("run needs a program: mallocator-prof run [options] -- PROGRAM [ARGS...]".into());
    }
    Ok(Some(run))
}

/// A positive count (`-n`).
fn count(n: &str) -> Result<usize, String> {
    n.parse().ok().filter(|&n| n > 0).ok_or_else(|| format!("-n wants a positive count, not {n:?}"))
}

/// A positive number of bytes, in decimal as the allocator reads it.
fn bytes(option: &str, n: &str) -> Result<String, String> {
    match n.parse::<u64>() {
        Ok(v) if v > 0 => Ok(v.to_string()),
        _ => Err(format!("{option} wants a positive number of bytes, not {n:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(line: &str) -> Result<Command, String> {
        parse(line.split_whitespace().map(String::from))
    }

    #[test]
    fn options_in_any_order() {
        let Ok(Command::Top { file, limit, measure, stacks }) = parse_str("top --alloc -n 5 p.pb.gz --stacks") else {
            panic!()
        };
        assert_eq!((file.as_str(), limit, measure, stacks), ("p.pb.gz", 5, Measure::Alloc, true));
        let Ok(Command::Timeline { files, output, limit, measure }) = parse_str("timeline a b c -o t.svg") else {
            panic!()
        };
        assert_eq!(
            (files, output.as_str(), limit, measure),
            (vec!["a".into(), "b".into(), "c".into()], "t.svg", 8, Measure::InUse)
        );
        let Ok(Command::Flamegraph { file, output, measure }) = parse_str("flamegraph -o o.svg p") else { panic!() };
        assert_eq!((file.as_str(), output.as_str(), measure), ("p", "o.svg", Measure::InUse));
        let Ok(Command::Diff { before, after, limit, .. }) = parse_str("diff a b") else { panic!() };
        assert_eq!((before.as_str(), after.as_str(), limit), ("a", "b", 20));
        assert!(matches!(parse_str("diff a b --help"), Ok(Command::Help)));
    }

    #[test]
    fn mistakes_are_named() {
        let error = |line| parse_str(line).err().unwrap();
        assert_eq!(error(""), "no command given");
        assert_eq!(error("show p"), "unknown command \"show\"");
        assert_eq!(error("top"), "top takes one profile, not 0");
        assert_eq!(error("top a b"), "top takes one profile, not 2");
        assert_eq!(error("diff a"), "diff takes two profiles, not 1");
        assert_eq!(error("top p -n"), "-n needs a value");
        assert_eq!(error("top p -n 0"), "-n wants a positive count, not \"0\"");
        assert_eq!(error("top p -x"), "unknown option -x");
        assert_eq!(error("top p -o x.svg"), "top takes no -o");
        assert_eq!(error("flamegraph p"), "flamegraph needs -o OUT.svg");
        assert_eq!(error("flamegraph p -o x -n 3"), "flamegraph takes no -n");
        assert_eq!(error("flamegraph p -o x --stacks"), "flamegraph takes no --stacks");
        assert_eq!(error("timeline a -o t.svg"), "timeline takes two profiles or more, not 1");
        assert_eq!(error("timeline a b"), "timeline needs -o OUT.svg");
        assert_eq!(error("run"), "run needs a program: mallocator-prof run [options] -- PROGRAM [ARGS...]");
        assert_eq!(error("run -x -- p"), "unknown option -x (the program goes after --)");
        assert_eq!(error("run --rate 4k -- p"), "--rate wants a positive number of bytes, not \"4k\"");
        assert_eq!(error("run --interval"), "--interval needs a value");
    }

    #[test]
    fn run_takes_its_options_then_the_program() {
        let Ok(Command::Run(run)) = parse_str("run -p /tmp/x --rate 4096 --signal USR2 -n 3 -- ./prog -p a -- b")
        else {
            panic!()
        };
        assert_eq!(run.program, ["./prog", "-p", "a", "--", "b"]);
        assert_eq!((run.prefix.as_deref(), run.limit), (Some("/tmp/x"), 3));
        assert_eq!(run.env, [("MALLOCATOR_PROFILE_RATE", "4096".into()), ("MALLOCATOR_PROFILE_SIGNAL", "USR2".into())]);
        // Without `--`, the first word that is not an option is the program.
        let Ok(Command::Run(run)) = parse_str("run -o f.svg python3 -c x") else { panic!() };
        assert_eq!(
            (run.program.join(" "), run.flamegraph.as_deref(), run.limit),
            ("python3 -c x".into(), Some("f.svg"), 10)
        );
        assert!(matches!(parse_str("run --help"), Ok(Command::Help)));
    }
}
