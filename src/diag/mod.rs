//! Diagnostics: options read from the environment, one-line reports of
//! misuse, formatting without allocation, and the statistics counters. The
//! lowest layer: everything above may report or count.

pub mod counters;
pub mod error;
pub mod options;
pub mod text;
