//! A global allocator that backs large allocations (the counting tables) with transparent huge
//! pages where the kernel offers them only on request (`/sys/kernel/mm/transparent_hugepage/enabled`
//! = madvise). A table of 100,000 addresses spans ~1,800 4 KiB pages: looked up at random, nearly
//! every lookup missed the TLB, which under virtualisation costs a two-level page walk.
use std::alloc::{GlobalAlloc, Layout, System};

const HUGE: usize = 2 << 20;
/// Allocations from this size on get their own mapping, advised MADV_HUGEPAGE.
const MIN: usize = 4 << 20;

pub struct HugeAlloc;
pub static ON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

unsafe impl GlobalAlloc for HugeAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if l.size() < MIN || l.align() > HUGE || !ON.load(std::sync::atomic::Ordering::Relaxed) {
            return System.alloc(l);
        }
        let len = l.size().div_ceil(HUGE) * HUGE;
        // One extra huge page of slack so the mapping can start on a 2 MiB boundary.
        let p = libc::mmap(std::ptr::null_mut(), len + HUGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
        if p == libc::MAP_FAILED {
            return std::ptr::null_mut();
        }
        let a = p as usize;
        let start = a.div_ceil(HUGE) * HUGE;
        if start > a {
            libc::munmap(p, start - a);
        }
        let end = a + len + HUGE;
        if end > start + len {
            libc::munmap((start + len) as *mut libc::c_void, end - start - len);
        }
        libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
        start as *mut u8
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if l.size() < MIN || l.align() > HUGE {
            return System.dealloc(p, l);
        }
        libc::munmap(p as *mut libc::c_void, l.size().div_ceil(HUGE) * HUGE);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        if l.size() < MIN && new_size < MIN && l.align() <= HUGE {
            return System.realloc(p, l, new_size);
        }
        let n = Layout::from_size_align_unchecked(new_size, l.align());
        let q = self.alloc(n);
        if !q.is_null() {
            std::ptr::copy_nonoverlapping(p, q, l.size().min(new_size));
            self.dealloc(p, l);
        }
        q
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if l.size() < MIN || l.align() > HUGE {
            return System.alloc_zeroed(l);
        }
        self.alloc(l)
    }
}
