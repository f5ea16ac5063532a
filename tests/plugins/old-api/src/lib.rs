//! Declares the plugin root module of the last API before ABI 1.0 (0.2.0): the version check must
//! refuse it, naming both versions, before the layout is looked at.
#![allow(unsafe_code, non_local_definitions)]

const API_VERSION: &str = "0.2.0";
const NAME: &str = "old-api";

include!("../../abi-mismatch/src/module.rs");
