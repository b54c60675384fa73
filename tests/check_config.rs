//! `quorate check-config` as operators run it: the built binary on real files. Every file in
//! `tests/fleets/broken/` starts with `# expect: <text>` and must be refused with that text on
//! stderr; the example fleets in `config/` must pass.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn check_config(path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quorate"))
        .arg("check-config")
        .arg(path)
        .output()
        .expect("the quorate binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn every_broken_fleet_is_refused_with_its_expected_message() {
    let dir = root().join("tests/fleets/broken");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/fleets/broken exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 12, "only {} broken fleets", files.len());

    let mut failures = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file).expect("readable fleet");
        let expect = source
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} must start with `# expect: `", file.display()))
            .trim();
        let out = check_config(file);
        let stderr = text(&out.stderr);
        if out.status.success() {
            failures.push(format!("{}: accepted", file.display()));
        } else if !stderr.contains(expect) {
            failures.push(format!(
                "{}: stderr lacks {expect:?}:\n{stderr}",
                file.display()
            ));
        } else if !stderr.lines().any(|l| l.starts_with("error: ")) {
            failures.push(format!("{}: no `error: ` line:\n{stderr}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_fleet_with_several_problems_reports_each_on_its_own_line() {
    let out = check_config(&root().join("tests/fleets/broken/zero-vote-timings.toml"));
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 2, "{stderr}");
    assert!(
        errors[0].contains("timing.vote_timeout_ms is 0"),
        "{stderr}"
    );
    assert!(
        errors[1].contains("timing.max_vote_rounds is 0"),
        "{stderr}"
    );
}

#[test]
fn the_example_three_site_fleets_pass() {
    for name in ["three-sites.toml", "three-sites-fast.toml"] {
        let out = check_config(&root().join("config").join(name));
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        assert!(
            stdout.starts_with("fleet OK: 3 sites, 8 nodes, 2 watches, hash "),
            "{name}: {stdout}"
        );
        assert!(!stdout.contains("warning:"), "{name}: {stdout}");
    }
}

#[test]
fn the_example_failover_plans_pass_without_warnings() {
    for name in ["dr-openstack.toml", "gmpls-migration.toml"] {
        let out = check_config(&root().join("config").join(name));
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        assert!(
            stdout.starts_with("fleet OK: 3 sites, 8 nodes, 2 watches, hash "),
            "{name}: {stdout}"
        );
        assert!(!stdout.contains("warning:"), "{name}: {stdout}");
        let fleet =
            quorate::config::Fleet::load(&root().join("config").join(name)).expect("valid fleet");
        let plan = fleet.watches[0]
            .plan
            .as_ref()
            .expect("a plan on the watch of a");
        assert!(plan.takeover_delay > plan.self_fence_after + fleet.timing.probe_budget());
    }
}

#[test]
fn the_two_site_fleet_passes_with_a_manual_failover_warning() {
    let out = check_config(&root().join("config/two-sites-manual.toml"));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains("fleet OK: 2 sites, 6 nodes, 2 watches"),
        "{stdout}"
    );
    let warnings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .collect();
    assert_eq!(warnings.len(), 2, "{stdout}");
    assert!(warnings.iter().all(|w| w.contains("manual")), "{stdout}");
}

#[test]
fn the_printed_hash_is_the_sha256_of_the_file() {
    let path = root().join("config/three-sites.toml");
    let out = check_config(&path);
    let stdout = text(&out.stdout);
    let printed = stdout
        .lines()
        .next()
        .and_then(|l| l.rsplit("hash ").next())
        .expect("a hash is printed");
    let fleet = quorate::config::Fleet::load(&path).expect("valid fleet");
    assert_eq!(printed.len(), 12);
    assert!(
        fleet.hash.starts_with(printed),
        "{printed} vs {}",
        fleet.hash
    );
}

#[test]
fn a_missing_file_is_an_error_naming_the_path() {
    let out = check_config(Path::new("/nonexistent/fleet.toml"));
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("error: cannot read fleet file /nonexistent/fleet.toml"),
        "{stderr}"
    );
}

#[test]
fn every_example_fleet_in_config_passes() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("config"))
        .expect("config/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "only {} example fleets", files.len());
    for file in &files {
        let out = check_config(file);
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).starts_with("fleet OK: "),
            "{}",
            file.display()
        );
    }
}

#[test]
fn a_withdraw_before_the_announce_elsewhere_is_refused_naming_the_rule_the_step_and_the_fix() {
    let out =
        check_config(&root().join("tests/fleets/broken/anycast-withdraw-before-announce.toml"));
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(
        errors,
        [
            "error: watch on a: pipeline.step[0] \"withdraw-a\": withdrawing 198.19.255.0/24 at a \
          would leave it announced by no live site when the run gets there (a, the failed site, \
          counts as down; ledger: a; b is not announcing), so the rule \"each anycast prefix \
          stays announced by at least one site\" would refuse the step; announce it at another \
          site first: move step pipeline.step[1] \"announce-b\" before step \"withdraw-a\" \
          (make before break)"
        ],
        "{stderr}"
    );
}

#[test]
fn the_dr_openstack_plan_declares_its_anycast_prefix_and_names_the_site_of_each_bgp_step() {
    let fleet = quorate::config::Fleet::load(&root().join("config/dr-openstack.toml"))
        .expect("valid fleet");
    let decl = &fleet.anycast()[0];
    assert_eq!(decl.prefix.to_string(), "198.19.255.0/24");
    assert_eq!(decl.announced_by, [quorate::core::types::SiteId::from("a")]);
    let plan = fleet.watches[0]
        .plan
        .as_ref()
        .expect("a plan on the watch of a");
    let sites: Vec<String> = ["announce-anycast-b", "withdraw-anycast-a"]
        .iter()
        .map(|s| plan.bgp_effect(s).expect(s).site.to_string())
        .collect();
    assert_eq!(sites, ["b", "a"]);
}
