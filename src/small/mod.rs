//! The small-object layer: size classes, blocks, pages (slabs) and the
//! segments that hold them.

pub mod block;
pub mod page;
pub mod segment;
mod shuffle;
pub mod size_class;
