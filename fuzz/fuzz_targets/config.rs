//! Config parsing and compilation: any text either compiles or is refused with issues; never a
//! panic, and no issue ever echoes the value of a `${VAR}`.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use portcullis::config::{compile_str, VarSource};

const SECRET: &str = "FUZZ-SECRET-VALUE-7f3a9c";

struct Vars;

impl VarSource for Vars {
    fn get(&self, name: &str) -> Option<String> {
        match name {
            "EMPTY" => Some(String::new()),
            "UNSET" => None,
            _ => Some(SECRET.to_string()),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = compile_str(text, Path::new("/nonexistent/fuzz/config.yaml"), &Vars) {
        let shown = e.to_string();
        // A secret may only show when the fuzzer wrote it into the text itself.
        assert!(
            !shown.contains(SECRET) || text.contains(SECRET),
            "a ${{VAR}} value leaked into a config error: {shown}"
        );
    }
});
