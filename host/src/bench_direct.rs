//! The server built with the bench-only feature `bench-direct` (see `bench/run.sh`): identical to
//! `portcullis` except that `jwt` instances are verified in the host without the plugin call.
include!("main.rs");
