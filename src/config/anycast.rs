//! `[[anycast]]` declarations and the fleet-file side of the rule "each anycast prefix stays
//! announced by at least one site": the declarations themselves, the `site` key of the bgp
//! steps that move a declared prefix, and the order of a pipeline's bgp steps (make before
//! break). The rule itself lives in `core::anycast`; the driver applies it before each bgp step
//! of a run, `check-config` applies it here to the written order of every pipeline.

use super::raw::RawAnycast;
use super::{list, Site, SiteKind};
use crate::actuators::bgp::BgpParams;
use crate::core::anycast::{
    AnnouncementLedger, AnycastPrefix, BgpAction, BgpEffect, Prefix, ANYCAST_RULE,
};
use crate::core::pipeline::{PipelineSpec, StepSpec};
use crate::core::types::SiteId;
use std::collections::{BTreeMap, BTreeSet};

/// Converts and checks the `[[anycast]]` tables. A declaration with a problem is pushed as a
/// problem and left out.
pub(super) fn declarations(
    raw: Vec<RawAnycast>,
    sites: &[Site],
    problems: &mut Vec<String>,
) -> Vec<AnycastPrefix> {
    let mut out = Vec::new();
    let mut first: BTreeMap<Prefix, usize> = BTreeMap::new();
    for (i, r) in raw.into_iter().enumerate() {
        let before = problems.len();
        let prefix = match Prefix::parse(&r.prefix) {
            Ok(p) => Some(p),
            Err(e) => {
                problems.push(format!("anycast[{i}].prefix: {e}"));
                None
            }
        };
        let at = |key: &str| match prefix {
            Some(p) => format!("anycast {p} (anycast[{i}].{key})"),
            None => format!("anycast[{i}].{key}"),
        };
        if let Some(p) = prefix {
            if let Some(&j) = first.get(&p) {
                problems.push(format!(
                    "{}: {p} is already declared at anycast[{j}]; declare each prefix once, \
                     listing every site that may announce it",
                    at("prefix")
                ));
            } else {
                first.insert(p, i);
            }
        }
        let may = site_list(&r.sites, "sites", &at, sites, problems);
        if r.sites.is_empty() {
            problems.push(format!(
                "{}: sites is empty; list the sites that may announce the prefix, e.g. sites = \
                 [\"a\", \"b\"]",
                at("sites")
            ));
        }
        let announced_by = match r.announced_by {
            Some(v) if v.is_empty() => {
                problems.push(format!(
                    "{}: announced_by is empty; list the sites that announce the prefix in \
                     normal operation, or remove announced_by (default: the primary sites of \
                     `sites`, or its first site)",
                    at("announced_by")
                ));
                Vec::new()
            }
            Some(v) => {
                let by = site_list(&v, "announced_by", &at, sites, problems);
                for s in &by {
                    if sites.iter().any(|k| &k.id == s) && !may.contains(s) {
                        problems.push(format!(
                            "{}: site {s} is not in sites ({}); a site announces only what it \
                             may announce — add {s} to sites or remove it from announced_by",
                            at("announced_by"),
                            list(&may)
                        ));
                    }
                }
                by
            }
            None => {
                let primary: Vec<SiteId> = may
                    .iter()
                    .filter(|s| {
                        sites
                            .iter()
                            .any(|k| &k.id == *s && k.kind == SiteKind::Primary)
                    })
                    .cloned()
                    .collect();
                if primary.is_empty() {
                    may.iter().take(1).cloned().collect()
                } else {
                    primary
                }
            }
        };
        if let (Some(prefix), true) = (prefix, problems.len() == before) {
            out.push(AnycastPrefix {
                prefix,
                sites: may,
                announced_by,
            });
        }
    }
    out
}

/// The ids of `names`, each a defined site listed once; problems otherwise.
fn site_list(
    names: &[String],
    key: &str,
    at: &dyn Fn(&str) -> String,
    sites: &[Site],
    problems: &mut Vec<String>,
) -> Vec<SiteId> {
    let mut out: Vec<SiteId> = Vec::new();
    for n in names {
        let id = SiteId(n.clone());
        if !sites.iter().any(|s| s.id == id) {
            problems.push(format!(
                "{}: site \"{n}\" is not defined; add a [[site]] with id = \"{n}\" or correct \
                 {key}",
                at(key)
            ));
        } else if out.contains(&id) {
            problems.push(format!(
                "{}: site {n} is listed twice; list it once",
                at(key)
            ));
        } else {
            out.push(id);
        }
    }
    out
}

/// The `site` rules of one bgp step whose params passed its actuator: a step that moves a
/// declared prefix names its site, one of that prefix's `sites`. Returns the step's effect when
/// it has a site, taken from the same `BgpParams` the actuator runs with. `label` names the
/// step in messages.
pub(super) fn bgp_step_effect(
    label: &str,
    params: &BgpParams,
    site: Option<&SiteId>,
    anycast: &[AnycastPrefix],
    problems: &mut Vec<String>,
) -> Option<BgpEffect> {
    let action = params.action;
    let prefixes = &params.prefixes;
    let mut declared: Vec<&AnycastPrefix> = Vec::new();
    for p in prefixes {
        if let Some(d) = anycast.iter().find(|d| d.prefix == *p) {
            if !declared.iter().any(|x| x.prefix == d.prefix) {
                declared.push(d);
            }
        }
    }
    match site {
        None if !declared.is_empty() => {
            let names: Vec<String> = declared.iter().map(|d| d.prefix.to_string()).collect();
            let common: Vec<&SiteId> = declared[0]
                .sites
                .iter()
                .filter(|s| declared.iter().all(|d| d.sites.contains(s)))
                .collect();
            let fix = if common.is_empty() {
                format!(
                    "no site may announce all of {} ([[anycast]] sites): split the step, one \
                     per prefix, and give each a site",
                    names.join(", ")
                )
            } else {
                format!(
                    "add site = {} naming the site whose announcement the step changes ({} \
                     may announce {})",
                    common
                        .iter()
                        .map(|s| format!("\"{s}\""))
                        .collect::<Vec<_>>()
                        .join(" or "),
                    list(&common),
                    names.join(", ")
                )
            };
            problems.push(format!(
                "{label}: the step {}s the declared anycast prefix {} but has no site, so the \
                 rule \"{ANYCAST_RULE}\" cannot be checked before it runs; {fix}",
                action.as_str(),
                names.join(", ")
            ));
            None
        }
        None => None,
        Some(s) => {
            let before = problems.len();
            for d in &declared {
                if !d.sites.contains(s) {
                    problems.push(format!(
                        "{label}: site = \"{s}\" is not among the sites that may announce the \
                         anycast prefix {} ({}); set site to one of them, or add {s} to the \
                         sites of that [[anycast]]",
                        d.prefix,
                        list(&d.sites)
                    ));
                }
            }
            (problems.len() == before).then(|| params.effect(s.clone()))
        }
    }
}

/// Runs the bgp steps of a pipeline in their written order (prechecks, steps, post) against
/// the ledger of normal operation, with every site alive but the watched one (the site whose
/// loss starts the run), and pushes a problem for each withdraw the rule would refuse where it
/// stands. Compensations run only when a run is being undone and are judged when they run.
/// Isolation steps are not judged: they are the self-fence of a cut-off site, which must
/// withdraw its own announcement whatever else announces (the split-brain guard).
pub(super) fn check_order(
    watched: &SiteId,
    pipeline: &PipelineSpec,
    effects: &BTreeMap<String, BgpEffect>,
    anycast: &[AnycastPrefix],
    step_at: &BTreeMap<String, String>,
    problems: &mut Vec<String>,
) {
    let alive = |s: &SiteId| s != watched;
    let order: Vec<&StepSpec> = pipeline
        .prechecks
        .iter()
        .chain(&pipeline.fences)
        .chain(&pipeline.steps)
        .chain(&pipeline.post)
        .collect();
    let label = |name: &str| match step_at.get(name) {
        Some(at) => format!("{at} \"{name}\""),
        None => format!("\"{name}\""),
    };
    let mut ledger = AnnouncementLedger::new(anycast);
    for (i, step) in order.iter().enumerate() {
        let Some(effect) = effects.get(&step.name) else {
            continue;
        };
        if pipeline.fences.iter().any(|f| f.name == step.name) {
            // A fence takes the old primary's announcement away before anyone announces, on
            // purpose (break before make); it is not judged, but the steps after it are
            // judged against what it leaves.
            ledger.apply(effect);
            continue;
        }
        let refusal = match ledger.check(effect, alive, false) {
            Ok(()) => {
                ledger.apply(effect);
                continue;
            }
            Err(r) => r,
        };
        let x = &effect.site;
        for u in &refusal.prefixes {
            let p = u.prefix;
            let later = order[i + 1..].iter().find(|s| {
                effects.get(&s.name).is_some_and(|e| {
                    e.action == BgpAction::Announce
                        && &e.site != x
                        && alive(&e.site)
                        && e.prefixes.contains(&p)
                })
            });
            let others: BTreeSet<&SiteId> = ledger
                .declaration(&p)
                .map(|d| d.sites.iter().filter(|s| *s != x && alive(s)).collect())
                .unwrap_or_default();
            let fix = match (later, others.iter().next()) {
                (Some(s), _) => format!(
                    "announce it at another site first: move step {} before step \"{}\" \
                     (make before break)",
                    label(&s.name),
                    step.name
                ),
                (None, Some(y)) => format!(
                    "announce it at another site first: add a bgp step that announces {p} \
                     with site = \"{y}\" before step \"{}\" (make before break)",
                    step.name
                ),
                (None, None) => format!(
                    "no other live site may announce it: add such a site to the sites of its \
                     [[anycast]] and announce {p} there before step \"{}\", or remove the \
                     withdraw",
                    step.name
                ),
            };
            problems.push(format!(
                "watch on {watched}: {}: withdrawing {p} at {x} would leave it announced by no \
                 live site when the run gets there ({watched}, the failed site, counts as down; \
                 {}), so the rule \"{ANYCAST_RULE}\" would refuse the step; {fix}",
                label(&step.name),
                u.facts()
            ));
        }
    }
}
