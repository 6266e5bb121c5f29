//! The small-object layer: size classes, blocks, pages (slabs), their
//! bitmaps and the arena that holds them, and the segments that hold pages.

pub mod arena;
pub mod bitmaps;
pub mod block;
pub mod page;
pub mod segment;
mod shuffle;
pub mod size_class;
