//! Declares a plugin ABI of the host's major and a newer minor (1.99): the host must refuse it
//! (the plugin may call what the host does not have), naming both versions, before any layout is
//! compared or any of its code runs.
#![allow(unsafe_code, non_local_definitions)]

const API_VERSION: &str = "1.99.0";
const NAME: &str = "abi-newer-minor";

include!("../../abi-mismatch/src/module.rs");
