//! Mallocator: a general-purpose memory allocator, shipped as `libmemory.so`.
//!
//! The layers, bottom up (see `docs/design.md` for the diagram and the numbers):
//!
//! - `os`: memory from `mmap` of `/dev/zero`, returned with `munmap`/`madvise`.
//! - `segment_map`: which segment-aligned addresses are ours (pointer validation).
//! - `segment`: aligned segments that hold small pages, large regions, or one huge block.
//! - [`size_class`]: the slab size classes.
//! - `page`: a slab of one size class: lazy bump area plus an intrusive free list.
//! - `heap`: a thread's heap of pages; remote frees arrive on an atomic list.
//! - `thread`: which heap belongs to the calling thread, and what happens when it exits.
//! - `large`: the best-fit, coalescing region allocator above the largest class.
//! - [`alloc`]: the entry points that route a request to the right layer.
//! - `fork`: `pthread_atfork` handlers, so a child can allocate.
//! - [`stats`]: counters per class and per event, merged on read.
//! - [`ffi`]: the C ABI (`allocate`, `deallocate`, init/fini routines).
//! - `malloc`: the malloc family for `LD_PRELOAD` (feature `malloc`, default).
#![deny(unsafe_op_in_unsafe_fn)]
// Nothing here needs std but the unit tests and, off x86, `thread_local!`.
#![cfg_attr(not(test), no_std)]
#[cfg(all(not(test), not(any(target_arch = "x86_64", target_arch = "x86"))))]
extern crate std;

pub mod alloc;
mod error;
pub mod ffi;
mod fork;
mod heap;
mod large;
#[cfg(feature = "malloc")]
pub mod malloc;
mod options;
mod os;
mod page;
mod segment;
mod segment_map;
pub mod size_class;
pub mod stats;
mod sync;
mod text;
mod thread;

pub use alloc::Mallocator;
