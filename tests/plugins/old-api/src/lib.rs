//! Declares the plugin root module built against an old portcullis-plugin-api (0.0.1): the version
//! check must refuse it before the layout is looked at.
#![allow(unsafe_code, non_local_definitions)]

const API_VERSION: &str = "0.0.1";
const NAME: &str = "old-api";

include!("../../abi-mismatch/src/module.rs");
