//! Mallocator: a general-purpose memory allocator, shipped as `libmemory.so`.
//!
//! One folder per layer; each imports only from the layers below it (the one
//! exception, a small segment naming the heap that owns it, says why where it
//! is). Bottom up (see `docs/design.md` for the diagram and the numbers):
//!
//! - `sys`: thin libc wrappers: `errno`, raw writes, randomness, the lock.
//! - `diag`: options, one-line misuse reports, text without allocation,
//!   statistics counters.
//! - `os`: memory from `mmap` of `/dev/zero`, returned with `munmap`/`madvise`.
//! - `segment`: aligned mappings that hold small pages, large runs, or one huge
//!   block, and the map that says which addresses are ours.
//! - `small`: [`size_class`]es, blocks, pages (slabs), small segments.
//! - `large`: the best-fit, coalescing region allocator above the largest
//!   class, huge mappings, and the resident budget for both.
//! - `profiler`: the sampling heap profiler: stacks of sampled blocks, the
//!   pprof file, the leak report.
//! - `thread`: per-thread heaps, the slot that finds them, the pool that hands
//!   them to new threads.
//! - `api`: the entry points ([`alloc`]), the C ABI ([`ffi`]), the malloc
//!   family, [`Mallocator`] for `#[global_allocator]`, `fork` handlers, and
//!   the [`stats`] readers.
#![deny(unsafe_op_in_unsafe_fn)]
// Nothing here needs std but the unit tests and, off x86, `thread_local!`.
#![cfg_attr(not(test), no_std)]
#[cfg(all(not(test), not(any(target_arch = "x86_64", target_arch = "x86"))))]
extern crate std;

mod api;
mod diag;
mod large;
mod os;
mod profiler;
mod segment;
mod small;
mod sys;
mod thread;

#[cfg(feature = "malloc")]
pub use api::malloc;
pub use api::{Mallocator, alloc, ffi, profile, stats};
pub use small::size_class;
