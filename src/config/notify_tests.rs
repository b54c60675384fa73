use super::tests::BASE;
use super::*;
use crate::core::actuator_kind::ActuatorKind;
use crate::core::notify::EventKind;

fn with(notify: &str) -> Result<Fleet, ConfigError> {
    Fleet::parse(&format!("{BASE}\n{notify}"))
}

fn problems(notify: &str) -> String {
    match with(notify) {
        Ok(_) => panic!("accepted: {notify}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_webhook_notifier_gets_every_event_and_the_defaults() {
    let f = with(
        "[[notify]]\nname = \"chat\"\nkind = \"http\"\nurl = \"https://hooks.example/T0/B0\"\n",
    )
    .expect("valid");
    let n = f.notifier("chat").expect("the notifier");
    assert_eq!(n.kind, ActuatorKind::Http);
    assert_eq!(n.on, EventKind::ALL.to_vec());
    assert_eq!(n.sites, None);
    assert_eq!(n.timeout, notify::DEFAULT_TIMEOUT);
    assert_eq!(n.retries, notify::DEFAULT_RETRIES);
    assert_eq!(n.backoff, notify::DEFAULT_BACKOFF);
    assert_eq!(n.params["url"], "https://hooks.example/T0/B0");
}

#[test]
fn an_exec_notifier_with_events_sites_and_timings() {
    let f = with(
        "[[notify]]\nname = \"script\"\nkind = \"exec\"\nargv = [\"/usr/local/bin/page\"]\n\
         on = [\"verdict_changed\", \"run_failed\"]\nsites = [\"a\"]\ntimeout_ms = 2000\n\
         retries = 5\nbackoff_ms = 250\n",
    )
    .expect("valid");
    let n = f.notifier("script").unwrap();
    assert_eq!(n.on, vec![EventKind::VerdictChanged, EventKind::RunFailed]);
    assert_eq!(n.sites, Some(vec![SiteId::from("a")]));
    assert_eq!(n.timeout, Duration::from_millis(2000));
    assert_eq!((n.retries, n.backoff), (5, Duration::from_millis(250)));
}

#[test]
fn errors_name_the_notifier_and_the_key() {
    let cases = [
        (
            "kind = \"http\"\nurl = \"https://h/x\"\n",
            "notify[0].name is missing",
        ),
        (
            "name = \"p\"\nurl = \"https://h/x\"\n",
            "notify \"p\" (notify[0].kind) is missing",
        ),
        (
            "name = \"p\"\nkind = \"bgp\"\n",
            "notify[0].kind): \"bgp\" is not a notifier kind",
        ),
        (
            "name = \"p\"\nkind = \"http\"\nurl = \"https://h/x\"\non = [\"verdict\"]\n",
            "notify[0].on): \"verdict\" is not an event",
        ),
        (
            "name = \"p\"\nkind = \"http\"\nurl = \"https://h/x\"\nsites = [\"z\"]\n",
            "notify[0].sites): \"z\" is not a site",
        ),
        (
            "name = \"p\"\nkind = \"http\"\nurl = \"https://h/x\"\ntimeout_ms = 900000\n",
            "notify[0].timeout_ms) = 900000 is above the limit of 300000",
        ),
        (
            "name = \"p\"\nkind = \"http\"\nurl = \"https://h/x\"\nretries = 1000\n",
            "notify[0].retries) = 1000 is above the limit of 100",
        ),
        ("name = \"p\"\nkind = \"http\"\n", "`url` is missing"),
        (
            "name = \"p\"\nkind = \"http\"\nurl = \"http://hooks.example/x\"\ntoken_env = \"T\"\n",
            "token_env",
        ),
        (
            "name = \"p\"\nkind = \"exec\"\nargv = [\"/bin/true\"]\nurll = 1\n",
            "unknown key `urll`",
        ),
    ];
    for (table, want) in cases {
        let got = problems(&format!("[[notify]]\n{table}"));
        assert!(got.contains(want), "{table}\nwant: {want}\ngot: {got}");
    }
}

#[test]
fn two_notifiers_with_one_name_are_refused() {
    let one = "[[notify]]\nname = \"p\"\nkind = \"exec\"\nargv = [\"/bin/true\"]\n";
    let got = problems(&format!("{one}{one}"));
    assert!(got.contains("notifier \"p\" is defined twice"), "{got}");
}

#[test]
fn too_many_notifiers_are_refused() {
    let text: String = (0..=limits::MAX_NOTIFIERS)
        .map(|i| format!("[[notify]]\nname = \"n{i}\"\nkind = \"exec\"\nargv = [\"/bin/true\"]\n"))
        .collect();
    let got = problems(&text);
    assert!(
        got.contains("[[notify]]: 65 tables, above the limit of 64"),
        "{got}"
    );
}
