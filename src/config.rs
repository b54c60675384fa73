//! The fleet file (TOML, one file shared by every node) and its validation. Every error names
//! the key at fault and the fix; nothing here opens a socket. The file is read into private
//! serde mirrors that refuse unknown keys, converted one to one into the public types, and
//! then every rule is checked so that an operator sees all problems at once, not one per run.

use crate::core::types::{NodeId, SiteId};
use serde::Deserialize;
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
        self.probe_interval * self.retries + self.probe_timeout
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
}

/// A validated fleet file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fleet {
    pub timing: Timing,
    pub sites: Vec<Site>,
    pub nodes: Vec<Node>,
    pub watches: Vec<Watch>,
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

// ---------------------------------------------------------------------------------------------
// The TOML as written. Private: only `Fleet::parse` sees these.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    #[serde(default)]
    timing: RawTiming,
    #[serde(default, rename = "site")]
    sites: Vec<RawSite>,
    #[serde(default, rename = "node")]
    nodes: Vec<RawNode>,
    #[serde(default, rename = "watch")]
    watches: Vec<RawWatch>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTiming {
    probe_interval_ms: Option<u64>,
    probe_timeout_ms: Option<u64>,
    retries: Option<u32>,
    vote_timeout_ms: Option<u64>,
    max_vote_rounds: Option<u32>,
    hold_down_s: Option<u64>,
    revote_after_ms: Option<u64>,
    status_interval_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    id: String,
    kind: RawSiteKind,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawSiteKind {
    Primary,
    Backup,
    Witness,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    id: String,
    site: String,
    roles: Vec<RawRole>,
    mesh: SocketAddr,
    api: SocketAddr,
    mesh_bind: Option<SocketAddr>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawRole {
    Indicator,
    Pinger,
    Voter,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWatch {
    site: String,
    by: Vec<String>,
    #[serde(default)]
    single_vantage: RawSingleVantage,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "lowercase")]
enum RawSingleVantage {
    #[default]
    Refuse,
    Manual,
}

impl RawTiming {
    /// Applies the DRL defaults. Returns `None` (with a problem pushed) only when the probe
    /// budget does not fit in a duration; zero values are left to `check_timing`.
    fn into_timing(self, problems: &mut Vec<String>) -> Option<Timing> {
        let interval = self.probe_interval_ms.unwrap_or(100);
        let timeout = self.probe_timeout_ms.unwrap_or(100);
        let retries = self.retries.unwrap_or(5);
        let budget_ms = interval
            .checked_mul(u64::from(retries))
            .and_then(|b| b.checked_add(timeout));
        let revote_ms = match (self.revote_after_ms, budget_ms) {
            (Some(ms), Some(_)) => Some(ms),
            (None, Some(b)) => b.checked_mul(5),
            (_, None) => None,
        };
        let Some(revote_ms) = revote_ms else {
            problems.push(
                "timing: the probe budget (probe_interval_ms × retries + probe_timeout_ms, \
                 times 5 for the default revote_after_ms) overflows; use realistic values"
                    .to_string(),
            );
            return None;
        };
        Some(Timing {
            probe_interval: Duration::from_millis(interval),
            probe_timeout: Duration::from_millis(timeout),
            retries,
            vote_timeout: Duration::from_millis(self.vote_timeout_ms.unwrap_or(300)),
            max_vote_rounds: self.max_vote_rounds.unwrap_or(3),
            hold_down: Duration::from_secs(self.hold_down_s.unwrap_or(300)),
            revote_after: Duration::from_millis(revote_ms),
            status_interval: Duration::from_millis(self.status_interval_ms.unwrap_or(1000)),
        })
    }
}

impl RawNode {
    fn into_node(self) -> Node {
        let mut roles = Roles::default();
        for role in self.roles {
            match role {
                RawRole::Indicator => roles.indicator = true,
                RawRole::Pinger => roles.pinger = true,
                RawRole::Voter => roles.voter = true,
            }
        }
        Node {
            id: NodeId(self.id),
            site: SiteId(self.site),
            roles,
            mesh: self.mesh,
            mesh_bind: self.mesh_bind,
            api: self.api,
        }
    }
}

/// Turns a toml error into one line: position, the offending line's text, the message.
fn syntax_message(text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim().replace('\n', "; ");
    let Some(span) = err.span() else {
        return message;
    };
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_no = text[..start].matches('\n').count() + 1;
    let column = text[line_start..start].chars().count() + 1;
    let line_text: String = text[line_start..]
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .chars()
        .take(60)
        .collect();
    format!("line {line_no}, column {column} (`{line_text}`): {message}")
}

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
        let mut problems = Vec::new();
        // An overflowing timing is already a problem; the defaults stand in so that the
        // remaining rules are still checked and reported together.
        let timing = raw.timing.into_timing(&mut problems).unwrap_or_default();
        let sites = raw
            .sites
            .into_iter()
            .map(|s| Site {
                id: SiteId(s.id),
                kind: match s.kind {
                    RawSiteKind::Primary => SiteKind::Primary,
                    RawSiteKind::Backup => SiteKind::Backup,
                    RawSiteKind::Witness => SiteKind::Witness,
                },
            })
            .collect();
        let nodes = raw.nodes.into_iter().map(RawNode::into_node).collect();
        let watches = raw
            .watches
            .into_iter()
            .map(|w| Watch {
                site: SiteId(w.site),
                by: w.by.into_iter().map(SiteId).collect(),
                single_vantage: match w.single_vantage {
                    RawSingleVantage::Refuse => SingleVantage::Refuse,
                    RawSingleVantage::Manual => SingleVantage::Manual,
                },
            })
            .collect();
        let fleet = Fleet {
            timing,
            sites,
            nodes,
            watches,
            hash: hex_sha256(text),
            source: text.to_string(),
        };
        fleet.check(&mut problems);
        if problems.is_empty() {
            Ok(fleet)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Reads and validates the fleet file at `path`. Syntax errors are prefixed with the path.
    pub fn load(path: &Path) -> Result<Fleet, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
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
        for w in &self.watches {
            let by_site = self.voters_by_site(w);
            let total: usize = by_site.values().map(Vec::len).sum();
            if w.single_vantage == SingleVantage::Manual {
                match dominant(&by_site, total) {
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

    /// Every cross-reference rule. Indices in messages are positions in the file (from 0).
    fn check(&self, problems: &mut Vec<String>) {
        check_timing(&self.timing, problems);
        self.check_sites(problems);
        self.check_nodes(problems);
        self.check_watches(problems);
    }

    fn check_sites(&self, problems: &mut Vec<String>) {
        if self.sites.is_empty() {
            problems.push(
                "no [[site]] is defined; add at least the watched site and the sites that watch it"
                    .to_string(),
            );
        }
        let mut first: HashMap<&SiteId, usize> = HashMap::new();
        for (i, s) in self.sites.iter().enumerate() {
            if !is_dns_label(s.id.as_str()) {
                problems.push(format!(
                    "site \"{}\" (site[{i}].id): not a valid DNS label; use 1 to 63 lowercase \
                     letters, digits or '-', not starting or ending with '-'",
                    s.id
                ));
            }
            if let Some(j) = first.insert(&s.id, i) {
                first.insert(&s.id, j);
                problems.push(format!(
                    "site \"{}\" (site[{i}].id): duplicate site id, already defined at \
                     site[{j}]; give each [[site]] its own id",
                    s.id
                ));
            }
        }
    }

    fn check_nodes(&self, problems: &mut Vec<String>) {
        if self.nodes.is_empty() {
            problems.push("no [[node]] is defined; add the nodes of every site".to_string());
        }
        let mut first: HashMap<&NodeId, usize> = HashMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if !is_dns_label(n.id.as_str()) {
                problems.push(format!(
                    "node \"{}\" (node[{i}].id): not a valid DNS label (node ids go into \
                     certificates); use 1 to 63 lowercase letters, digits or '-', not starting \
                     or ending with '-'",
                    n.id
                ));
            }
            if let Some(j) = first.insert(&n.id, i) {
                first.insert(&n.id, j);
                problems.push(format!(
                    "node \"{}\" (node[{i}].id): duplicate node id, already defined at \
                     node[{j}]; give each [[node]] its own id",
                    n.id
                ));
            }
            if self.site(&n.site).is_none() {
                problems.push(format!(
                    "node \"{}\" (node[{i}].site): site \"{}\" is not defined; add a [[site]] \
                     with id = \"{}\" or correct node.site",
                    n.id, n.site, n.site
                ));
            }
            if n.roles == Roles::default() {
                problems.push(format!(
                    "node \"{}\" (node[{i}].roles): roles is empty; give it at least one of \
                     \"indicator\", \"pinger\", \"voter\"",
                    n.id
                ));
            }
        }
        self.check_addresses(problems);
    }

    /// Two nodes may not share a mesh address, an api address, or a concrete bind address
    /// (`0.0.0.0:port` style binds are per host and may repeat).
    fn check_addresses(&self, problems: &mut Vec<String>) {
        let mut mesh: HashMap<SocketAddr, usize> = HashMap::new();
        let mut api: HashMap<SocketAddr, usize> = HashMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if let Some(&j) = mesh.get(&n.mesh) {
                problems.push(format!(
                    "node \"{}\" (node[{i}].mesh): address {} is already the mesh address of \
                     node \"{}\"; give each node its own mesh address",
                    n.id, n.mesh, self.nodes[j].id
                ));
            } else {
                mesh.insert(n.mesh, i);
            }
            if let Some(&j) = api.get(&n.api) {
                problems.push(format!(
                    "node \"{}\" (node[{i}].api): address {} is already the api address of \
                     node \"{}\"; give each node its own api address",
                    n.id, n.api, self.nodes[j].id
                ));
            } else {
                api.insert(n.api, i);
            }
        }
        for (i, n) in self.nodes.iter().enumerate() {
            let Some(bind) = n.mesh_bind.filter(|b| !b.ip().is_unspecified()) else {
                continue;
            };
            for (j, other) in self.nodes.iter().enumerate() {
                if i == j {
                    continue;
                }
                let clash = other.mesh == bind || (other.mesh_bind == Some(bind) && j < i);
                if clash {
                    problems.push(format!(
                        "node \"{}\" (node[{i}].mesh_bind): address {bind} is also the mesh \
                         address or mesh_bind of node \"{}\"; bind each node to its own address \
                         or use 0.0.0.0:port",
                        n.id, other.id
                    ));
                    break;
                }
            }
        }
    }

    fn check_watches(&self, problems: &mut Vec<String>) {
        let mut first: HashMap<&SiteId, usize> = HashMap::new();
        // voter -> the watched sites whose electorate it sits in without a Pinger
        let mut blind: BTreeMap<NodeId, (usize, Vec<&SiteId>)> = BTreeMap::new();
        for (i, w) in self.watches.iter().enumerate() {
            let x = &w.site;
            if let Some(j) = first.insert(x, i) {
                first.insert(x, j);
                problems.push(format!(
                    "watch on {x} (watch[{i}].site): site {x} is already watched by watch[{j}]; \
                     merge the two [[watch]] entries into one"
                ));
                continue;
            }
            if self.site(x).is_none() {
                problems.push(format!(
                    "watch on {x} (watch[{i}].site): site \"{x}\" is not defined; add a \
                     [[site]] with id = \"{x}\" or correct watch.site"
                ));
                continue;
            }
            if w.by.is_empty() {
                problems.push(format!(
                    "watch on {x} (watch[{i}].by): `by` is empty; list the sites whose voters \
                     judge {x}"
                ));
            }
            let mut seen = BTreeSet::new();
            for s in &w.by {
                if s == x {
                    problems.push(format!(
                        "watch on {x} (watch[{i}].by): site {x} cannot watch itself — a site's \
                         own voters cannot tell its loss from their own; remove it from `by`"
                    ));
                } else if self.site(s).is_none() {
                    problems.push(format!(
                        "watch on {x} (watch[{i}].by): site \"{s}\" is not defined; add a \
                         [[site]] with id = \"{s}\" or correct watch.by"
                    ));
                } else if !seen.insert(s) {
                    problems.push(format!(
                        "watch on {x} (watch[{i}].by): site {s} is listed twice; list it once"
                    ));
                }
            }
            if self.indicators(x).is_empty() {
                problems.push(format!(
                    "watch on {x}: site {x} has no node with the indicator role, so Pingers \
                     have nothing to probe; add \"indicator\" to the roles of a node of site {x}"
                ));
            }
            let by_site = self.voters_by_site(w);
            let mut voters: Vec<&NodeId> = by_site.values().flatten().collect();
            voters.sort();
            let total = voters.len();
            if total < 3 {
                problems.push(format!(
                    "watch on {x}: electorate has {total} voters ({}); at least 3 are needed so \
                     that one lost voter does not stall every verdict — add voters to the `by` \
                     sites",
                    list(&voters)
                ));
            }
            if let Some((s, n)) = dominant(&by_site, total) {
                if w.single_vantage == SingleVantage::Refuse {
                    problems.push(format!(
                        "watch on {x} (watch[{i}]): site {s} holds {n} of {total} voters, an \
                         absolute majority of the electorate; a cut between {s} and {x} would \
                         look exactly like a disaster of {x}. Add a witness site with voters to \
                         `by`, or set single_vantage = \"manual\" so that failover waits for an \
                         operator"
                    ));
                }
            }
            for id in voters {
                let node = self.node(id).expect("voters come from the node list");
                if !node.roles.pinger {
                    let idx = self.nodes.iter().position(|n| &n.id == id).unwrap_or(0);
                    blind
                        .entry(id.clone())
                        .or_insert((idx, Vec::new()))
                        .1
                        .push(x);
                }
            }
        }
        for (id, (idx, sites)) in blind {
            problems.push(format!(
                "node \"{id}\" (node[{idx}].roles): voter in the electorate of {} without the \
                 pinger role; its opinion would be empty — voters judge with their own Pinger; \
                 add \"pinger\" to its roles",
                list(&sites)
            ));
        }
    }
}

/// The site holding an absolute majority (more than half) of an electorate, if any.
fn dominant(by_site: &BTreeMap<SiteId, Vec<NodeId>>, total: usize) -> Option<(&SiteId, usize)> {
    by_site
        .iter()
        .map(|(s, v)| (s, v.len()))
        .find(|&(_, n)| total > 0 && n * 2 > total)
}

fn check_timing(t: &Timing, problems: &mut Vec<String>) {
    let mut zero = |key: &str, what: &str, default: &str| {
        problems.push(format!(
            "timing.{key} is 0; {what} — set it to at least 1 (default {default})"
        ));
    };
    if t.probe_interval.is_zero() {
        zero("probe_interval_ms", "probes need a period", "100");
    }
    if t.probe_timeout.is_zero() {
        zero(
            "probe_timeout_ms",
            "no probe could ever answer in time",
            "100",
        );
    }
    if t.retries == 0 {
        zero(
            "retries",
            "an Indicator needs at least one miss to be unreachable",
            "5",
        );
    }
    if t.vote_timeout.is_zero() {
        zero(
            "vote_timeout_ms",
            "no vote round could ever gather answers",
            "300",
        );
    }
    if t.max_vote_rounds == 0 {
        zero("max_vote_rounds", "no vote round would ever run", "3");
    }
    if t.revote_after.is_zero() {
        zero(
            "revote_after_ms",
            "voters would re-ask without pause",
            "5 × probe budget",
        );
    }
    if t.status_interval.is_zero() {
        zero(
            "status_interval_ms",
            "status would be sent without pause",
            "1000",
        );
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
            for w in fleet.warnings() {
                println!("warning: {w}");
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
#[path = "config_tests.rs"]
mod tests;
