use crate::encode::{ProfileWriter, gzip_stored};
use crate::fixture::{Program, scratch};
use crate::{tool, tool_ok, write};

/// Dumps of one process at 1, 2 and 4 s: `alloc_alpha` rises and falls,
/// `alloc_beta` grows, `alloc_gamma` stays small.
fn dumps(program: &Program, dir: &std::path::Path) -> Vec<String> {
    [(1, 100, 50, 10), (2, 900, 200, 10), (4, 0, 700, 10)]
        .iter()
        .map(|&(second, alpha, beta, gamma)| {
            let mut w = ProfileWriter::heap();
            let l = program.locations(&mut w);
            w.sample(&[l["alloc_alpha"], l["alloc_gamma"]], &[1, alpha, 1, alpha]);
            w.sample(&[l["alloc_beta"], l["alloc_gamma"]], &[1, beta, 1, beta]);
            w.sample(&[l["alloc_gamma"]], &[1, gamma, 1, gamma]);
            w.time_nanos(1_700_000_000_000_000_000 + second * 1_000_000_000);
            write(dir, &format!("p.{second}.pb.gz"), &gzip_stored(&w.encode(), 65535))
        })
        .collect()
}

#[test]
fn timeline_stacks_bands_in_time_order() {
    let program = Program::build("timeline", &["-O2", "-g"]);
    let dir = scratch("timeline-profiles");
    let files = dumps(&program, &dir);
    let svg_path = dir.join("t.svg");
    let out = svg_path.to_str().unwrap();
    // Given in any order: drawn in time order.
    tool_ok(&["timeline", &files[2], &files[0], &files[1], "-o", out]);
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.contains("in-use bytes over time: 3 profiles in 3.000 s"), "no title");
    let legend: Vec<&str> = svg.match_indices("class=\"legend\"").map(|(i, _)| &svg[i..]).collect();
    // The stack highest at its highest first: alpha (900), beta (700),
    // gamma (10).
    for (row, stack) in legend.iter().zip(["alloc_alpha ← alloc_gamma", "alloc_beta ← alloc_gamma", "alloc_gamma"])
    {
        assert!(row.contains(&format!(">{stack} (at most")), "{row}");
    }
    assert_eq!(legend.len(), 3);
    // -n 1: alpha alone, the rest summed.
    tool_ok(&["timeline", &files[0], &files[1], &files[2], "-n", "1", "-o", out]);
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert_eq!(svg.matches("<polygon").count(), 2);
    assert!(svg.contains(">2 other stacks (at most 710 B)</text>"), "{svg}");
}

#[test]
fn timeline_needs_times_and_two_profiles() {
    let program = Program::build("timeline-errors", &["-O2", "-g"]);
    let dir = scratch("timeline-errors-profiles");
    let files = dumps(&program, &dir);
    let mut w = ProfileWriter::heap();
    let l = program.locations(&mut w);
    w.sample(&[l["alloc_alpha"]], &[1, 1, 1, 1]);
    let untimed = write(&dir, "untimed.pb.gz", &gzip_stored(&w.encode(), 65535));
    let out = tool(&["timeline", &files[0], &untimed, "-o", dir.join("x.svg").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let msg = String::from_utf8(out.stderr).unwrap();
    assert!(msg.contains(&format!("{untimed}: the profile does not say when it was taken")), "{msg}");
    assert!(!dir.join("x.svg").exists());
    // `top --stacks` of one of them: whole stacks, largest first.
    let report = tool_ok(&["top", &files[1], "--stacks"]);
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines[2], "Top 3 of 3 stacks by in-use bytes:");
    assert_eq!(lines[3].split_whitespace().take(2).collect::<Vec<_>>(), ["900", "81.08%"]);
    assert_eq!([lines[4].trim(), lines[5].trim()], ["alloc_alpha", "alloc_gamma"]);
}
