//! Profiles that name their functions themselves, as Go writes them.

use crate::encode::{ProfileWriter, gzip_deflated};
use crate::fixture::scratch;
use crate::{row, tool, top_rows, write};

#[test]
fn line_entries_name_frames_without_symbolizing() {
    let mut w = ProfileWriter::heap();
    // The file is not there: names must come from the profile alone.
    let m = w.mapping(0x40_0000, 0x80_0000, 0, "/nonexistent/app", "");
    let (make, grow, main) = (w.function("main.makeBuffer"), w.function("main.grow"), w.function("main.main"));
    // `makeBuffer` inlined into `grow`, in one location.
    let inlined = w.location_with_lines(m, 0x40_1234, &[make, grow]);
    let caller = w.location_with_lines(m, 0x40_2000, &[main]);
    w.sample(&[inlined, caller], &[4, 4096, 2, 2048]);
    w.sample(&[caller], &[1, 1024, 1, 1024]);
    let profile = write(&scratch("go-names"), "heap.pb.gz", &gzip_deflated(&w.encode()));
    let out = tool(&["top", &profile]);
    assert!(out.status.success());
    assert!(out.stderr.is_empty(), "tried to open the file: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        top_rows(&String::from_utf8(out.stdout).unwrap()),
        [
            row("main.makeBuffer", 2048, "66.67%", 2048, "66.67%", 4096),
            row("main.main", 1024, "33.33%", 3072, "100.00%", 1024),
            row("main.grow", 0, "0.00%", 2048, "66.67%", 0),
        ]
    );
}

#[test]
fn a_missing_file_leaves_addresses_and_warns_once() {
    let mut w = ProfileWriter::heap();
    let m = w.mapping(0x40_0000, 0x80_0000, 0x1000, "/nonexistent/app", "");
    let (a, b) = (w.location(m, 0x40_1234), w.location(m, 0x40_5678));
    let outside = w.location(0, 0x1234_5678);
    w.sample(&[a, b, outside], &[1, 10, 1, 10]);
    let profile = write(&scratch("missing-binary"), "heap.pb.gz", &gzip_deflated(&w.encode()));
    let out = tool(&["top", &profile]);
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.matches("/nonexistent/app").count(), 1, "{stderr}");
    let names: Vec<String> = top_rows(&String::from_utf8(out.stdout).unwrap()).into_iter().map(|r| r.0).collect();
    assert_eq!(names, ["0x401234 (app+0x2234)", "0x12345678", "0x405678 (app+0x6678)"]);
}
