//! `c/keeper.c`: a C library that keeps the pointers it is given (up to 64, last in first
//! out), the foreign side of the FFI custody tests and example. Compiled and linked by this
//! crate's build script.

use std::ffi::{c_int, c_void};

extern "C" {
    /// Keeps `p` (`n` bytes long). Returns 0, or -1 when it holds 64 already.
    pub fn keeper_take(p: *mut c_void, n: usize) -> c_int;
    /// Gives back the pointer kept last (and forgets it); null when it holds none.
    pub fn keeper_give_back() -> *mut c_void;
    /// Reads the pointer kept last (returns the sum of its bytes) and forgets it without
    /// giving it back; 0 when it holds none.
    pub fn keeper_consume() -> u64;
    /// How many pointers it holds.
    pub fn keeper_held() -> usize;
}
