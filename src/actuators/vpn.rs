//! The `vpn` actuator brings a WireGuard tunnel up or down for a step, for example the
//! replication or management path to the surviving site. It owns one interface: up creates
//! it with the userspace `wireguard-go` (kernel WireGuard is not assumed), loads the peer
//! config with `wg setconf`, adds addresses and sets the link up; down deletes it. Both are
//! idempotent. It never edits the config file and never touches other interfaces.
//!
//! Params: `interface` (give each network namespace its own name: wireguard-go's control
//! socket `/var/run/wireguard/IF.sock` is shared across namespaces), `action = "up" |
//! "down"`, `config` (a wg(8) file for `wg setconf`, required for up; wg-quick keys such as
//! `Address` are refused: list addresses in `addresses = ["198.18.5.1/24"]` instead),
//! optional `netns`, optional `dry_run = "skip"`.
//! Alternatively `controller_url` delegates to an HTTP controller: the `http` actuator sends
//! `{"interface", "action"}` plus the step fields; `method`, `headers`, `token_file`,
//! `token_env` and `success` work as for `http`.
//! A dry run checks that `wireguard-go`, `wg` and `ip` are on PATH, that the netns exists and
//! that the config file reads and has only wg(8) keys; it does not validate keys
//! cryptographically and changes nothing.

use super::http::HttpActuator;
use super::process::{cli_command, run_process, Leftovers, ProcessRun};
use super::{Actuator, ActuatorKind, Params, StepContext, StepFuture, StepOutcome};
use crate::core::net_prefix::InterfaceAddr;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use tokio::process::Command;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VpnAction {
    Up,
    Down,
}

#[derive(Debug, Clone)]
struct Local {
    interface: String,
    action: VpnAction,
    config: Option<PathBuf>,
    addresses: Vec<InterfaceAddr>,
    netns: Option<String>,
}

#[derive(Debug, Clone)]
enum Mode {
    Local(Local),
    Controller(Box<HttpActuator>),
}

#[derive(Debug, Clone)]
pub struct VpnActuator {
    mode: Mode,
    skip_in_dry_run: bool,
}

const HTTP_KEYS: &[&str] = &["method", "headers", "token_file", "token_env", "success"];

impl VpnActuator {
    pub fn from_params(params: &Value) -> Result<Self, String> {
        let p = Params::new("vpn", params)?;
        let interface = p.req_str("interface", "\"wg-quorate\"")?;
        if interface.len() > 15 || interface.contains(['/', ' ']) {
            return Err(p.err(
                "interface",
                format!("{interface:?} is not a valid interface name (at most 15 characters, no '/' or spaces)"),
            ));
        }
        let action = match p.req_str("action", "\"up\"")?.as_str() {
            "up" => VpnAction::Up,
            "down" => VpnAction::Down,
            other => return Err(p.err("action", format!("is {other:?}: use \"up\" or \"down\""))),
        };
        let skip_in_dry_run = p.dry_run_skip()?;
        if let Some(url) = p.opt_str("controller_url")? {
            let mut known = vec!["interface", "action", "controller_url", "dry_run"];
            known.extend(HTTP_KEYS);
            p.only(&known)?;
            let mut http = json!({
                "url": url,
                "body": {"interface": interface, "action": match action {
                    VpnAction::Up => "up",
                    VpnAction::Down => "down",
                }},
            });
            for k in HTTP_KEYS {
                if let Some(v) = p.get(k) {
                    http[*k] = v.clone();
                }
            }
            let http = HttpActuator::from_params(&http)
                .map_err(|e| format!("vpn step (controller_url): {e}"))?;
            return Ok(VpnActuator {
                mode: Mode::Controller(Box::new(http)),
                skip_in_dry_run,
            });
        }
        p.only(&[
            "interface",
            "action",
            "config",
            "addresses",
            "netns",
            "dry_run",
        ])?;
        let config = p.opt_str("config")?.map(PathBuf::from);
        if action == VpnAction::Up && config.is_none() {
            return Err(p.err(
                "config",
                "is missing: add e.g. config = \"/etc/wireguard/wg-quorate.conf\" \
                 (or controller_url = \"http://...\" to delegate)",
            ));
        }
        let addresses = p
            .opt_str_list("addresses")?
            .unwrap_or_default()
            .iter()
            .map(|a| InterfaceAddr::parse(a).map_err(|e| p.err("addresses", e)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(VpnActuator {
            mode: Mode::Local(Local {
                interface,
                action,
                config,
                addresses,
                netns: p.opt_str("netns")?,
            }),
            skip_in_dry_run,
        })
    }

    async fn execute(&self, ctx: &StepContext) -> StepOutcome {
        if ctx.dry_run && self.skip_in_dry_run {
            return StepOutcome::skipped_dry_run();
        }
        match &self.mode {
            Mode::Controller(http) => http.run(ctx).await,
            Mode::Local(local) => local.execute(ctx).await,
        }
    }
}

impl Local {
    fn cmd(&self, program: &str) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = cli_command("ip");
                c.args(["netns", "exec", ns.as_str(), program]);
                c
            }
            None => cli_command(program),
        }
    }

    async fn run(&self, program: &str, args: &[&str], deadline: Instant) -> ProcessRun {
        // wireguard-go forks the daemon that carries the tunnel: it must outlive the call.
        let leftovers = if program == "wireguard-go" {
            Leftovers::Keep
        } else {
            Leftovers::Kill
        };
        let mut c = self.cmd(program);
        c.args(args);
        run_process(
            c,
            deadline.saturating_duration_since(Instant::now()),
            leftovers,
        )
        .await
    }

    async fn link_exists(&self, deadline: Instant) -> bool {
        self.run("ip", &["link", "show", "dev", &self.interface], deadline)
            .await
            .success()
    }

    async fn execute(&self, ctx: &StepContext) -> StepOutcome {
        let deadline = Instant::now() + ctx.timeout;
        let ifname = self.interface.as_str();
        if ctx.dry_run {
            return self.dry_run();
        }
        let mut output = String::new();
        macro_rules! step {
            ($what:expr, $program:expr, $args:expr) => {{
                let run = self.run($program, $args, deadline).await;
                output.push_str(&run.output);
                if !run.success() {
                    return StepOutcome::failed(
                        format!("{} failed ({})", $what, run.describe()),
                        output,
                    );
                }
            }};
        }
        match self.action {
            VpnAction::Down => {
                if !self.link_exists(deadline).await {
                    return StepOutcome::ok(format!("{ifname} is already down"), output);
                }
                step!(
                    format!("ip link del {ifname}"),
                    "ip",
                    &["link", "del", "dev", ifname]
                );
                StepOutcome::ok(format!("{ifname} removed"), output)
            }
            VpnAction::Up => {
                let config = self.config.as_deref().expect("checked in from_params");
                if let Err(e) = check_wg_config(config) {
                    return StepOutcome::failed(e, "");
                }
                let created = !self.link_exists(deadline).await;
                if created {
                    step!(format!("wireguard-go {ifname}"), "wireguard-go", &[ifname]);
                }
                let config_s = config.to_string_lossy();
                step!(
                    format!("wg setconf {ifname}"),
                    "wg",
                    &["setconf", ifname, config_s.as_ref()]
                );
                for a in &self.addresses {
                    let a = a.to_string();
                    step!(
                        format!("ip address replace {a} dev {ifname}"),
                        "ip",
                        &["address", "replace", a.as_str(), "dev", ifname]
                    );
                }
                step!(
                    format!("ip link set {ifname} up"),
                    "ip",
                    &["link", "set", "dev", ifname, "up"]
                );
                StepOutcome::ok(
                    format!(
                        "{ifname} is up ({})",
                        if created {
                            "created"
                        } else {
                            "existed; config reloaded"
                        }
                    ),
                    output,
                )
            }
        }
    }

    fn dry_run(&self) -> StepOutcome {
        let mut missing: Vec<&str> = ["wireguard-go", "wg", "ip"]
            .into_iter()
            .filter(|t| !on_path(t))
            .collect();
        if self.action == VpnAction::Down {
            missing.retain(|t| *t == "ip");
        }
        if !missing.is_empty() {
            return StepOutcome::failed(
                format!(
                    "dry run: not on PATH: {} (install wireguard-go, wireguard-tools)",
                    missing.join(", ")
                ),
                "",
            );
        }
        if let Some(ns) = &self.netns {
            if !Path::new("/var/run/netns").join(ns).exists() {
                return StepOutcome::failed(
                    format!("dry run: network namespace {ns} does not exist"),
                    "",
                );
            }
        }
        if let Some(config) = &self.config {
            if let Err(e) = check_wg_config(config) {
                return StepOutcome::failed(format!("dry run: {e}"), "");
            }
        }
        StepOutcome::ok(
            format!(
                "dry run: tools present and config readable; {} not changed",
                self.interface
            ),
            "",
        )
    }
}

impl Actuator for VpnActuator {
    fn kind(&self) -> ActuatorKind {
        ActuatorKind::Vpn
    }

    fn run<'a>(&'a self, ctx: &'a StepContext) -> StepFuture<'a> {
        Box::pin(self.execute(ctx))
    }
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
}

/// Checks that the file is a wg(8) config: sections and keys `wg setconf` accepts.
fn check_wg_config(path: &Path) -> Result<(), String> {
    let text = crate::small_file::read_to_string(path)
        .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
    check_wg_config_text(&path.display().to_string(), &text)
}

/// Checks that `text` is a wg(8) config: sections and keys `wg setconf` accepts, a PrivateKey
/// and a PublicKey in every [Peer]. Errors name the file as `name` and the line at fault.
pub fn check_wg_config_text(name: &str, text: &str) -> Result<(), String> {
    const INTERFACE: &[&str] = &["privatekey", "listenport", "fwmark"];
    const PEER: &[&str] = &[
        "publickey",
        "presharedkey",
        "allowedips",
        "endpoint",
        "persistentkeepalive",
    ];
    const WG_QUICK: &[&str] = &[
        "address",
        "dns",
        "mtu",
        "table",
        "preup",
        "postup",
        "predown",
        "postdown",
        "saveconfig",
    ];
    let mut section = "";
    let mut has_private_key = false;
    let mut peer_has_key = true;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        let at = || format!("config {name} line {}", n + 1);
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            if section == "peer" && !peer_has_key {
                return Err(format!(
                    "{}: a [Peer] before this line has no PublicKey",
                    at()
                ));
            }
            section = match line.to_ascii_lowercase().as_str() {
                "[interface]" => "interface",
                "[peer]" => {
                    peer_has_key = false;
                    "peer"
                }
                _ => return Err(format!("{}: unknown section {line}", at())),
            };
            continue;
        }
        let key = line
            .split_once('=')
            .map(|(k, _)| k.trim().to_ascii_lowercase())
            .ok_or_else(|| format!("{}: expected KEY = VALUE", at()))?;
        if WG_QUICK.contains(&key.as_str()) {
            return Err(format!(
                "{}: {key} is a wg-quick key that `wg setconf` rejects; \
                 put addresses in the step's `addresses` instead",
                at()
            ));
        }
        let allowed = match section {
            "interface" => INTERFACE,
            "peer" => PEER,
            _ => return Err(format!("{}: key outside [Interface] or [Peer]", at())),
        };
        if !allowed.contains(&key.as_str()) {
            return Err(format!("{}: unknown key {key} in [{section}]", at()));
        }
        has_private_key |= key == "privatekey";
        peer_has_key |= key == "publickey";
    }
    if section == "peer" && !peer_has_key {
        return Err(format!("config {name}: the last [Peer] has no PublicKey"));
    }
    if !has_private_key {
        return Err(format!("config {name}: [Interface] has no PrivateKey"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_read_by_the_prefix_length_rules() {
        let up = |a: &str| {
            VpnActuator::from_params(&json!({"interface": "wg0", "action": "up",
                "config": "/etc/wireguard/wg0.conf", "addresses": [a]}))
        };
        assert!(up("198.18.5.1/24").is_ok());
        assert!(up("2001:db8::1/64").is_ok());
        for bad in ["198.18.5.1/+24", "198.18.5.1/33", "198.18.5.1", "wg0/24"] {
            let err = up(bad).unwrap_err();
            assert!(err.starts_with("vpn step: `addresses` "), "{bad:?}: {err}");
        }
    }

    #[test]
    fn up_needs_a_config_or_a_controller() {
        let err =
            VpnActuator::from_params(&json!({"interface": "wg-q", "action": "up"})).unwrap_err();
        assert!(err.contains("`config` is missing"), "{err}");
        assert!(VpnActuator::from_params(&json!({"interface": "wg-q", "action": "down"})).is_ok());
        assert!(VpnActuator::from_params(
            &json!({"interface": "wg-q", "action": "up", "controller_url": "http://127.0.0.1:1/vpn"})
        )
        .is_ok());
    }

    #[test]
    fn a_controller_token_over_plain_http_is_refused() {
        let err = VpnActuator::from_params(&json!({"interface": "wg-q", "action": "up",
            "controller_url": "http://vpn.example/v1", "token_file": "/etc/quorate/vpn.token"}))
        .unwrap_err();
        assert!(
            err.contains("controller_url") && err.contains("`token_file`"),
            "{err}"
        );
    }

    #[test]
    fn interface_names_are_checked() {
        let err = VpnActuator::from_params(
            &json!({"interface": "a-very-long-interface-name", "action": "down"}),
        )
        .unwrap_err();
        assert!(err.contains("`interface`"), "{err}");
    }

    #[test]
    fn wg_quick_keys_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("wg.conf");
        std::fs::write(&f, "[Interface]\nPrivateKey = x\nAddress = 198.18.5.1/24\n").unwrap();
        let err = check_wg_config(&f).unwrap_err();
        assert!(
            err.contains("wg-quick") && err.contains("addresses"),
            "{err}"
        );
        std::fs::write(
            &f,
            "[Interface]\nPrivateKey = x\nListenPort = 51820\n[Peer]\nPublicKey = y\nAllowedIPs = 198.18.5.0/24\n",
        )
        .unwrap();
        check_wg_config(&f).unwrap();
        std::fs::write(
            &f,
            "[Interface]\nPrivateKey = x\n[Peer]\nAllowedIPs = 0.0.0.0/0\n",
        )
        .unwrap();
        assert!(check_wg_config(&f).unwrap_err().contains("PublicKey"));
    }
}
