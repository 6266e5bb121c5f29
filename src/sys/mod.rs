//! Thin wrappers around libc that every layer above may use: `errno`, raw
//! writes, randomness, a coarse clock, and the one lock. No policy and no
//! allocation here.

pub mod clock;
pub mod errno;
pub mod lock;
pub mod random;
