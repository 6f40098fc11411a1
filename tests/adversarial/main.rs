//! Attacks on the sandbox's promises by hostile components written by hand in WAT against the
//! project's WIT (not built with the SDK), one module per class. Each test asserts a measured
//! bound: time past the deadline, bytes kept, peak memory, connections refused.

mod hostile;

mod host_calls;
mod memory;
mod network;
mod output;
