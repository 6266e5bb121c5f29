//! A heap's two lookup tables, the first thing `malloc` and `free` read:
//!
//! - **by size**: for each 8-byte step of request up to
//!   [`TABLE_LIMIT`], C's and Rust's way (see [`Table`]), the page
//!   that serves it now: `malloc` goes from the size to a page in one load
//!   (mimalloc's `pages_free_direct`); above, by class. Never null: a class
//!   without a page points to [`EMPTY_PAGE`], whose free list is empty.
//! - **by address**: [`SLOTS`] slots, the page of this heap at
//!   `(p >> 16) % SLOTS` with its number (`p >> 16`) as a tag: `free` finds
//!   "a small page of this heap" in one compare, with no segment map, kind
//!   or owner test. A miss (another heap's page, a large block, a foreign pointer, or
//!   a page whose slot another page of this heap took) takes the full path.
//!
//! Only the owner reads or writes them; a slot is cleared when its page
//! leaves the heap, so a stale slot never accepts a pointer into a page
//! given back (`thread::heap`'s test `a_page_given_back_leaves_the_table`).

use crate::small::page::{EMPTY_PAGE, PAGE_SHIFT, Page};
use crate::small::size_class::{NUM_CLASSES, TABLE_LEN, TABLE_LIMIT, Table, table_index};
use core::cell::Cell;
use core::ptr::null;

/// Slots of the table by address: 4,096 cover 256 MiB of consecutive pages
/// (64 segments on x86_64) without two of them taking one slot, at 16 bytes
/// a slot (8 on i686): 64 KiB of address space per heap, of which only the
/// slots of pages in use are ever written (resident: an OS page per 256 or
/// 512 consecutive pages).
pub const SLOTS: usize = 4096;

/// The tag of an empty slot 0: no page number (`p >> 16` is below 2^48).
const NO_PAGE: usize = usize::MAX;

#[repr(C)]
pub struct Tables {
    // `pages` follows `tags` (see `page_of`).
    /// By table kind, then size step: the page that serves.
    direct: [[Cell<*const Page>; TABLE_LEN]; 2],
    /// By class: the page that serves (for requests above the size tables).
    current: [Cell<*const Page>; NUM_CLASSES],
    /// By address: the slot's page's number (its address >> 16); for an
    /// empty slot 0 or [`NO_PAGE`] (always [`NO_PAGE`] in slot 0, where null
    /// would find 0).
    tags: [Cell<usize>; SLOTS],
    /// By address: the slot's page.
    pages: [Cell<*const Page>; SLOTS],
}

const _: () =
    assert!(core::mem::offset_of!(Tables, pages) == core::mem::offset_of!(Tables, tags) + SLOTS * size_of::<usize>());

impl Tables {
    /// Tables with no page: every size points to [`EMPTY_PAGE`], every
    /// slot is empty (the heap that threads without one of their own see).
    pub const fn empty() -> Tables {
        Tables {
            direct: [const { [const { Cell::new(&EMPTY_PAGE.0 as *const Page) }; TABLE_LEN] }; 2],
            current: [const { Cell::new(&EMPTY_PAGE.0 as *const Page) }; NUM_CLASSES],
            tags: {
                let mut tags = [const { Cell::new(0) }; SLOTS];
                tags[0] = Cell::new(NO_PAGE);
                tags
            },
            pages: [const { Cell::new(null()) }; SLOTS],
        }
    }

    /// Fills zeroed tables (a new heap's) as [`Self::empty`].
    pub fn init(&self) {
        for table in &self.direct {
            table.iter().for_each(|e| e.set(&EMPTY_PAGE.0));
        }
        self.current.iter().for_each(|e| e.set(&EMPTY_PAGE.0));
        self.tags[0].set(NO_PAGE);
    }

    /// The page that serves a request of `size <= TABLE_LIMIT` bytes.
    #[inline(always)]
    pub fn direct(&self, table: Table, size: usize) -> &Page {
        debug_assert!(size <= TABLE_LIMIT);
        // SAFETY: `table_index(size) < TABLE_LEN` for sizes up to
        // TABLE_LIMIT; entries point to live pages of this heap or to
        // EMPTY_PAGE.
        unsafe { &*self.direct[table as usize].get_unchecked(table_index(size)).get() }
    }

    /// The page that serves `class`.
    #[inline(always)]
    pub fn current(&self, class: usize) -> &Page {
        // SAFETY: entries point to live pages of this heap or to EMPTY_PAGE.
        unsafe { &*self.current[class].get() }
    }

    /// The page of this heap that `p` points into, if its slot holds it.
    #[inline(always)]
    pub fn page_of(&self, p: *mut u8) -> Option<&Page> {
        let number = p as usize >> PAGE_SHIFT;
        // SAFETY: the index is below `SLOTS`; a tagged slot holds a live page
        // of this heap (slots are cleared before their page leaves). The
        // page is read `SLOTS` words past the tag (the arrays follow each
        // other), so that both loads use one index register.
        unsafe {
            let tag = self.tags.as_ptr().add(number % SLOTS);
            let page = (*tag.add(SLOTS).cast::<Cell<*const Page>>()).get();
            if (*tag).get() != number {
                return None;
            }
            // A tagged slot's page is never null: no test for the `Option`.
            core::hint::assert_unchecked(!page.is_null());
            Some(&*page)
        }
    }

    /// `page` (or [`EMPTY_PAGE`] for null) serves `class` from now on.
    pub fn set_current(&self, class: usize, page: *const Page) {
        let page = if page.is_null() { &EMPTY_PAGE.0 } else { page };
        self.current[class].set(page);
        for table in [Table::Rust, Table::C] {
            for e in &self.direct[table as usize][table.entries_of(class)] {
                e.set(page);
            }
        }
    }

    /// Gives `page` (just assigned to this heap) its slot, or takes it back
    /// from another page of this heap.
    pub fn insert(&self, page: &Page) {
        let slot = (page.base() >> PAGE_SHIFT) % SLOTS;
        self.tags[slot].set(page.base() >> PAGE_SHIFT);
        self.pages[slot].set(page);
    }

    /// Clears `page`'s slot if it holds it (before the page is given back).
    pub fn remove(&self, page: &Page) {
        let slot = (page.base() >> PAGE_SHIFT) % SLOTS;
        if core::ptr::eq(self.pages[slot].get(), page) {
            self.tags[slot].set(NO_PAGE);
            self.pages[slot].set(null());
        }
    }
}
