//! Certificates on a running fleet: one node's key and certificate are rotated (staged beside
//! the current pair, cut over, node restarted) while the fleet runs, and the fleet keeps
//! talking: peers still on their old certificates accept the new one and the other way round,
//! since all trust the fleet CA rather than a certificate. A node refuses to start beside the
//! CA's private key or with a private key that others can read.

mod common;

use common::*;
use quorate::localfleet::{LocalFleet, LocalFleetError};
use quorate::net::certs;
use quorate::node::NodeError;
use std::time::Duration;

/// Waits until every running node lists every other node as reachable.
async fn everyone_talks(f: &LocalFleet, what: &str) {
    let nodes = f.running();
    eventually(what, || {
        let nodes = nodes.clone();
        async move {
            for id in &nodes {
                let snap = f.snapshot(id).ok_or(format!("{id} not running"))?;
                let silent: Vec<_> = snap
                    .peers
                    .iter()
                    .filter(|p| !p.reachable)
                    .map(|p| p.node.to_string())
                    .collect();
                if !silent.is_empty() {
                    return Err(format!("{id} does not hear {silent:?}"));
                }
            }
            Ok(())
        }
    })
    .await;
}

fn rejected_handshakes(f: &LocalFleet) -> u64 {
    f.running()
        .iter()
        .filter_map(|id| f.snapshot(id))
        .map(|s| s.mesh.rejected_handshakes)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_keeps_talking_across_the_rotation_of_one_node() {
    init_tracing();
    let mut f = start_fleet(197).await;
    everyone_talks(&f, "the fleet to talk before the rotation").await;
    let c1 = n("c1");
    let old = f
        .snapshot(&c1)
        .unwrap()
        .certificates
        .expect("c1 shows its certificates");
    assert!(
        old.node_expires_in_s > 364 * 86_400,
        "a new node certificate lives a year: {old:?}"
    );

    // Stage: c1 keeps running on its current pair.
    let staged = certs::stage_rotation(
        &f.ca_dir,
        &f.certs_dir,
        &c1,
        certs::lifetime_days(30).unwrap(),
    )
    .expect("a staged pair");
    assert!(staged.cert.exists() && staged.key.exists());
    tokio::time::sleep(Duration::from_millis(500)).await;
    everyone_talks(&f, "the fleet to talk with a pair staged").await;

    // Cut over and restart c1: it presents the new certificate to peers on their old ones.
    certs::cut_over(&f.certs_dir, &c1).expect("cut-over");
    f.stop_node(&c1).await;
    f.start_node(&c1)
        .await
        .expect("c1 restarts on its new pair");
    everyone_talks(&f, "the fleet to talk after c1's rotation").await;
    let new = f.snapshot(&c1).unwrap().certificates.unwrap();
    assert!(
        (29 * 86_400..=30 * 86_400).contains(&new.node_expires_in_s),
        "c1 runs on the 30-day certificate: {new:?}"
    );
    assert_eq!(
        new.expiry.ca_not_after_unix_s,
        old.expiry.ca_not_after_unix_s
    );
    assert_eq!(
        rejected_handshakes(&f),
        0,
        "no peer refused either certificate"
    );
    f.shutdown().await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_to_start_beside_the_ca_key_or_with_a_key_others_can_read() {
    use std::os::unix::fs::PermissionsExt;
    init_tracing();
    let mut f = LocalFleet::prepare(&fleet_text(198), None, false).expect("the fleet prepares");
    let a1 = n("a1");
    let refusal = |r: Result<(), LocalFleetError>| match r {
        Err(LocalFleetError::Node {
            source: NodeError::Certs(msg),
            ..
        }) => msg,
        other => panic!("expected a certificate refusal, got {other:?}"),
    };

    let ca_key = f.certs_dir.join("ca.key");
    std::fs::copy(f.ca_dir.join("ca.key"), &ca_key).unwrap();
    let msg = refusal(f.start_node(&a1).await);
    assert!(msg.contains(&ca_key.display().to_string()), "{msg}");
    assert!(msg.contains("must not live on a node"), "{msg}");
    std::fs::remove_file(&ca_key).unwrap();

    let key = f.certs_dir.join("a1.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let msg = refusal(f.start_node(&a1).await);
    assert!(
        msg.contains(&format!("chmod 600 {}", key.display())),
        "{msg}"
    );

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    f.start_node(&a1)
        .await
        .expect("a1 starts once its files are safe");
    f.shutdown().await;
}
