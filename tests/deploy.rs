//! The deployment files and the docs match the binary: `deploy/origin.toml` and
//! `deploy/edge.toml` are the configurations `--print-config` prints (every setting at its
//! default), and the binary reads each back unchanged; the README's configuration reference
//! names every setting the binary has, with the binary's default, and `--check-config` reads
//! each of its defaults as written there; every TOML snippet of the README and `deploy/` is
//! parsed by the binary; size fields take numbers and size strings. A new or renamed setting
//! fails these tests until the docs follow.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

fn example(name: &str) -> (std::path::PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    (path, body)
}

fn print_config(env: &TestEnv, args: &[&str]) -> String {
    let mut c = sitecast_command();
    c.args(args).arg("--print-config");
    let o = run_cmd(env, c, Duration::from_secs(30));
    assert!(o.ok(), "sitecast {args:?} --print-config: {o:?}");
    o.stdout
}

#[test]
fn example_configs_are_the_binary_s_defaults_and_read_back_unchanged() {
    let env = TestEnv::new("deploy", Duration::from_secs(60));
    for (name, args) in [
        ("origin.toml", vec!["origin"]),
        ("edge.toml", vec!["edge", "--node", "edge-1"]),
    ] {
        let (path, body) = example(name);
        let defaults = print_config(&env, &args);
        assert_eq!(
            body,
            defaults,
            "{} differs from `sitecast {} --print-config`: regenerate it (see its header)",
            path.display(),
            args.join(" ")
        );
        let p = path.to_str().unwrap();
        let read_back = print_config(&env, &[args[0], "--config", p]);
        assert_eq!(read_back, defaults, "{name} read back through --config");
    }
}

/// `sitecast ROLE --config FILE --check-config` on `toml`.
fn check_config(env: &TestEnv, role: &str, toml: &str) -> CmdOutput {
    let file = env.scratch("config").with_extension("toml");
    std::fs::write(&file, toml).unwrap();
    let mut c = sitecast_command();
    c.args([role, "--config", file.to_str().unwrap(), "--check-config"]);
    if role == "edge" {
        c.args(["--node", "edge-1"]);
    }
    run_cmd(env, c, Duration::from_secs(30))
}

fn parse_toml(text: &str) -> toml::Table {
    text.parse::<toml::Table>()
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn every_size_field_takes_numbers_and_size_strings() {
    let env = TestEnv::new("deploy-sizes", Duration::from_secs(60));
    let edge = "chunk_cache_bytes = \"64MiB\"\n[quic]\nbatch_bytes = \"4MiB\"\nreceive_window = \"2 MiB\"\nstream_receive_window = 1048576\n[oci]\ncache_max_bytes = \"10GiB\"\n";
    let o = check_config(&env, "edge", edge);
    assert!(o.ok(), "{o:?}");
    assert!(o.stderr.contains("the configuration is valid"), "{o:?}");
    let t = parse_toml(&o.stdout);
    assert_eq!(t["chunk_cache_bytes"].as_str(), Some("64MiB"));
    assert_eq!(t["quic"]["batch_bytes"].as_str(), Some("4MiB"));
    assert_eq!(t["quic"]["receive_window"].as_str(), Some("2MiB"));
    assert_eq!(t["quic"]["stream_receive_window"].as_str(), Some("1MiB"));
    assert_eq!(t["oci"]["cache_max_bytes"].as_str(), Some("10GiB"));
    let origin = "max_upload = \"2GiB\"\nmax_json_body = 65536\n[quic]\nsend_window = \"1MiB\"\n";
    let o = check_config(&env, "origin", origin);
    assert!(o.ok(), "{o:?}");
    let t = parse_toml(&o.stdout);
    assert_eq!(t["max_upload"].as_str(), Some("2GiB"));
    assert_eq!(t["max_json_body"].as_str(), Some("64KiB"));

    // Bad values: exit status 1 and a message naming the field and the problem.
    for (role, toml, want) in [
        ("edge", "[quic]\nbatch_bytes = \"4 furlongs\"\n", "furlongs"),
        ("edge", "[quic]\nbatch_bytes = -1\n", "batch_bytes"),
        (
            "edge",
            "[quic]\nconnect_timeout = \"0s\"\n",
            "connect_timeout",
        ),
        ("edge", "[quic]\nbatch_size = 1\n", "batch_size"),
        ("origin", "[quic]\nsend_window = \"64MiB\"\n", "send_window"),
        ("origin", "max_upload = \"99999999999TiB\"\n", "too large"),
    ] {
        let o = check_config(&env, role, toml);
        assert_eq!(o.code, Some(1), "{role} {toml:?}: {o:?}");
        assert!(
            o.stderr.contains(want),
            "{role} {toml:?} should name {want:?}: {o:?}"
        );
        assert!(
            o.stdout.is_empty(),
            "nothing printed for an invalid config: {o:?}"
        );
    }
}

/// The rows of the README's configuration table under `heading`: (dotted field, default as
/// written), skipping defaults that are prose (`none`, `host name`, `<data_dir>/…`).
fn reference_rows(readme: &str, heading: &str) -> Vec<(String, String)> {
    let start = readme
        .find(heading)
        .unwrap_or_else(|| panic!("README has no {heading:?}"));
    let table = readme[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2);
    let ticked = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };
    let mut rows = Vec::new();
    for line in table {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (names, defaults) = (cells[1], cells[2]);
        if names.starts_with("`[[") {
            continue; // a table of tables, documented by example
        }
        // `quic.a` / `b` (flag) | `1` / `2`: the second name lives in the first one's table.
        let names: Vec<String> = ticked(names.split('(').next().unwrap())
            .into_iter()
            .filter(|n| !n.starts_with("--"))
            .collect();
        let defaults = ticked(defaults);
        if defaults.len() != names.len() {
            assert!(
                defaults.is_empty(),
                "README row {line:?}: {} names but {} defaults",
                names.len(),
                defaults.len()
            );
            continue;
        }
        let section = names[0].rsplit_once('.').map(|(s, _)| s.to_owned());
        for (i, (name, default)) in names.iter().zip(defaults).enumerate() {
            let name = match (&section, i, name.contains('.')) {
                (Some(s), 1.., false) => format!("{s}.{name}"),
                _ => name.clone(),
            };
            if default.starts_with('<') {
                continue;
            }
            rows.push((name, default));
        }
    }
    rows
}

/// A TOML document setting every dotted field to its README default.
fn toml_of(rows: &[(String, String)]) -> String {
    let mut top = String::new();
    let mut sections: std::collections::BTreeMap<String, String> = Default::default();
    for (name, default) in rows {
        let value = if default.starts_with('"')
            || default.starts_with('[')
            || default == "true"
            || default == "false"
            || default.parse::<u64>().is_ok()
        {
            default.clone()
        } else {
            format!("{default:?}")
        };
        match name.split_once('.') {
            Some((s, key)) => {
                let body = sections.entry(s.to_owned()).or_default();
                body.push_str(&format!("{key} = {value}\n"));
            }
            None => top.push_str(&format!("{name} = {value}\n")),
        }
    }
    for (s, body) in sections {
        top.push_str(&format!("[{s}]\n{body}"));
    }
    top
}

/// Every leaf key of a TOML table, dotted.
fn leaf_keys(t: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (k, v) in t {
        let key = format!("{prefix}{k}");
        match v {
            toml::Value::Table(inner) => leaf_keys(inner, &format!("{key}."), out),
            _ => out.push(key),
        }
    }
}

#[test]
fn the_readme_reference_names_every_setting_with_the_binary_s_default() {
    let env = TestEnv::new("deploy-readme", Duration::from_secs(60));
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for (role, heading, args) in [
        ("origin", "### `sitecast origin`", vec!["origin"]),
        (
            "edge",
            "### `sitecast edge`",
            vec!["edge", "--node", "edge-1"],
        ),
    ] {
        let rows = reference_rows(&readme, heading);
        assert!(rows.len() > 10, "{heading}: {rows:?}");
        let written = toml_of(&rows);
        let o = check_config(&env, role, &written);
        assert!(
            o.ok(),
            "the README's {role} defaults do not parse:\n{written}\n{o:?}"
        );
        let defaults = parse_toml(&print_config(&env, &args));
        assert_eq!(
            parse_toml(&o.stdout),
            defaults,
            "a default in the README's {heading} table is not the binary's:\n{written}"
        );
        let mut keys = Vec::new();
        leaf_keys(&defaults, "", &mut keys);
        let documented: Vec<&str> = readme[readme.find(heading).unwrap()..]
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .collect();
        let documented = documented.join("\n");
        for key in keys {
            let last = key.rsplit('.').next().unwrap();
            assert!(
                documented.contains(&format!("`{key}`"))
                    || documented.contains(&format!("`{last}`"))
                    || documented.contains(&format!("`[[{key}]]`")),
                "the README's {heading} table does not document `{key}`"
            );
        }
    }
}

#[test]
fn every_toml_snippet_in_the_docs_is_read_by_the_binary() {
    let env = TestEnv::new("deploy-snippets", Duration::from_secs(60));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs = vec![root.join("README.md"), root.join("deploy/README.md")];
    for dir in ["docs", "deploy/containerd"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "md") {
                docs.push(p);
            }
        }
    }
    let mut checked = 0;
    for doc in docs {
        let text = std::fs::read_to_string(&doc).unwrap();
        let mut lines = text.lines();
        while let Some(l) = lines.next() {
            if l.trim() != "```toml" {
                continue;
            }
            let block: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            let first = block.first().copied().unwrap_or("").trim();
            // The first line says whose file it is: `# origin.toml`, `# edge.toml`, or
            // another program's (`# /etc/containerd/config.toml`), which is only parsed.
            let role = if first.contains("origin.toml") {
                "origin"
            } else if first.contains("edge.toml") {
                "edge"
            } else {
                assert!(
                    first.starts_with('#') && first.contains(".toml"),
                    "{}: a TOML snippet must start with `# origin.toml`, `# edge.toml` or a \
                     comment naming the other program's file: {block:?}",
                    doc.display()
                );
                parse_toml(&block.join("\n"));
                continue;
            };
            let o = check_config(&env, role, &block.join("\n"));
            assert!(o.ok(), "{}: snippet {block:?}: {o:?}", doc.display());
            checked += 1;
        }
    }
    assert!(checked >= 2, "the README's example configs were not found");
}
