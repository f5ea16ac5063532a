#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! `docs/plugins.md`, followed literally: every block marked `sh tutorial` is extracted and run, in
//! order, as one bash script in a scratch folder outside the workspace, with the `portcullis` just
//! built first on the `PATH`. The page walks from `portcullis plugin new` to a 200 through a running
//! server; if the page and the tool disagree, this fails.
//!
//! Two things are added around the page's commands, neither of which changes what they do: `cargo`
//! is wrapped so that the new crate's `target/` is a link to a folder kept under this workspace's
//! `target/` (its dependencies are compiled once, not on every run), and every job the script
//! started (the server) is killed when it ends.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use portcullis_tests::*;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `sh tutorial` blocks of a Markdown page, in order.
fn tutorial_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match &mut current {
            None if line.trim_start() == "```sh tutorial" => current = Some(String::new()),
            Some(_) if line.trim_start() == "```" => blocks.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    assert!(current.is_none(), "an unclosed ```sh tutorial block");
    blocks
}

#[test]
fn the_blocks_are_found_in_order() {
    let md = "x\n```sh tutorial\na\nb\n```\n```sh\nnot me\n```\n```sh tutorial\nc\n```\n";
    assert_eq!(tutorial_blocks(md), vec!["a\nb\n", "c\n"]);
}

#[test]
fn docs_plugins_md_works_as_written() {
    let page = std::fs::read_to_string(workspace().join("docs/plugins.md")).unwrap();
    let blocks = tutorial_blocks(&page);
    let commands = blocks.concat();
    for needed in [
        "portcullis plugin new",
        "cargo build --release",
        "portcullis plugin test",
        "portcullis serve",
        "cp ",
        "curl",
    ] {
        assert!(
            commands.contains(needed),
            "the tutorial lost its `{needed}` step"
        );
    }

    let scratch = tempfile::tempdir().unwrap();
    let kept_target = target_dir().parent().unwrap().join("plugin-tutorial");
    std::fs::create_dir_all(&kept_target).unwrap();
    let prelude = format!(
        "set -euo pipefail\n\
         trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n\
         cargo() {{ if [ -f Cargo.toml ] && [ ! -e target ]; then ln -s '{}' target; fi; command cargo \"$@\"; }}\n",
        kept_target.display()
    );
    let script = blocks
        .iter()
        .enumerate()
        .map(|(i, b)| format!("echo '--- tutorial block {}'\n{b}", i + 1))
        .collect::<String>();
    let path = format!(
        "{}:{}",
        target_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(prelude + &script)
        .current_dir(scratch.path())
        .env("PATH", path)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("PORT")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "docs/plugins.md's tutorial failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    // `plugin test` printed its report, and the last command the user the plugin vouched for.
    assert!(stdout.contains("plugin `my-provider`:"), "{stdout}");
    assert!(stdout.contains(", 0 failed"), "{stdout}");
    assert!(stdout.contains(r#""sub":"service""#), "{stdout}");
}
