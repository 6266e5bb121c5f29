//! Each way of naming native code: DWARF (with inlining), `.symtab`,
//! `.dynsym`, none; 64- and 32-bit.

use crate::encode::ProfileWriter;
use crate::fixture::{Program, scratch};
use crate::{row, three_stacks, tool, tool_ok, top_rows, write};

/// One sample at the call inside `inlined_step`, inlined into `outer_step`.
fn inlined_call(program: &Program) -> Vec<u8> {
    let mut w = ProfileWriter::heap();
    let l = program.locations(&mut w);
    w.sample(&[l["site"]], &[1, 64, 1, 64]);
    crate::encode::gzip_stored(&w.encode(), 65535)
}

fn names(program: &Program, profile: Vec<u8>) -> Vec<String> {
    let dir = scratch(&format!("{}-profile", program.path.file_name().unwrap().to_str().unwrap()));
    let path = write(&dir, "heap.pb.gz", &profile);
    top_rows(&tool_ok(&["top", &path])).into_iter().map(|r| r.0).collect()
}

#[test]
fn dwarf_gives_the_inlined_frame_then_its_caller() {
    let program = Program::build("inline-dwarf", &["-O2", "-g"]);
    let dir = scratch("inline-dwarf-profile");
    let report = tool_ok(&["top", &write(&dir, "heap.pb.gz", &inlined_call(&program))]);
    assert_eq!(
        top_rows(&report),
        [row("inlined_step", 64, "100.00%", 64, "100.00%", 64), row("outer_step", 0, "0.00%", 64, "100.00%", 0)],
        "{report}"
    );
}

#[test]
fn symtab_names_functions_without_dwarf() {
    // Not position-independent: the file's addresses are not its offsets.
    let program = Program::build("symtab", &["-O2", "-no-pie"]);
    assert_eq!(names(&program, three_stacks(&program)), ["alloc_alpha", "alloc_beta", "alloc_gamma"]);
    // No inlining is known there: the call site is in `outer_step`.
    assert_eq!(names(&program, inlined_call(&program)), ["outer_step"]);
}

#[test]
fn dynsym_names_exported_functions_of_a_stripped_file() {
    let program = Program::build("dynsym", &["-O2", "-rdynamic"]);
    program.strip();
    assert_eq!(names(&program, three_stacks(&program)), ["alloc_alpha", "alloc_beta", "alloc_gamma"]);
}

#[test]
fn a_separate_debug_file_is_found_by_debuglink() {
    let program = Program::build("debuglink", &["-O2", "-g"]);
    program.split_debug();
    assert_eq!(names(&program, three_stacks(&program)), ["alloc_alpha", "alloc_beta", "alloc_gamma"]);
    // DWARF, not just symbols: the inlined frame is there.
    assert_eq!(names(&program, inlined_call(&program)), ["inlined_step", "outer_step"]);
}

#[test]
fn a_file_of_another_build_is_not_used() {
    let program = Program::build("build-id", &["-O2", "-g"]);
    let dir = scratch("build-id-profile");
    for (build_id, named) in
        [(program.build_id(), true), (program.build_id().to_uppercase(), true), ("0123abcd".into(), false)]
    {
        let mut w = ProfileWriter::heap();
        let l = program.locations_with_build_id(&mut w, &build_id);
        w.sample(&[l["alloc_alpha"]], &[1, 8, 1, 8]);
        let out = tool(&["top", &write(&dir, "heap.pb.gz", &crate::encode::gzip_stored(&w.encode(), 65535))]);
        let stderr = String::from_utf8(out.stderr).unwrap();
        let names: Vec<String> = top_rows(&String::from_utf8(out.stdout).unwrap()).into_iter().map(|r| r.0).collect();
        assert_eq!(names == ["alloc_alpha"], named, "{build_id}: {names:?}");
        assert_eq!(stderr.contains("not the profiled 0123abcd: rebuilt since?"), !named, "{stderr}");
    }
}

#[test]
fn unnamed_code_shows_address_file_and_offset() {
    let program = Program::build("stripped", &["-O2"]);
    program.strip();
    let expected: Vec<String> = ["alloc_alpha", "alloc_beta", "alloc_gamma"]
        .iter()
        .map(|f| {
            let address = program.addresses[*f] + 1;
            format!("{address:#x} (stripped+{:#x})", program.file_offset(address))
        })
        .collect();
    assert_eq!(names(&program, three_stacks(&program)), expected);
}

#[test]
fn thirty_two_bit_programs_symbolize_too() {
    for (name, pie) in [("dwarf32", "-pie"), ("dwarf32-no-pie", "-no-pie")] {
        let program = Program::build(name, &["-m32", pie, "-O2", "-g"]);
        assert!(program.addresses["alloc_alpha"] < 1 << 32);
        assert_eq!(names(&program, three_stacks(&program)), ["alloc_alpha", "alloc_beta", "alloc_gamma"]);
        assert_eq!(names(&program, inlined_call(&program)), ["inlined_step", "outer_step"]);
    }
}
