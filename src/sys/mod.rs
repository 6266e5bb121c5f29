//! Thin wrappers around libc that every layer above may use: `errno`, raw
//! writes, randomness, and the one lock. No policy and no allocation here.

pub mod errno;
pub mod lock;
pub mod random;
