//! Per-thread state: each thread's heap, the slot that finds it, and the pool
//! that hands heaps to new threads and takes them back when threads exit.

pub mod heap;
mod pages;
mod pool;
mod remote;
mod slot;

pub use pool::{fini, for_each_heap, heap, heap_if_any, init, lock_for_fork, unlock_after_fork};
