//! The entry points: routing of each request to the layer that serves it,
//! the C ABI, the malloc family, Rust's `GlobalAlloc`, `fork` handling, and
//! the statistics and profile readers.

pub mod alloc;
#[cfg(feature = "malloc")]
mod cxx;
pub mod ffi;
mod fork;
mod global;
#[cfg(feature = "malloc")]
pub mod malloc;
pub mod profile;
pub mod stats;

pub use global::Mallocator;
