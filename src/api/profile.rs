//! The heap profile, on demand: `mallocator::profile::dump` (Rust) and
//! `memory_profile_dump` (C). Sampling is switched on by the environment
//! (`MALLOCATOR_PROFILE=<prefix>`, `MALLOCATOR_LEAKS=1`) when the process
//! starts; see the README's profiling section.

use crate::profiler::View;
use core::ffi::CStr;

/// Whether allocations are being sampled.
pub fn enabled() -> bool {
    crate::profiler::enabled()
}

/// Writes the heap profile (pprof's `profile.proto`, gzipped) to `path`, or
/// to `<prefix>.<pid>.pb.gz` with `None`. `Err(errno)`: `EINVAL` if
/// profiling is off (or no path and no prefix), else what `open` or `write`
/// said.
pub fn dump(path: Option<&CStr>) -> Result<(), i32> {
    crate::profiler::dump(path, View::Now)
}

/// Writes the profile as it was at its peak, when the sampled bytes in use
/// were highest: to `path`, or to `<prefix>.<pid>.peak.pb.gz` (also
/// written at exit). Errors as [`dump`]'s.
pub fn dump_peak(path: Option<&CStr>) -> Result<(), i32> {
    crate::profiler::dump(path, View::Peak)
}
