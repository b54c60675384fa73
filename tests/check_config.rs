//! `quorate check-config` as operators run it: the built binary on real files. Every file in
//! `tests/fleets/broken/` starts with `# expect: <text>` and must be refused with that text on
//! stderr; the example fleets in `config/` must pass. A prefix means the same to check-config
//! as to the bgp actuator that announces it.

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

/// The fleet of `anycast-bad-prefix.toml` with `prefix` as its anycast prefix and as the
/// prefix of each of its bgp steps (announce at b, withdraw at a, a's self-withdraw).
fn fleet_moving(prefix: &str) -> String {
    let source =
        std::fs::read_to_string(root().join("tests/fleets/broken/anycast-bad-prefix.toml"))
            .expect("readable fleet");
    let quoted = format!("{prefix:?}");
    source
        .replace("\"198.19.255.1/24\"", &quoted)
        .replace("\"198.19.255.0/24\"", &quoted)
}

/// What the bgp actuator does with an announce of `prefix` through ExaBGP: `Ok(line)` with the
/// line it writes into the pipe, or `Err(message)` when it refuses the step's params.
fn exabgp_announce(prefix: &str) -> Result<String, String> {
    use quorate::actuators::{build, ActuatorKind, StepContext};
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = tempfile::tempdir().expect("a temp dir");
    let fifo = dir.path().join("exabgp.fifo");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    // A reader that stays open, like `cat <> FIFO` under ExaBGP; non-blocking so that a step
    // that wrote nothing fails the test instead of hanging it.
    const O_NONBLOCK: i32 = 0o4000;
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(O_NONBLOCK)
        .open(&fifo)
        .expect("the pipe opens");
    let params = serde_json::json!({"action": "announce", "prefixes": [prefix],
        "backend": "exabgp", "pipe": fifo.to_str().expect("a UTF-8 path")});
    let actuator = build(ActuatorKind::Bgp, &params)?;
    let ctx = StepContext {
        site: "b".into(),
        epoch: 1,
        step: "announce-b".into(),
        idempotency_key: "b/1/announce-b".into(),
        dry_run: false,
        timeout: std::time::Duration::from_secs(5),
        params,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let outcome = runtime.block_on(actuator.run(&ctx));
    assert!(outcome.ok, "{prefix}: {outcome:?}");
    let mut written = String::new();
    reader.read_to_string(&mut written).ok();
    Ok(written)
}

#[test]
fn check_config_and_the_bgp_actuator_accept_and_refuse_the_same_prefixes_as_the_same_values() {
    // (as written, the normal form both must use; None: both must refuse it)
    let cases: &[(&str, Option<&str>)] = &[
        ("198.19.255.0/24", Some("198.19.255.0/24")),
        ("198.19.255.0/024", Some("198.19.255.0/24")),
        ("10.0.0.7/32", Some("10.0.0.7/32")),
        ("2001:DB8:FF::/48", Some("2001:db8:ff::/48")),
        ("2001:0db8:00ff:0000::/48", Some("2001:db8:ff::/48")),
        ("::/0", Some("::/0")),
        ("198.19.255.0/+24", None),
        ("198.19.255.0/ 24", None),
        ("198.19.255.0/24 ", None),
        (" 198.19.255.0/24", None),
        ("198.19.255.0/-0", None),
        ("198.19.255.0/33", None),
        ("198.19.255.0/", None),
        ("198.19.255.0", None),
        ("198.19.255.1/24", None),
        ("2001:db8:ff::1/48", None),
        ("2001:db8::/129", None),
        ("fe80::%eth0/64", None),
    ];
    let dir = tempfile::tempdir().expect("a temp dir");
    for (i, &(written, normal)) in cases.iter().enumerate() {
        let source = fleet_moving(written);
        let file = dir.path().join(format!("fleet-{i}.toml"));
        std::fs::write(&file, &source).expect("the fleet is written");
        let out = check_config(&file);
        let stderr = text(&out.stderr);
        let actuator = exabgp_announce(written);
        match normal {
            Some(normal) => {
                assert!(out.status.success(), "{written:?}: {stderr}");
                let fleet = quorate::config::Fleet::parse(&source).expect("valid fleet");
                assert_eq!(fleet.anycast()[0].prefix.to_string(), normal, "{written:?}");
                let plan = fleet.watches[0].plan.as_ref().expect("a plan on a");
                for step in ["announce-b", "withdraw-a", "self-withdraw"] {
                    let effect = plan.bgp_effect(step).expect(step);
                    let judged: Vec<String> =
                        effect.prefixes.iter().map(|p| p.to_string()).collect();
                    assert_eq!(judged, [normal], "{written:?} {step}");
                }
                assert_eq!(
                    actuator.as_deref(),
                    Ok(format!("announce route {normal} next-hop self\n").as_str()),
                    "{written:?}"
                );
            }
            None => {
                assert!(!out.status.success(), "{written:?} passed check-config");
                let refusal = actuator.expect_err(written);
                // The same parser refused it both times, with the same words.
                let why = refusal
                    .strip_prefix("bgp step: `prefixes` ")
                    .unwrap_or_else(|| panic!("{written:?}: {refusal}"));
                assert!(
                    stderr.contains(why),
                    "{written:?}: check-config said\n{stderr}\nthe actuator said {refusal}"
                );
            }
        }
    }
}
