use crate::encode::{ProfileWriter, gzip_stored};
use crate::fixture::{Program, scratch};
use crate::{tool_ok, write};

#[test]
fn diff_sorts_functions_by_growth() {
    let program = Program::build("diff", &["-O2", "-g"]);
    let profile = |alpha: i64, beta: i64, gamma: i64| {
        let mut w = ProfileWriter::heap();
        let l = program.locations(&mut w);
        w.sample(&[l["alloc_alpha"], l["alloc_beta"]], &[1, alpha, 1, alpha]);
        w.sample(&[l["alloc_beta"]], &[1, beta, 1, beta]);
        if gamma > 0 {
            w.sample(&[l["alloc_gamma"]], &[1, gamma, 1, gamma]);
        }
        gzip_stored(&w.encode(), 65535)
    };
    let dir = scratch("diff-profiles");
    let a = write(&dir, "a.pb.gz", &profile(100, 300, 0));
    let b = write(&dir, "b.pb.gz", &profile(700, 200, 50));
    let report = tool_ok(&["diff", &a, &b]);
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines[0], format!("A: {a}: 400 in-use bytes"));
    assert_eq!(lines[1], format!("B: {b}: 950 in-use bytes (+550)"));
    assert_eq!(lines[2], "Top 3 of 3 functions by growth in in-use bytes:");
    let rows: Vec<Vec<&str>> = lines[4..].iter().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows,
        [
            ["+600", "100", "700", "alloc_alpha"],
            ["+50", "0", "50", "alloc_gamma"],
            ["-100", "300", "200", "alloc_beta"]
        ],
        "{report}"
    );
    let first = tool_ok(&["diff", &a, &b, "-n", "1"]);
    assert_eq!(first.lines().count(), 5, "{first}");
}
