//! The container files, checked without a Docker daemon: compose.yaml parses and has the
//! shape operators rely on, and the Dockerfile keeps the fixes issue 10 asked for.
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
    assert_eq!(services.len(), 2, "{services:?}");
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
