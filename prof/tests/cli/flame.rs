use crate::fixture::{Program, scratch};
use crate::{three_stacks, tool, tool_ok, write};

#[test]
fn flame_graph_draws_each_function_with_its_bytes() {
    let program = Program::build("flame", &["-O2", "-g"]);
    let dir = scratch("flame-profile");
    let profile = write(&dir, "heap.pb.gz", &three_stacks(&program));
    let svg_path = dir.join("inuse.svg");
    tool_ok(&["flamegraph", &profile, "-o", svg_path.to_str().unwrap()]);
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains(&format!("{profile}: in-use bytes")), "no title");
    // Each frame's tooltip: its bytes with its callees, and their share.
    // The root (`alloc_gamma`, bottom) spans everything.
    for frame in
        ["alloc_alpha (600 bytes, 60.00%)", "alloc_beta (900 bytes, 90.00%)", "alloc_gamma (1,000 bytes, 100.00%)"]
    {
        assert!(svg.contains(&format!("<title>{frame}</title>")), "{frame} missing");
    }
    // The root at the bottom: callers below their callees.
    assert!(frame_y(&svg, "alloc_gamma") > frame_y(&svg, "alloc_beta"));
    assert!(frame_y(&svg, "alloc_beta") > frame_y(&svg, "alloc_alpha"));

    let alloc_path = dir.join("alloc.svg");
    tool_ok(&["flamegraph", &profile, "--alloc", "-o", alloc_path.to_str().unwrap()]);
    let svg = std::fs::read_to_string(&alloc_path).unwrap();
    assert!(svg.contains(&format!("{profile}: allocated bytes")), "no title");
    assert!(svg.contains("<title>alloc_alpha (1,000 bytes, 10.00%)</title>"));
}

/// The top edge of the function's frame: `<title>` then `<rect x=".." y="..">`.
fn frame_y(svg: &str, function: &str) -> u32 {
    let frame = &svg[svg.find(&format!("<title>{function} (")).unwrap()..];
    let y = &frame[frame.find(" y=\"").unwrap() + 4..];
    y[..y.find('"').unwrap()].parse().unwrap()
}

#[test]
fn nothing_in_use_is_an_error_and_writes_no_file() {
    let mut w = crate::encode::ProfileWriter::heap();
    let f = w.function("main.freed");
    let l = w.location_with_lines(0, 0x1000, &[f]);
    w.sample(&[l], &[5, 500, 0, 0]);
    let dir = scratch("flame-empty");
    let profile = write(&dir, "heap.pb.gz", &crate::encode::gzip_deflated(&w.encode()));
    let svg = dir.join("out.svg");
    let out = tool(&["flamegraph", &profile, "-o", svg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no in-use bytes to draw"));
    assert!(!svg.exists());
}
