//! The README's "Try it" block, pasted as written into a shell against a live gateway.

use crate::helpers::{GatewayProcess, TestDb};

/// The first ```sh block after `## Try it`.
fn try_it_block() -> String {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let section = &readme[readme.find("\n## Try it").expect("a Try it section")..];
    let start = section.find("```sh\n").expect("a shell block") + "```sh\n".len();
    let end = start + section[start..].find("\n```").expect("the block ends");
    section[start..end].to_owned()
}

#[tokio::test]
async fn the_try_it_steps_work_pasted_in_order() {
    let db = TestDb::new().await;
    let gateway = GatewayProcess::start(&db.url, &[]).await;
    let bin = env!("CARGO_BIN_EXE_chatkit-gateway");
    // Each numbered step announces itself, so its output can be told apart.
    let mut script = String::new();
    let mut steps = 0;
    for line in try_it_block().lines() {
        let line = line
            .replace("cargo run -q --", bin)
            .replace("GW=http://127.0.0.1:8000", &format!("GW={}", gateway.base));
        if let Some(rest) = line.strip_prefix("# ") {
            if let Some((n, _)) = rest.split_once(". ") {
                if n.parse::<u32>().is_ok() {
                    script.push_str(&format!("echo '== step {n}'\n"));
                    steps += 1;
                }
            }
        }
        script.push_str(&line);
        script.push('\n');
    }
    assert!(steps >= 7, "{steps} numbered steps");
    let out = std::process::Command::new("bash")
        .args(["-eu", "-o", "pipefail", "-c", &script])
        .env("APP_CONFIG_DIR", "/nonexistent")
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let step = |n: u32| {
        let start = stdout
            .find(&format!("== step {n}\n"))
            .unwrap_or_else(|| panic!("step {n} did not run: {stdout}"));
        let rest = &stdout[start + 1..];
        rest[..rest.find("== step ").unwrap_or(rest.len())].to_owned()
    };
    assert!(step(2).contains("\"client_secret\""), "{}", step(2));
    assert!(step(3).contains("\"Groceries\""), "{}", step(3));
    assert!(step(4).contains("buy milk"), "{}", step(4));
    // Step 6 shows what a signed-out secret gets; step 7 must not run into it.
    assert!(step(6).contains("auth.revoked"), "{}", step(6));
    let seven = step(7);
    assert!(seven.contains("\"type\":\"thread.created\""), "{seven}");
    assert!(seven.contains("\"data\""), "threads.list: {seven}");
    assert!(!seven.contains("\"error\""), "{seven}");
}

/// The README's layout map names paths that exist, and every top-level part of `src/`.
#[test]
fn the_layout_map_matches_the_tree() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let section = &readme[readme.find("\n## Layout").expect("a Layout section")..];
    let start = section.find("```\n").expect("a block") + 4;
    let block = &section[start..start + section[start..].find("\n```").unwrap()];
    let mut named = Vec::new();
    for line in block.lines() {
        // The path column ends at the first run of two spaces.
        let column = line.split("  ").next().unwrap_or_default().trim();
        let mut dir = String::new();
        for entry in column.split(", ").map(str::trim).filter(|e| !e.is_empty()) {
            let path = if entry.contains('/') {
                dir = entry
                    .rsplit_once('/')
                    .map_or(String::new(), |(d, _)| format!("{d}/"));
                entry.to_owned()
            } else {
                format!("{dir}{entry}")
            };
            assert!(
                std::path::Path::new(path.trim_end_matches('/')).exists(),
                "the layout names {path}, which does not exist"
            );
            named.push(path);
        }
    }
    for entry in std::fs::read_dir("src").unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = if entry.path().is_dir() {
            format!("src/{name}/")
        } else {
            format!("src/{name}")
        };
        assert!(
            named.contains(&path),
            "the layout does not name {path}: {named:?}"
        );
    }
}

/// The README is a five-minute read for users: reference material lives in docs/ and the
/// benchmark history in bench/RESULTS.md.
#[test]
fn the_readme_stays_short_and_names_no_issue_or_session_history() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let lines = readme.lines().count();
    assert!(lines <= 300, "README.md has {lines} lines");
    for link in ["docs/configuration.md", "docs/api.md", "bench/RESULTS.md"] {
        assert!(readme.contains(link), "README.md does not link {link}");
    }
    // Issue numbers and commit hashes belong in commit messages and bench/RESULTS.md.
    let lower = readme.to_lowercase();
    for (at, _) in lower.match_indices("issue ") {
        let next = lower[at + 6..].chars().next().unwrap_or(' ');
        assert!(
            !next.is_ascii_digit(),
            "README.md names an issue: {}",
            &readme[at..at + 12]
        );
    }
}

/// The example cannot sign in without one of these, and its page names them too.
#[test]
fn the_chatkit_section_says_how_the_example_signs_in() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let section = readme
        .split("## ChatKit React")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("a ChatKit React section");
    for name in [
        "VITE_DEV_UPSTREAM_TOKEN",
        "dev-token",
        "VITE_BETTER_AUTH_URL",
    ] {
        assert!(
            section.contains(name),
            "the ChatKit section does not name {name}"
        );
    }
}

/// Code comments say why in their own words; issue numbers go in commit messages.
#[test]
fn code_comments_name_no_issue_numbers() {
    let mut stack = vec![std::path::PathBuf::from("src")];
    let mut found = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for (n, line) in text.lines().enumerate() {
                let lower = line.to_lowercase();
                if let Some(at) = lower.find("issue ") {
                    if lower[at + 6..].starts_with(|c: char| c.is_ascii_digit()) {
                        found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}
