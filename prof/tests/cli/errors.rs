use crate::encode::{ProfileWriter, gzip_stored};
use crate::fixture::scratch;
use crate::{tool, write};

fn stderr(args: &[&str], code: i32) -> String {
    let out = tool(args);
    assert_eq!(out.status.code(), Some(code), "{args:?}");
    assert!(out.stdout.is_empty());
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn help_prints_usage() {
    for flag in ["--help", "-h", "help"] {
        let out = tool(&[flag]);
        assert!(out.status.success());
        let usage = String::from_utf8(out.stdout).unwrap();
        for line in
            ["mallocator-prof top FILE [-n N] [--alloc]", "mallocator-prof flamegraph FILE -o OUT.svg [--alloc]"]
        {
            assert!(usage.contains(line), "{usage}");
        }
    }
}

#[test]
fn usage_mistakes_exit_2_and_point_to_help() {
    let msg = stderr(&["frobnicate", "x"], 2);
    assert!(msg.starts_with("mallocator-prof: unknown command \"frobnicate\""), "{msg}");
    assert!(msg.contains("mallocator-prof --help"));
    assert!(stderr(&[], 2).contains("no command given"));
    assert!(stderr(&["flamegraph", "x"], 2).contains("needs -o"));
}

#[test]
fn unreadable_and_bad_files_exit_1_and_say_why() {
    let dir = scratch("errors");
    let missing = dir.join("missing.pb.gz");
    let msg = stderr(&["top", missing.to_str().unwrap()], 1);
    assert!(msg.contains(&format!("cannot read {}", missing.display())), "{msg}");

    let garbage = write(&dir, "garbage", b"this is not a profile at all\n");
    assert!(stderr(&["top", &garbage], 1).contains("not a valid profile"));

    let mut cpu = ProfileWriter::with_types(&[("samples", "count"), ("cpu", "nanoseconds")]);
    cpu.sample(&[], &[1, 10_000_000]);
    let cpu = write(&dir, "cpu.pb.gz", &gzip_stored(&cpu.encode(), 65535));
    let msg = stderr(&["top", &cpu], 1);
    assert!(msg.contains("not a heap profile: it counts [samples, cpu], not alloc_objects"), "{msg}");

    // The second file of a diff is checked as well as the first.
    let good = write(&dir, "good.pb.gz", &gzip_stored(&ProfileWriter::heap().encode(), 65535));
    assert!(stderr(&["diff", &good, &garbage], 1).contains("garbage: not a valid profile"));

    let out_dir = dir.join("no-such-dir").join("out.svg");
    let mut w = ProfileWriter::heap();
    let f = w.function("f");
    let l = w.location_with_lines(0, 1, &[f]);
    w.sample(&[l], &[1, 1, 1, 1]);
    let one = write(&dir, "one.pb.gz", &gzip_stored(&w.encode(), 65535));
    assert!(stderr(&["flamegraph", &one, "-o", out_dir.to_str().unwrap()], 1).contains("cannot write"));
}
