//! Secure mode: the fresh blocks of a page in a random order.

use super::page::Page;
use crate::sys::random::draw;

impl Page {
    /// Secure mode: puts every block of a fresh page on the free list in a
    /// random order (a random start and a random stride coprime with the
    /// block count visit each block once), so the address of the next block
    /// cannot be predicted from the last, nor the secret behind it learnt
    /// from the order (see [`draw`]). Costs a write to every block.
    pub fn shuffle(&self) {
        let n = self.blocks();
        let first = (draw() % n as u64) as usize;
        let mut stride = if n > 1 { 1 + (draw() % (n as u64 - 1)) as usize } else { 1 };
        while gcd(stride, n) != 1 {
            stride = stride % (n - 1) + 1;
        }
        let header = self.first() as usize;
        self.push_fresh((0..n).rev().map(|i| header + (first + i * stride) % n));
    }
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}
