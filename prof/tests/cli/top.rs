use crate::fixture::{Program, scratch};
use crate::{row, three_stacks, tool_ok, top_rows, write};

#[test]
fn top_names_functions_from_dwarf_by_inuse_bytes() {
    let program = Program::build("top-dwarf", &["-O2", "-g"]);
    let profile = write(&scratch("top-dwarf-profile"), "heap.pb.gz", &three_stacks(&program));
    let report = tool_ok(&["top", &profile]);
    assert_eq!(
        top_rows(&report),
        [
            row("alloc_alpha", 600, "60.00%", 600, "60.00%", 1000),
            row("alloc_beta", 300, "30.00%", 900, "90.00%", 2000),
            row("alloc_gamma", 100, "10.00%", 1000, "100.00%", 7000),
        ],
        "{report}"
    );
    let header: Vec<&str> = report.lines().take(4).collect();
    assert_eq!(header[0], format!("File: {profile}"));
    assert_eq!(header[1], "Total: 1000 in-use bytes in 10 objects; 10000 allocated bytes in 100 objects; 3 stacks");
    assert_eq!(header[2], "Top 3 of 3 functions by in-use bytes:");
    assert!(header[3].ends_with("allocated  function"), "{report}");
}

#[test]
fn top_alloc_sorts_by_allocated_bytes() {
    let program = Program::build("top-alloc", &["-O2", "-g"]);
    let profile = write(&scratch("top-alloc-profile"), "heap.pb.gz", &three_stacks(&program));
    let report = tool_ok(&["top", &profile, "--alloc", "-n", "2"]);
    assert_eq!(
        top_rows(&report),
        [
            row("alloc_gamma", 7000, "70.00%", 10000, "100.00%", 100),
            row("alloc_beta", 2000, "20.00%", 3000, "30.00%", 300)
        ],
        "{report}"
    );
    assert!(report.contains("Top 2 of 3 functions by allocated bytes:"), "{report}");
}
