//! Helpers for heapspan's integration tests (real processes, real collector).
