//! The layering of the crate's top-level modules, checked: each module may use only the
//! modules below it, so no two modules import each other and nothing reaches up.

/// Lowest first. A module may name any module listed before it, never one after it.
const LAYERS: [&str; 15] = [
    "domain",
    "config",
    "store",
    "metrics",
    "telemetry",
    "auth",
    "agent",
    "limits",
    "attachments",
    "chat",
    "task_actions",
    "chatkit",
    "api",
    "http",
    "app",
];

/// The top-level modules a source text names through `crate::`, outside its tests.
fn named_modules(text: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a, b::{c, d}, e}`: the names at the group's first level.
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        found.push(first_ident(&group[start..i]));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.push(first_ident(&group[start..i]));
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            found.push(first_ident(rest));
        }
    }
    found.retain(|name| !name.is_empty());
    found
}

fn first_ident(text: &str) -> String {
    text.trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn each_module_uses_only_the_modules_below_it() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        let mut upward = Vec::new();
        let mut unlisted = Vec::new();
        for file in &files {
            let relative = file.strip_prefix(&src).unwrap();
            let top = relative
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned();
            // The crate root and the binary wire everything; this file names them all.
            if ["lib", "main", "layers"].contains(&top.as_str()) {
                continue;
            }
            let Some(level) = LAYERS.iter().position(|l| *l == top) else {
                unlisted.push(top);
                continue;
            };
            let text = std::fs::read_to_string(file).unwrap();
            for name in named_modules(&text) {
                match LAYERS.iter().position(|l| *l == name) {
                    Some(used) if used > level => {
                        upward.push(format!("{} uses crate::{name}", relative.display()));
                    }
                    _ => {}
                }
            }
        }
        assert!(
            unlisted.is_empty(),
            "modules missing from LAYERS: {unlisted:?}"
        );
        assert!(upward.is_empty(), "imports that reach up: {upward:#?}");
    }

    #[test]
    fn the_names_of_use_groups_and_paths_are_read() {
        let text = "use crate::{api::error::ApiError, chat::{A, B}, store};\n\
                    fn f() { crate::metrics::x(); }\n#[cfg(test)]\nmod t { use crate::app; }";
        assert_eq!(named_modules(text), ["api", "chat", "store", "metrics"]);
    }
}
