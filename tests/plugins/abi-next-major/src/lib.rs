//! Declares plugin ABI 2.0, another major: the host must refuse it, naming both versions.
#![allow(unsafe_code, non_local_definitions)]

const API_VERSION: &str = "2.0.0";
const NAME: &str = "abi-next-major";

include!("../../abi-mismatch/src/module.rs");
