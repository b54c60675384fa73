//! The cross-reference rules of a fleet file. Indices in messages are positions in the file
//! (from 0).

use super::*;

impl Fleet {
    /// Every cross-reference rule. Indices in messages are positions in the file (from 0).
    pub(super) fn check(&self, problems: &mut Vec<String>) {
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
pub(super) fn dominant(
    by_site: &BTreeMap<SiteId, Vec<NodeId>>,
    total: usize,
) -> Option<(&SiteId, usize)> {
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
