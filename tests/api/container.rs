//! The container's configuration, as far as this machine allows without a Docker engine:
//! `docker run --env-file config.env` (config.env copied from config.env.example) applies every
//! uncommented line of the file over the image's `ENV`, so the example must not undo the image's
//! HOST=0.0.0.0 (else the published port is silent) or DATA_DIR=/data (else messages land in the
//! container's layer, not the volume). And the build context leaves out target/, data and secrets.

use std::collections::HashMap;
use std::path::Path;

use whatsapp_gateway::config::{LogFormat, Settings, StoreSettings};

fn repo_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `ENV` variables of the Dockerfile's final stage (`ENV K=V K2=V2` or `ENV K V`, with `\`
/// continuations and optional double quotes).
fn dockerfile_env(dockerfile: &str) -> HashMap<String, String> {
    let joined = dockerfile.replace("\\\n", " ");
    let final_stage = joined
        .rsplit_once("\nFROM ")
        .map(|(_, stage)| stage)
        .unwrap_or(&joined);
    let mut env = HashMap::new();
    for line in final_stage.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("ENV ") else {
            continue;
        };
        let rest = rest.trim();
        if rest
            .split_whitespace()
            .next()
            .is_some_and(|w| !w.contains('='))
        {
            let (key, value) = rest.split_once(char::is_whitespace).unwrap();
            env.insert(key.to_owned(), value.trim().to_owned());
            continue;
        }
        for pair in rest.split_whitespace() {
            let (key, value) = pair.split_once('=').expect("ENV K=V");
            env.insert(key.to_owned(), value.trim_matches('"').to_owned());
        }
    }
    env
}

/// Docker's `--env-file` rules: `#` lines and blank lines are skipped, leading whitespace is
/// trimmed, `KEY=VALUE` sets KEY to VALUE literally (an empty VALUE sets it empty, overriding the
/// image), and a bare `KEY` passes the caller's variable (none here).
fn docker_env_file(file: &str) -> HashMap<String, String> {
    file.lines()
        .map(str::trim_start)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn settings(vars: &HashMap<String, String>) -> Settings {
    Settings::from_lookup(|k| vars.get(k).cloned()).expect("valid settings")
}

#[test]
fn docker_run_with_the_example_as_env_file_keeps_the_images_host_and_data_dir() {
    let image = dockerfile_env(&repo_file("Dockerfile"));
    assert_eq!(image.get("HOST").map(String::as_str), Some("0.0.0.0"));
    assert_eq!(image.get("DATA_DIR").map(String::as_str), Some("/data"));
    let env_file = docker_env_file(&repo_file("config.env.example"));
    for key in ["HOST", "DATA_DIR", "PORT", "LOG_FORMAT"] {
        assert!(
            !env_file.contains_key(key),
            "config.env.example sets {key}, overriding the image's {key}"
        );
    }
    let mut container = image;
    container.extend(env_file);
    let settings = settings(&container);
    assert_eq!(settings.http.host.to_string(), "0.0.0.0");
    assert_eq!(settings.http.port, 8000);
    assert_eq!(settings.log_format, LogFormat::Json);
    match settings.store {
        StoreSettings::Embedded(embedded) => assert_eq!(embedded.data_dir, Path::new("/data")),
        StoreSettings::Redis(_) => panic!("the example must not select Redis"),
    }
}

#[test]
fn the_example_used_locally_gives_the_documented_defaults() {
    // dotenvy skips comments the same way; empty values count as unset.
    let settings = settings(&docker_env_file(&repo_file("config.env.example")));
    assert_eq!(settings.http.host.to_string(), "127.0.0.1");
    assert_eq!(settings.http.port, 8000);
    assert_eq!(settings.log_format, LogFormat::Pretty);
    match settings.store {
        StoreSettings::Embedded(embedded) => assert_eq!(embedded.data_dir, Path::new("./data")),
        StoreSettings::Redis(_) => panic!("the example must not select Redis"),
    }
}

/// Whether a `.dockerignore` pattern excludes the top-level `name` (leading `/`, trailing `/` and
/// a `**/` prefix ignored; `*` matches any run of characters).
fn excludes(pattern: &str, name: &str) -> bool {
    fn glob(p: &[u8], s: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
            Some((c, rest)) => s.first() == Some(c) && glob(rest, &s[1..]),
        }
    }
    let pattern = pattern.trim_start_matches("**/").trim_matches('/');
    glob(pattern.as_bytes(), name.as_bytes())
}

#[test]
fn dockerignore_keeps_build_output_data_and_secrets_out_of_the_build_context() {
    let file = repo_file(".dockerignore");
    let patterns: Vec<&str> = file
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(
        patterns.iter().all(|p| !p.starts_with('!')),
        "no re-includes"
    );
    let ignored = |name: &str| patterns.iter().any(|p| excludes(p, name));
    for name in [
        "target",
        "data",
        "config.env",
        ".env",
        ".git",
        "whatsapp-gateway.sqlite3",
        "whatsapp-gateway.sqlite3-wal",
    ] {
        assert!(ignored(name), ".dockerignore does not exclude {name}");
    }
    // What the Dockerfile copies must stay in.
    for name in ["Cargo.toml", "Cargo.lock", "src"] {
        assert!(!ignored(name), ".dockerignore excludes {name}");
    }
}
