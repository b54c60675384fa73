//! The JSON bodies the REST API answers with and accepts, as types: the handlers build their
//! answers from them and the OpenAPI document (`doc.rs`) is derived from the same types, so
//! the two cannot drift apart.

use crate::core::types::{NodeId, SiteId};
use crate::node::snapshot::{
    run_state, FailoverStepView, FailoverView, IsolationView, NodeSnapshot, PeerView, SiteView,
    VerdictView,
};
use crate::node::CommandOk;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use utoipa::openapi::{ObjectBuilder, RefOr, Schema, Type};
use utoipa::{IntoParams, PartialSchema, ToSchema};

/// Node and site ids are plain strings on the wire (`#[serde(transparent)]`-like newtypes of
/// the core, which knows nothing of OpenAPI).
macro_rules! string_schema {
    ($t:ty, $name:literal, $what:literal) => {
        impl PartialSchema for $t {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some($what))
                    .into()
            }
        }
        impl ToSchema for $t {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

string_schema!(NodeId, "NodeId", "A node id of the fleet file.");
string_schema!(SiteId, "SiteId", "A site id of the fleet file.");

/// The fixed words of the API's string fields, for `#[schema(schema_with = ...)]`: the
/// document lists them, and schemathesis refuses an answer with any other.
pub mod words {
    use utoipa::openapi::{Object, ObjectBuilder, Type};

    fn of(values: &[&'static str]) -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(values.iter().copied()))
            .build()
    }

    /// A node's own opinion of a site.
    pub fn opinion() -> Object {
        of(&["up", "down", "unknown"])
    }

    /// What an alarm of a site does.
    pub fn on_alarm() -> Object {
        of(&["notify", "prestage", "failover"])
    }

    /// Whether an alarm call raised or cleared its alarm.
    pub fn alarm_state() -> Object {
        of(&["raised", "cleared"])
    }

    /// A site's committed verdict, "none" before the first.
    pub fn verdict() -> Object {
        of(&["up", "down", "none"])
    }

    /// A committed verdict.
    pub fn outcome() -> Object {
        of(&["up", "down"])
    }

    pub fn health() -> Object {
        of(&["ok", "degraded", "stale"])
    }

    /// What started a failover run.
    pub fn trigger() -> Object {
        of(&[
            "verdict", "manual", "failback", "prestage", "unstage", "alarm",
        ])
    }

    /// Where a failover run is.
    pub fn run_state() -> Object {
        of(&[
            "waiting",
            "running",
            "dropped",
            "succeeded",
            "precheck_failed",
            "aborted",
            "compensated",
        ])
    }

    /// What a node's probe answers say of its service (its `[[site.check]]`s).
    pub fn service_health() -> Object {
        of(&["unchecked", "pending", "passing", "failing"])
    }

    /// How a watch judges its site.
    pub fn judge() -> Object {
        of(&["host", "service"])
    }

    /// How a finished run (or a drill) ended.
    pub fn outcome_state() -> Object {
        of(&[
            "succeeded",
            "precheck_failed",
            "aborted",
            "compensated",
            "dropped",
        ])
    }
}

/// Every refusal: what went wrong, in words. A refused failover whose site's operator lock
/// another call won also names that call's run and its leader, so that a script can follow
/// the run that goes ahead.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    /// `SITE-EPOCH` of the run that goes ahead (409 on a lost operator lock only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// The node leading that run (409 on a lost operator lock only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<NodeId>,
}

impl ErrorBody {
    pub fn new(msg: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: msg.into(),
            run: None,
            leader: None,
        }
    }
}

/// `GET /healthz`: "ok" (200), or "degraded" (voting disabled) / "stale" (the node's event
/// loop stopped publishing) with the reason (503).
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(schema_with = words::health)]
    pub status: &'static str,
    pub node: NodeId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One watched site in short (`/v1/status`, `/v1/sites`); `/v1/sites/{id}` has the whole view.
#[derive(Debug, Serialize, ToSchema)]
pub struct SiteSummary {
    pub id: SiteId,
    /// This node's own opinion: "up" | "down" | "unknown".
    #[schema(schema_with = words::opinion)]
    pub opinion: &'static str,
    /// The committed verdict: "up" | "down" | "none".
    #[schema(schema_with = words::verdict)]
    pub verdict: &'static str,
    pub epoch: Option<u64>,
    /// When this node learned the verdict (RFC 3339, UTC).
    pub decided_at: Option<String>,
    pub leader: Option<NodeId>,
    /// "automatic", or "manual: <why>".
    pub failover: String,
    /// How the watch judges the site: "host", or "service" (answers saying the service
    /// checks fail count as misses).
    #[schema(schema_with = words::judge)]
    pub judge: &'static str,
    /// No second automatic failover of this site before this time (RFC 3339, UTC).
    pub hold_down_until: Option<String>,
    /// No automatic failover of this site starts on this node before this time.
    pub maintenance_until: Option<String>,
    /// What an alarm of the site does: "notify", "prestage" or "failover".
    #[schema(schema_with = words::on_alarm)]
    pub on_alarm: &'static str,
    /// The raised alarms of the site.
    pub alarms: Vec<crate::node::snapshot::AlarmView>,
}

impl SiteSummary {
    pub fn of(v: &SiteView) -> SiteSummary {
        SiteSummary {
            id: v.id.clone(),
            opinion: v.opinion,
            verdict: v.verdict,
            epoch: v.epoch,
            decided_at: v.decided_at.clone(),
            leader: v.leader.clone(),
            failover: v.failover.clone(),
            judge: v.judge,
            hold_down_until: v.hold_down_until.clone(),
            maintenance_until: v.maintenance_until.clone(),
            on_alarm: v.on_alarm,
            alarms: v.alarms.clone(),
        }
    }
}

/// `GET /v1/alarms`: every alarm call this node knows, raised or cleared (the newest per site
/// and source).
#[derive(Debug, Serialize, ToSchema)]
pub struct AlarmList {
    pub alarms: Vec<crate::node::snapshot::AlarmView>,
}

/// `GET /v1/status`: this node, its peers and the sites it watches.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    pub node: NodeId,
    pub site: SiteId,
    /// "indicator", "pinger", "voter".
    pub roles: Vec<&'static str>,
    /// The hash of the fleet file this node runs.
    pub fleet_hash: String,
    /// The last fleet file change that could not be applied, and why.
    pub fleet_error: Option<String>,
    /// Peers that last reported a different fleet file hash.
    pub fleet_mismatch: Vec<NodeId>,
    /// Set when this node could not make its vote durable and stopped voting.
    pub voting_disabled: Option<String>,
    /// Self-fencing of this node's own site; null when the site has no isolation steps.
    pub isolation: Option<IsolationView>,
    /// What this node's probe answers say of its service.
    #[schema(schema_with = words::service_health)]
    pub service_health: &'static str,
    /// This node's own service checks (`[[site.check]]` of its site), in file order.
    pub service_checks: Vec<crate::health::CheckView>,
    pub peers: Vec<PeerView>,
    pub sites: Vec<SiteSummary>,
}

impl Status {
    pub fn of(snap: &NodeSnapshot) -> Status {
        let mismatched = super::fleet_mismatch(snap)
            .map(|p| p.node.clone())
            .collect();
        Status {
            node: snap.node.clone(),
            site: snap.site.clone(),
            roles: snap.roles.clone(),
            fleet_hash: snap.fleet_hash.clone(),
            fleet_error: snap.fleet_error.clone(),
            fleet_mismatch: mismatched,
            voting_disabled: snap.voting_disabled.clone(),
            isolation: snap.isolation.clone(),
            service_health: snap.service_health,
            service_checks: snap.service_checks.clone(),
            peers: snap.peers.clone(),
            sites: snap.sites.iter().map(SiteSummary::of).collect(),
        }
    }
}

/// `GET /v1/sites`
#[derive(Debug, Serialize, ToSchema)]
pub struct Sites {
    pub sites: Vec<SiteSummary>,
}

/// `GET /v1/verdicts`: committed verdicts, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct Verdicts {
    pub verdicts: Vec<VerdictView>,
}

/// `GET /v1/failovers`: the runs this node leads or led.
#[derive(Debug, Serialize, ToSchema)]
pub struct Failovers {
    pub failovers: Vec<FailoverView>,
}

/// The query of `GET /v1/verdicts`; any other parameter is refused (400).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // The handler reads the raw query to name a bad parameter itself.
pub struct VerdictQuery {
    /// Only this site's verdicts (404 when the fleet watches no such site).
    pub site: Option<String>,
    /// At most this many verdicts (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// `POST /v1/failovers` and `POST /v1/failbacks` (202): the run that started.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunStarted {
    /// `SITE-EPOCH`: `GET /v1/failovers/{id}` follows it.
    pub id: String,
    pub site: SiteId,
    pub epoch: u64,
    /// "manual" or "failback".
    #[schema(schema_with = words::trigger)]
    pub trigger: &'static str,
    pub leader: NodeId,
    /// The operator's reason (manual failovers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether the failover was forced (manual failovers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub force: Option<bool>,
}

/// `POST /v1/drills` (200): the dry run of a site's plan, once it is over.
#[derive(Debug, Serialize, ToSchema)]
pub struct DrillReport {
    pub site: SiteId,
    pub epoch: u64,
    /// Always true: a drill changes nothing.
    pub dry_run: bool,
    /// The outcome: "succeeded", "precheck_failed", "aborted", "compensated", "dropped".
    #[schema(schema_with = words::outcome_state)]
    pub state: &'static str,
    /// The run succeeded and every step with it.
    pub ok: bool,
    pub summary: String,
    pub steps: Vec<FailoverStepView>,
}

/// `POST|DELETE /v1/sites/{id}/maintenance` (200): the site's maintenance window now.
#[derive(Debug, Serialize, ToSchema)]
pub struct Maintenance {
    pub site: SiteId,
    /// When the window ends (RFC 3339, UTC); null: no maintenance.
    pub maintenance_until: Option<String>,
}

/// What a command that did what it was asked answers.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum CommandAnswer {
    RunStarted(RunStarted),
    Drill(DrillReport),
    Maintenance(Maintenance),
    Alarm(crate::node::snapshot::AlarmView),
}

impl CommandAnswer {
    pub fn of(ok: &CommandOk) -> CommandAnswer {
        match ok {
            CommandOk::RunStarted {
                site,
                epoch,
                trigger,
                leader,
                reason,
                force,
            } => CommandAnswer::RunStarted(RunStarted {
                id: format!("{site}-{epoch}"),
                site: site.clone(),
                epoch: *epoch,
                trigger: trigger.as_str(),
                leader: leader.clone(),
                reason: reason.clone(),
                force: *force,
            }),
            CommandOk::Drill(r) => CommandAnswer::Drill(DrillReport {
                site: r.site.clone(),
                epoch: r.epoch,
                dry_run: true,
                state: run_state(&r.outcome),
                ok: r.outcome.is_success() && r.steps.iter().all(|s| s.ok),
                summary: r.outcome.summary(),
                steps: r.steps.iter().map(FailoverStepView::of).collect(),
            }),
            CommandOk::Maintenance {
                site,
                until_unix_ms,
            } => CommandAnswer::Maintenance(Maintenance {
                site: site.clone(),
                maintenance_until: until_unix_ms.map(crate::node::snapshot::rfc3339),
            }),
            CommandOk::Alarm(a) => CommandAnswer::Alarm(crate::node::snapshot::AlarmView::of(a)),
        }
    }
}

/// `POST /v1/failovers`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailoverBody {
    /// The site to fail over.
    #[schema(example = "a")]
    pub site: String,
    /// Why, in words (not blank); kept with the run.
    #[schema(example = "planned move to b", min_length = 1, pattern = r"\S")]
    pub reason: String,
    /// Lets the run's bgp steps break the anycast rule (leave a prefix announced nowhere).
    #[serde(default)]
    pub force: bool,
}

/// `POST /v1/alarms`: raises an alarm of a site.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlarmBody {
    #[schema(example = "a")]
    pub site: String,
    /// Who raises it: letters, digits, '-', '_', '.'; at most 64 bytes.
    #[schema(
        example = "fire-a",
        min_length = 1,
        max_length = 64,
        pattern = r"^[A-Za-z0-9._-]+$"
    )]
    pub source: String,
    pub severity: crate::wire::AlarmSeverity,
    /// Why, in words; at most 512 characters.
    #[schema(example = "smoke detected in hall 2", max_length = 512)]
    #[serde(default)]
    pub reason: String,
}

/// `POST /v1/alarms/hooks/{name}`: an alarm source raises or clears its alarm of a site.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlarmHookBody {
    #[schema(example = "a")]
    pub site: String,
    /// "raised" or "cleared".
    #[schema(schema_with = words::alarm_state)]
    pub state: String,
    /// Default "critical"; kept from the raised alarm on a clear.
    #[serde(default)]
    pub severity: Option<crate::wire::AlarmSeverity>,
    /// At most 512 characters.
    #[schema(example = "smoke detected in hall 2", max_length = 512)]
    #[serde(default)]
    pub reason: String,
}

/// `POST /v1/drills`, `POST /v1/failbacks`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteBody {
    #[schema(example = "a")]
    pub site: String,
}

/// `POST /v1/sites/{id}/maintenance`: exactly one of `until` and `duration_s` (the schema is
/// written out below, since serde's two optional fields say less than the rule).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceBody {
    /// When the window ends: RFC 3339 UTC (formatted as 2030-01-31T22:00:00Z), in the future
    /// and at most 90 days ahead.
    pub until: Option<String>,
    /// How long the window lasts from now, in seconds (at least 1, at most 90 days).
    pub duration_s: Option<f64>,
}

impl PartialSchema for MaintenanceBody {
    fn schema() -> RefOr<Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, OneOfBuilder};
        let only = |field: &str, schema: ObjectBuilder| {
            ObjectBuilder::new()
                .property(field, schema)
                .required(field)
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        };
        let until = ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::DateTime,
            )))
            .pattern(Some(
                r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z$",
            ))
            .description(Some(
                "When the window ends: RFC 3339 UTC (formatted as 2030-01-31T22:00:00Z), \
                 in the future and at most 90 days ahead",
            ));
        let duration = ObjectBuilder::new()
            .schema_type(Type::Number)
            .minimum(Some(MIN_MAINTENANCE_S))
            .maximum(Some(MAX_MAINTENANCE_S))
            .description(Some("How long the window lasts from now, in seconds"));
        OneOfBuilder::new()
            .item(only("until", until))
            .item(only("duration_s", duration))
            .description(Some("Exactly one of until and duration_s"))
            .into()
    }
}

impl ToSchema for MaintenanceBody {}

/// The shortest maintenance window `duration_s` may ask for: a shorter one could end before
/// the node has taken it in, and would be refused as ending in the past.
pub const MIN_MAINTENANCE_S: f64 = 1.0;

/// The longest maintenance window `duration_s` may ask for: the node's own bound (90 days).
pub const MAX_MAINTENANCE_S: f64 = (crate::core::maintenance::MAX_HORIZON_MS / 1000) as f64;
