//! The fleet file (TOML, one file shared by every node) and its validation. Every error names
//! the key at fault and the fix; nothing here opens a socket. The file is read into private
//! serde mirrors that refuse unknown keys, converted one to one into the public types, and
//! then every rule is checked so that an operator sees all problems at once, not one per run.
//! A watch may carry a failover plan (`plan`): the pipeline run after a DOWN verdict and the
//! steps the watched site runs when it finds itself cut off; its step tables are checked by the
//! actuators they name. `[[anycast]]` declares the prefixes that must stay announced by at
//! least one site; the bgp steps that move them name their `site` and are checked in order.

use crate::core::anycast::AnycastPrefix;
use crate::core::types::{NodeId, SiteId};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Timing of probes and votes, shared by the whole fleet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timing {
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
    /// An Indicator is unreachable after this many consecutive missed probes.
    pub retries: u32,
    pub vote_timeout: Duration,
    pub max_vote_rounds: u32,
    pub hold_down: Duration,
    /// After a round ends UP (internal false positive) or undecided `max_vote_rounds` times,
    /// the voter waits this long before it asks again while its opinion stays DOWN.
    pub revote_after: Duration,
    /// How often each node sends its status (liveness, fleet hash, verdicts) to every peer.
    pub status_interval: Duration,
}

impl Timing {
    /// Longest time from an Indicator's death to the Pinger's DOWN opinion; also how old
    /// evidence may be and still count in a vote.
    pub fn probe_budget(&self) -> Duration {
        // Saturating: a `Timing` built by hand need not respect the fleet file's limits.
        self.probe_interval
            .saturating_mul(self.retries)
            .saturating_add(self.probe_timeout)
    }
}

/// The DRL timings: 100 ms probes, 100 ms timeout, 5 retries, 300 ms vote timeout, 3 rounds,
/// 300 s hold-down. These are what a `[timing]` table left empty means.
impl Default for Timing {
    fn default() -> Timing {
        RawTiming::default()
            .into_timing(&mut Vec::new())
            .expect("the default timings are valid")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteKind {
    Primary,
    Backup,
    Witness,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    pub id: SiteId,
    pub kind: SiteKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Roles {
    pub indicator: bool,
    pub pinger: bool,
    pub voter: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub id: NodeId,
    pub site: SiteId,
    pub roles: Roles,
    /// The QUIC (UDP) address peers dial.
    pub mesh: SocketAddr,
    /// Where the node binds its QUIC socket, when it differs from `mesh` (NAT, relay).
    pub mesh_bind: Option<SocketAddr>,
    /// The REST (TCP) address.
    pub api: SocketAddr,
}

impl Node {
    pub fn mesh_bind_addr(&self) -> SocketAddr {
        self.mesh_bind.unwrap_or(self.mesh)
    }

    /// Neither Pinger nor voter: the node answers probes and originates nothing else (see
    /// docs/trust.md), so it has no opinions or verdicts to tell.
    pub fn is_indicator_only(&self) -> bool {
        !self.roles.pinger && !self.roles.voter
    }

    /// Whether this node and `other` hold a mesh connection: unless both are Indicator-only
    /// nodes, which have nothing to say to each other. So a fleet of many Indicators costs
    /// each of them a connection per Pinger and voter, not one per node.
    pub fn talks_with(&self, other: &Node) -> bool {
        self.id != other.id && !(self.is_indicator_only() && other.is_indicator_only())
    }
}

/// Whether a watch whose electorate is dominated by one site may act on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SingleVantage {
    /// Refused by `check-config` (the default).
    #[default]
    Refuse,
    /// Verdicts are computed and shown, but failover waits for an operator.
    Manual,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watch {
    /// The watched site.
    pub site: SiteId,
    /// Sites whose Pingers probe it and whose Voters judge it.
    pub by: Vec<SiteId>,
    pub single_vantage: SingleVantage,
    /// What runs after a DOWN verdict and how the site fences itself; `None`: verdicts only.
    pub plan: Option<FailoverPlan>,
}

/// `[api]` of the fleet file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiSettings {
    /// The first line of this file (trimmed) is the bearer token that mutating REST calls
    /// must present; without it every mutating call is refused (403).
    pub token_file: Option<PathBuf>,
    /// The first line of this file (trimmed) is the bearer token that lets a caller read the
    /// output of failover steps in `GET /v1/failovers`; the operator token does too. Without
    /// either, that output is redacted (the rest of the API stays open).
    pub read_token_file: Option<PathBuf>,
    /// PEM files (certificate chain, private key) the REST API serves HTTPS with, as written:
    /// `{node}` in them stands for the id of the node that reads them (`tls_files`). Both or
    /// neither; without them the API speaks plain HTTP.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl ApiSettings {
    /// The certificate and key files of `node`'s HTTPS listener, `{node}` replaced by its id;
    /// None: plain HTTP.
    pub fn tls_files(&self, node: &NodeId) -> Option<(PathBuf, PathBuf)> {
        let expand =
            |p: &PathBuf| PathBuf::from(p.to_string_lossy().replace("{node}", node.as_str()));
        Some((
            expand(self.tls_cert.as_ref()?),
            expand(self.tls_key.as_ref()?),
        ))
    }

    /// Nodes whose REST API listens beyond loopback without TLS: tokens and step output would
    /// cross the network in clear.
    pub fn clear_text_nodes<'a>(&self, nodes: &'a [Node]) -> Vec<&'a Node> {
        if self.tls_cert.is_some() {
            return vec![];
        }
        nodes.iter().filter(|n| !n.api.ip().is_loopback()).collect()
    }

    /// The note `check-config` and `run` print when mutating REST calls are disabled.
    pub fn note(&self) -> Option<String> {
        self.token_file.is_none().then(|| {
            "no [api] token_file is set: mutating REST calls are disabled \
             (failovers, drills, maintenance, failbacks)"
                .to_string()
        })
    }
}

/// A validated fleet file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fleet {
    pub timing: Timing,
    pub sites: Vec<Site>,
    pub nodes: Vec<Node>,
    pub watches: Vec<Watch>,
    /// `[api]`: the REST API's settings.
    pub api: ApiSettings,
    /// `[[site.check]]` of every site and each watch's `judge`.
    pub service: ServicePlan,
    /// `[[notify]]`: who is told of verdicts, runs and maintenance calls.
    pub notify: Vec<Notifier>,
    /// `[[alarm_source]]`: equipment that may raise alarms about named sites.
    pub alarm_sources: Vec<alarm::AlarmSource>,
    /// Hex SHA-256 of the file's text: the fleet version nodes compare.
    pub hash: String,
    /// The file's text as read.
    pub source: String,
}

/// Why a fleet file was refused. Nothing was produced and nothing was changed: the caller
/// keeps running with whatever fleet it had, or does not start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read fleet file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not a fleet file: bad TOML, an unknown key, a wrong type, an unknown role or
    /// site kind. One line with the line and column of the fault.
    #[error("{0}")]
    Syntax(String),
    /// The file reads, but breaks the fleet's rules: every problem found, one line each,
    /// naming the key at fault and the fix.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

pub mod alarm;
mod anycast;
mod checks;
mod fence;
pub mod limits;
pub mod notify;
mod plan;
mod raw;
mod validate;

pub use checks::{CheckKind, ServiceCheck, ServicePlan};
pub use notify::Notifier;
pub use plan::{FailoverPlan, STEP_KEYS};
use raw::*;

fn is_dns_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------

impl Fleet {
    /// Parses and validates a fleet file's text. `hash` is the SHA-256 of exactly this text.
    pub fn parse(text: &str) -> Result<Fleet, ConfigError> {
        let raw: RawFleet =
            toml::from_str(text).map_err(|e| ConfigError::Syntax(syntax_message(text, &e)))?;
        // Checked first: the rules below compare nodes pairwise, and a fleet far above the
        // limits is refused before that work.
        let too_many: Vec<String> = [
            limits::too_many("[[site]]", raw.sites.len(), limits::MAX_SITES),
            limits::too_many("[[node]]", raw.nodes.len(), limits::MAX_NODES),
            limits::too_many("[[watch]]", raw.watches.len(), limits::MAX_WATCHES),
            limits::too_many("[[anycast]]", raw.anycast.len(), limits::MAX_ANYCAST),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !too_many.is_empty() {
            return Err(ConfigError::Invalid(too_many));
        }
        let mut problems = Vec::new();
        // A timing above its limits is already a problem; the defaults stand in so that the
        // remaining rules are still checked and reported together.
        let timing = raw.timing.into_timing(&mut problems).unwrap_or_default();
        let mut service = ServicePlan::default();
        let sites: Vec<Site> = raw
            .sites
            .into_iter()
            .enumerate()
            .map(|(si, mut s)| {
                let raw_checks = std::mem::take(&mut s.checks);
                let built = checks::build_checks(si, &s.id, raw_checks, &mut problems);
                if !built.is_empty() {
                    service.checks.insert(SiteId(s.id.clone()), built);
                }
                s
            })
            .map(|s| Site {
                id: SiteId(s.id),
                kind: match s.kind {
                    RawSiteKind::Primary => SiteKind::Primary,
                    RawSiteKind::Backup => SiteKind::Backup,
                    RawSiteKind::Witness => SiteKind::Witness,
                },
            })
            .collect();
        // Reported after the fleet's own problems and before the plans'.
        let mut anycast_problems = Vec::new();
        let anycast = anycast::declarations(raw.anycast, &sites, &mut anycast_problems);
        let nodes: Vec<Node> = raw.nodes.into_iter().map(RawNode::into_node).collect();
        let notify = notify::build_notifiers(raw.notify, &sites, &mut problems);
        let alarm_sources = alarm::build_sources(raw.alarm_source, &sites, &nodes, &mut problems);
        // Plan problems are reported after the fleet's own, in file order.
        let mut plan_problems = Vec::new();
        let watches = raw
            .watches
            .into_iter()
            .map(|w| {
                if w.judge != crate::core::health::Judge::Host {
                    service.judges.insert(SiteId(w.site.clone()), w.judge);
                }
                let raw_plan = plan::RawPlan {
                    takeover_delay_s: w.takeover_delay_s,
                    self_fence_after_s: w.self_fence_after_s,
                    pipeline: w.pipeline,
                    isolation: w.isolation,
                    on_alarm: w.on_alarm,
                };
                Watch {
                    plan: plan::build_plan(
                        &w.site,
                        raw_plan,
                        &timing,
                        &sites,
                        &anycast,
                        &mut plan_problems,
                    ),
                    site: SiteId(w.site),
                    by: w.by.into_iter().map(SiteId).collect(),
                    single_vantage: match w.single_vantage {
                        RawSingleVantage::Refuse => SingleVantage::Refuse,
                        RawSingleVantage::Manual => SingleVantage::Manual,
                    },
                }
            })
            .collect();
        let fleet = Fleet {
            timing,
            sites,
            nodes,
            watches,
            api: raw
                .api
                .map(|a| {
                    if a.tls_cert.is_some() != a.tls_key.is_some() {
                        problems.push(
                            "[api] needs both tls_cert and tls_key (PEM files) for HTTPS, or \
                             neither for plain HTTP"
                                .to_string(),
                        );
                    }
                    ApiSettings {
                        token_file: a.token_file,
                        read_token_file: a.read_token_file,
                        tls_cert: a.tls_cert,
                        tls_key: a.tls_key,
                    }
                })
                .unwrap_or_default(),
            service,
            notify,
            alarm_sources,
            hash: hex_sha256(text),
            source: text.to_string(),
        };
        fleet.check(&mut problems);
        alarm::check_poller_nodes(&fleet, &mut problems);
        checks::check_judges(&fleet.service, &fleet.watches, &mut problems);
        problems.append(&mut anycast_problems);
        problems.append(&mut plan_problems);
        if problems.is_empty() {
            Ok(fleet)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Reads and validates the fleet file at `path`. Syntax errors are prefixed with the path.
    pub fn load(path: &Path) -> Result<Fleet, ConfigError> {
        let text = crate::small_file::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Fleet::parse(&text).map_err(|e| match e {
            ConfigError::Syntax(m) => ConfigError::Syntax(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    pub fn node(&self, id: &NodeId) -> Option<&Node> {
        self.nodes.iter().find(|n| &n.id == id)
    }

    pub fn site(&self, id: &SiteId) -> Option<&Site> {
        self.sites.iter().find(|s| &s.id == id)
    }

    pub fn watch(&self, site: &SiteId) -> Option<&Watch> {
        self.watches.iter().find(|w| &w.site == site)
    }

    /// The `[[anycast]]` declarations, in file order. Every failover plan carries all of them
    /// (`FailoverPlan::anycast`); this reads them from the first plan, so a fleet without a
    /// plan (which has no bgp step to check) has none.
    pub fn anycast(&self) -> &[AnycastPrefix] {
        self.watches
            .iter()
            .find_map(|w| w.plan.as_ref())
            .map_or(&[], |p| p.anycast.as_slice())
    }

    /// Voters of the `by` sites of the watch on `site`, sorted by id. Empty if unwatched.
    pub fn electorate(&self, site: &SiteId) -> Vec<NodeId> {
        self.watch(site)
            .map(|w| self.voters_by_site(w).into_values().flatten().collect())
            .map(|mut v: Vec<NodeId>| {
                v.sort();
                v
            })
            .unwrap_or_default()
    }

    /// The nodes `me` holds a mesh connection with (`Node::talks_with`), in file order; none
    /// if `me` is not in the fleet.
    pub fn mesh_peers<'a>(&'a self, me: &NodeId) -> impl Iterator<Item = &'a Node> + 'a {
        let me = self.node(me);
        self.nodes
            .iter()
            .filter(move |n| me.is_some_and(|m| m.talks_with(n)))
    }

    /// Whether `a` and `b` speak only through probes: one is an Indicator-only node and the
    /// other's Pinger probes it (its site watches the Indicator's). Such a pair needs its
    /// connection only to derive probe keys and to carry news; the mesh closes it once idle
    /// and keeps the probe sessions (`MeshConfig::quiet_peers`). Symmetric, so both ends
    /// agree from the same fleet file.
    pub fn probes_only(&self, a: &Node, b: &Node) -> bool {
        let (indicator, pinger) = match (a.is_indicator_only(), b.is_indicator_only()) {
            (true, false) => (a, b),
            (false, true) => (b, a),
            _ => return false,
        };
        indicator.roles.indicator
            && pinger.roles.pinger
            && self.watched_by_site(&pinger.site).contains(&indicator.site)
    }

    /// The mesh peers of `me` it speaks with only through probes (`probes_only`), sorted.
    pub fn quiet_peers(&self, me: &NodeId) -> Vec<NodeId> {
        let Some(node) = self.node(me) else {
            return Vec::new();
        };
        let mut ids: Vec<NodeId> = self
            .mesh_peers(me)
            .filter(|n| self.probes_only(node, n))
            .map(|n| n.id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Nodes of `site` with the indicator role, sorted.
    pub fn indicators(&self, site: &SiteId) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|n| &n.site == site && n.roles.indicator)
            .map(|n| n.id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Sites this node's site watches (i.e. watches whose `by` contains node's site), sorted.
    pub fn watched_by_site(&self, site: &SiteId) -> Vec<SiteId> {
        let set: BTreeSet<SiteId> = self
            .watches
            .iter()
            .filter(|w| w.by.contains(site))
            .map(|w| w.site.clone())
            .collect();
        set.into_iter().collect()
    }

    /// Human notes that are not errors: manual-only watches and why, `by` sites that add no
    /// voter, sites nobody watches.
    pub fn warnings(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.watches.is_empty() {
            notes.push(
                "no [[watch]] is defined: no site is judged and no failover can run".to_string(),
            );
        }
        let clear = self.api.clear_text_nodes(&self.nodes);
        if !clear.is_empty() {
            let list: Vec<String> = clear
                .iter()
                .map(|n| format!("{} ({})", n.id, n.api))
                .collect();
            notes.push(format!(
                "the REST API of {} listens beyond loopback without TLS: the operator and read \
                 tokens and failover step output would cross the network in clear; set [api] \
                 tls_cert and tls_key (docs/rest-api.md)",
                list.join(", ")
            ));
        }
        for w in &self.watches {
            let by_site = self.voters_by_site(w);
            let total: usize = by_site.values().map(Vec::len).sum();
            if w.single_vantage == SingleVantage::Manual {
                match validate::dominant(&by_site, total) {
                    Some((s, n)) => notes.push(format!(
                        "watch on {}: single_vantage = manual: site {s} holds {n} of {total} \
                         voters; verdicts are shown but failover waits for an operator",
                        w.site
                    )),
                    None => notes.push(format!(
                        "watch on {}: single_vantage = manual is set but no site holds a \
                         majority of the {total} voters; failover still waits for an operator \
                         — remove single_vantage to let it run on its own",
                        w.site
                    )),
                }
            }
            if let Some(plan) = &w.plan {
                if w.single_vantage == SingleVantage::Manual {
                    notes.push(format!(
                        "watch on {}: has a failover plan but single_vantage = manual: after a \
                         DOWN verdict the pipeline waits for an operator to start it",
                        w.site
                    ));
                }
                if plan.isolation.is_empty() {
                    notes.push(format!(
                        "watch on {}: the failover plan has no [[watch.isolation]] step: a live \
                         but cut-off {} keeps announcing its service while {} takes over; add \
                         e.g. a bgp withdraw of its own prefixes",
                        w.site,
                        w.site,
                        list(&w.by)
                    ));
                }
            }
            for s in &w.by {
                if self.site(s).is_some() && by_site.get(s).is_none_or(Vec::is_empty) {
                    notes.push(format!(
                        "watch on {}: site {s} in `by` has no voter, so it adds nothing to the \
                         electorate; give one of its nodes the \"voter\" and \"pinger\" roles",
                        w.site
                    ));
                }
            }
        }
        for s in &self.sites {
            if s.kind != SiteKind::Witness && self.watch(&s.id).is_none() {
                notes.push(format!(
                    "site {} ({:?}) has no [[watch]]: nobody judges it, so its loss triggers \
                     nothing",
                    s.id, s.kind
                ));
            }
        }
        notes
    }

    /// The voters of each known `by` site of a watch, each list sorted.
    fn voters_by_site(&self, w: &Watch) -> BTreeMap<SiteId, Vec<NodeId>> {
        let mut map: BTreeMap<SiteId, Vec<NodeId>> = BTreeMap::new();
        for n in &self.nodes {
            if n.roles.voter && n.site != w.site && w.by.contains(&n.site) {
                map.entry(n.site.clone()).or_default().push(n.id.clone());
            }
        }
        for v in map.values_mut() {
            v.sort();
        }
        map
    }
}

fn hex_sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What `quorate check-config FLEET` runs: prints "fleet OK: <n> sites, <n> nodes, <n> watches,
/// hash <first 12 hex>" plus warnings to stdout and returns 0; or prints "error: ..." lines to
/// stderr (one per problem) and returns 1.
pub fn check_config_main(path: &Path) -> ExitCode {
    match Fleet::load(path) {
        Ok(fleet) => {
            println!(
                "fleet OK: {} sites, {} nodes, {} watches, hash {}",
                fleet.sites.len(),
                fleet.nodes.len(),
                fleet.watches.len(),
                &fleet.hash[..12]
            );
            for line in checks::summary(&fleet) {
                println!("{line}");
            }
            for w in fleet.warnings() {
                println!("warning: {w}");
            }
            if let Some(note) = fleet.api.note() {
                println!("note: {note}");
            }
            ExitCode::SUCCESS
        }
        Err(ConfigError::Invalid(problems)) => {
            for p in &problems {
                eprintln!("error: {p}");
            }
            eprintln!(
                "{}: refused, {} problem{}",
                path.display(),
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod plan_tests;

#[cfg(test)]
mod anycast_tests;

#[cfg(test)]
mod limits_tests;

#[cfg(test)]
mod checks_tests;

#[cfg(test)]
mod fence_tests;

#[cfg(test)]
mod notify_tests;
