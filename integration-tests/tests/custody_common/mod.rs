//! Shared helpers of the FFI custody scenarios (one binary per scenario: the global allocator
//! is process-wide): the start, the findings' evidence, and the blocks handed to C.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use heapspan::export::{names as n, ExportConfig};
use heapspan::findings::{EvidenceValue, Finding, Kind};
use heapspan::{Builder, Guard};

/// Starts `builder` with windows cut by hand ([`Guard::cut_window`]; the timer would cut one
/// an hour) and `export` (for its file and DOT settings), and installs the layer in a global
/// registry.
pub fn start(builder: Builder, export: ExportConfig) -> Guard {
    use tracing_subscriber::layer::SubscriberExt;
    let guard = builder
        .export(export.window(Duration::from_secs(3600)))
        .start()
        .expect("heapspan starts");
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(heapspan::layer()))
        .expect("no other subscriber");
    guard
}

/// A multi-thread runtime with two workers.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The `ffi.custody` findings among `fs`.
pub fn custody(fs: &[Finding]) -> Vec<Finding> {
    fs.iter()
        .filter(|f| f.kind == Kind::FfiCustody)
        .cloned()
        .collect()
}

/// Text evidence `key` of `f`.
#[track_caller]
pub fn text(f: &Finding, key: &str) -> String {
    match f.evidence.iter().find(|(k, _)| *k == key) {
        Some((_, EvidenceValue::Text(t))) => t.clone(),
        other => panic!("{key}: {other:?} in {f:#?}"),
    }
}

/// Integer evidence `key` of `f`.
#[track_caller]
pub fn int(f: &Finding, key: &str) -> i64 {
    match f.evidence.iter().find(|(k, _)| *k == key) {
        Some((_, EvidenceValue::Int(i))) => *i,
        other => panic!("{key}: {other:?} in {f:#?}"),
    }
}

/// The one custody finding of `case` across `boundary`.
#[track_caller]
pub fn find<'a>(fs: &'a [Finding], case: &str, boundary: &str) -> &'a Finding {
    let found: Vec<&Finding> = fs
        .iter()
        .filter(|f| {
            f.kind == Kind::FfiCustody
                && text(f, n::FINDING_CUSTODY_CASE) == case
                && text(f, n::FINDING_BOUNDARY) == boundary
        })
        .collect();
    assert_eq!(found.len(), 1, "one {case} across {boundary} in {fs:#?}");
    found[0]
}

/// The size of each box of a [`Boxes`].
pub const BOX: usize = 1000;

/// A `Vec<Box<[u8; BOX]>>` of `n` boxes (capacity `n`) taken apart: its buffer is what is
/// handed to C, and the buffer with its boxes is the danger surface.
#[derive(Debug)]
pub struct Boxes {
    pub ptr: *mut Box<[u8; BOX]>,
    pub n: usize,
}

impl Boxes {
    /// `n` boxes filled with `fill` (a byte no heap address is made of).
    pub fn new(n: usize, fill: u8) -> Boxes {
        let mut v: Vec<Box<[u8; BOX]>> = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(Box::new([fill; BOX]));
        }
        assert_eq!(v.capacity(), n);
        let mut v = std::mem::ManuallyDrop::new(v);
        Boxes {
            ptr: v.as_mut_ptr(),
            n,
        }
    }

    /// The danger surface: the buffer (`n` pointers) and the `n` boxes.
    pub fn surface(n: usize) -> u64 {
        (n * std::mem::size_of::<usize>() + n * BOX) as u64
    }

    /// The buffer's address (to carry across tasks).
    pub fn addr(&self) -> usize {
        self.ptr as usize
    }

    /// The vector back from its buffer at `addr`, dropped.
    ///
    /// # Safety
    /// `addr` is the buffer of a [`Boxes`] of `n`, owned by Rust again.
    pub unsafe fn free(addr: usize, n: usize) {
        // SAFETY: by the caller's contract, the parts of a vector of `n` boxes, capacity `n`.
        drop(unsafe { Vec::from_raw_parts(addr as *mut Box<[u8; BOX]>, n, n) });
    }
}
