//! `/metrics`: what the node counted and what it believes now, in the Prometheus text format
//! (version 0.0.4, which `promtool check metrics` reads), encoded by the `prometheus-client`
//! crate. It reads state and never changes it.
//!
//! Every name gets the `quorate_` prefix from the registry, and every counter the `_total`
//! suffix from the encoder: names here carry neither. A metric joins one of two kinds:
//! - **Read off the published snapshot** at each scrape, by one collector, so a scrape shows
//!   one snapshot. A plain counter (a driver counter, a `MeshStats` field) is one row of
//!   `COUNTERS` in `counters.rs`: name, help, the field it reads. A labelled counter or a
//!   histogram is one `Out` call in `counters::encode`; a gauge of what the node believes
//!   now (sites, peers, Indicators, certificates) is one `Out` call in `state.rs`.
//! - **Live** prometheus-client metrics, updated where things happen and registered once in
//!   [`registry`]: the REST server's own counters (`ServeStats`) and the build.
//!
//! Each metric also has one line in docs/metrics.md; tests/metrics.rs checks that list against
//! what a live node exports, and the shipped alerts and dashboard (contrib/) against the list.

mod counters;
mod state;
#[cfg(test)]
mod tests;

use super::ServeStats;
use crate::node::snapshot::{Histogram, NodeSnapshot};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::fmt;
use std::sync::Arc;
use tokio::sync::watch;

/// The `Content-Type` of what [`encode`] writes.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Every metric of a node: the snapshot `snapshot` publishes, the REST server's `serve`
/// counters and the build.
pub fn registry(snapshot: watch::Receiver<Arc<NodeSnapshot>>, serve: &ServeStats) -> Registry {
    // `register` ends each help text with a period itself.
    let mut r = Registry::with_prefix("quorate");
    r.register(
        "build",
        "This binary: its version and build profile (always 1)",
        Info::new([
            ("version", env!("CARGO_PKG_VERSION")),
            (
                "profile",
                if cfg!(debug_assertions) {
                    "debug"
                } else {
                    "release"
                },
            ),
        ]),
    );
    r.register(
        "api_evicted_connections",
        "REST connections closed at the connection cap to make room (idle, or still sending headers)",
        serve.evicted.clone(),
    );
    r.register(
        "api_refused_connections",
        "REST connections refused at the connection cap (every open one inside a handler)",
        serve.refused.clone(),
    );
    r.register(
        "api_header_timeouts",
        "REST connections closed because a request head did not arrive in time",
        serve.header_timeouts.clone(),
    );
    r.register_collector(Box::new(SnapshotCollector(snapshot)));
    r
}

/// The registry's metrics as Prometheus text.
pub fn encode(registry: &Registry) -> Result<String, fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, registry)?;
    Ok(text)
}

/// Encodes the snapshot published last, once per scrape.
#[derive(Debug)]
struct SnapshotCollector(watch::Receiver<Arc<NodeSnapshot>>);

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        // Cloned out so the driver never waits for a scrape to publish.
        let snap = self.0.borrow().clone();
        let mut out = Out(&mut encoder);
        counters::encode(&snap, &mut out)?;
        state::encode(&snap, &mut out)
    }
}

/// Writes metric families into one scrape. Label values are given in the order of the label
/// names of their family.
struct Out<'a, 'b>(&'a mut DescriptorEncoder<'b>);

impl Out<'_, '_> {
    fn counter(&mut self, name: &str, help: &str, value: u64) -> fmt::Result {
        let c = ConstCounter::new(value);
        c.encode(
            self.0
                .encode_descriptor(name, help, None, c.metric_type())?,
        )
    }

    fn gauge(&mut self, name: &str, help: &str, value: impl EncodeGaugeValue) -> fmt::Result {
        let g = ConstGauge::new(value);
        g.encode(
            self.0
                .encode_descriptor(name, help, None, g.metric_type())?,
        )
    }

    /// A counter family, one series per row.
    fn counters<'r, const N: usize>(
        &mut self,
        name: &str,
        help: &str,
        labels: [&str; N],
        rows: impl IntoIterator<Item = ([&'r str; N], u64)>,
    ) -> fmt::Result {
        let mut family = self
            .0
            .encode_descriptor(name, help, None, MetricType::Counter)?;
        for (values, v) in rows {
            let set: [(&str, &str); N] = std::array::from_fn(|i| (labels[i], values[i]));
            ConstCounter::new(v).encode(family.encode_family(&set)?)?;
        }
        Ok(())
    }

    /// A gauge family, one series per row.
    fn gauges<'r, const N: usize, V: EncodeGaugeValue>(
        &mut self,
        name: &str,
        help: &str,
        labels: [&str; N],
        rows: impl IntoIterator<Item = ([&'r str; N], V)>,
    ) -> fmt::Result {
        let mut family = self
            .0
            .encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (values, v) in rows {
            let set: [(&str, &str); N] = std::array::from_fn(|i| (labels[i], values[i]));
            ConstGauge::new(v).encode(family.encode_family(&set)?)?;
        }
        Ok(())
    }

    /// An info metric (`NAME_info{...} 1`).
    fn info<const N: usize>(
        &mut self,
        name: &str,
        help: &str,
        labels: [(&str, &str); N],
    ) -> fmt::Result {
        self.0
            .encode_descriptor(name, help, None, MetricType::Info)?
            .encode_info(&labels)
    }

    fn histogram(&mut self, name: &str, help: &str, h: &Histogram) -> fmt::Result {
        // The snapshot keeps cumulative bucket counts; the encoder wants each bucket's own.
        let buckets: Vec<(f64, u64)> = h
            .bounds
            .iter()
            .zip(&h.counts)
            .scan(0, |below, (bound, cumulative)| {
                let own = cumulative.saturating_sub(*below);
                *below = *cumulative;
                Some((*bound, own))
            })
            .collect();
        self.0
            .encode_descriptor(name, help, None, MetricType::Histogram)?
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                h.sum, h.count, &buckets, None,
            )
    }
}
