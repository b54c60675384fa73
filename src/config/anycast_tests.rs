use super::tests::{assert_problem, problems, syntax, BASE};
use super::*;
use crate::core::anycast::{BgpAction, BgpEffect, Prefix};

const WATCH_A: &str = "[[watch]]\nsite = \"a\"\nby = [\"b\", \"c\"]\n";

const DECL: &str = r#"[[anycast]]
prefix = "198.19.255.0/24"
sites = ["a", "b"]
"#;

const DELAYS: &str = "takeover_delay_s = 3\nself_fence_after_s = 2\n";

/// b starts announcing; undone by withdrawing it at b.
const ANNOUNCE_B: &str = r#"[[watch.pipeline.step]]
name = "announce-b"
kind = "bgp"
site = "b"
timeout_s = 5
action = "announce"
backend = "gobgp"
prefixes = ["198.19.255.0/24"]
[watch.pipeline.step.compensation]
name = "withdraw-b"
kind = "bgp"
site = "b"
timeout_s = 5
action = "withdraw"
backend = "gobgp"
prefixes = ["198.19.255.0/24"]
"#;

/// a's announcement is withdrawn at the route server.
const WITHDRAW_A: &str = r#"[[watch.pipeline.step]]
name = "withdraw-a"
kind = "bgp"
site = "a"
timeout_s = 5
action = "withdraw"
backend = "gobgp"
api = "198.18.0.10:50051"
prefixes = ["198.19.255.0/24"]
"#;

const PAGE: &str = r#"[[watch.pipeline.post]]
name = "page"
kind = "exec"
timeout_s = 1
argv = ["/bin/true"]
"#;

const ISOLATION: &str = r#"[[watch.isolation]]
name = "self-withdraw"
kind = "bgp"
site = "a"
timeout_s = 2
action = "withdraw"
backend = "gobgp"
prefixes = ["198.19.255.0/24"]
"#;

/// `BASE` with `decls` before the watches and a plan of `steps` (step tables in order) on the
/// watch of a.
fn fleet(decls: &str, steps: &[&str]) -> String {
    assert!(BASE.contains(WATCH_A));
    BASE.replacen(
        WATCH_A,
        &format!("{decls}{WATCH_A}{DELAYS}{}", steps.concat()),
        1,
    )
}

/// The make-before-break plan: announce at b, withdraw at a, page; a fences itself.
fn good() -> String {
    fleet(DECL, &[ANNOUNCE_B, WITHDRAW_A, PAGE, ISOLATION])
}

fn plan_of(fleet: &Fleet) -> &FailoverPlan {
    fleet
        .watch(&"a".into())
        .and_then(|w| w.plan.as_ref())
        .expect("a plan on the watch of a")
}

fn pfx(s: &str) -> Prefix {
    Prefix::parse(s).unwrap()
}

fn sites(v: &[&str]) -> Vec<SiteId> {
    v.iter().map(|s| SiteId::from(*s)).collect()
}

/// The problems of `text`, which must be exactly `expected`.
fn assert_problems(text: &str, expected: &[&str]) {
    let p = problems(text);
    assert_eq!(p, expected, "\n{}", p.join("\n"));
}

// --- [[anycast]] -----------------------------------------------------------------------------

#[test]
fn a_declaration_is_read_with_its_prefix_normalised_and_carried_by_every_plan() {
    let text = fleet(
        "[[anycast]]\nprefix = \"2001:DB8:FF:0::/48\"\nsites = [\"b\", \"a\"]\n\
         announced_by = [\"b\"]\n",
        &[PAGE],
    );
    let f = Fleet::parse(&text).expect("valid");
    let expected = vec![AnycastPrefix {
        prefix: pfx("2001:db8:ff::/48"),
        sites: sites(&["b", "a"]),
        announced_by: sites(&["b"]),
    }];
    assert_eq!(f.anycast(), expected.as_slice());
    assert_eq!(plan_of(&f).anycast, expected);
    assert_eq!(f.anycast()[0].prefix.to_string(), "2001:db8:ff::/48");
}

#[test]
fn announced_by_defaults_to_the_primary_sites_or_else_the_first_site() {
    for (may, by) in [
        ("[\"a\", \"b\"]", &["a"][..]),
        ("[\"b\", \"a\"]", &["a"]),
        ("[\"b\", \"c\"]", &["b"]),
        ("[\"c\", \"b\"]", &["c"]),
    ] {
        let decl = format!("[[anycast]]\nprefix = \"198.19.255.0/24\"\nsites = {may}\n");
        let f = Fleet::parse(&fleet(&decl, &[PAGE])).expect("valid");
        assert_eq!(f.anycast()[0].announced_by, sites(by), "sites = {may}");
    }
}

#[test]
fn several_prefixes_may_be_declared_in_file_order() {
    let decls = format!(
        "{DECL}[[anycast]]\nprefix = \"192.0.2.0/24\"\nsites = [\"b\"]\n\
         [[anycast]]\nprefix = \"2001:db8::/32\"\nsites = [\"a\", \"b\"]\nannounced_by = [\"a\", \"b\"]\n"
    );
    let f = Fleet::parse(&fleet(&decls, &[PAGE])).expect("valid");
    let got: Vec<(String, Vec<SiteId>)> = f
        .anycast()
        .iter()
        .map(|d| (d.prefix.to_string(), d.announced_by.clone()))
        .collect();
    assert_eq!(
        got,
        [
            ("198.19.255.0/24".to_string(), sites(&["a"])),
            ("192.0.2.0/24".to_string(), sites(&["b"])),
            ("2001:db8::/32".to_string(), sites(&["a", "b"])),
        ]
    );
}

#[test]
fn a_fleet_without_a_plan_has_no_declarations_to_apply() {
    let text = BASE.replacen(WATCH_A, &format!("{DECL}{WATCH_A}"), 1);
    let f = Fleet::parse(&text).expect("valid");
    assert!(f.anycast().is_empty());
    assert!(Fleet::parse(BASE).unwrap().anycast().is_empty());
}

#[test]
fn a_bad_prefix_is_refused_with_the_fix() {
    for (prefix, message) in [
        (
            "198.19.255.1/24",
            "anycast[0].prefix: \"198.19.255.1/24\" has host bits set; write the network \
             address: \"198.19.255.0/24\"",
        ),
        (
            "198.19.255.0",
            "anycast[0].prefix: \"198.19.255.0\" has no length; write it as ADDRESS/LENGTH, \
             e.g. \"198.19.255.0/24\"",
        ),
        (
            "anycast.example/24",
            "anycast[0].prefix: \"anycast.example/24\": \"anycast.example\" is not an IPv4 or \
             IPv6 address",
        ),
        (
            "2001:db8::/129",
            "anycast[0].prefix: \"2001:db8::/129\": the length \"129\" must be a number from \
             0 to 128",
        ),
    ] {
        let decl = DECL.replace("198.19.255.0/24", prefix);
        assert_problems(&fleet(&decl, &[PAGE]), &[message]);
    }
}

#[test]
fn a_prefix_is_declared_once_however_it_is_written() {
    let decls = format!(
        "{DECL}{}",
        DECL.replace("198.19.255.0/24", "198.19.255.0/024")
    );
    assert_problems(
        &fleet(&decls, &[PAGE]),
        &[
            "anycast 198.19.255.0/24 (anycast[1].prefix): 198.19.255.0/24 is already declared at \
           anycast[0]; declare each prefix once, listing every site that may announce it",
        ],
    );
}

#[test]
fn sites_must_be_known_listed_once_and_not_empty() {
    let decl = |sites: &str| {
        fleet(
            &format!("[[anycast]]\nprefix = \"198.19.255.0/24\"\nsites = {sites}\n"),
            &[PAGE],
        )
    };
    assert_problems(
        &decl("[]"),
        &[
            "anycast 198.19.255.0/24 (anycast[0].sites): sites is empty; list the sites that may \
           announce the prefix, e.g. sites = [\"a\", \"b\"]",
        ],
    );
    assert_problems(
        &decl("[\"a\", \"x\"]"),
        &[
            "anycast 198.19.255.0/24 (anycast[0].sites): site \"x\" is not defined; add a \
           [[site]] with id = \"x\" or correct sites",
        ],
    );
    assert_problems(
        &decl("[\"a\", \"b\", \"a\"]"),
        &["anycast 198.19.255.0/24 (anycast[0].sites): site a is listed twice; list it once"],
    );
}

#[test]
fn announced_by_must_be_a_non_empty_subset_of_sites() {
    let decl = |by: &str| fleet(&format!("{DECL}announced_by = {by}\n"), &[PAGE]);
    assert_problems(
        &decl("[]"),
        &[
            "anycast 198.19.255.0/24 (anycast[0].announced_by): announced_by is empty; list the \
           sites that announce the prefix in normal operation, or remove announced_by \
           (default: the primary sites of `sites`, or its first site)",
        ],
    );
    assert_problems(
        &decl("[\"c\"]"),
        &[
            "anycast 198.19.255.0/24 (anycast[0].announced_by): site c is not in sites (a, b); a \
           site announces only what it may announce — add c to sites or remove it from \
           announced_by",
        ],
    );
    assert_problems(
        &decl("[\"y\"]"),
        &[
            "anycast 198.19.255.0/24 (anycast[0].announced_by): site \"y\" is not defined; add a \
           [[site]] with id = \"y\" or correct announced_by",
        ],
    );
    assert_problems(
        &decl("[\"a\", \"a\"]"),
        &[
            "anycast 198.19.255.0/24 (anycast[0].announced_by): site a is listed twice; list it \
           once",
        ],
    );
}

#[test]
fn an_unknown_key_or_a_missing_prefix_in_an_anycast_table_is_a_syntax_error() {
    let m = syntax(&fleet(&format!("{DECL}annouced_by = [\"a\"]\n"), &[PAGE]));
    assert!(m.contains("annouced_by"), "{m}");
    let m = syntax(&fleet("[[anycast]]\nsites = [\"a\"]\n", &[PAGE]));
    assert!(m.contains("prefix"), "{m}");
}

// --- the `site` of a step --------------------------------------------------------------------

#[test]
fn site_is_a_step_key_that_the_actuator_never_sees() {
    let f = Fleet::parse(&good()).expect("valid");
    let plan = plan_of(&f);
    assert_eq!(
        plan.params["withdraw-a"],
        serde_json::json!({
            "action": "withdraw",
            "backend": "gobgp",
            "api": "198.18.0.10:50051",
            "prefixes": ["198.19.255.0/24"],
        })
    );
    assert!(plan.params.values().all(|p| p.get("site").is_none()));
}

#[test]
fn every_bgp_step_with_a_site_has_an_effect_by_name() {
    let f = Fleet::parse(&good()).expect("valid");
    let plan = plan_of(&f);
    let effect = |action, site: &str| BgpEffect {
        action,
        site: site.into(),
        prefixes: vec![pfx("198.19.255.0/24")],
    };
    assert_eq!(
        plan.bgp_effect("announce-b"),
        Some(&effect(BgpAction::Announce, "b"))
    );
    assert_eq!(
        plan.bgp_effect("withdraw-b"),
        Some(&effect(BgpAction::Withdraw, "b"))
    );
    assert_eq!(
        plan.bgp_effect("withdraw-a"),
        Some(&effect(BgpAction::Withdraw, "a"))
    );
    assert_eq!(
        plan.bgp_effect("self-withdraw"),
        Some(&effect(BgpAction::Withdraw, "a"))
    );
    assert_eq!(plan.bgp_effect("page"), None);
    assert_eq!(plan.bgp_effect("no-such-step"), None);
    assert_eq!(plan.bgp_effects.len(), 4);
}

#[test]
fn a_step_on_undeclared_prefixes_needs_no_site_and_may_have_one() {
    // No declaration at all: the bgp steps need no site.
    let bare = |s: &str| {
        s.replace("site = \"a\"\n", "")
            .replace("site = \"b\"\n", "")
    };
    let text = fleet(
        "",
        &[&bare(ANNOUNCE_B), &bare(WITHDRAW_A), PAGE, &bare(ISOLATION)],
    );
    let f = Fleet::parse(&text).expect("valid");
    assert!(plan_of(&f).bgp_effects.is_empty());
    // Another prefix declared: the same. A site given anyway yields an effect (that the
    // ledger ignores) and withdraw-before-announce is nobody's business.
    let other = DECL.replace("198.19.255.0/24", "192.0.2.0/24");
    let text = fleet(
        &other,
        &[WITHDRAW_A, &bare(ANNOUNCE_B), PAGE, &bare(ISOLATION)],
    );
    let f = Fleet::parse(&text).expect("valid");
    let plan = plan_of(&f);
    assert_eq!(plan.bgp_effect("announce-b"), None);
    assert_eq!(
        plan.bgp_effect("withdraw-a").map(|e| e.site.clone()),
        Some("a".into())
    );
}

#[test]
fn a_step_that_moves_a_declared_prefix_must_name_its_site() {
    let text = fleet(
        DECL,
        &[
            &ANNOUNCE_B.replacen("site = \"b\"\n", "", 1),
            WITHDRAW_A,
            PAGE,
            &ISOLATION.replace("site = \"a\"\n", ""),
        ],
    );
    assert_problems(
        &text,
        &[
            "watch on a: pipeline.step[0] \"announce-b\": the step announces the declared \
             anycast prefix 198.19.255.0/24 but has no site, so the rule \"each anycast prefix \
             stays announced by at least one site\" cannot be checked before it runs; add \
             site = \"a\" or \"b\" naming the site whose announcement the step changes (a, b \
             may announce 198.19.255.0/24)",
            "watch on a: isolation[0] \"self-withdraw\": the step withdraws the declared anycast \
             prefix 198.19.255.0/24 but has no site, so the rule \"each anycast prefix stays \
             announced by at least one site\" cannot be checked before it runs; add site = \"a\" \
             or \"b\" naming the site whose announcement the step changes (a, b may announce \
             198.19.255.0/24)",
        ],
    );
    // A compensation too.
    assert_problem(
        &fleet(
            DECL,
            &[&ANNOUNCE_B.replace("site = \"b\"\n", ""), WITHDRAW_A],
        ),
        "watch on a: pipeline.step[0].compensation \"withdraw-b\": the step withdraws the \
         declared anycast prefix 198.19.255.0/24 but has no site",
    );
}

#[test]
fn a_step_that_moves_several_declared_prefixes_offers_the_sites_common_to_them() {
    let decls = format!(
        "{DECL}[[anycast]]\nprefix = \"2001:db8::/32\"\nsites = [\"b\", \"c\"]\n\
         [[anycast]]\nprefix = \"192.0.2.0/24\"\nsites = [\"c\"]\n"
    );
    let step = |prefixes: &str| {
        ANNOUNCE_B
            .replacen("site = \"b\"\n", "", 1)
            .replacen("prefixes = [\"198.19.255.0/24\"]", prefixes, 1)
            .replacen(
                "backend = \"gobgp\"",
                "backend = \"exabgp\"\npipe = \"/run/x\"",
                1,
            )
    };
    assert_problem(
        &fleet(
            &decls,
            &[&step("prefixes = [\"198.19.255.0/24\", \"2001:db8::/32\"]")],
        ),
        "\"announce-b\": the step announces the declared anycast prefix 198.19.255.0/24, \
         2001:db8::/32 but has no site, so the rule \"each anycast prefix stays announced by \
         at least one site\" cannot be checked before it runs; add site = \"b\" naming the site \
         whose announcement the step changes (b may announce 198.19.255.0/24, 2001:db8::/32)",
    );
    assert_problem(
        &fleet(
            &decls,
            &[&step("prefixes = [\"198.19.255.0/24\", \"192.0.2.0/24\"]")],
        ),
        "\"announce-b\": the step announces the declared anycast prefix 198.19.255.0/24, \
         192.0.2.0/24 but has no site, so the rule \"each anycast prefix stays announced by at \
         least one site\" cannot be checked before it runs; no site may announce all of \
         198.19.255.0/24, 192.0.2.0/24 ([[anycast]] sites): split the step, one per prefix, \
         and give each a site",
    );
}

#[test]
fn the_site_of_a_step_must_be_one_that_may_announce_the_prefix() {
    assert_problems(
        &fleet(
            DECL,
            &[
                &ANNOUNCE_B.replacen("site = \"b\"", "site = \"c\"", 1),
                WITHDRAW_A,
            ],
        ),
        &[
            "watch on a: pipeline.step[0] \"announce-b\": site = \"c\" is not among the sites \
           that may announce the anycast prefix 198.19.255.0/24 (a, b); set site to one of \
           them, or add c to the sites of that [[anycast]]",
        ],
    );
}

#[test]
fn the_site_of_a_step_must_be_a_known_site_named_by_a_string() {
    assert_problems(
        &fleet(
            DECL,
            &[
                &ANNOUNCE_B.replacen("site = \"b\"", "site = \"z\"", 1),
                WITHDRAW_A,
            ],
        ),
        &[
            "watch on a: pipeline.step[0] \"announce-b\": site \"z\" is not defined; use one of \
           a, b, c (the [[site]] ids)",
        ],
    );
    assert_problems(
        &fleet(
            DECL,
            &[
                &ANNOUNCE_B.replacen("site = \"b\"", "site = 2", 1),
                WITHDRAW_A,
            ],
        ),
        &[
            "watch on a: pipeline.step[0] \"announce-b\": site must be a string naming a \
           [[site]], got integer; use e.g. site = \"b\"",
        ],
    );
}

#[test]
fn site_on_a_step_that_is_not_bgp_is_refused() {
    assert_problems(
        &fleet(
            DECL,
            &[
                ANNOUNCE_B,
                WITHDRAW_A,
                &PAGE.replace("kind = \"exec\"", "kind = \"exec\"\nsite = \"b\""),
            ],
        ),
        &[
            "watch on a: pipeline.post[0] \"page\": site is read only by bgp steps (the site \
           whose announcement the step changes); remove it from this exec step",
        ],
    );
}

#[test]
fn a_misspelt_step_key_lists_site_among_the_steps_own_keys() {
    let text = fleet(
        DECL,
        &[
            &ANNOUNCE_B.replacen("site = \"b\"", "sit = \"b\"", 1),
            WITHDRAW_A,
        ],
    );
    assert_problem(&text, "\"announce-b\": bgp step: unknown key `sit`");
    assert_problem(
        &text,
        "(the step's own keys are name, kind, timeout_s, retries, backoff_ms, on_failure, \
         compensation, site)",
    );
}

// --- make before break -----------------------------------------------------------------------

#[test]
fn make_before_break_passes() {
    let f = Fleet::parse(&good()).expect("valid");
    assert_eq!(f.warnings(), Vec::<String>::new());
}

#[test]
fn a_withdraw_before_the_announce_elsewhere_is_refused_naming_the_step_to_move() {
    assert_problems(
        &fleet(DECL, &[WITHDRAW_A, ANNOUNCE_B, PAGE, ISOLATION]),
        &[
            "watch on a: pipeline.step[0] \"withdraw-a\": withdrawing 198.19.255.0/24 at a would \
           leave it announced by no live site when the run gets there (a, the failed site, \
           counts as down; ledger: a; b is not announcing), so the rule \"each anycast prefix \
           stays announced by at least one site\" would refuse the step; announce it at \
           another site first: move step pipeline.step[1] \"announce-b\" before step \
           \"withdraw-a\" (make before break)",
        ],
    );
}

#[test]
fn a_withdraw_with_no_announce_elsewhere_is_refused_naming_the_site_to_announce_at() {
    assert_problems(
        &fleet(DECL, &[WITHDRAW_A, PAGE]),
        &[
            "watch on a: pipeline.step[0] \"withdraw-a\": withdrawing 198.19.255.0/24 at a would \
           leave it announced by no live site when the run gets there (a, the failed site, \
           counts as down; ledger: a; b is not announcing), so the rule \"each anycast prefix \
           stays announced by at least one site\" would refuse the step; announce it at \
           another site first: add a bgp step that announces 198.19.255.0/24 with site = \
           \"b\" before step \"withdraw-a\" (make before break)",
        ],
    );
}

#[test]
fn a_withdraw_of_a_prefix_only_the_failed_site_may_announce_is_refused() {
    let decl = DECL.replace("sites = [\"a\", \"b\"]", "sites = [\"a\"]");
    assert_problems(
        &fleet(&decl, &[WITHDRAW_A, PAGE]),
        &[
            "watch on a: pipeline.step[0] \"withdraw-a\": withdrawing 198.19.255.0/24 at a would \
           leave it announced by no live site when the run gets there (a, the failed site, \
           counts as down; ledger: a), so the rule \"each anycast prefix stays announced by at \
           least one site\" would refuse the step; no other live site may announce it: add \
           such a site to the sites of its [[anycast]] and announce 198.19.255.0/24 there \
           before step \"withdraw-a\", or remove the withdraw",
        ],
    );
}

#[test]
fn an_announcement_by_the_failed_site_does_not_count() {
    // a (DOWN) announces again, then b withdraws: a's announcement keeps nothing reachable.
    let announce_a = WITHDRAW_A
        .replace("withdraw-a", "announce-a")
        .replace("action = \"withdraw\"", "action = \"announce\"");
    let withdraw_b = WITHDRAW_A
        .replace("withdraw-a", "withdraw-b-route")
        .replace("site = \"a\"", "site = \"b\"");
    assert_problems(
        &fleet(DECL, &[ANNOUNCE_B, &announce_a, &withdraw_b, WITHDRAW_A]),
        &[
            "watch on a: pipeline.step[2] \"withdraw-b-route\": withdrawing 198.19.255.0/24 at b \
           would leave it announced by no live site when the run gets there (a, the failed \
           site, counts as down; ledger: a, b; a is down), so the rule \"each anycast prefix \
           stays announced by at least one site\" would refuse the step; no other live site \
           may announce it: add such a site to the sites of its [[anycast]] and announce \
           198.19.255.0/24 there before step \"withdraw-b-route\", or remove the withdraw",
        ],
    );
}

#[test]
fn prechecks_and_post_steps_are_judged_in_run_order() {
    let as_post = WITHDRAW_A.replace("[[watch.pipeline.step]]", "[[watch.pipeline.post]]");
    // A withdraw of a in a post step after the announce at b: fine.
    Fleet::parse(&fleet(DECL, &[ANNOUNCE_B, &as_post, ISOLATION])).expect("valid");
    // The same withdraw as a precheck runs before every step: refused.
    let as_pre = WITHDRAW_A.replace("[[watch.pipeline.step]]", "[[watch.pipeline.precheck]]");
    assert_problem(
        &fleet(DECL, &[&as_pre, ANNOUNCE_B]),
        "watch on a: pipeline.precheck[0] \"withdraw-a\": withdrawing 198.19.255.0/24 at a \
         would leave it announced by no live site",
    );
}

#[test]
fn isolation_steps_and_compensations_are_not_ordered() {
    // The self-fence withdraws a with nothing else announcing: allowed (split-brain guard).
    Fleet::parse(&fleet(DECL, &[PAGE, ISOLATION])).expect("valid");
    // withdraw-b (a compensation) would leave nobody announcing while a is down: it is judged
    // when it runs, not here.
    let f = Fleet::parse(&good()).expect("valid");
    assert!(plan_of(&f).bgp_effect("withdraw-b").is_some());
}

#[test]
fn the_watch_on_the_other_site_is_judged_with_that_site_down() {
    // b's failover, with b down: withdrawing at b is fine while a announces and lives;
    // withdrawing at a is not, since only a announces.
    let watch_b = "[[watch]]\nsite = \"b\"\nby = [\"a\", \"c\"]\n";
    let withdraw_b = WITHDRAW_A
        .replace("withdraw-a", "withdraw-b-route")
        .replace("site = \"a\"", "site = \"b\"");
    let text = good().replacen(watch_b, &format!("{watch_b}{DELAYS}{withdraw_b}"), 1);
    Fleet::parse(&text).expect("b is down and not announcing; a announces and lives");
    let withdraw_a = WITHDRAW_A.replace("withdraw-a", "withdraw-a-route");
    let text = good().replacen(watch_b, &format!("{watch_b}{DELAYS}{withdraw_a}"), 1);
    assert_problem(
        &text,
        "watch on b: pipeline.step[0] \"withdraw-a-route\": withdrawing 198.19.255.0/24 at a \
         would leave it announced by no live site when the run gets there (b, the failed site, \
         counts as down; ledger: a; b is not announcing)",
    );
}

#[test]
fn anycast_problems_come_after_the_fleets_and_before_the_plans() {
    let text = fleet(
        &DECL.replace("sites = [\"a\", \"b\"]", "sites = [\"a\", \"x\"]"),
        &[
            WITHDRAW_A,
            ANNOUNCE_B
                .replacen("timeout_s = 5", "timeout_s = 0", 1)
                .as_str(),
        ],
    )
    .replacen("[[site]]\nid = \"c\"", "[[site]]\nid = \"C\"", 1);
    let p = problems(&text);
    let at = |needle: &str| {
        p.iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in {p:#?}"))
    };
    assert!(at("not a valid DNS label") < at("site \"x\" is not defined"));
    assert!(at("site \"x\" is not defined") < at("timeout_s = 0"));
}

#[test]
fn the_dr_openstack_example_moves_the_prefix_make_before_break() {
    let f = Fleet::parse(include_str!("../../config/dr-openstack.toml")).expect("valid");
    assert_eq!(
        f.anycast(),
        [AnycastPrefix {
            prefix: pfx("198.19.255.0/24"),
            sites: sites(&["a", "b"]),
            announced_by: sites(&["a"]),
        }]
    );
    let plan = plan_of(&f);
    let moves: Vec<(String, BgpAction, String)> = plan
        .pipeline
        .steps
        .iter()
        .filter_map(|s| {
            plan.bgp_effect(&s.name)
                .map(|e| (s.name.clone(), e.action, e.site.to_string()))
        })
        .collect();
    assert_eq!(
        moves,
        [
            ("announce-anycast-b".into(), BgpAction::Announce, "b".into()),
            ("withdraw-anycast-a".into(), BgpAction::Withdraw, "a".into()),
        ]
    );
    for (name, action, site) in [
        ("withdraw-anycast-b", BgpAction::Withdraw, "b"),
        ("reannounce-anycast-a", BgpAction::Announce, "a"),
        ("self-withdraw-anycast-a", BgpAction::Withdraw, "a"),
    ] {
        let e = plan.bgp_effect(name).expect(name);
        assert_eq!((e.action, e.site.as_str()), (action, site), "{name}");
    }
    // The old order, withdraw first, is refused.
    let text = include_str!("../../config/dr-openstack.toml");
    let announce = text.find("[[watch.pipeline.step]]\nname         = \"announce-anycast-b\"");
    let withdraw = text.find("# A failed withdraw of a's stale announcement");
    let page = text.find("# A page that does not arrive");
    let (Some(announce), Some(withdraw), Some(page)) = (announce, withdraw, page) else {
        panic!("dr-openstack.toml changed shape");
    };
    let swapped = format!(
        "{}{}{}{}",
        &text[..announce],
        &text[withdraw..page],
        &text[announce..withdraw],
        &text[page..]
    );
    assert_problem(
        &swapped,
        "pipeline.step[3] \"withdraw-anycast-a\": withdrawing 198.19.255.0/24 at a would leave \
         it announced by no live site",
    );
    assert_problem(
        &swapped,
        "move step pipeline.step[4] \"announce-anycast-b\" before step \"withdraw-anycast-a\"",
    );
}

#[test]
fn the_gmpls_example_moves_an_undeclared_prefix_without_sites() {
    let f = Fleet::parse(include_str!("../../config/gmpls-migration.toml")).expect("valid");
    assert!(f.anycast().is_empty());
    assert!(plan_of(&f).bgp_effects.is_empty());
}
