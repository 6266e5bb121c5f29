//! Per-thread state: each thread's heap, its lookup tables, the slot that
//! finds it, frees from other threads, and the pool that hands heaps to new
//! threads and takes them back when threads exit.

mod aside;
pub mod heap;
mod pages;
mod pool;
pub mod remote;
mod slot;
pub mod tables;

pub use pool::{
    current, fini, for_each_heap, heap, heap_if_any, init, lock_for_fork, trim_abandoned, unlock_after_fork,
};
