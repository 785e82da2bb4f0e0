//! The binary's settings as an operator meets them: `--help` lists every setting with its
//! variable and default, the README's table says the same, a bad value is one error naming the
//! variable with exit status 2, and `--print-config` shows what runs without any secret.

use clap::CommandFactory;
use reservation::config::Settings;
use std::process::{Command, Output};

/// The binary with only the given environment (nothing of the test's own).
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reservation"))
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("the binary runs")
}

/// (variable, flag, default) of every setting.
fn settings() -> Vec<(String, String, Option<String>)> {
    Settings::command()
        .get_arguments()
        .filter_map(|a| {
            let var = a.get_env()?.to_string_lossy().into_owned();
            let flag = format!("--{}", a.get_long()?);
            let default = a
                .get_default_values()
                .first()
                .map(|d| d.to_string_lossy().into_owned());
            Some((var, flag, default))
        })
        .collect()
}

#[test]
fn help_lists_every_setting_with_its_variable_flag_and_default() {
    let out = run(&["--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let all = settings();
    assert!(
        all.len() >= 47,
        "every setting has a variable: {}",
        all.len()
    );
    for (var, flag, default) in all {
        assert!(
            help.contains(&format!("{flag} <{var}>")),
            "{flag} in\n{help}"
        );
        assert!(
            help.contains(&format!("[env: {var}=")) || help.contains(&format!("[env: {var}]")),
            "{var} in\n{help}"
        );
        if let Some(d) = default {
            assert!(help.contains(&format!("[default: {d}]")), "{var}'s {d}");
        }
    }
    assert!(help.contains("--print-config") && help.contains("--demo"));
}

#[test]
fn the_readme_table_lists_every_setting_with_the_default_help_gives() {
    let readme = include_str!("../README.md");
    let table = readme
        .split("## Configuration")
        .nth(1)
        .and_then(|s| s.split("\n\n").find(|p| p.starts_with("| variable")))
        .expect("the settings table");
    let rows: Vec<&str> = table.lines().skip(2).collect();
    let all = settings();
    for (var, _, default) in &all {
        let row = rows
            .iter()
            .find(|r| {
                r.split('|')
                    .nth(1)
                    .is_some_and(|c| c.contains(&format!("`{var}`")))
            })
            .unwrap_or_else(|| panic!("no row for {var}"));
        if let Some(d) = default {
            let cell = row.rsplit('|').nth(1).unwrap();
            assert!(
                cell.contains(&format!("`{d}`")),
                "{var}: `{d}` not in {cell}"
            );
        }
    }
    // ... and nothing in the table that the binary does not read.
    for row in rows {
        for var in row.split('|').nth(1).unwrap().split('`').skip(1).step_by(2) {
            assert!(
                all.iter().any(|(v, _, _)| v == var),
                "{var} is not a setting"
            );
        }
    }
}

#[test]
fn a_bad_value_is_one_error_naming_the_variable_with_exit_status_2() {
    for (var, value) in [
        ("DB_POOL_SIZE", "eight"),
        ("LOG_FORMAT", "xml"),
        ("TIMEZONE", "Asia/Seoul"),
        ("IDENTITY_FAILURE_RATE", "2"),
        ("IDENTITY_RETRIES", "9"),
        ("ALLOW_UNSAFE_DURABILITY", "yes"),
    ] {
        let out = run(&[], &[(var, value)]);
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {err}");
        assert!(err.contains(var), "{var}={value}: {err}");
        assert_eq!(
            err.matches("error").count() + err.matches("configuration:").count(),
            1,
            "one error: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = run(&["--workers", "many"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("WORKERS"));
}

#[test]
fn print_config_shows_every_effective_setting_and_no_secret() {
    let out = run(
        &["--print-config", "--workers", "3"],
        &[
            ("DATABASE_URL", "postgres://app:hunter2@db1,db2/r"),
            ("ADMIN_TOKEN", "admin-secret-token"),
            ("SECRET_KEY", "signing-secret-key"),
            ("DB_POOL_SIZE", "1"),
            ("WORKERS", "5"),
            ("MAX_IN_FLIGHT", "  "),
            ("NODE_NAME", "node-a"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for secret in ["hunter2", "admin-secret-token", "signing-secret-key"] {
        assert!(!text.contains(secret), "{secret} printed:\n{text}");
    }
    for line in [
        "DATABASE_URL=postgres://app:<redacted>@db1,db2/r",
        "ADMIN_TOKEN=<redacted>",
        "DB_POOL_SIZE=2",     // clamped to 2-256, as it runs
        "WORKERS=3",          // the flag wins over the variable
        "MAX_IN_FLIGHT=1024", // a blank variable counts as unset
        "NODE_NAME=node-a",
        "LOG_FORMAT=text",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    for (var, _, _) in settings() {
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with(&format!("{var}=")))
                .count(),
            1,
            "{var} once in\n{text}"
        );
    }
}
