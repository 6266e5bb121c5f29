//! Blocks set aside: a block the owner meets with its pending bit set (on
//! its free list, or in its own free of it) waits off every list until the
//! bit's fate is known (see `Page::set_aside`). Almost never happens: only
//! when a thread frees a block in the same instant as its owner. The heap
//! keeps the pages that have such blocks in a list of their own.

use super::heap::Owner;
use crate::small::page::{EMPTY_PAGE, Page};
use core::ptr::null_mut;

/// The end of the list of pages with blocks set aside (a page is listed iff
/// its link is not null).
fn end() -> *mut Page {
    &EMPTY_PAGE.0 as *const Page as *mut Page
}

impl Owner<'_> {
    /// The head of `page`'s free list has its pending bit set: it leaves the
    /// list and waits aside.
    pub(super) fn refuse(&mut self, page: &Page) {
        page.refuse();
        self.list_aside(page);
    }

    /// Sets `p`, a live block of `page` whose free this thread just reported,
    /// aside until its pending bit clears.
    pub(super) fn set_aside(&mut self, page: &Page, p: *mut u8) {
        page.set_aside(p);
        self.list_aside(page);
    }

    fn list_aside(&mut self, page: &Page) {
        if page.next_aside_page().is_null() {
            let head = self.local().aside_pages;
            page.set_next_aside_page(if head.is_null() { end() } else { head });
            self.local().aside_pages = page as *const Page as *mut Page;
        }
    }

    /// Puts the blocks set aside whose pending bit cleared back on their
    /// pages' free lists (the claim was taken back, or backed out).
    #[cold]
    #[inline(never)]
    pub(super) fn settle_aside(&mut self) {
        let mut page = core::mem::replace(&mut self.local().aside_pages, null_mut());
        while !page.is_null() && page != end() {
            // SAFETY: listed pages are live pages of this heap: a page with
            // blocks aside counts them in use, so it is not given back.
            let p = unsafe { &*page };
            let next = p.next_aside_page();
            p.set_next_aside_page(null_mut());
            let back = p.settle_aside();
            if p.has_aside() {
                self.list_aside(p);
            }
            if p.returned(back) {
                self.countdown_ended(p);
            }
            page = next;
        }
    }
}
