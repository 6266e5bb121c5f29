//! `mallocator-prof`: heap profiles as a table of functions, a flame graph,
//! or the difference between two profiles. See `cli::USAGE`.

mod cli;
mod elf;
mod flame;
mod heap;
mod profile;
mod proto;
mod report;
mod run;
mod symbolize;
mod target;
mod timeline;

use cli::Command;
use heap::Heap;
use std::io::{self, Write};
use std::process::ExitCode;
use symbolize::Symbolizer;

fn main() -> ExitCode {
    let args: Result<Vec<String>, _> = std::env::args_os().skip(1).map(|a| a.into_string()).collect();
    let parsed = match args {
        Ok(args) => cli::parse(args.into_iter()),
        Err(arg) => Err(format!("argument {arg:?} is not UTF-8")),
    };
    let command = match parsed {
        Ok(command) => command,
        Err(e) => {
            eprintln!("mallocator-prof: {e}\n(see mallocator-prof --help)");
            return ExitCode::from(2);
        }
    };
    match run(command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mallocator-prof: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<ExitCode, String> {
    // One for all the profiles of a run: `diff` reads each file once.
    let mut symbolizer = Symbolizer::default();
    let done = match command {
        Command::Help => print(cli::USAGE),
        Command::Top { file, limit, measure, stacks } => {
            let heap = Heap::load(&file, &mut symbolizer)?;
            let report =
                if stacks { report::stacks(&heap, measure, limit) } else { report::top(&heap, measure, limit) };
            print(&report)
        }
        Command::Flamegraph { file, output, measure } => {
            let heap = Heap::load(&file, &mut symbolizer)?;
            // Drawn whole before the file is made: a failure leaves none.
            let svg = flame::svg(&heap, measure)?;
            std::fs::write(&output, svg).map_err(|e| format!("cannot write {output}: {e}"))
        }
        Command::Diff { before, after, limit, measure } => {
            let before = Heap::load(&before, &mut symbolizer)?;
            let after = Heap::load(&after, &mut symbolizer)?;
            print(&report::diff(&before, &after, measure, limit))
        }
        Command::Timeline { files, output, limit, measure } => {
            let heaps = files.iter().map(|f| Heap::load(f, &mut symbolizer)).collect::<Result<Vec<_>, _>>()?;
            let svg = timeline::svg(&heaps, measure, limit)?;
            std::fs::write(&output, svg).map_err(|e| format!("cannot write {output}: {e}"))
        }
        // The program's exit status.
        Command::Run(args) => return run::run(&args, &mut symbolizer),
    };
    done.map(|()| ExitCode::SUCCESS)
}

/// Writes to standard output, where a reader that went away (`| head`) is
/// no error.
fn print(text: &str) -> Result<(), String> {
    match io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(format!("writing the report: {e}")),
        _ => Ok(()),
    }
}
