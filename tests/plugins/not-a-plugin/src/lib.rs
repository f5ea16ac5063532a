//! A shared library with an exported function and no plugin root module.

/// Adds two numbers; exported so the library is not empty.
#[no_mangle]
pub extern "C" fn portcullis_test_add(a: u32, b: u32) -> u32 {
    a.wrapping_add(b)
}
