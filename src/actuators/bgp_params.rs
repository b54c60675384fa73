//! The params of a bgp step, read once into one typed value: what the step does (`action`),
//! to which prefixes, through which router (`backend` and its keys). `check-config` derives
//! the step's effect on the anycast announcements (`BgpParams::effect`) from the same value
//! the actuator runs with, so the rule "each anycast prefix stays announced by at least one
//! site" judges exactly the prefixes the router is told about. Prefixes are read by
//! `core::net_prefix`, the only prefix parser. This module reads params; it runs nothing.

use super::Params;
use crate::core::anycast::{AddressFamily, BgpAction, BgpEffect, Prefix};
use crate::core::types::SiteId;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// The router a bgp step talks to, with the keys of that backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BgpBackend {
    /// BIRD: the actuator owns `include_file` and reloads BIRD with `birdc configure`.
    Bird {
        include_file: PathBuf,
        /// The control socket (`birdc -s`).
        socket: String,
        /// The birdc program.
        birdc: String,
    },
    /// GoBGP: `gobgp -u HOST -p PORT global rib add|del`.
    Gobgp {
        host: String,
        port: u16,
        /// The gobgp program.
        gobgp: String,
    },
    /// ExaBGP: API commands written into a FIFO its process copies to ExaBGP.
    Exabgp {
        pipe: PathBuf,
        /// What was announced, so a repeated announce writes nothing.
        state_file: PathBuf,
    },
}

impl BgpBackend {
    /// The `backend` word: "bird", "gobgp" or "exabgp".
    pub fn name(&self) -> &'static str {
        match self {
            BgpBackend::Bird { .. } => "bird",
            BgpBackend::Gobgp { .. } => "gobgp",
            BgpBackend::Exabgp { .. } => "exabgp",
        }
    }
}

/// Everything a bgp step's params say, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpParams {
    pub action: BgpAction,
    /// In the step's order; at least one.
    pub prefixes: Vec<Prefix>,
    pub backend: BgpBackend,
    /// Run the router's CLI inside this network namespace (`ip netns exec NS`).
    pub netns: Option<String>,
    /// `dry_run = "skip"`: the step is not run at all during a dry run.
    pub skip_in_dry_run: bool,
}

/// The keys every backend reads.
const COMMON: &[&str] = &["action", "prefixes", "backend", "netns", "dry_run"];

impl BgpParams {
    /// Reads and checks a bgp step's params; the error names the key and the fix.
    pub fn from_params(params: &Value) -> Result<BgpParams, String> {
        let p = Params::new("bgp", params)?;
        let word = p.req_str("action", "\"announce\"")?;
        let action = BgpAction::from_word(&word).ok_or_else(|| {
            p.err(
                "action",
                format!("is {word:?}: use \"announce\" or \"withdraw\""),
            )
        })?;
        let raw = p.opt_str_list("prefixes")?.ok_or_else(|| {
            p.err(
                "prefixes",
                "is missing: add e.g. prefixes = [\"198.19.255.0/24\"]",
            )
        })?;
        if raw.is_empty() {
            return Err(p.err("prefixes", "is empty: list at least one prefix"));
        }
        let prefixes = raw
            .iter()
            .map(|s| Prefix::parse(s).map_err(|e| p.err("prefixes", e)))
            .collect::<Result<Vec<_>, _>>()?;
        let name = p.req_str("backend", "\"bird\" (or \"gobgp\", \"exabgp\")")?;
        let (backend, extra): (BgpBackend, &[&str]) = match name.as_str() {
            "bird" => {
                let families: BTreeSet<AddressFamily> =
                    prefixes.iter().map(Prefix::family).collect();
                if families.len() > 1 {
                    return Err(p.err(
                        "prefixes",
                        "mixes IPv4 and IPv6: a BIRD static protocol has one channel, \
                         use one step (and include file) per address family",
                    ));
                }
                (
                    BgpBackend::Bird {
                        include_file: PathBuf::from(
                            p.req_str("include_file", "\"/etc/bird/quorate-anycast.conf\"")?,
                        ),
                        socket: p
                            .opt_str("socket")?
                            .unwrap_or_else(|| "/run/bird/bird.ctl".into()),
                        birdc: p.opt_str("birdc")?.unwrap_or_else(|| "birdc".into()),
                    },
                    &["include_file", "socket", "birdc"],
                )
            }
            "gobgp" => {
                let api = p
                    .opt_str("api")?
                    .unwrap_or_else(|| "127.0.0.1:50051".into());
                let (host, port) = api
                    .rsplit_once(':')
                    .filter(|(h, _)| !h.is_empty())
                    .and_then(|(h, port)| Some((h, port.parse::<u16>().ok()?)))
                    .ok_or_else(|| p.err("api", format!("is {api:?}: write it as HOST:PORT")))?;
                (
                    BgpBackend::Gobgp {
                        host: host.trim_matches(['[', ']']).to_string(),
                        port,
                        gobgp: p.opt_str("gobgp")?.unwrap_or_else(|| "gobgp".into()),
                    },
                    &["api", "gobgp"],
                )
            }
            "exabgp" => {
                let pipe = PathBuf::from(p.req_str("pipe", "\"/run/quorate/exabgp.fifo\"")?);
                let state_file = match p.opt_str("state_file")? {
                    Some(s) => PathBuf::from(s),
                    None => {
                        let mut s = pipe.clone().into_os_string();
                        s.push(".state");
                        PathBuf::from(s)
                    }
                };
                (
                    BgpBackend::Exabgp { pipe, state_file },
                    &["pipe", "state_file"],
                )
            }
            other => {
                return Err(p.err(
                    "backend",
                    format!("is {other:?}: use \"bird\", \"gobgp\" or \"exabgp\""),
                ))
            }
        };
        let known: Vec<&str> = COMMON.iter().chain(extra).copied().collect();
        p.only(&known)?;
        Ok(BgpParams {
            action,
            prefixes,
            backend,
            netns: p.opt_str("netns")?,
            skip_in_dry_run: p.dry_run_skip()?,
        })
    }

    /// What the step does to the announcements of `site` (the step's `site` key).
    pub fn effect(&self, site: SiteId) -> BgpEffect {
        BgpEffect {
            action: self.action,
            site,
            prefixes: self.prefixes.clone(),
        }
    }
}
