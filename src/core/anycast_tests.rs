use super::*;
use ::core::net::IpAddr;

const P: &str = "198.19.255.0/24";
const Q: &str = "2001:db8:ff::/48";

fn pfx(s: &str) -> Prefix {
    Prefix::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn sites(v: &[&str]) -> Vec<SiteId> {
    v.iter().map(|s| SiteId::from(*s)).collect()
}

fn decl(prefix: &str, may: &[&str], announced_by: &[&str]) -> AnycastPrefix {
    AnycastPrefix {
        prefix: pfx(prefix),
        sites: sites(may),
        announced_by: sites(announced_by),
    }
}

fn effect(action: BgpAction, site: &str, prefixes: &[&str]) -> BgpEffect {
    BgpEffect {
        action,
        site: site.into(),
        prefixes: prefixes.iter().map(|p| pfx(p)).collect(),
    }
}

fn withdraw(site: &str, prefixes: &[&str]) -> BgpEffect {
    effect(BgpAction::Withdraw, site, prefixes)
}

fn announce(site: &str, prefixes: &[&str]) -> BgpEffect {
    effect(BgpAction::Announce, site, prefixes)
}

/// P may be announced by a and b and is announced by a in normal operation.
fn ledger() -> AnnouncementLedger {
    AnnouncementLedger::new(&[decl(P, &["a", "b"], &["a"])])
}

fn announcers(l: &AnnouncementLedger, p: &str) -> Option<Vec<String>> {
    l.announcers(&pfx(p))
        .map(|s| s.iter().map(|s| s.to_string()).collect())
}

fn all_alive(_: &SiteId) -> bool {
    true
}

fn alive_except(down: &'static [&'static str]) -> impl Fn(&SiteId) -> bool {
    move |s| !down.contains(&s.as_str())
}

// --- Prefix ----------------------------------------------------------------------------------

#[test]
fn prefixes_parse_into_their_normal_form() {
    for (text, normal) in [
        ("198.19.255.0/24", "198.19.255.0/24"),
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("192.0.2.7/32", "192.0.2.7/32"),
        ("198.19.255.0/024", "198.19.255.0/24"),
        ("2001:DB8:FF::/48", "2001:db8:ff::/48"),
        ("2001:0db8:00ff:0000::/48", "2001:db8:ff::/48"),
        ("::/0", "::/0"),
        ("2001:db8::1/128", "2001:db8::1/128"),
    ] {
        assert_eq!(pfx(text).to_string(), normal, "{text}");
    }
    assert_eq!(pfx("2001:DB8:FF::/48"), pfx(Q));
    let p = pfx(P);
    assert_eq!(p.length(), 24);
    assert!(p.is_ipv4());
    assert_eq!(p.addr(), "198.19.255.0".parse::<IpAddr>().unwrap());
    assert!(!pfx(Q).is_ipv4());
    assert_eq!("198.19.255.0/24".parse::<Prefix>(), Ok(p));
}

#[test]
fn malformed_prefixes_are_refused_with_the_fix() {
    for (text, error) in [
        (
            "198.19.255.0",
            "\"198.19.255.0\" has no length; write it as ADDRESS/LENGTH, e.g. \"198.19.255.0/24\"",
        ),
        (
            "198.19.255.0/33",
            "\"198.19.255.0/33\": the length \"33\" must be a number from 0 to 32",
        ),
        (
            "2001:db8::/129",
            "\"2001:db8::/129\": the length \"129\" must be a number from 0 to 128",
        ),
        (
            "198.19.255.0/+24",
            "\"198.19.255.0/+24\": the length \"+24\" must be a number from 0 to 32",
        ),
        (
            "198.19.255.0/",
            "\"198.19.255.0/\": the length \"\" must be a number from 0 to 32",
        ),
        (
            "198.19.256.0/24",
            "\"198.19.256.0/24\": \"198.19.256.0\" is not an IPv4 or IPv6 address",
        ),
        (
            " 198.19.255.0/24",
            "\" 198.19.255.0/24\": \" 198.19.255.0\" is not an IPv4 or IPv6 address",
        ),
        (
            "198.19.255.1/24",
            "\"198.19.255.1/24\" has host bits set; write the network address: \
             \"198.19.255.0/24\"",
        ),
        (
            "2001:db8:ff::1/48",
            "\"2001:db8:ff::1/48\" has host bits set; write the network address: \
             \"2001:db8:ff::/48\"",
        ),
        (
            "10.1.0.0/0",
            "\"10.1.0.0/0\" has host bits set; write the network address: \"0.0.0.0/0\"",
        ),
    ] {
        assert_eq!(
            Prefix::parse(text).map_err(|e| e.to_string()),
            Err(error.to_string()),
            "{text}"
        );
    }
}

#[test]
fn a_prefix_serializes_as_its_normal_text() {
    let e = withdraw("a", &["2001:DB8:FF::/48"]);
    let json = serde_json::to_string(&e).unwrap();
    assert_eq!(
        json,
        r#"{"action":"Withdraw","site":"a","prefixes":["2001:db8:ff::/48"]}"#
    );
    assert_eq!(serde_json::from_str::<BgpEffect>(&json).unwrap(), e);
    assert!(serde_json::from_str::<Prefix>("\"10.0.0.1/8\"").is_err());
}

// --- the ledger ------------------------------------------------------------------------------

#[test]
fn the_ledger_starts_from_the_announcements_of_normal_operation() {
    let l = AnnouncementLedger::new(&[
        decl(P, &["a", "b"], &["a"]),
        decl(Q, &["a", "b", "c"], &["b", "a"]),
    ]);
    assert_eq!(announcers(&l, P), Some(vec!["a".into()]));
    assert_eq!(announcers(&l, Q), Some(vec!["a".into(), "b".into()]));
    assert_eq!(announcers(&l, "192.0.2.0/24"), None);
    assert_eq!(
        l.declaration(&pfx(Q)).map(|d| d.sites.clone()),
        Some(sites(&["a", "b", "c"]))
    );
    let listed: Vec<String> = l.iter().map(|(p, _)| p.to_string()).collect();
    assert_eq!(listed, [P, Q]);
}

#[test]
fn a_prefix_declared_twice_keeps_its_first_declaration() {
    let l = AnnouncementLedger::new(&[decl(P, &["a", "b"], &["a"]), decl(P, &["b"], &["b"])]);
    assert_eq!(announcers(&l, P), Some(vec!["a".into()]));
    assert_eq!(l.declaration(&pfx(P)).unwrap().sites, sites(&["a", "b"]));
}

#[test]
fn announce_adds_the_site_and_withdraw_removes_it() {
    let mut l = ledger();
    l.apply(&announce("b", &[P]));
    assert_eq!(announcers(&l, P), Some(vec!["a".into(), "b".into()]));
    l.apply(&announce("b", &[P]));
    assert_eq!(announcers(&l, P), Some(vec!["a".into(), "b".into()]));
    l.apply(&withdraw("a", &[P]));
    assert_eq!(announcers(&l, P), Some(vec!["b".into()]));
    l.apply(&withdraw("a", &[P]));
    assert_eq!(announcers(&l, P), Some(vec!["b".into()]));
    l.apply(&withdraw("b", &[P]));
    assert_eq!(announcers(&l, P), Some(vec![]));
}

#[test]
fn undeclared_prefixes_are_ignored_by_apply() {
    let mut l = ledger();
    let before = l.clone();
    l.apply(&announce("b", &["192.0.2.0/24"]));
    l.apply(&withdraw("a", &["192.0.2.0/24"]));
    assert_eq!(l, before);
    l.apply(&announce("b", &["192.0.2.0/24", P]));
    assert_eq!(announcers(&l, P), Some(vec!["a".into(), "b".into()]));
    assert_eq!(announcers(&l, "192.0.2.0/24"), None);
}

#[test]
fn replay_rebuilds_the_ledger_from_the_succeeded_effects_in_order() {
    let decls = [decl(P, &["a", "b"], &["a"])];
    let effects = [announce("b", &[P]), withdraw("a", &[P])];
    let l = AnnouncementLedger::replay(&decls, &effects);
    assert_eq!(announcers(&l, P), Some(vec!["b".into()]));
    let mut by_hand = AnnouncementLedger::new(&decls);
    for e in &effects {
        by_hand.apply(e);
    }
    assert_eq!(l, by_hand);
    // Order matters: a failback after the failover.
    let back = [
        announce("b", &[P]),
        withdraw("a", &[P]),
        announce("a", &[P]),
        withdraw("b", &[P]),
    ];
    assert_eq!(
        AnnouncementLedger::replay(&decls, &back),
        AnnouncementLedger::new(&decls)
    );
    assert_eq!(
        AnnouncementLedger::replay(&decls, std::iter::empty()),
        AnnouncementLedger::new(&decls)
    );
}

// --- the rule --------------------------------------------------------------------------------

#[test]
fn a_withdraw_with_no_other_announcer_is_refused_with_the_rule_and_the_facts() {
    let r = ledger()
        .check(&withdraw("a", &[P]), all_alive, false)
        .unwrap_err();
    assert_eq!(
        r,
        SafetyRefusal {
            site: "a".into(),
            prefixes: vec![UnannouncedPrefix {
                prefix: pfx(P),
                announced_by: sites(&["a"]),
                down: vec![],
                not_announcing: sites(&["b"]),
            }],
        }
    );
    assert_eq!(r.rule(), ANYCAST_RULE);
    assert_eq!(
        r.to_string(),
        "refused by the rule \"each anycast prefix stays announced by at least one site\": \
         withdrawing 198.19.255.0/24 at a would leave it announced by no live site (ledger: a; \
         b is not announcing) — announce it elsewhere first, or force the run"
    );
}

#[test]
fn a_withdraw_is_allowed_once_another_live_site_announces() {
    let mut l = ledger();
    l.apply(&announce("b", &[P]));
    assert_eq!(l.check(&withdraw("a", &[P]), all_alive, false), Ok(()));
    // the withdrawing site being down changes nothing: b announces
    assert_eq!(
        l.check(&withdraw("a", &[P]), alive_except(&["a"]), false),
        Ok(())
    );
    // and b may withdraw while a announces and lives
    assert_eq!(l.check(&withdraw("b", &[P]), all_alive, false), Ok(()));
}

#[test]
fn another_announcer_that_is_down_does_not_count() {
    let mut l = ledger();
    l.apply(&announce("b", &[P]));
    let r = l
        .check(&withdraw("b", &[P]), alive_except(&["a"]), false)
        .unwrap_err();
    assert_eq!(r.prefixes[0].down, sites(&["a"]));
    assert_eq!(r.prefixes[0].not_announcing, Vec::<SiteId>::new());
    assert_eq!(
        r.to_string(),
        "refused by the rule \"each anycast prefix stays announced by at least one site\": \
         withdrawing 198.19.255.0/24 at b would leave it announced by no live site (ledger: a, \
         b; a is down) — announce it elsewhere first, or force the run"
    );
}

#[test]
fn only_the_other_announcers_liveness_is_asked() {
    let mut l = AnnouncementLedger::new(&[decl(P, &["a", "b", "c"], &["a", "b", "c"])]);
    let asked = std::cell::RefCell::new(Vec::new());
    let alive = |s: &SiteId| {
        asked.borrow_mut().push(s.to_string());
        s.as_str() == "c"
    };
    assert_eq!(l.check(&withdraw("a", &[P]), alive, false), Ok(()));
    assert!(!asked.borrow().contains(&"a".to_string()), "{asked:?}");
    l.apply(&withdraw("c", &[P]));
    let r = l
        .check(&withdraw("a", &[P]), alive_except(&["b"]), false)
        .unwrap_err();
    assert_eq!(r.prefixes[0].announced_by, sites(&["a", "b"]));
    assert_eq!(r.prefixes[0].down, sites(&["b"]));
    assert_eq!(r.prefixes[0].not_announcing, sites(&["c"]));
    assert_eq!(
        r.prefixes[0].facts(),
        "ledger: a, b; b is down; c is not announcing"
    );
}

#[test]
fn a_withdraw_at_a_site_the_ledger_does_not_list_is_judged_the_same() {
    // Nobody is believed to announce P: a withdraw anywhere is refused (the ledger may be
    // stale, and the rule asks for another live announcer).
    let mut l = ledger();
    l.apply(&withdraw("a", &[P]));
    let r = l.check(&withdraw("b", &[P]), all_alive, false).unwrap_err();
    assert_eq!(
        r.prefixes[0].facts(),
        "ledger: none; a, b are not announcing"
    );
    // b is not in the ledger, a is and lives: allowed.
    assert_eq!(
        ledger().check(&withdraw("b", &[P]), all_alive, false),
        Ok(())
    );
}

#[test]
fn announces_are_always_allowed() {
    let mut l = ledger();
    l.apply(&withdraw("a", &[P]));
    let none_alive = |_: &SiteId| false;
    assert_eq!(l.check(&announce("b", &[P]), none_alive, false), Ok(()));
    assert_eq!(l.check(&announce("a", &[P]), none_alive, false), Ok(()));
}

#[test]
fn a_forced_withdraw_is_allowed() {
    let none_alive = |_: &SiteId| false;
    assert_eq!(
        ledger().check(&withdraw("a", &[P]), none_alive, true),
        Ok(())
    );
}

#[test]
fn undeclared_prefixes_are_never_judged() {
    let none_alive = |_: &SiteId| false;
    assert_eq!(
        ledger().check(&withdraw("a", &["192.0.2.0/24"]), none_alive, false),
        Ok(())
    );
    assert_eq!(
        AnnouncementLedger::new(&[]).check(&withdraw("a", &[P]), none_alive, false),
        Ok(())
    );
}

#[test]
fn every_declared_prefix_left_unannounced_is_listed_once_in_step_order() {
    let mut l = AnnouncementLedger::new(&[
        decl(P, &["a", "b"], &["a"]),
        decl(Q, &["a", "b"], &["a"]),
        decl("203.0.113.0/24", &["a", "b"], &["a", "b"]),
    ]);
    let step = withdraw("a", &[Q, "192.0.2.0/24", "203.0.113.0/24", P, Q]);
    let r = l.check(&step, all_alive, false).unwrap_err();
    let listed: Vec<String> = r.prefixes.iter().map(|p| p.prefix.to_string()).collect();
    assert_eq!(listed, [Q, P]);
    assert_eq!(
        r.to_string(),
        "refused by the rule \"each anycast prefix stays announced by at least one site\": \
         withdrawing 2001:db8:ff::/48 at a would leave it announced by no live site (ledger: a; \
         b is not announcing), and withdrawing 198.19.255.0/24 at a would leave it announced by \
         no live site (ledger: a; b is not announcing) — announce them elsewhere first, or \
         force the run"
    );
    l.apply(&announce("b", &[P]));
    let r = l.check(&step, all_alive, false).unwrap_err();
    assert_eq!(r.prefixes.len(), 1);
    assert_eq!(r.prefixes[0].prefix, pfx(Q));
    l.apply(&announce("b", &[Q]));
    assert_eq!(l.check(&step, all_alive, false), Ok(()));
}

#[test]
fn make_before_break_passes_and_break_before_make_is_refused() {
    // The failover of a to b, with a DOWN: announce at b, then withdraw at a.
    let alive = alive_except(&["a"]);
    let mut l = ledger();
    let steps = [announce("b", &[P]), withdraw("a", &[P])];
    for s in &steps {
        assert_eq!(l.check(s, &alive, false), Ok(()), "{s:?}");
        l.apply(s);
    }
    assert_eq!(announcers(&l, P), Some(vec!["b".into()]));
    // The other order stops at the withdraw.
    let l = ledger();
    assert!(l.check(&withdraw("a", &[P]), &alive, false).is_err());
}
