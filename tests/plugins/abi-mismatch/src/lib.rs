//! Declares the plugin root module under the host's name and version, with a different layout
//! (`new_provider` takes other arguments): abi_stable's layout check must refuse it.
#![allow(unsafe_code, non_local_definitions)]

const API_VERSION: &str = portcullis_plugin_api::abi::ABI_VERSION;
const NAME: &str = "abi-mismatch";

include!("module.rs");
