//! The periodic status: what this node tells the nodes it talks with every status interval
//! (and a peer whose connection just came up), and what it takes from theirs.
//!
//! A Pinger's or voter's status (its opinions, the newest verdicts and maintenance calls it
//! knows, its fleet version) goes to every node it holds a connection with, every interval;
//! but a node it speaks with only through probes (an Indicator-only node its Pinger probes,
//! `Fleet::probes_only`) gets it only when its verdicts, maintenance calls or fleet version
//! changed, when their connection comes up, and once every `QUIET_STATUS_EVERY` intervals
//! as anti-entropy. What such a node reads in every status, the
//! opinion of its own site for its self-fence, each probe already carries, ten times a
//! second by default (`ProbesHeard`). So the pair has nothing routine to say, and the mesh
//! closes its connection once idle, keeping the probe sessions (docs/trust.md, "Quiet
//! pairs"): a Pinger of a thousand Indicators holds a thousand probe sessions, not a
//! thousand QUIC connections. An Indicator-only node has no opinions and originates
//! nothing else (docs/trust.md); what it could relay, the voters already know. Its status
//! only says which fleet version it runs, for the voters' mismatch check, so it goes to the
//! voters alone, when that version changed, when a connection comes up, and to the voters
//! that do not probe it every `INDICATOR_STATUS_EVERY` intervals.

use super::*;

/// An Indicator-only node sends its status to the voters that do not probe it every this
/// many status intervals (besides news and new connections). Between those, a status would
/// say nothing new.
pub const INDICATOR_STATUS_EVERY: u64 = 30;

/// News (a change of the verdicts, maintenance calls or fleet version a status carries) goes
/// to everyone in this many consecutive status intervals: a lost one is made good by the
/// next, and for a quiet pair all of them ride the one connection its first one dials.
pub const NEWS_SENDS: u64 = 3;

/// A node sends its status to each peer it speaks with only through probes once every this
/// many status intervals, besides news: anti-entropy for news a peer missed (its connection
/// could not be dialed then). Each such status dials the pair's connection, which also
/// brings the peer's status back; at the default 1 s interval, once every 5 minutes.
pub const QUIET_STATUS_EVERY: u64 = 300;

/// The newest probe a Pinger sent this node since the last report (`Input::ProbesHeard`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeHeard {
    pub pinger: NodeId,
    /// When it arrived (monotonic).
    pub at: Time,
    /// What the Pinger thought of this node's site when it sent it.
    pub opinion: Opinion,
}

impl NodeCore {
    pub(super) fn on_status(&mut self, now: Now, from: NodeId, status: PeerStatus) {
        if status.node != from {
            warn!(peer = %from, claimed = %status.node, "status names another node; ignored");
            return;
        }
        // Only a peer that also sees this site up counts against fencing it: a peer heard one
        // way but unable to reach the site would vote it DOWN all the same.
        for (s, r) in &status.opinions {
            if r.opinion == Opinion::Up {
                self.runs.seen_up.insert(s.clone());
            }
        }
        let sees_us_up = status.opinions.iter().any(|(s, r)| {
            s == &self.me.site && matches!(r.opinion, Opinion::Up | Opinion::Suspect)
        });
        if sees_us_up {
            if let Some(iso) = self.isolation.as_mut() {
                iso.fence.peer_seen(now.mono, &from);
            }
        }
        for v in status.verdicts {
            self.voter.learn_from(now.mono, &from, v);
        }
        if !self.abstains() {
            self.voter.resolve_leads(now.mono, &self.pinger);
        }
        self.learn_maintenance(now, &from, status.maintenance);
        self.peers.heard(
            now.mono,
            &from,
            status.fleet_hash,
            status.opinions,
            &self.fleet.hash,
        );
    }

    /// Probes this node answered: a Pinger that sees this node's site UP (or only suspects
    /// it) counts as heard by the self-fence, as its status would. Only the fence's
    /// electorate counts there, and a probe's opinion is sealed under the session key of the
    /// Pinger's certificate, so nobody else can speak for it.
    pub(super) fn on_probes_heard(&mut self, now: Now, heard: Vec<ProbeHeard>) {
        for h in heard {
            // Never later than now: the fence's clock must not run ahead of the core's.
            let at = h.at.min(now.mono);
            if self.fleet.node(&h.pinger).is_none() {
                continue;
            }
            self.peers.probed_by(at, &h.pinger);
            let Some(iso) = self.isolation.as_mut() else {
                continue;
            };
            if matches!(h.opinion, Opinion::Up | Opinion::Suspect) {
                iso.fence.peer_seen(at, &h.pinger);
            }
        }
    }

    /// Every status interval: this node's status to those it goes to. The peers it speaks
    /// with only through probes (`quiet`) get it with news (`NEWS_SENDS` intervals running)
    /// and each once every `QUIET_STATUS_EVERY` intervals, at its own phase; in between the
    /// mesh keeps their connection closed.
    pub(super) fn send_status(&mut self, now: Now) {
        let tick = self.status_ticks;
        self.status_ticks += 1;
        let status = self.status(now.mono);
        let (v, m, h) = &self.relayed;
        if *v != status.verdicts || *m != status.maintenance || *h != status.fleet_hash {
            let (v, m, h) = (&status.verdicts, &status.maintenance, &status.fleet_hash);
            self.relayed = (v.clone(), m.clone(), h.clone());
            self.news_left = NEWS_SENDS;
        }
        let telling = self.news_left > 0;
        self.news_left = self.news_left.saturating_sub(1);
        if !self.me.is_indicator_only() {
            let except = if telling {
                Vec::new()
            } else {
                // Spread over the period: a Pinger of a thousand Indicators dials about three
                // of them per interval, never all at once.
                self.quiet
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| (*i as u64 + tick) % QUIET_STATUS_EVERY != 0)
                    .map(|(_, id)| id.clone())
                    .collect()
            };
            let msg = Message::Status(status);
            self.actions.push_back(Action::Broadcast { msg, except });
            return;
        }
        // The voters that probe this node send their status now and then over a connection
        // they dial (`QUIET_STATUS_EVERY`), and a new connection carries this node's status
        // back (`on_peer_connected`): they need no periodic status of their own.
        let periodic = tick % INDICATOR_STATUS_EVERY == 0;
        if !telling && !periodic {
            return;
        }
        let msg = Message::Status(status);
        let voters: Vec<NodeId> = self
            .fleet
            .nodes
            .iter()
            .filter(|n| self.status_goes_to(n))
            .filter(|n| telling || self.quiet.binary_search(&n.id).is_err())
            .map(|n| n.id.clone())
            .collect();
        for to in voters {
            self.actions.push_back(Action::Send {
                to,
                msg: msg.clone(),
            });
        }
    }

    pub(super) fn on_peer_connected(&mut self, now: Now, peer: &NodeId) {
        if self
            .fleet
            .node(peer)
            .is_some_and(|n| self.status_goes_to(n))
        {
            self.actions.push_back(Action::Send {
                to: peer.clone(),
                msg: Message::Status(self.status(now.mono)),
            });
        }
    }

    /// A Pinger's or voter's status goes to every node it talks with (what a `Broadcast`
    /// reaches), an Indicator-only node's to the voters.
    fn status_goes_to(&self, node: &Node) -> bool {
        if self.me.is_indicator_only() {
            node.roles.voter && node.id != self.me.id
        } else {
            self.me.talks_with(node)
        }
    }

    fn status(&self, t: Time) -> PeerStatus {
        // An Indicator-only node watches no site, and what it would relay the voters, its
        // only readers, told it: its status is its fleet version.
        let relays = !self.me.is_indicator_only();
        PeerStatus {
            node: self.me.id.clone(),
            fleet_hash: self.fleet.hash.clone(),
            opinions: self
                .pinger
                .watched_sites()
                .map(|s| (s.clone(), self.pinger.report(s, t)))
                .collect(),
            // The newest verdict per site: bounded by the number of sites.
            verdicts: if relays {
                self.voter.verdicts().cloned().collect()
            } else {
                Vec::new()
            },
            maintenance: if relays {
                self.operator.maintenance.windows().cloned().collect()
            } else {
                Vec::new()
            },
        }
    }
}
