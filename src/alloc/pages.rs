//! Reserves that stay unresident until used: anonymous mappings for the thread tables, and how
//! much of one is resident (for the tracker-memory figure).

/// A zero-filled, page-aligned region of `bytes` bytes that lives for the rest of the process,
/// or `None` if the system refuses it. On Unix an anonymous private mapping (`MAP_NORESERVE`):
/// its pages take no memory until written. Elsewhere zeroed memory of the system allocator.
pub(crate) fn map_zeroed(bytes: usize) -> Option<*mut u8> {
    let bytes = bytes.max(1);
    #[cfg(unix)]
    {
        // SAFETY: an anonymous mapping with no address hint: it cannot alias memory in use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        (p != libc::MAP_FAILED).then_some(p.cast())
    }
    #[cfg(not(unix))]
    {
        use std::alloc::{GlobalAlloc, Layout, System};
        let layout = Layout::from_size_align(bytes, 4096).ok()?;
        // SAFETY: a non-zero layout; the block is never freed.
        let p = unsafe { System.alloc_zeroed(layout) };
        (!p.is_null()).then_some(p)
    }
}

/// Bytes of `start .. start + len` (a region from [`map_zeroed`]) that are resident now.
pub(crate) fn resident(start: *const u8, len: usize) -> u64 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `sysconf` has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let pages = len.div_ceil(page);
        let mut v = vec![0u8; pages];
        // SAFETY: `start` is page-aligned (a mapping), `len` bytes of it are mapped, and `v`
        // has one byte per page of the range.
        let r = unsafe { libc::mincore(start.cast_mut().cast(), len, v.as_mut_ptr()) };
        if r != 0 {
            return len as u64;
        }
        v.iter().filter(|&&b| b & 1 != 0).count() as u64 * page as u64
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = start;
        len as u64
    }
}
