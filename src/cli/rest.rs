//! REST calls from the command line to one node: a blocking wrapper around reqwest that turns
//! a non-2xx answer into an error carrying the node's own message.

use anyhow::{bail, Context};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// How long a read waits for a node.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a mutating call waits: a drill answers when the whole dry run is over.
pub const OPERATOR_TIMEOUT: Duration = Duration::from_secs(3600);

/// The bearer token in the first line of `path`, trimmed.
pub fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        bail!("the first line of {} is empty", path.display());
    }
    Ok(token)
}

/// One REST call to the node at `api`; `path` starts with `/`.
pub fn call(
    method: reqwest::Method,
    api: SocketAddr,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
    timeout: Duration,
) -> anyhow::Result<serde_json::Value> {
    let url = format!("http://{api}{path}");
    super::commands::runtime()?.block_on(async {
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        let mut req = client.request(method.clone(), &url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = &body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let code = resp.status();
        let answer: serde_json::Value = resp
            .json()
            .await
            .with_context(|| format!("{url} did not answer JSON"))?;
        if !code.is_success() {
            bail!(
                "{method} {url}: {code}: {}",
                answer["error"].as_str().unwrap_or("unknown error")
            );
        }
        Ok(answer)
    })
}

/// A read-only GET.
pub fn get(api: SocketAddr, path: &str, token: Option<&str>) -> anyhow::Result<serde_json::Value> {
    call(reqwest::Method::GET, api, path, token, None, READ_TIMEOUT)
}
