//! A mesh that can vanish as a crashed process does, shared by the transport tests.

use quorate::net::{Mesh, MeshConfig};

/// Starts a mesh on its own runtime and thread; dropping the runtime makes it vanish without
/// a word on the wire, as a crashed process would.
pub fn crashable(cfg: MeshConfig) -> tokio::runtime::Runtime {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (mesh, inbox) = rt.block_on(Mesh::start(cfg)).unwrap();
    // Kept alive as long as the runtime: leaked into it.
    rt.spawn(async move {
        let _keep = (mesh, inbox);
        std::future::pending::<()>().await;
    });
    rt
}
