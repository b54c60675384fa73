//! The registry half of the SQLite store: the current fleet as rows (sites, nodes, watches,
//! timing) and the history of every fleet file loaded.

use super::SqliteStore;
use crate::config::{
    FailoverPlan, Fleet, Node, Roles, SingleVantage, Site, SiteKind, Timing, Watch,
};
use crate::core::types::{NodeId, SiteId};
use crate::store::{FleetVersion, StoreError};
use rusqlite::{params, OptionalExtension};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

impl SqliteStore {
    pub(super) fn save_fleet_rows(
        &mut self,
        fleet: &Fleet,
        loaded_at_unix_ms: i64,
    ) -> Result<(), StoreError> {
        let timing = timing_rows(&fleet.timing)?;
        let tx = self.write_txn()?;
        tx.execute_batch(
            "DELETE FROM sites; DELETE FROM nodes; DELETE FROM watches; DELETE FROM timing;",
        )?;
        for s in &fleet.sites {
            tx.execute(
                "INSERT INTO sites (id, kind) VALUES (?1, ?2)",
                params![s.id.as_str(), kind_str(s.kind)],
            )?;
        }
        for n in &fleet.nodes {
            tx.execute(
                "INSERT INTO nodes (id, site, roles, mesh, mesh_bind, api)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    n.id.as_str(),
                    n.site.as_str(),
                    roles_json(n.roles),
                    n.mesh.to_string(),
                    n.mesh_bind.map(|a| a.to_string()),
                    n.api.to_string(),
                ],
            )?;
        }
        for w in &fleet.watches {
            let by: Vec<&str> = w.by.iter().map(SiteId::as_str).collect();
            tx.execute(
                "INSERT INTO watches (site, by_sites, single_vantage, has_plan)
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    w.site.as_str(),
                    json(&by),
                    single_vantage_str(w.single_vantage),
                    w.plan.is_some(),
                ],
            )?;
        }
        for (key, value) in timing {
            tx.execute(
                "INSERT INTO timing (key, value) VALUES (?1, ?2)",
                params![key, value],
            )?;
        }
        tx.execute(
            "INSERT INTO fleet_versions (hash, text, loaded_at_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (hash) DO NOTHING",
            params![fleet.hash, fleet.source, loaded_at_unix_ms],
        )?;
        tx.execute(
            "INSERT INTO fleet_current (id, hash) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET hash = excluded.hash",
            [&fleet.hash],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub(super) fn current_fleet_hash(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT hash FROM fleet_current WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()?)
    }

    pub(super) fn read_fleet(&self) -> Result<Option<Fleet>, StoreError> {
        // One read transaction: the registry tables are a single snapshot.
        let tx = self.conn.unchecked_transaction()?;
        let current: Option<(String, String)> = tx
            .query_row(
                "SELECT v.hash, v.text FROM fleet_current c
                 JOIN fleet_versions v ON v.hash = c.hash WHERE c.id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((hash, source)) = current else {
            return Ok(None);
        };

        let mut sites = Vec::new();
        {
            let mut stmt = tx.prepare("SELECT id, kind FROM sites ORDER BY rowid")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let kind: String = r.get(1)?;
                sites.push(Site {
                    id: SiteId(r.get(0)?),
                    kind: parse_kind(&kind)?,
                });
            }
        }
        let mut nodes = Vec::new();
        {
            let mut stmt = tx.prepare(
                "SELECT id, site, roles, mesh, mesh_bind, api FROM nodes ORDER BY rowid",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let roles: String = r.get(2)?;
                let mesh_bind: Option<String> = r.get(4)?;
                nodes.push(Node {
                    id: NodeId::from(r.get::<_, String>(0)?),
                    site: SiteId(r.get(1)?),
                    roles: parse_roles(&roles)?,
                    mesh: parse_addr("mesh", &r.get::<_, String>(3)?)?,
                    mesh_bind: mesh_bind.map(|a| parse_addr("mesh_bind", &a)).transpose()?,
                    api: parse_addr("api", &r.get::<_, String>(5)?)?,
                });
            }
        }
        let mut watches = Vec::new();
        // Failover plans are not kept as rows: they come from the stored fleet text, parsed
        // once and only when a watch has one.
        let mut parsed: Option<Fleet> = None;
        {
            let mut stmt = tx.prepare(
                "SELECT site, by_sites, single_vantage, has_plan FROM watches ORDER BY rowid",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let by: String = r.get(1)?;
                let by: Vec<String> = serde_json::from_str(&by)
                    .map_err(|e| StoreError::Corrupt(format!("watches.by_sites {by:?}: {e}")))?;
                let sv: String = r.get(2)?;
                let site = SiteId(r.get(0)?);
                let plan = if r.get::<_, bool>(3)? {
                    Some(plan_from_source(&source, &hash, &site, &mut parsed)?)
                } else {
                    None
                };
                watches.push(Watch {
                    site,
                    by: by.into_iter().map(SiteId).collect(),
                    single_vantage: parse_single_vantage(&sv)?,
                    plan,
                });
            }
        }
        let mut timing = BTreeMap::new();
        {
            let mut stmt = tx.prepare("SELECT key, value FROM timing")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                timing.insert(r.get::<_, String>(0)?, r.get::<_, i64>(1)?);
            }
        }
        // Not stored in their own tables: read back from the stored text.
        let (api, service, notify, alarm_sources) = Fleet::parse(&source)
            .map(|f| (f.api, f.service, f.notify, f.alarm_sources))
            .unwrap_or_default();
        Ok(Some(Fleet {
            timing: timing_from_rows(&timing)?,
            sites,
            nodes,
            watches,
            api,
            service,
            notify,
            alarm_sources,
            hash,
            source,
        }))
    }

    pub(super) fn read_fleet_history(&self) -> Result<Vec<FleetVersion>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT hash, text, loaded_at_ms FROM fleet_versions ORDER BY loaded_at_ms, rowid",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(FleetVersion {
                hash: r.get(0)?,
                text: r.get(1)?,
                loaded_at_unix_ms: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn kind_str(k: SiteKind) -> &'static str {
    match k {
        SiteKind::Primary => "primary",
        SiteKind::Backup => "backup",
        SiteKind::Witness => "witness",
    }
}

fn parse_kind(s: &str) -> Result<SiteKind, StoreError> {
    match s {
        "primary" => Ok(SiteKind::Primary),
        "backup" => Ok(SiteKind::Backup),
        "witness" => Ok(SiteKind::Witness),
        _ => Err(StoreError::Corrupt(format!("unknown site kind {s:?}"))),
    }
}

fn single_vantage_str(s: SingleVantage) -> &'static str {
    match s {
        SingleVantage::Refuse => "refuse",
        SingleVantage::Manual => "manual",
    }
}

fn parse_single_vantage(s: &str) -> Result<SingleVantage, StoreError> {
    match s {
        "refuse" => Ok(SingleVantage::Refuse),
        "manual" => Ok(SingleVantage::Manual),
        _ => Err(StoreError::Corrupt(format!("unknown single_vantage {s:?}"))),
    }
}

fn roles_json(r: Roles) -> String {
    let mut names = Vec::new();
    if r.indicator {
        names.push("indicator");
    }
    if r.pinger {
        names.push("pinger");
    }
    if r.voter {
        names.push("voter");
    }
    json(&names)
}

fn parse_roles(s: &str) -> Result<Roles, StoreError> {
    let names: Vec<String> = serde_json::from_str(s)
        .map_err(|e| StoreError::Corrupt(format!("nodes.roles {s:?}: {e}")))?;
    let mut roles = Roles::default();
    for name in names {
        match name.as_str() {
            "indicator" => roles.indicator = true,
            "pinger" => roles.pinger = true,
            "voter" => roles.voter = true,
            _ => return Err(StoreError::Corrupt(format!("unknown role {name:?}"))),
        }
    }
    Ok(roles)
}

fn json(names: &[&str]) -> String {
    serde_json::to_string(names).expect("a list of strings always serializes")
}

fn parse_addr(column: &str, s: &str) -> Result<SocketAddr, StoreError> {
    s.parse()
        .map_err(|e| StoreError::Corrupt(format!("nodes.{column} {s:?}: {e}")))
}

// Timing rows: durations in microseconds (the fast profiles go below a millisecond), counts
// as they are. The key names carry the unit so that the table reads on its own.
fn timing_rows(t: &Timing) -> Result<Vec<(&'static str, i64)>, StoreError> {
    let us = |key: &'static str, d: Duration| {
        i64::try_from(d.as_micros())
            .map(|v| (key, v))
            .map_err(|_| StoreError::Corrupt(format!("timing {key} {d:?} does not fit")))
    };
    Ok(vec![
        us("probe_interval_us", t.probe_interval)?,
        us("probe_timeout_us", t.probe_timeout)?,
        ("retries", i64::from(t.retries)),
        us("vote_timeout_us", t.vote_timeout)?,
        ("max_vote_rounds", i64::from(t.max_vote_rounds)),
        us("hold_down_us", t.hold_down)?,
        us("revote_after_us", t.revote_after)?,
        us("status_interval_us", t.status_interval)?,
    ])
}

fn timing_from_rows(rows: &BTreeMap<String, i64>) -> Result<Timing, StoreError> {
    let get = |key: &str| {
        rows.get(key)
            .copied()
            .ok_or_else(|| StoreError::Corrupt(format!("timing row {key} is missing")))
    };
    let us = |key: &str| {
        let v = get(key)?;
        u64::try_from(v)
            .map(Duration::from_micros)
            .map_err(|_| StoreError::Corrupt(format!("timing {key} is negative: {v}")))
    };
    let count = |key: &str| {
        let v = get(key)?;
        u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("timing {key} out of range: {v}")))
    };
    Ok(Timing {
        probe_interval: us("probe_interval_us")?,
        probe_timeout: us("probe_timeout_us")?,
        retries: count("retries")?,
        vote_timeout: us("vote_timeout_us")?,
        max_vote_rounds: count("max_vote_rounds")?,
        hold_down: us("hold_down_us")?,
        revote_after: us("revote_after_us")?,
        status_interval: us("status_interval_us")?,
    })
}

/// The failover plan of `site`'s watch in the stored fleet text. The text was valid when it
/// was saved; if this build no longer accepts it, or it lost the plan, the store is not
/// trusted to invent one.
fn plan_from_source(
    source: &str,
    hash: &str,
    site: &SiteId,
    parsed: &mut Option<Fleet>,
) -> Result<FailoverPlan, StoreError> {
    if parsed.is_none() {
        let fleet = Fleet::parse(source).map_err(|e| {
            StoreError::Corrupt(format!(
                "the stored fleet {hash} has failover plans but its text no longer parses: {e}"
            ))
        })?;
        *parsed = Some(fleet);
    }
    parsed
        .as_ref()
        .and_then(|f| f.watches.iter().find(|w| w.site == *site))
        .and_then(|w| w.plan.clone())
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "the stored fleet {hash} marks a failover plan for site {site} that its text lacks"
            ))
        })
}
