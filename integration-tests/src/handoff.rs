//! The planted figures of `src/bin/handoff_app.rs` (the hand-off matrix's test program).

/// Tasks named `producer` (`APP_MODE=service`).
pub const PRODUCERS: usize = 3000;
/// Bytes of the buffer each producer sends to the task named `consumer`.
pub const TO_CONSUMER: usize = 3000;
/// Bytes of the buffer each producer frees itself.
pub const SELF_FREED: usize = 5000;
/// Bytes of the buffer every second producer sends to a plain thread.
pub const TO_THREAD: usize = 7000;
/// Tasks of a name each (`APP_MODE=names`).
pub const NAMED: usize = 300;
