use super::*;

/// Sites a (primary), b (backup), c (witness); a and b each judged by the two others.
/// Node order (indices in messages): a1 a2 a3 b1 b2 b3 c1 c2.
pub(super) const BASE: &str = r#"
[[site]]
id = "a"
kind = "primary"
[[site]]
id = "b"
kind = "backup"
[[site]]
id = "c"
kind = "witness"

[[node]]
id = "a1"
site = "a"
roles = ["indicator", "pinger", "voter"]
mesh = "127.0.1.1:7401"
api = "127.0.1.1:7501"
[[node]]
id = "a2"
site = "a"
roles = ["indicator", "pinger", "voter"]
mesh = "127.0.1.2:7401"
api = "127.0.1.2:7501"
[[node]]
id = "a3"
site = "a"
roles = ["indicator"]
mesh = "127.0.1.3:7401"
api = "127.0.1.3:7501"
[[node]]
id = "b1"
site = "b"
roles = ["indicator", "pinger", "voter"]
mesh = "127.0.2.1:7401"
api = "127.0.2.1:7501"
[[node]]
id = "b2"
site = "b"
roles = ["indicator", "pinger", "voter"]
mesh = "127.0.2.2:7401"
api = "127.0.2.2:7501"
[[node]]
id = "b3"
site = "b"
roles = ["indicator"]
mesh = "127.0.2.3:7401"
api = "127.0.2.3:7501"
[[node]]
id = "c1"
site = "c"
roles = ["pinger", "voter"]
mesh = "127.0.3.1:7401"
api = "127.0.3.1:7501"
[[node]]
id = "c2"
site = "c"
roles = ["pinger", "voter"]
mesh = "127.0.3.2:7401"
api = "127.0.3.2:7501"

[[watch]]
site = "a"
by = ["b", "c"]
[[watch]]
site = "b"
by = ["a", "c"]
"#;

/// `BASE` with one exact piece of text replaced (which must occur).
pub(super) fn base_with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "BASE lacks {from:?}");
    BASE.replacen(from, to, 1)
}

fn roles_of(node: &str, roles: &str) -> String {
    let at = BASE
        .find(&format!("id = \"{node}\""))
        .expect("node in BASE");
    let start = at + BASE[at..].find("roles = ").expect("roles line");
    let end = start + BASE[start..].find('\n').expect("line end");
    format!("{}roles = {roles}{}", &BASE[..start], &BASE[end..])
}

pub(super) fn problems(text: &str) -> Vec<String> {
    match Fleet::parse(text) {
        Err(ConfigError::Invalid(p)) => p,
        Err(e) => panic!("expected validation problems, got {e:?}"),
        Ok(_) => panic!("expected validation problems, the fleet was accepted"),
    }
}

pub(super) fn syntax(text: &str) -> String {
    match Fleet::parse(text) {
        Err(ConfigError::Syntax(m)) => m,
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

pub(super) fn assert_problem(text: &str, needle: &str) {
    let p = problems(text);
    assert!(
        p.iter().any(|l| l.contains(needle)),
        "no problem contains {needle:?}:\n{}",
        p.join("\n")
    );
}

fn ids(v: &[&str]) -> Vec<NodeId> {
    v.iter().map(|s| NodeId::from(*s)).collect()
}

#[test]
fn the_base_fleet_of_these_tests_is_valid_and_warns_of_nothing() {
    let fleet = Fleet::parse(BASE).expect("valid");
    assert_eq!(fleet.warnings(), Vec::<String>::new());
}

#[test]
fn example_fleets_pass_validation() {
    for (name, text) in [
        ("three-sites", include_str!("../../config/three-sites.toml")),
        (
            "three-sites-fast",
            include_str!("../../config/three-sites-fast.toml"),
        ),
    ] {
        let fleet = Fleet::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(fleet.warnings(), Vec::<String>::new(), "{name}");
        assert_eq!(
            fleet.electorate(&"a".into()),
            ids(&["b1", "b2", "c1", "c2"]),
            "{name}"
        );
        assert_eq!(
            fleet.node(&"b2".into()).map(|n| (n.mesh, n.api)),
            Some((
                "127.0.2.2:7401".parse().unwrap(),
                "127.0.2.2:7501".parse().unwrap()
            )),
            "{name}"
        );
    }
    let fast = Fleet::parse(include_str!("../../config/three-sites-fast.toml")).unwrap();
    assert_eq!(fast.timing.probe_interval, Duration::from_millis(20));
    assert_eq!(fast.timing.probe_timeout, Duration::from_millis(20));
    assert_eq!(fast.timing.vote_timeout, Duration::from_millis(100));
    assert_eq!(fast.timing.retries, 3);
    assert_eq!(fast.timing.probe_budget(), Duration::from_millis(80));
}

#[test]
fn the_two_site_example_is_valid_only_because_it_opts_into_manual_failover() {
    let text = include_str!("../../config/two-sites-manual.toml");
    let fleet = Fleet::parse(text).expect("valid");
    let warnings = fleet.warnings();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings.iter().all(|w| w.contains("manual")));
    let refused = text.replace("single_vantage = \"manual\"", "");
    assert_problem(&refused, "would look exactly like a disaster");
}

#[test]
fn an_empty_timing_table_means_the_drl_timings() {
    let fleet = Fleet::parse(BASE).unwrap();
    let t = &fleet.timing;
    assert_eq!(t.probe_interval, Duration::from_millis(100));
    assert_eq!(t.probe_timeout, Duration::from_millis(100));
    assert_eq!(t.retries, 5);
    assert_eq!(t.vote_timeout, Duration::from_millis(300));
    assert_eq!(t.max_vote_rounds, 3);
    assert_eq!(t.hold_down, Duration::from_secs(300));
    assert_eq!(t.probe_budget(), Duration::from_millis(600));
    assert_eq!(t.revote_after, Duration::from_millis(3000));
    assert_eq!(t.status_interval, Duration::from_millis(1000));
    assert_eq!(*t, Timing::default());
}

#[test]
fn revote_after_defaults_to_five_probe_budgets_of_the_file_timings() {
    let text = format!("[timing]\nprobe_interval_ms = 10\nretries = 2\n{BASE}");
    let t = Fleet::parse(&text).unwrap().timing;
    assert_eq!(t.probe_budget(), Duration::from_millis(120));
    assert_eq!(t.revote_after, Duration::from_millis(600));
}

#[test]
fn optional_timings_are_read_when_given() {
    let text =
        format!("[timing]\nrevote_after_ms = 42\nstatus_interval_ms = 7\nhold_down_s = 0\n{BASE}");
    let t = Fleet::parse(&text).unwrap().timing;
    assert_eq!(t.revote_after, Duration::from_millis(42));
    assert_eq!(t.status_interval, Duration::from_millis(7));
    assert_eq!(t.hold_down, Duration::ZERO);
}

#[test]
fn an_unknown_key_is_a_syntax_error_naming_the_key_and_its_line() {
    let m = syntax(&format!("[timing]\nprobe_intervall_ms = 100\n{BASE}"));
    assert!(m.starts_with("line 2, column 1"), "{m}");
    assert!(m.contains("unknown field `probe_intervall_ms`"), "{m}");
    assert!(
        m.contains("`probe_interval_ms`"),
        "the valid keys are listed: {m}"
    );

    let m = syntax(&base_with(
        "kind = \"primary\"",
        "kind = \"primary\"\nname = \"x\"",
    ));
    assert!(m.contains("unknown field `name`"), "{m}");
    let m = syntax(&BASE.replace("[[watch]]", "[[watches]]"));
    assert!(m.contains("unknown field `watches`"), "{m}");
}

#[test]
fn an_unknown_role_or_site_kind_is_a_syntax_error_listing_the_valid_ones() {
    let m = syntax(&roles_of("c2", r#"["pnger", "voter"]"#));
    assert!(m.contains("unknown variant `pnger`"), "{m}");
    assert!(m.contains("`indicator`, `pinger`, `voter`"), "{m}");
    let m = syntax(&base_with("\"witness\"", "\"witnes\""));
    assert!(m.contains("unknown variant `witnes`"), "{m}");
    let m = syntax(&base_with(
        "by = [\"b\", \"c\"]",
        "by = [\"b\", \"c\"]\nsingle_vantage = \"auto\"",
    ));
    assert!(m.contains("unknown variant `auto`"), "{m}");
}

#[test]
fn a_malformed_address_is_a_syntax_error() {
    let m = syntax(&base_with("\"127.0.1.1:7401\"", "\"127.0.1.1\""));
    assert!(m.contains("invalid socket address"), "{m}");
}

#[test]
fn a_duplicate_site_id_is_refused() {
    let text = base_with("id = \"c\"", "id = \"b\"");
    let p = problems(&text);
    assert!(
        p.iter()
            .any(|l| l.starts_with("site \"b\" (site[2].id): duplicate site id")),
        "{p:?}"
    );
}

#[test]
fn a_duplicate_node_id_is_refused() {
    assert_problem(
        &base_with("id = \"b2\"", "id = \"b1\""),
        "node \"b1\" (node[4].id): duplicate node id, already defined at node[3]",
    );
}

#[test]
fn a_node_in_an_undefined_site_names_the_key_and_the_fix() {
    let text = base_with("id = \"b3\"\nsite = \"b\"", "id = \"b3\"\nsite = \"x\"");
    assert_eq!(
        problems(&text),
        vec![
            "node \"b3\" (node[5].site): site \"x\" is not defined; add a [[site]] with \
              id = \"x\" or correct node.site"
                .to_string()
        ]
    );
}

#[test]
fn a_node_without_roles_is_refused() {
    assert_problem(
        &roles_of("a3", "[]"),
        "node \"a3\" (node[2].roles): roles is empty",
    );
}

#[test]
fn ids_must_be_dns_labels_because_they_go_into_certificates() {
    for good in ["a", "a1", "dc-east-2", &"x".repeat(63)] {
        assert!(is_dns_label(good), "{good}");
    }
    for bad in ["", "A1", "a_1", "a.b", "-a", "a-", "é", &"x".repeat(64)] {
        assert!(!is_dns_label(bad), "{bad}");
    }
    assert_problem(
        &base_with("id = \"a2\"", "id = \"A2\""),
        "node \"A2\" (node[1].id): not a valid DNS label",
    );
    assert_problem(
        &BASE.replace("\"c\"", "\"c_w\""),
        "site \"c_w\" (site[2].id): not a valid DNS label",
    );
}

#[test]
fn two_nodes_with_the_same_mesh_or_api_address_clash() {
    assert_problem(
        &base_with("\"127.0.2.2:7401\"", "\"127.0.2.1:7401\""),
        "node \"b2\" (node[4].mesh): address 127.0.2.1:7401 is already the mesh address of node \"b1\"",
    );
    assert_problem(
        &base_with("\"127.0.2.2:7501\"", "\"127.0.2.1:7501\""),
        "node \"b2\" (node[4].api): address 127.0.2.1:7501 is already the api address of node \"b1\"",
    );
}

#[test]
fn a_mesh_bind_on_another_nodes_address_clashes_but_wildcard_binds_may_repeat() {
    let on_c1 = base_with(
        "mesh = \"127.0.3.2:7401\"",
        "mesh = \"127.0.3.2:7401\"\nmesh_bind = \"127.0.3.1:7401\"",
    );
    assert_problem(
        &on_c1,
        "node \"c2\" (node[7].mesh_bind): address 127.0.3.1:7401",
    );

    let wildcard = BASE
        .replace(
            "mesh = \"127.0.3.1:7401\"",
            "mesh = \"127.0.3.1:7401\"\nmesh_bind = \"0.0.0.0:7401\"",
        )
        .replace(
            "mesh = \"127.0.3.2:7401\"",
            "mesh = \"127.0.3.2:7401\"\nmesh_bind = \"0.0.0.0:7401\"",
        );
    let fleet = Fleet::parse(&wildcard).expect("wildcard binds are per host");
    let c1 = fleet.node(&"c1".into()).unwrap();
    assert_eq!(c1.mesh_bind_addr(), "0.0.0.0:7401".parse().unwrap());
}

#[test]
fn a_watch_of_an_undefined_site_is_refused() {
    let text = format!("{BASE}[[watch]]\nsite = \"z\"\nby = [\"a\"]\n");
    assert_problem(
        &text,
        "watch on z (watch[2].site): site \"z\" is not defined; add a [[site]] with id = \"z\" or correct watch.site",
    );
}

#[test]
fn by_may_name_neither_an_undefined_site_nor_the_watched_site() {
    assert_problem(
        &base_with("by = [\"b\", \"c\"]", "by = [\"b\", \"c\", \"d\"]"),
        "watch on a (watch[0].by): site \"d\" is not defined",
    );
    assert_problem(
        &base_with("by = [\"b\", \"c\"]", "by = [\"a\", \"b\", \"c\"]"),
        "watch on a (watch[0].by): site a cannot watch itself",
    );
    assert_problem(
        &base_with("by = [\"b\", \"c\"]", "by = [\"b\", \"c\", \"b\"]"),
        "site b is listed twice",
    );
}

#[test]
fn a_second_watch_on_the_same_site_is_refused() {
    let text = format!("{BASE}[[watch]]\nsite = \"a\"\nby = [\"b\", \"c\"]\n");
    assert_problem(
        &text,
        "watch on a (watch[2].site): site a is already watched by watch[0]",
    );
}

#[test]
fn an_electorate_of_fewer_than_three_voters_is_refused_with_the_voters_named() {
    let text = roles_of("b2", r#"["indicator"]"#).replacen(
        "id = \"c2\"\nsite = \"c\"\nroles = [\"pinger\", \"voter\"]",
        "id = \"c2\"\nsite = \"c\"\nroles = [\"pinger\"]",
        1,
    );
    assert_problem(
        &text,
        "watch on a: electorate has 2 voters (b1, c1); at least 3 are needed so that one lost \
         voter does not stall every verdict — add voters to the `by` sites",
    );
}

#[test]
fn a_watched_site_without_indicators_is_refused() {
    let text = roles_of("a1", r#"["pinger", "voter"]"#);
    let text = text.replacen(
        "id = \"a2\"\nsite = \"a\"\nroles = [\"indicator\", \"pinger\", \"voter\"]",
        "id = \"a2\"\nsite = \"a\"\nroles = [\"pinger\", \"voter\"]",
        1,
    );
    let text = text.replacen(
        "id = \"a3\"\nsite = \"a\"\nroles = [\"indicator\"]",
        "id = \"a3\"\nsite = \"a\"\nroles = [\"pinger\"]",
        1,
    );
    assert_problem(
        &text,
        "watch on a: site a has no node with the indicator role",
    );
}

#[test]
fn a_voter_without_a_pinger_is_refused_once_naming_every_electorate() {
    let p = problems(&roles_of("c2", r#"["voter"]"#));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with(
            "node \"c2\" (node[7].roles): voter in the electorate of a, b without the pinger role"
        ),
        "{p:?}"
    );
    assert!(p[0].contains("add \"pinger\" to its roles"));
}

#[test]
fn electorate_with_one_dominant_site_is_refused_without_manual_opt_in() {
    // b3 becomes a voter and a is judged by b and a one-voter witness d: b holds 3 of 4.
    let text = roles_of("b3", r#"["indicator", "pinger", "voter"]"#).replacen(
        "by = [\"b\", \"c\"]",
        "by = [\"b\", \"d\"]",
        1,
    ) + "[[site]]\nid = \"d\"\nkind = \"witness\"\n\
           [[node]]\nid = \"d1\"\nsite = \"d\"\nroles = [\"pinger\", \"voter\"]\n\
           mesh = \"127.0.4.1:7401\"\napi = \"127.0.4.1:7501\"\n";
    let p = problems(&text);
    let line = p
        .iter()
        .find(|l| l.starts_with("watch on a"))
        .unwrap_or_else(|| panic!("{p:?}"));
    assert!(line.contains("site b holds 3 of 4 voters"), "{line}");
    assert!(
        line.contains("a cut between b and a would look exactly like a disaster"),
        "{line}"
    );
    assert!(line.contains("Add a witness site with voters"), "{line}");
    assert!(line.contains("single_vantage = \"manual\""), "{line}");

    let manual = text.replacen(
        "by = [\"b\", \"d\"]",
        "by = [\"b\", \"d\"]\nsingle_vantage = \"manual\"",
        1,
    );
    let fleet = Fleet::parse(&manual).expect("manual opt-in is accepted");
    assert_eq!(
        fleet.warnings(),
        vec![
            "watch on a: single_vantage = manual: site b holds 3 of 4 voters; verdicts are \
              shown but failover waits for an operator"
                .to_string()
        ]
    );
    assert_eq!(
        fleet.watch(&"a".into()).unwrap().single_vantage,
        SingleVantage::Manual
    );
}

#[test]
fn exactly_half_of_the_electorate_is_not_a_majority() {
    // BASE: b holds 2 of the 4 voters of a.
    let fleet = Fleet::parse(BASE).unwrap();
    assert_eq!(fleet.electorate(&"a".into()).len(), 4);
    assert_eq!(
        fleet.watch(&"a".into()).unwrap().single_vantage,
        SingleVantage::Refuse
    );
}

#[test]
fn zero_timings_are_each_refused() {
    for (key, line) in [
        ("probe_interval_ms", "probe_interval_ms = 0"),
        ("probe_timeout_ms", "probe_timeout_ms = 0"),
        ("retries", "retries = 0"),
        ("vote_timeout_ms", "vote_timeout_ms = 0"),
        ("max_vote_rounds", "max_vote_rounds = 0"),
        ("revote_after_ms", "revote_after_ms = 0"),
        ("status_interval_ms", "status_interval_ms = 0"),
    ] {
        let p = problems(&format!("[timing]\n{line}\n{BASE}"));
        assert_eq!(p.len(), 1, "{key}: {p:?}");
        assert!(p[0].starts_with(&format!("timing.{key} is 0;")), "{p:?}");
    }
}

#[test]
fn an_overflowing_probe_budget_is_refused_rather_than_a_panic() {
    let text = format!("[timing]\nprobe_interval_ms = 18446744073709551615\nretries = 9\n{BASE}");
    assert_problem(
        &text,
        "timing.probe_interval_ms = 18446744073709551615 is above the limit",
    );
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let text = format!("[timing]\nretries = 0\n{BASE}")
        .replacen("id = \"a2\"", "id = \"a1\"", 1)
        .replacen(
            "site = \"b\"\nroles = [\"indicator\"]",
            "site = \"x\"\nroles = [\"indicator\"]",
            1,
        );
    let p = problems(&text);
    assert_eq!(p.len(), 3, "{p:?}");
    let err = ConfigError::Invalid(p.clone());
    assert_eq!(err.to_string(), p.join("\n"));
    assert_eq!(err.to_string().lines().count(), 3);
}

#[test]
fn an_empty_file_is_refused_for_lack_of_sites_and_nodes() {
    let p = problems("");
    assert!(p.iter().any(|l| l.starts_with("no [[site]]")), "{p:?}");
    assert!(p.iter().any(|l| l.starts_with("no [[node]]")), "{p:?}");
}

#[test]
fn electorate_is_the_sorted_voters_of_the_by_sites() {
    let text = base_with("by = [\"b\", \"c\"]", "by = [\"c\", \"b\"]");
    let fleet = Fleet::parse(&text).unwrap();
    assert_eq!(
        fleet.electorate(&"a".into()),
        ids(&["b1", "b2", "c1", "c2"])
    );
    assert_eq!(
        fleet.electorate(&"b".into()),
        ids(&["a1", "a2", "c1", "c2"])
    );
    assert_eq!(
        fleet.electorate(&"c".into()),
        Vec::<NodeId>::new(),
        "c is unwatched"
    );
}

#[test]
fn indicators_are_the_sorted_indicator_nodes_of_a_site() {
    let fleet = Fleet::parse(BASE).unwrap();
    assert_eq!(fleet.indicators(&"a".into()), ids(&["a1", "a2", "a3"]));
    assert_eq!(fleet.indicators(&"c".into()), Vec::<NodeId>::new());
    assert_eq!(fleet.indicators(&"x".into()), Vec::<NodeId>::new());
}

#[test]
fn watched_by_site_lists_the_sites_a_site_judges() {
    let fleet = Fleet::parse(BASE).unwrap();
    let sites = |v: &[&str]| v.iter().map(|s| SiteId::from(*s)).collect::<Vec<_>>();
    assert_eq!(fleet.watched_by_site(&"a".into()), sites(&["b"]));
    assert_eq!(fleet.watched_by_site(&"b".into()), sites(&["a"]));
    assert_eq!(fleet.watched_by_site(&"c".into()), sites(&["a", "b"]));
}

#[test]
fn lookups_find_nodes_sites_and_watches_by_id() {
    let fleet = Fleet::parse(BASE).unwrap();
    let a3 = fleet.node(&"a3".into()).unwrap();
    assert_eq!(a3.site, SiteId::from("a"));
    assert_eq!(
        a3.roles,
        Roles {
            indicator: true,
            pinger: false,
            voter: false
        }
    );
    assert_eq!(fleet.site(&"c".into()).unwrap().kind, SiteKind::Witness);
    assert_eq!(
        fleet.watch(&"b".into()).unwrap().by,
        vec![SiteId::from("a"), SiteId::from("c")]
    );
    assert!(fleet.node(&"zz".into()).is_none());
    assert!(fleet.site(&"zz".into()).is_none());
    assert!(fleet.watch(&"c".into()).is_none());
}

#[test]
fn the_hash_is_the_hex_sha256_of_the_text() {
    assert_eq!(
        hex_sha256("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let fleet = Fleet::parse(BASE).unwrap();
    assert_eq!(fleet.hash, hex_sha256(BASE));
    assert_eq!(fleet.source, BASE);
    let other = Fleet::parse(&format!("# comment\n{BASE}")).unwrap();
    assert_ne!(other.hash, fleet.hash, "any edit changes the fleet version");
}

#[test]
fn an_unwatched_site_and_a_by_site_without_voters_are_warnings() {
    let text = roles_of("c1", r#"["pinger"]"#);
    let text = text.replacen(
        "id = \"c2\"\nsite = \"c\"\nroles = [\"pinger\", \"voter\"]",
        "id = \"c2\"\nsite = \"c\"\nroles = [\"pinger\"]",
        1,
    );
    // Without c's voters, b holds all of a's electorate: opt in to keep the fleet valid.
    let text = text
        .replace(
            "by = [\"b\", \"c\"]",
            "by = [\"b\", \"c\"]\nsingle_vantage = \"manual\"",
        )
        .replace(
            "by = [\"a\", \"c\"]",
            "by = [\"a\", \"c\"]\nsingle_vantage = \"manual\"",
        );
    let text = text.replace(
        "roles = [\"indicator\"]",
        "roles = [\"indicator\", \"pinger\", \"voter\"]",
    );
    let w = Fleet::parse(&text).expect("valid").warnings();
    assert!(
        w.iter().any(|l| l.contains("site c in `by` has no voter")),
        "{w:?}"
    );

    let unwatched = BASE.split("[[watch]]\nsite = \"b\"").next().unwrap();
    let w = Fleet::parse(unwatched).expect("valid").warnings();
    assert!(
        w.iter()
            .any(|l| l.starts_with("site b (Backup) has no [[watch]]")),
        "{w:?}"
    );
}

#[test]
fn api_tls_needs_both_files_and_names_each_nodes_own() {
    assert_problem(
        &format!("{BASE}\n[api]\ntls_cert = \"/etc/quorate/certs/{{node}}.pem\"\n"),
        "needs both tls_cert and tls_key",
    );
    let fleet = Fleet::parse(&format!(
        "{BASE}\n[api]\ntls_cert = \"/etc/quorate/certs/{{node}}.pem\"\n\
         tls_key = \"/etc/quorate/certs/{{node}}.key\"\n"
    ))
    .expect("valid");
    assert_eq!(
        fleet.api.tls_files(&NodeId::from("b1")),
        Some((
            PathBuf::from("/etc/quorate/certs/b1.pem"),
            PathBuf::from("/etc/quorate/certs/b1.key")
        ))
    );
    assert_eq!(
        Fleet::parse(BASE).unwrap().api.tls_files(&"b1".into()),
        None
    );
}

#[test]
fn an_api_beyond_loopback_without_tls_is_warned_of() {
    let text = BASE
        .replacen("api = \"127.0.1.1:7501\"", "api = \"10.0.1.1:7501\"", 1)
        .replacen("api = \"127.0.2.1:7501\"", "api = \"0.0.0.0:7501\"", 1);
    let warnings = Fleet::parse(&text).expect("valid").warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("the REST API of a1 (10.0.1.1:7501), b1 (0.0.0.0:7501) listens")
            && warnings[0].contains("tls_cert"),
        "{warnings:?}"
    );
    let with_tls =
        format!("{text}\n[api]\ntls_cert = \"/c/{{node}}.pem\"\ntls_key = \"/c/{{node}}.key\"\n");
    assert_eq!(
        Fleet::parse(&with_tls).unwrap().warnings(),
        Vec::<String>::new()
    );
}

#[test]
fn every_pair_talks_but_two_indicator_only_nodes() {
    let f = Fleet::parse(crate::demo::THREE_SITES).expect("the demo fleet is valid");
    let peers = |me: &str| -> Vec<String> {
        f.mesh_peers(&NodeId::from(me))
            .map(|n| n.id.to_string())
            .collect()
    };
    assert_eq!(peers("a3"), ["a1", "a2", "b1", "b2", "c1", "c2"]);
    assert_eq!(
        peers("b1"),
        ["a1", "a2", "a3", "b2", "b3", "c1", "c2"],
        "a Pinger-voter talks with every other node"
    );
    let node = |id: &str| f.node(&NodeId::from(id)).expect("in the fleet");
    assert!(node("a3").is_indicator_only() && !node("c1").is_indicator_only());
    assert!(node("a3").talks_with(node("c1")) && node("c1").talks_with(node("a3")));
    assert!(!node("a3").talks_with(node("b3")) && !node("a3").talks_with(node("a3")));
    assert_eq!(
        peers("zz").len(),
        0,
        "a node not in the fleet talks with nobody"
    );
}

#[test]
fn an_indicator_only_node_and_the_pingers_that_probe_it_speak_only_through_probes() {
    let f = Fleet::parse(crate::demo::THREE_SITES).expect("the demo fleet is valid");
    let quiet = |me: &str| -> Vec<String> {
        f.quiet_peers(&NodeId::from(me))
            .iter()
            .map(|n| n.to_string())
            .collect()
    };
    // a3 is probed by the Pingers of b and c; a1 and a2 are voters of its own site.
    assert_eq!(quiet("a3"), ["b1", "b2", "c1", "c2"]);
    assert_eq!(quiet("b3"), ["a1", "a2", "c1", "c2"]);
    // b1 probes a's Indicators, but only a3 of them is Indicator-only.
    assert_eq!(quiet("b1"), ["a3"]);
    assert_eq!(quiet("a1"), ["b3"], "a1 does not probe a3, of its own site");
    assert!(quiet("c1").contains(&"a3".to_string()));
    assert!(quiet("zz").is_empty());
}
