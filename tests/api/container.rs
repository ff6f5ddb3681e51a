//! The container files, checked without a Docker daemon: compose.yaml parses and has the
//! shape operators rely on, and the Dockerfile keeps its build settings, pins and health check.
//! (`docker compose config -q` does the full check where the compose plugin exists.)

use serde_yaml::Value;

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// An image reference pinned to a release: a tag starting with a digit (or a digest).
fn pinned(image: &str) -> bool {
    image.contains("@sha256:")
        || image
            .rsplit_once(':')
            .is_some_and(|(_, tag)| tag.starts_with(|c: char| c.is_ascii_digit()))
}

#[test]
fn compose_file_parses_with_gateway_and_postgres() {
    let compose: Value = serde_yaml::from_str(&read("compose.yaml")).expect("valid YAML");
    let services = compose["services"].as_mapping().expect("services");
    let gateway = &compose["services"]["gateway"];
    let postgres = &compose["services"]["postgres"];
    // `docker compose up` starts these two; anything else waits for its profile.
    let always: Vec<&str> = services
        .iter()
        .filter(|(_, s)| s.get("profiles").is_none())
        .map(|(name, _)| name.as_str().unwrap())
        .collect();
    assert_eq!(always, ["gateway", "postgres"]);
    assert_eq!(gateway["build"], ".");
    // Secrets come from an env file that persists, never from the compose file itself.
    assert_eq!(gateway["env_file"], ".env");
    let environment = gateway["environment"].as_mapping().expect("environment");
    for secret in ["CHATKIT_SESSION_SECRET", "BETTER_AUTH_SECRET"] {
        assert!(!environment.contains_key(secret), "{secret} inline");
    }
    assert_eq!(environment["APP_ENV"], "production");
    let url = environment["DATABASE_URL"].as_str().unwrap();
    assert!(
        url.starts_with("postgres://") && url.contains("@postgres:5432/"),
        "{url}"
    );
    assert_eq!(
        gateway["depends_on"]["postgres"]["condition"],
        "service_healthy"
    );
    assert!(pinned(postgres["image"].as_str().unwrap()));
    assert!(postgres["healthcheck"]["test"].is_sequence());
    assert!(postgres["volumes"][0]
        .as_str()
        .unwrap()
        .starts_with("pgdata:"));
    assert!(compose["volumes"]
        .as_mapping()
        .unwrap()
        .contains_key("pgdata"));
    // Every variable compose substitutes is documented in the example env file.
    let example = read(".env.example");
    assert!(example.contains("\nPOSTGRES_PASSWORD="));
    assert!(example.contains("\nCHATKIT_SESSION_SECRET="));
}

#[test]
fn the_redis_url_of_the_example_env_names_the_optional_compose_redis() {
    let compose: Value = serde_yaml::from_str(&read("compose.yaml")).expect("valid YAML");
    let example = read(".env.example");
    let url = example
        .lines()
        .find_map(|l| l.trim_start_matches(['#', ' ']).strip_prefix("REDIS_URL="))
        .expect("REDIS_URL in .env.example");
    let host_port = url.strip_prefix("redis://").expect("a redis:// URL");
    let (host, port) = host_port.split_once(':').expect("host:port");
    let redis = &compose["services"][host];
    assert!(redis.is_mapping(), "no compose service {host:?} for {url}");
    assert!(pinned(redis["image"].as_str().unwrap()));
    assert_eq!(redis["profiles"][0], "redis", "Redis is optional");
    assert_eq!(port, "6379");
    // The gateway must still start without it.
    assert!(compose["services"]["gateway"]["depends_on"]
        .get(host)
        .is_none());
    // The command that starts it is the one the example gives.
    assert!(example.contains("--profile redis"), "{example}");
}

#[test]
fn dockerfile_keeps_build_flags_pins_images_and_checks_health() {
    let dockerfile = read("Dockerfile");
    let froms: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("FROM "))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    for image in froms {
        assert!(pinned(image), "{image} is not pinned");
    }
    assert!(
        dockerfile.contains("COPY .cargo ./.cargo"),
        "the SQLite/jemalloc build settings"
    );
    let healthcheck = dockerfile
        .lines()
        .skip_while(|l| !l.starts_with("HEALTHCHECK"))
        .take(2)
        .collect::<String>();
    assert!(
        healthcheck.contains(r#"chatkit-gateway", "healthcheck""#),
        "{healthcheck}"
    );
    assert!(dockerfile.contains("USER 10001:10001"));
    let ignored = read(".dockerignore");
    assert!(
        ignored.lines().any(|l| l == ".env"),
        "secrets in the build context"
    );
}

/// Whether `.dockerignore`'s `pattern` leaves `path` (relative, `/`-separated) out of the
/// build context: the pattern matches the path or one of its parent directories. Enough
/// of Docker's syntax for this repository's file: `*` within a segment, a leading `**/`.
fn docker_ignores(pattern: &str, path: &str) -> bool {
    fn glob(pattern: &str, text: &str) -> bool {
        match pattern.split_once('*') {
            None => pattern == text,
            Some((head, tail)) => {
                text.starts_with(head)
                    && (head.len()..=text.len())
                        .any(|i| text.is_char_boundary(i) && glob(tail, &text[i..]))
            }
        }
    }
    let segment_glob = |pattern: &str, path: &str| {
        let p: Vec<&str> = pattern.split('/').collect();
        let t: Vec<&str> = path.split('/').collect();
        // Matches the path itself or any directory above it.
        (p.len()..=t.len()).any(|n| n == p.len() && p.iter().zip(&t[..n]).all(|(p, t)| glob(p, t)))
    };
    let pattern = pattern
        .trim()
        .trim_start_matches("./")
        .trim_end_matches('/');
    match pattern.strip_prefix("**/") {
        Some(rest) => {
            let segments: Vec<&str> = path.split('/').collect();
            (0..segments.len()).any(|i| segment_glob(rest, &segments[i..].join("/")))
        }
        None => segment_glob(pattern, path),
    }
}

/// Copies `from` (a file or a directory, relative to the repository) to `to`, leaving out
/// what `.dockerignore` keeps out of the build context.
fn copy_into_context(from: &std::path::Path, to: &std::path::Path, ignored: &[String]) {
    let relative = from.to_str().unwrap().trim_start_matches("./");
    if ignored.iter().any(|p| docker_ignores(p, relative)) {
        return;
    }
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy_into_context(&entry.path(), &to.join(entry.file_name()), ignored);
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
}

#[test]
fn dockerignore_patterns_match_as_docker_reads_them() {
    assert!(docker_ignores("target", "target/debug/x"));
    assert!(docker_ignores(
        "**/node_modules",
        "clients/a/node_modules/b"
    ));
    assert!(docker_ignores("*.env", "prod.env"));
    assert!(docker_ignores(
        "tests/mcp/.venv",
        "tests/mcp/.venv/bin/python"
    ));
    assert!(!docker_ignores("target", "src/target.rs"));
    assert!(!docker_ignores("*.env", "config/x.env.example"));
    assert!(!docker_ignores(".env", ".env.example"));
}

/// The builder stage gets exactly what its `COPY` lines name (minus `.dockerignore`); cargo
/// must be able to read that as a workspace with the locked dependencies, and every file
/// the code compiles in must be there. A workspace member or a config file left out used
/// to fail only inside `docker build`, which no CI here can run.
#[test]
fn the_files_the_dockerfile_copies_make_a_workspace_cargo_reads() {
    let dockerfile = read("Dockerfile");
    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let builder: Vec<&str> = dockerfile
        .lines()
        .skip_while(|l| !l.starts_with("FROM "))
        .skip(1)
        .take_while(|l| !l.starts_with("FROM "))
        .collect();
    assert!(
        builder.iter().any(|l| l.starts_with("WORKDIR /src")),
        "the builder works in /src"
    );
    let context = tempfile::tempdir().unwrap();
    let mut copies = 0;
    for line in builder.iter().filter(|l| l.starts_with("COPY ")) {
        let args: Vec<&str> = line
            .split_whitespace()
            .skip(1)
            .filter(|a| !a.starts_with("--"))
            .collect();
        let (dest, sources) = args.split_last().expect("COPY names a destination");
        let dest = context.path().join(dest.trim_start_matches("./"));
        for source in sources {
            let from = std::path::Path::new(source);
            // `COPY a b ./` puts files under the directory; `COPY dir ./dir` its contents.
            let into_dir = dest.to_str().unwrap().ends_with('/') || sources.len() > 1;
            let to = if from.is_file() && into_dir {
                dest.join(from.file_name().unwrap())
            } else {
                dest.clone()
            };
            copy_into_context(from, &to, &ignored);
            copies += 1;
        }
    }
    assert!(copies >= 5, "{copies} COPY sources");

    // This machine's platform only: the packages of the others were never downloaded here.
    let rustc = std::process::Command::new(std::env::var("RUSTC").unwrap_or("rustc".into()))
        .arg("-vV")
        .output()
        .unwrap();
    let host = String::from_utf8(rustc.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .expect("rustc names its host");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .current_dir(context.path())
        .args(["metadata", "--locked", "--offline", "--format-version", "1"])
        .args(["--filter-platform", &host])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo metadata on the Dockerfile's files failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Files compiled in with include_str!/include_bytes!, relative to the including file.
    let mut missing = Vec::new();
    let mut stack = vec![context.path().join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for piece in text.split("include_").skip(1) {
                let Some(arg) = piece
                    .strip_prefix("str!(\"")
                    .or_else(|| piece.strip_prefix("bytes!(\""))
                else {
                    continue;
                };
                let included = &arg[..arg.find('"').unwrap()];
                if !path.parent().unwrap().join(included).exists() {
                    missing.push(format!("{} includes {included}", path.display()));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not in the image's build context: {missing:?}"
    );
}
