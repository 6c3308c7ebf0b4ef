//! Shadowed apps in a `serve` config: two `[[apps]]` with one name, or a host an earlier app already
//! answers on, are refused by `config check` and at startup, each problem with its file and line.

use crate::{gatehouse, stderr, stdout};

const SPACEFILE: &str = "v: 0\nmicros:\n  - name: main\n    upstream: http://127.0.0.1:9\n";

fn apps(entries: &[(&str, &str)]) -> String {
    let mut text = String::from("data_dir = \"data\"\n");
    for (name, hosts) in entries {
        text.push_str(&format!("\n[[apps]]\nname = \"{name}\"\nhosts = [{hosts}]\nspacefile = \"Spacefile\"\n"));
    }
    text
}

#[test]
fn duplicate_app_names_and_shadowed_hosts_are_refused_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("Spacefile"), SPACEFILE).unwrap();
    // Each app block is 5 lines after the first line and a blank: `name` is on line 4 + 5 n, `hosts` on 5 + 5 n.
    let rows: Vec<(String, Vec<&str>)> = vec![
        (apps(&[("web", "\"a.test\""), ("web", "\"b.test\"")]), vec!["gatehouse.toml:9: apps[1].name: the app name `web` is already used by apps[0] (line 4)"]),
        (apps(&[("web", "\"a.test\""), ("admin", "\"a.test\"")]), vec!["gatehouse.toml:10: apps[1].hosts[0]: the host `a.test` is already served by app `web` (line 5); requests would never reach `admin`"]),
        (apps(&[("web", "\"a.test\""), ("admin", "\"b.test\", \"A.Test\"")]), vec!["gatehouse.toml:10: apps[1].hosts[1]: the host `A.Test` is already served by app `web` (line 5)"]),
        (apps(&[("web", "\"a.test\""), ("admin", "\"a.test:8443\"")]), vec!["gatehouse.toml:10: apps[1].hosts[0]: the host `a.test:8443` is already served by app `web`, whose host `a.test` (line 5) takes every port"]),
        (apps(&[("web", "\"a.test\", \"a.test\"")]), vec!["gatehouse.toml:5: apps[0].hosts[1]: the host `a.test` is listed twice for this app (line 5)"]),
        (apps(&[("web", "\"\"")]), vec!["gatehouse.toml:5: apps[0].hosts[0]: a host must not be empty"]),
        // Every problem at once.
        (
            apps(&[("web", "\"a.test\""), ("web", "\"a.test\""), ("api", "\"[::1]:8080\""), ("api", "\"[::1]:8080\"")]),
            vec![
                "gatehouse.toml:9: apps[1].name: the app name `web` is already used by apps[0] (line 4)",
                "gatehouse.toml:10: apps[1].hosts[0]: the host `a.test` is already served by app `web` (line 5)",
                "gatehouse.toml:19: apps[3].name: the app name `api` is already used by apps[2] (line 14)",
                "gatehouse.toml:20: apps[3].hosts[0]: the host `[::1]:8080` is already served by app `api` (line 15)",
            ],
        ),
    ];
    for (config, wants) in rows {
        std::fs::write(d.join("gatehouse.toml"), &config).unwrap();
        let out = gatehouse(d, &["--config", "gatehouse.toml", "config", "check"], &[]);
        assert_eq!(out.status.code(), Some(1), "{config}");
        let err = stderr(&out);
        for want in wants {
            assert!(err.contains(want), "{config}\nwanted: {want}\ngot: {err}");
        }
        // Startup refuses the same file before opening anything.
        let out = gatehouse(d, &["--config", "gatehouse.toml", "serve"], &[]);
        assert_eq!(out.status.code(), Some(1), "{config}");
        assert!(stderr(&out).contains("gatehouse.toml:"), "{}", stderr(&out));
    }
    // Distinct names and hosts, including one host on two explicit ports, pass.
    std::fs::write(
        d.join("gatehouse.toml"),
        apps(&[("web", "\"a.test:8080\""), ("admin", "\"a.test:8443\", \"b.test\""), ("api", "\"[::1]:8080\"")]),
    )
    .unwrap();
    let out = gatehouse(d, &["--config", "gatehouse.toml", "config", "check"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Configuration is valid."), "{}", stdout(&out));
}
