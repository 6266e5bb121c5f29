//! libFuzzer target: the input bytes are a sequence of allocator operations
//! (see `mallocator_fuzz`), run against Mallocator with a model of the live
//! blocks. `cargo fuzz run ops` (nightly, or `RUSTC_BOOTSTRAP=1` on stable;
//! see ../README.md). Bad frees print one line each on stderr: expected.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mallocator_fuzz::run(data);
});
