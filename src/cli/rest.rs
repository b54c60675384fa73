//! REST calls from the command line to one node: a blocking wrapper around reqwest that turns
//! a non-2xx answer into an error carrying the node's own message. Speaks HTTPS to a node
//! whose fleet file sets `[api] tls_cert`, trusting the CA of `--ca-file`.

use anyhow::{bail, Context};
use clap::Args;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// How long a read waits for a node.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a mutating call waits: a drill answers when the whole dry run is over.
pub const OPERATOR_TIMEOUT: Duration = Duration::from_secs(3600);

/// A node's REST address as the operator writes it: `IP:PORT` or `http://HOST:PORT` for plain
/// HTTP, `https://HOST:PORT` for HTTPS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiAddr {
    pub https: bool,
    pub host: String,
    pub port: u16,
}

impl FromStr for ApiAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<ApiAddr, String> {
        let (https, rest) = match s.split_once("://") {
            None => (false, s),
            Some(("http", rest)) => (false, rest),
            Some(("https", rest)) => (true, rest),
            Some((scheme, _)) => {
                return Err(format!(
                    "{scheme}:// is not spoken here: use http:// or https://"
                ))
            }
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let bad = || format!("{s:?} is not HOST:PORT, e.g. 127.0.2.1:7501 or https://b1:7501");
        let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(['/', '?', '#', '@']) {
            return Err(bad());
        }
        Ok(ApiAddr {
            https,
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for ApiAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.https {
            true => write!(f, "https://{host}:{}", self.port),
            false => write!(f, "{host}:{}", self.port),
        }
    }
}

/// Where a REST call goes.
#[derive(Args, Clone, Debug)]
pub struct Endpoint {
    /// The node's REST address: 127.0.2.1:7501 (HTTP) or https://HOST:PORT (HTTPS, when the
    /// fleet file sets [api] tls_cert).
    #[arg(long, env = super::API_ENV)]
    pub api: ApiAddr,
    /// HTTPS: PEM file of the CA that issued the node's API certificate (the fleet's ca.pem
    /// when it comes from `quorate certs`); trusted alone. Without it, the public web roots.
    #[arg(long, env = super::CA_FILE_ENV)]
    pub ca_file: Option<PathBuf>,
    /// HTTPS: the name the node's certificate must carry when --api gives another host, e.g.
    /// its node id (what `quorate certs` certificates name) with --api https://IP:PORT.
    #[arg(long, env = super::TLS_NAME_ENV)]
    pub tls_name: Option<String>,
}

impl Endpoint {
    /// The node's base URL and a client that reaches it, each call bounded by `timeout`.
    fn client(&self, timeout: Duration) -> anyhow::Result<(String, reqwest::Client)> {
        let (base, builder) = self.builder()?;
        Ok((base, builder.timeout(timeout).build()?))
    }

    /// The node's base URL and a client for a stream that lasts as long as the node sends:
    /// only connecting is bounded (by `READ_TIMEOUT`).
    pub fn stream_client(&self) -> anyhow::Result<(String, reqwest::Client)> {
        let (base, builder) = self.builder()?;
        Ok((base, builder.connect_timeout(READ_TIMEOUT).build()?))
    }

    fn builder(&self) -> anyhow::Result<(String, reqwest::ClientBuilder)> {
        let mut builder = reqwest::Client::builder();
        if !self.api.https {
            return Ok((format!("http://{}", self.api), builder));
        }
        if let Some(path) = &self.ca_file {
            let pem = crate::small_file::read(path)
                .with_context(|| format!("cannot read the CA file {}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{} holds no PEM certificate", path.display()))?;
            if certs.is_empty() {
                bail!("{} holds no PEM certificate", path.display());
            }
            builder = builder.tls_built_in_root_certs(false);
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let base = match &self.tls_name {
            None => self.api.to_string(),
            Some(name) => {
                // Dial the given host, check the certificate against the name.
                let addr: SocketAddr = (self.api.host.as_str(), self.api.port)
                    .to_socket_addrs()
                    .with_context(|| format!("cannot resolve {}", self.api.host))?
                    .next()
                    .with_context(|| format!("{} has no address", self.api.host))?;
                builder = builder.resolve(name, addr);
                format!("https://{name}:{}", self.api.port)
            }
        };
        Ok((base, builder))
    }
}

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
    api: &Endpoint,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
    timeout: Duration,
) -> anyhow::Result<serde_json::Value> {
    let (base, client) = api.client(timeout)?;
    let url = format!("{base}{path}");
    super::commands::runtime()?.block_on(async {
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
            .map_err(|e| anyhow::anyhow!("cannot reach {url}: {}", chain(&e)))?;
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

/// An error with its causes: reqwest's own message ("error sending request") hides whether a
/// certificate was refused or the connection was.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A read-only GET.
pub fn get(api: &Endpoint, path: &str, token: Option<&str>) -> anyhow::Result<serde_json::Value> {
    call(reqwest::Method::GET, api, path, token, None, READ_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_says_whether_it_speaks_https() {
        let a: ApiAddr = "127.0.2.1:7501".parse().unwrap();
        assert_eq!(
            (a.https, a.host.as_str(), a.port),
            (false, "127.0.2.1", 7501)
        );
        assert_eq!(a.to_string(), "127.0.2.1:7501");
        let a: ApiAddr = "https://b1:7501/".parse().unwrap();
        assert_eq!((a.https, a.host.as_str(), a.port), (true, "b1", 7501));
        assert_eq!(a.to_string(), "https://b1:7501");
        let a: ApiAddr = "http://[::1]:7501".parse().unwrap();
        assert_eq!((a.https, a.host.as_str()), (false, "::1"));
        assert_eq!(a.to_string(), "[::1]:7501");
        for bad in [
            "b1",
            "ftp://b1:21",
            "https://b1:port",
            "https://:7501",
            "b1:7501/v1",
        ] {
            assert!(bad.parse::<ApiAddr>().is_err(), "{bad}");
        }
    }
}
