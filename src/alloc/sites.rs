//! Code locations of indexed allocations ([`Builder::capture_sites`](crate::Builder::capture_sites)).
//!
//! When on, an indexed allocation walks its stack (up to [`FRAMES`] return addresses, with the
//! unwinder's lock-free `trace_unsynchronized`: no lock of heapspan's, no allocation) and
//! stores a *site*: a hash of those addresses, in a per-table array parallel to the entries
//! (8 bytes more per indexed allocation). The addresses of each new site go into a bounded
//! lock-free table, so that [`location`] can symbolize them later, off the hot path.
//!
//! Cost: a stack walk per indexed allocation, about a microsecond or more (every allocation in
//! full mode: for development; one per sample in sampled mode: negligible). libgcc's unwinder
//! may take its own locks on first use of a module's unwind tables.

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Return addresses walked and hashed into a site. The allocator's and the allocation API's
/// own frames come first (more than a dozen for `Vec::push` in a debug build), so the walk
/// goes deep enough to include the caller's.
pub const FRAMES: usize = 32;
const TABLE: usize = 4096;
const PROBE: usize = 16;
const CLAIMING: u64 = u64::MAX;

/// Sites are captured.
pub(crate) static ON: AtomicU8 = AtomicU8::new(0);

struct SiteSlot {
    key: AtomicU64,
    ips: [AtomicUsize; FRAMES],
}

static SITES: [SiteSlot; TABLE] = [const {
    SiteSlot {
        key: AtomicU64::new(0),
        ips: [const { AtomicUsize::new(0) }; FRAMES],
    }
}; TABLE];

/// The site of the calling code: a non-zero hash of the innermost [`FRAMES`] return addresses
/// (heapspan's and the allocation API's own frames included; they are the same for every
/// allocation made the same way). Runs in an [`InternalScope`](super::local::InternalScope), so an
/// allocation the unwinder makes is heapspan's own and never recurses here.
#[cold]
#[inline(never)]
pub(crate) fn capture() -> u64 {
    let _own = super::local::InternalScope::enter();
    let mut ips = [0usize; FRAMES];
    let mut n = 0;
    // SAFETY: `trace_unsynchronized` is unsafe because some platforms' unwinders (Windows'
    // dbghelp) are not thread-safe; heapspan captures sites on Unix only, where the backend is
    // the system unwinder's `_Unwind_Backtrace`, which is. The callback neither panics nor
    // allocates.
    #[cfg(unix)]
    unsafe {
        backtrace::trace_unsynchronized(|f| {
            ips[n] = f.ip() as usize;
            n += 1;
            n < FRAMES
        });
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &ip in &ips[..n] {
        h = (h ^ ip as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let h = (h | 1) & !(1 << 63);
    remember(h, &ips[..n]);
    h
}

/// Keeps the addresses of site `h` (first writer wins; a full table keeps none).
fn remember(h: u64, ips: &[usize]) {
    let start = (h as usize) % TABLE;
    for i in 0..PROBE {
        let slot = &SITES[(start + i) % TABLE];
        let k = slot.key.load(Ordering::Acquire);
        if k == h {
            return;
        }
        if k == 0
            && slot
                .key
                .compare_exchange(0, CLAIMING, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            for (a, &ip) in slot.ips.iter().zip(ips) {
                a.store(ip, Ordering::Relaxed);
            }
            slot.key.store(h, Ordering::Release);
            return;
        }
    }
}

/// The return addresses of site `site`, innermost first; empty if unknown.
pub fn frames(site: u64) -> Vec<usize> {
    if site == 0 {
        return Vec::new();
    }
    let start = (site as usize) % TABLE;
    for i in 0..PROBE {
        let slot = &SITES[(start + i) % TABLE];
        let k = slot.key.load(Ordering::Acquire);
        if k == site {
            return slot
                .ips
                .iter()
                .map(|a| a.load(Ordering::Relaxed))
                .take_while(|&ip| ip != 0)
                .collect();
        }
        if k == 0 {
            break;
        }
    }
    Vec::new()
}

/// A symbolized code location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteLocation {
    /// The function (demangled, without the hash).
    pub function: String,
    /// Source file, when debug info has it.
    pub file: Option<String>,
    /// Line, when debug info has it.
    pub line: Option<u32>,
}

impl std::fmt::Display for SiteLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{} ({file}:{line})", self.function),
            _ => f.write_str(&self.function),
        }
    }
}

/// Frames of the allocator and of the allocation API, skipped to find the caller. A trait
/// method `<T as Trait>::f` is plumbing when `T` is (`<alloc::vec::Vec<u8> as
/// core::clone::Clone>::clone`), or when `Trait` is and `T` is no path of the program's own
/// (`<[T] as alloc::slice::hack::ConvertVec>::to_vec`); `<app::Config as Clone>::clone` is the
/// program's.
fn is_plumbing(name: &str) -> bool {
    let name = name.trim_start_matches('<');
    let (ty, tr) = match name.split_once(" as ") {
        Some((ty, tr)) => (ty, Some(tr)),
        None => (name, None),
    };
    // A slice, reference, pointer or tuple of the program's types is still std's impl.
    let own_path =
        !ty.starts_with(['[', '&', '*', '(']) && ty.contains("::") && !is_plumbing_path(ty);
    is_plumbing_path(ty) || (!own_path && tr.is_some_and(is_plumbing_path))
}

fn is_plumbing_path(path: &str) -> bool {
    let path = path
        .trim_start_matches(['<', '&', '*'])
        .trim_start_matches("mut ");
    [
        "heapspan::alloc",
        "heapspan::Allocator",
        "backtrace::",
        "__rustc::",
        "__rust_alloc",
        "__rust_realloc",
        "__rg_alloc",
        "__rg_realloc",
        "__rdl_alloc",
        "alloc::",
        "core::",
        "std::",
        "hashbrown::",
    ]
    .iter()
    .any(|p| path.starts_with(p))
}

/// Which refcounted box the allocation API on a site's stack makes, when it shows one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavour {
    /// `alloc::sync` (`Arc::new` and friends).
    Arc,
    /// `alloc::rc` (`Rc::new` and friends).
    Rc,
}

/// What symbolizing a site found.
#[derive(Clone, Debug, Default)]
struct Resolved {
    location: Option<SiteLocation>,
    flavour: Option<Flavour>,
}

type Cache = Option<std::collections::HashMap<u64, Resolved>>;
static RESOLVED: Mutex<Cache> = Mutex::new(None);
const RESOLVED_CACHE: usize = 4096;

/// The first frame of site `site` outside the allocator and the standard library's allocation
/// code: where the allocation was asked for. Symbolizing takes a lock and allocates (it reads
/// debug info); results are cached. `None` when the site is unknown or nothing resolves.
pub fn location(site: u64) -> Option<SiteLocation> {
    resolve(site).location
}

/// Whether the allocation API frames of site `site` (those before the caller's) are `Rc`'s or
/// `Arc`'s: `Rc::new` and `Arc::new` lay their boxes out alike, only the stack tells them
/// apart. `None` when neither shows (a release build inlines them, and without debug info
/// the inlined frames have no names). Cached with [`location`].
pub(crate) fn flavour(site: u64) -> Option<Flavour> {
    resolve(site).flavour
}

fn resolve(site: u64) -> Resolved {
    let _own = super::local::InternalScope::enter();
    {
        let cache = RESOLVED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = cache.as_ref().and_then(|c| c.get(&site)) {
            return r.clone();
        }
    }
    let ips = frames(site);
    if ips.is_empty() {
        // Not in the bounded table: nothing to symbolize, nothing worth caching.
        return Resolved::default();
    }
    let mut found = Resolved::default();
    for ip in ips {
        // The return address points after the call; one byte back is inside it.
        let ip = ip.saturating_sub(1) as *mut std::ffi::c_void;
        backtrace::resolve(ip, |sym| {
            if found.location.is_some() {
                return;
            }
            let Some(name) = sym.name() else { return };
            let name = format!("{name:#}");
            if is_plumbing(&name) {
                let bare = name.trim_start_matches('<');
                if bare.starts_with("alloc::rc::") {
                    found.flavour.get_or_insert(Flavour::Rc);
                } else if bare.starts_with("alloc::sync::") {
                    found.flavour.get_or_insert(Flavour::Arc);
                }
                return;
            }
            found.location = Some(SiteLocation {
                function: name,
                file: sym.filename().map(|p| p.display().to_string()),
                line: sym.lineno(),
            });
        });
        if found.location.is_some() {
            break;
        }
    }
    let mut cache = RESOLVED.lock().unwrap_or_else(|p| p.into_inner());
    let cache = cache.get_or_insert_with(Default::default);
    if cache.len() >= RESOLVED_CACHE {
        cache.clear();
    }
    cache.insert(site, found.clone());
    found
}

#[cfg(test)]
mod tests {
    use super::is_plumbing;

    #[test]
    fn plumbing_frames_are_the_allocators_and_the_allocation_apis() {
        for name in [
            "alloc::raw_vec::RawVec<T,A>::grow_one",
            "<alloc::vec::Vec<u8> as core::clone::Clone>::clone",
            "<[T] as alloc::slice::hack::ConvertVec>::to_vec",
            "<[app::Item] as alloc::slice::hack::ConvertVec>::to_vec",
            "<T as alloc::slice::hack::ConvertVec>::to_vec",
            "<&str as alloc::string::ToString>::to_string",
            "heapspan::alloc::dealloc_ext",
            "alloc::rc::Rc<T>::new",
        ] {
            assert!(is_plumbing(name), "{name}");
        }
        for name in [
            "quickstart::render",
            "<quickstart::Config as core::clone::Clone>::clone",
            "app::handlers::upload::{{closure}}",
        ] {
            assert!(!is_plumbing(name), "{name}");
        }
    }
}
