//! The anycast safety rule: "each anycast prefix stays announced by at least one site (unless
//! an operator forces it)". The fleet file declares each anycast prefix (`[[anycast]]`): the
//! sites that may announce it and those that announce it in normal operation. The
//! `AnnouncementLedger` holds, per declared prefix, the sites believed to announce it; it
//! starts from the declarations and follows every bgp step that succeeded (`apply`). Before a
//! bgp step runs, `check` refuses a withdraw that would leave a declared prefix announced by no
//! live site: some *other* site in the ledger must be alive, or the run must be forced.
//! Announces are always allowed, and prefixes that are not declared are never judged.
//!
//! The isolation steps a cut-off site runs on itself (its self-fence) are the split-brain
//! guard: they must withdraw even when no other site is known to announce, so they are not
//! judged by this rule (the caller does not `check` them; `apply` still records them).
//!
//! Prefixes are `net_prefix::Prefix` values, the same ones the bgp actuator announces.
//!
//! Pure: no IO, no clock. Whether a site is alive is the caller's answer (`site_alive`).

pub use super::net_prefix::{AddressFamily, Prefix, PrefixError};
use super::types::SiteId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The rule `check` enforces, as refusals name it.
pub const ANYCAST_RULE: &str = "each anycast prefix stays announced by at least one site";

/// One `[[anycast]]` declaration of the fleet file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnycastPrefix {
    pub prefix: Prefix,
    /// The sites that may announce it, in file order (at least one, no duplicates).
    pub sites: Vec<SiteId>,
    /// The sites that announce it in normal operation: a subset of `sites`.
    pub announced_by: Vec<SiteId>,
}

/// What a bgp step does to the announcements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BgpAction {
    Announce,
    Withdraw,
}

impl BgpAction {
    /// The action a bgp step's `action` param names ("announce", "withdraw"); `None` for any
    /// other word.
    pub fn from_word(word: &str) -> Option<BgpAction> {
        [BgpAction::Announce, BgpAction::Withdraw]
            .into_iter()
            .find(|a| a.as_str() == word)
    }

    /// The word of the `action` param.
    pub fn as_str(self) -> &'static str {
        match self {
            BgpAction::Announce => "announce",
            BgpAction::Withdraw => "withdraw",
        }
    }
}

/// The effect of one bgp step: `site` starts (announce) or stops (withdraw) announcing
/// `prefixes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpEffect {
    pub action: BgpAction,
    /// The site whose announcement the step changes (the step's `site` key).
    pub site: SiteId,
    /// Every prefix of the step, declared or not, in the step's order.
    pub prefixes: Vec<Prefix>,
}

/// A declared prefix that a refused withdraw would have left announced by no live site, and
/// the facts behind that judgement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnannouncedPrefix {
    pub prefix: Prefix,
    /// The ledger for the prefix before the withdraw: the sites believed to announce it.
    pub announced_by: Vec<SiteId>,
    /// Sites in `announced_by`, other than the withdrawing one, that are not alive.
    pub down: Vec<SiteId>,
    /// Declared sites of the prefix that the ledger does not list (in declaration order).
    pub not_announcing: Vec<SiteId>,
}

/// Why `AnnouncementLedger::check` refused a step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafetyRefusal {
    /// The site whose withdraw was refused.
    pub site: SiteId,
    /// Every declared prefix of the step it would have left unannounced, in the step's order.
    pub prefixes: Vec<UnannouncedPrefix>,
}

impl SafetyRefusal {
    /// The rule that refused the step.
    pub fn rule(&self) -> &'static str {
        ANYCAST_RULE
    }
}

/// "a", "a, b": site ids joined.
fn join(sites: &[SiteId]) -> String {
    sites
        .iter()
        .map(SiteId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

impl UnannouncedPrefix {
    /// "ledger: a, b; b is down; c is not announcing".
    pub fn facts(&self) -> String {
        let verb = |v: &[SiteId]| if v.len() == 1 { "is" } else { "are" };
        let mut s = format!(
            "ledger: {}",
            if self.announced_by.is_empty() {
                "none".to_string()
            } else {
                join(&self.announced_by)
            }
        );
        if !self.down.is_empty() {
            s += &format!("; {} {} down", join(&self.down), verb(&self.down));
        }
        if !self.not_announcing.is_empty() {
            s += &format!(
                "; {} {} not announcing",
                join(&self.not_announcing),
                verb(&self.not_announcing)
            );
        }
        s
    }
}

impl fmt::Display for SafetyRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused by the rule \"{ANYCAST_RULE}\": ")?;
        for (i, p) in self.prefixes.iter().enumerate() {
            if i > 0 {
                f.write_str(", and ")?;
            }
            write!(
                f,
                "withdrawing {} at {} would leave it announced by no live site ({})",
                p.prefix,
                self.site,
                p.facts()
            )?;
        }
        let it = if self.prefixes.len() == 1 {
            "it"
        } else {
            "them"
        };
        write!(f, " — announce {it} elsewhere first, or force the run")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    declaration: AnycastPrefix,
    announcing: BTreeSet<SiteId>,
}

/// Per declared anycast prefix, the set of sites believed to announce it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnouncementLedger {
    entries: BTreeMap<Prefix, Entry>,
}

impl AnnouncementLedger {
    /// The ledger of normal operation: each declared prefix announced by its `announced_by`.
    /// A prefix declared twice (which the fleet check refuses) keeps its first declaration.
    pub fn new(declarations: &[AnycastPrefix]) -> AnnouncementLedger {
        let mut entries = BTreeMap::new();
        for d in declarations {
            entries.entry(d.prefix).or_insert_with(|| Entry {
                declaration: d.clone(),
                announcing: d.announced_by.iter().cloned().collect(),
            });
        }
        AnnouncementLedger { entries }
    }

    /// The ledger after `succeeded`, the effects of the bgp steps that succeeded, oldest
    /// first, starting from normal operation.
    pub fn replay<'a>(
        declarations: &[AnycastPrefix],
        succeeded: impl IntoIterator<Item = &'a BgpEffect>,
    ) -> AnnouncementLedger {
        let mut ledger = AnnouncementLedger::new(declarations);
        for effect in succeeded {
            ledger.apply(effect);
        }
        ledger
    }

    /// Records a bgp step that succeeded: an announce adds its site to each declared prefix of
    /// the step, a withdraw removes it. Prefixes that are not declared are ignored.
    pub fn apply(&mut self, effect: &BgpEffect) {
        for p in &effect.prefixes {
            if let Some(e) = self.entries.get_mut(p) {
                match effect.action {
                    BgpAction::Announce => {
                        e.announcing.insert(effect.site.clone());
                    }
                    BgpAction::Withdraw => {
                        e.announcing.remove(&effect.site);
                    }
                }
            }
        }
    }

    /// Whether the step may run. An announce always may; so may any step when `forced`. A
    /// withdraw at site X is refused when, for some declared prefix P of the step, no site
    /// other than X that the ledger lists for P is alive (`site_alive`); the refusal lists
    /// every such prefix with the facts.
    pub fn check(
        &self,
        effect: &BgpEffect,
        site_alive: impl Fn(&SiteId) -> bool,
        forced: bool,
    ) -> Result<(), SafetyRefusal> {
        if forced || effect.action == BgpAction::Announce {
            return Ok(());
        }
        let x = &effect.site;
        let mut seen = BTreeSet::new();
        let mut unannounced = Vec::new();
        for p in &effect.prefixes {
            let Some(e) = self.entries.get(p) else {
                continue;
            };
            if !seen.insert(*p) {
                continue;
            }
            let others: Vec<&SiteId> = e.announcing.iter().filter(|s| *s != x).collect();
            if others.iter().any(|s| site_alive(s)) {
                continue;
            }
            unannounced.push(UnannouncedPrefix {
                prefix: *p,
                announced_by: e.announcing.iter().cloned().collect(),
                down: others.into_iter().cloned().collect(),
                not_announcing: e
                    .declaration
                    .sites
                    .iter()
                    .filter(|s| !e.announcing.contains(*s))
                    .cloned()
                    .collect(),
            });
        }
        if unannounced.is_empty() {
            Ok(())
        } else {
            Err(SafetyRefusal {
                site: x.clone(),
                prefixes: unannounced,
            })
        }
    }

    /// The sites believed to announce `prefix`; `None` when it is not declared.
    pub fn announcers(&self, prefix: &Prefix) -> Option<&BTreeSet<SiteId>> {
        self.entries.get(prefix).map(|e| &e.announcing)
    }

    /// The declaration of `prefix`, if it is declared.
    pub fn declaration(&self, prefix: &Prefix) -> Option<&AnycastPrefix> {
        self.entries.get(prefix).map(|e| &e.declaration)
    }

    /// Every declared prefix with the sites believed to announce it, in prefix order.
    pub fn iter(&self) -> impl Iterator<Item = (&Prefix, &BTreeSet<SiteId>)> {
        self.entries.iter().map(|(p, e)| (p, &e.announcing))
    }
}

#[cfg(test)]
#[path = "anycast_tests.rs"]
mod tests;
