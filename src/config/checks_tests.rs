//! `[[site.check]]` and a watch's `judge`: what is accepted, its defaults, and each fault
//! refused with its key.

use super::tests::{assert_problem, base_with, syntax};
use super::*;
use crate::core::health::Judge;

const SITE_A: &str = "id = \"a\"\nkind = \"primary\"\n";
const WATCH_A: &str = "site = \"a\"\nby = [\"b\", \"c\"]\n";

/// `BASE` with `checks` appended to site a and `watch` appended to the watch of a.
fn fleet(checks: &str, watch: &str) -> String {
    base_with(SITE_A, &format!("{SITE_A}{checks}\n")).replacen(
        WATCH_A,
        &format!("{WATCH_A}{watch}\n"),
        1,
    )
}

const WEB: &str = r#"[[site.check]]
name = "web"
kind = "http"
target = "http://127.0.0.1:8080/healthz"
"#;

#[test]
fn site_checks_are_read_with_their_defaults_and_the_judge_with_them() {
    let f = Fleet::parse(&fleet(
        &format!(
            "{WEB}[[site.check]]\nname = \"db\"\nkind = \"tcp\"\ntarget = \"127.0.0.1:5432\"\n\
             interval_ms = 500\ntimeout_ms = 200\nrise = 4\nfall = 1\n\
             [[site.check]]\nname = \"script\"\nkind = \"exec\"\nargv = [\"/bin/true\"]\n"
        ),
        "judge = \"service\"",
    ))
    .unwrap();
    let checks = f.service.checks_of(&SiteId::from("a"));
    assert_eq!(checks.len(), 3);
    assert_eq!(
        checks[0],
        ServiceCheck {
            name: "web".into(),
            kind: CheckKind::Http {
                url: "http://127.0.0.1:8080/healthz".into()
            },
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
        }
    );
    assert_eq!(
        (
            checks[1].interval,
            checks[1].timeout,
            checks[1].rise,
            checks[1].fall
        ),
        (Duration::from_millis(500), Duration::from_millis(200), 4, 1)
    );
    assert_eq!(
        checks[2].kind,
        CheckKind::Exec {
            argv: vec!["/bin/true".into()]
        }
    );
    assert_eq!(f.service.judge(&SiteId::from("a")), Judge::Service);
    assert_eq!(f.service.judge(&SiteId::from("b")), Judge::Host);
    assert!(f.service.checks_of(&SiteId::from("b")).is_empty());
}

#[test]
fn judge_service_needs_checks_on_the_watched_site() {
    assert_problem(
        &fleet("", "judge = \"service\""),
        "watch on a (watch[0].judge): judge = \"service\" but site a has no [[site.check]]",
    );
    assert!(syntax(&fleet("", "judge = \"ping\"")).contains("unknown variant `ping`"));
}

#[test]
fn each_bad_check_key_is_refused_naming_it() {
    for (check, want) in [
        (
            "name = \"web\"\nkind = \"tcp\"\ntarget = \"localhost\"",
            "site a (site[0].check[0].target): \"localhost\" is not host:port",
        ),
        (
            "name = \"web\"\nkind = \"http\"\ntarget = \"https://x/\"",
            "site a (site[0].check[0].target): \"https://x/\" is not an http:// URL",
        ),
        (
            "name = \"web\"\nkind = \"exec\"\nargv = []",
            "site a (site[0].check[0].argv): argv is empty",
        ),
        (
            "name = \"web\"\nkind = \"exec\"\ntarget = \"127.0.0.1:1\"",
            "an exec check takes `argv`",
        ),
        (
            "name = \"web\"\nkind = \"tcp\"\nargv = [\"x\"]",
            "a tcp or http check takes `target`",
        ),
        (
            "name = \"Web\"\nkind = \"tcp\"\ntarget = \"127.0.0.1:1\"",
            "(site[0].check[0].name): \"Web\" is not a valid check name",
        ),
        (
            "name = \"web\"\nkind = \"tcp\"\ntarget = \"127.0.0.1:1\"\nrise = 0",
            "(site[0].check[0].rise): must be at least 1",
        ),
        (
            "name = \"web\"\nkind = \"tcp\"\ntarget = \"127.0.0.1:1\"\ninterval_ms = 100\ntimeout_ms = 200",
            "timeout_ms = 200 is longer than interval_ms = 100",
        ),
        (
            "name = \"web\"\nkind = \"tcp\"\ntarget = \"127.0.0.1:1\"\ninterval_ms = 3600001",
            "site[0].check[0].interval_ms = 3600001 is above the limit of 3600000 (1 h)",
        ),
        (
            "name = \"web\"\nkind = \"tcp\"\ntarget = \"127.0.0.1:1\"\ninterval_ms = 70000\ntimeout_ms = 60001",
            "site[0].check[0].timeout_ms = 60001 is above the limit of 60000 (60 s)",
        ),
        (
            "name = \"web\"\nkind = \"tcp\"\ntarget = \"127.0.0.1:1\"\nfall = 101",
            "site[0].check[0].fall = 101 is above the limit of 100",
        ),
    ] {
        assert_problem(&fleet(&format!("[[site.check]]\n{check}\n"), ""), want);
    }
}

#[test]
fn a_check_name_twice_in_a_site_and_too_many_checks_are_refused() {
    assert_problem(
        &fleet(&format!("{WEB}{WEB}"), ""),
        "(site[0].check[1].name): check \"web\" is defined twice in this site",
    );
    let many: String = (0..=limits::MAX_CHECKS_PER_SITE)
        .map(|i| {
            format!("[[site.check]]\nname = \"c{i}\"\nkind = \"tcp\"\ntarget = \"127.0.0.1:1\"\n")
        })
        .collect();
    assert_problem(
        &fleet(&many, ""),
        "site[0].check: 33 tables, above the limit of 32",
    );
}

#[test]
fn unknown_check_keys_are_refused() {
    assert!(syntax(&fleet(&format!("{WEB}port = 1\n"), "")).contains("unknown field `port`"));
}
