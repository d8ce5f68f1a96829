//! FFI custody against a real C library: `c/keeper.c` (compiled by this crate's build script)
//! keeps the pointers it is given until it gives them back.
//!
//! ```text
//! cargo run -p heapspan-integration-tests --example ffi_custody
//! ```
//!
//! The `encoder` task hands three frames (each a `Vec<Box<[u8; 1000]>>` of 4 chunks, the
//! vector's buffer given to C) to `keeper_take`, each until the task's end, and takes back the
//! two C gives back. C still holds the first frame when the task ends: heapspan reports it as
//! `ffi.custody` `not_reclaimed`, its danger surface the frame's buffer and its four chunks
//! (4 × 8 + 4 × 1000 bytes), which the relation graph's DOT output highlights. A settings blob
//! handed over with a deadline and reclaimed in time is not reported.
//!
//! The example is here rather than in heapspan's `examples/` because it needs the C library,
//! which heapspan itself must not build.

use std::time::Duration;

use heapspan::custody;
use heapspan::findings::{Finding, Kind};
use heapspan::graph::DotOptions;
use heapspan_integration_tests::keeper::{keeper_give_back, keeper_held, keeper_take};

#[global_allocator]
static ALLOC: heapspan::Allocator = heapspan::Allocator::system();

/// Chunks per frame.
pub const CHUNKS: usize = 4;
/// Bytes per chunk.
pub const CHUNK: usize = 1000;
/// The danger surface of a frame: its buffer of `CHUNKS` pointers and the chunks.
pub const FRAME_SURFACE: u64 = (CHUNKS * std::mem::size_of::<usize>() + CHUNKS * CHUNK) as u64;

type Frame = Vec<Box<[u8; CHUNK]>>;

/// A frame of `CHUNKS` chunks filled with `fill`.
fn frame(fill: u8) -> Frame {
    let mut f = Vec::with_capacity(CHUNKS);
    f.resize_with(CHUNKS, || Box::new([fill; CHUNK]));
    f
}

/// Hands `f`'s buffer to C until the current task's end; returns its address.
fn hand_to_c(f: Frame) -> usize {
    let mut f = std::mem::ManuallyDrop::new(f);
    let p = f.as_mut_ptr();
    // SAFETY: the buffer of a vector of capacity `CHUNKS`: a live block of `CHUNKS` boxes,
    // whose ownership goes to C until it gives it back.
    unsafe {
        let passport = custody::handover(p, f.capacity(), "keeper_take").until_task_end();
        assert!(passport.is_guarded());
        assert_eq!(keeper_take(p.cast(), CHUNKS * 8), 0);
    }
    p as usize
}

/// Takes back the frame C kept last, if any.
fn take_back() -> Option<Frame> {
    // SAFETY: a plain call into C.
    let p = unsafe { keeper_give_back() }.cast::<Box<[u8; CHUNK]>>();
    if p.is_null() {
        return None;
    }
    custody::reclaim(p);
    // SAFETY: a buffer handed over by `hand_to_c`, given back and reclaimed: Rust's again.
    Some(unsafe { Vec::from_raw_parts(p, CHUNKS, CHUNKS) })
}

/// Starts heapspan with the live index (for the danger surface) and its layer.
pub fn setup() -> heapspan::Guard {
    use tracing_subscriber::layer::SubscriberExt;
    let guard = heapspan::builder()
        .live_index(heapspan::IndexMode::Full)
        .start()
        .expect("heapspan starts");
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(heapspan::layer()))
        .expect("no other subscriber");
    guard
}

/// The program: the `encoder` task and the settings blob. Returns the address of the frame C
/// kept.
pub fn run(rt: &tokio::runtime::Runtime) -> usize {
    // Reclaimed in time: nothing to report.
    let settings = Box::into_raw(Box::new([0u8; 256]));
    // SAFETY: a live block holding one `[u8; 256]`; C gives it straight back.
    unsafe {
        let _ = custody::handover(settings, 1, "keeper_take").deadline(Duration::from_secs(60));
        assert_eq!(keeper_take(settings.cast(), 256), 0);
        assert_eq!(keeper_give_back(), settings.cast());
    }
    custody::reclaim(settings);
    // SAFETY: reclaimed: Rust's again.
    drop(unsafe { Box::from_raw(settings) });

    rt.block_on(async {
        heapspan::spawn("encoder", async {
            let kept = hand_to_c(frame(1));
            hand_to_c(frame(2));
            hand_to_c(frame(3));
            // C gives back the last two frames and keeps the first: the task forgets it.
            for _ in 0..2 {
                drop(take_back().expect("a frame"));
            }
            kept
        })
        .await
        .expect("the encoder task")
    })
}

/// Takes back the frame C kept and frees it.
pub fn finish(kept: usize) {
    let f = take_back().expect("the kept frame");
    assert_eq!(f.as_ptr() as usize, kept);
    // SAFETY: a plain query.
    assert_eq!(unsafe { keeper_held() }, 0);
}

/// The DOT comment line of `f`'s danger surface in the live graph now.
pub fn surface_line(guard: &heapspan::Guard, f: &Finding) -> String {
    let dot = guard
        .graph()
        .expect("the live index is on")
        .to_dot(&DotOptions {
            highlight: f.roots.clone(),
            ..DotOptions::default()
        });
    dot.lines()
        .find(|l| l.contains("danger surface"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn main() {
    let guard = setup();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let kept = run(&rt);
    let findings = guard.cut_window();
    print!("{}", heapspan::export::report::render_findings(&findings));
    if let Some(f) = findings.iter().find(|f| f.kind == Kind::FfiCustody) {
        println!("{}", surface_line(&guard, f));
    }
    finish(kept);
}
