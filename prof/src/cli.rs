//! The command line.

use crate::heap::Measure;

pub const USAGE: &str = "\
mallocator-prof: reads heap profiles (pprof's profile.proto, gzipped) as
Mallocator writes them (MALLOCATOR_PROFILE=<prefix>), or as Go and other
pprof writers do.

Usage:
  mallocator-prof top FILE [-n N] [--alloc]
      Functions by in-use bytes: what each holds itself (flat, as the
      leaf frame) and with its callees (cum), and what it allocated.
  mallocator-prof flamegraph FILE -o OUT.svg [--alloc]
      A flame graph of in-use bytes by stack, as one SVG file.
  mallocator-prof diff A B [-n N] [--alloc]
      Functions by growth of their in-use bytes (flat) from A to B.
  mallocator-prof --help

Options:
  -n N        rows to show (default 20)
  -o FILE     where to write the SVG
  --alloc     count all allocated bytes, freed or not, instead of in-use
  -h, --help  show this text

Native code is named from the files the process had mapped, which must
still be there: from DWARF (theirs, or a separate debug file found by build
id under /usr/lib/debug or by .gnu_debuglink), else their symbol tables.
";

pub enum Command {
    Help,
    Top { file: String, limit: usize, measure: Measure },
    Flamegraph { file: String, output: String, measure: Measure },
    Diff { before: String, after: String, limit: usize, measure: Measure },
}

/// What follows the command word, in any order.
#[derive(Default)]
struct Options {
    files: Vec<String>,
    limit: Option<usize>,
    output: Option<String>,
    alloc: bool,
}

/// Parses the arguments after the program name. Errors are the message to
/// show above the usage.
pub fn parse(mut args: impl Iterator<Item = String>) -> Result<Command, String> {
    let command = args.next().ok_or("no command given")?;
    if command == "-h" || command == "--help" || command == "help" {
        return Ok(Command::Help);
    }
    let mut o = Options::default();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--alloc" => o.alloc = true,
            "-n" => {
                let n = value("-n")?;
                o.limit = Some(
                    n.parse().ok().filter(|&n| n > 0).ok_or_else(|| format!("-n wants a positive count, not {n:?}"))?,
                );
            }
            "-o" => o.output = Some(value("-o")?),
            // "-" alone would be standard input, which we do not read.
            _ if arg.starts_with('-') => return Err(format!("unknown option {arg}")),
            _ => o.files.push(arg),
        }
    }
    let measure = if o.alloc { Measure::Alloc } else { Measure::InUse };
    let limit = o.limit.unwrap_or(20);
    match (command.as_str(), o.files.as_slice()) {
        ("top" | "diff", _) if o.output.is_some() => Err(format!("{command} takes no -o")),
        ("top", [file]) => Ok(Command::Top { file: file.clone(), limit, measure }),
        ("flamegraph", _) if o.limit.is_some() => Err("flamegraph takes no -n".into()),
        ("flamegraph", [file]) => {
            let output = o.output.ok_or("flamegraph needs -o OUT.svg")?;
            Ok(Command::Flamegraph { file: file.clone(), output, measure })
        }
        ("diff", [before, after]) => Ok(Command::Diff { before: before.clone(), after: after.clone(), limit, measure }),
        ("top" | "flamegraph", _) => Err(format!("{command} takes one profile, not {}", o.files.len())),
        ("diff", _) => Err(format!("diff takes two profiles, not {}", o.files.len())),
        _ => Err(format!("unknown command {command:?}")),
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
        let Ok(Command::Top { file, limit, measure }) = parse_str("top --alloc -n 5 p.pb.gz") else { panic!() };
        assert_eq!((file.as_str(), limit, measure), ("p.pb.gz", 5, Measure::Alloc));
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
    }
}
