//! The kinds of actuator a pipeline step can name (`kind = "bgp"` in the fleet file). The
//! pipeline carries a step's kind from the fleet file to the actuator that runs it; an enum
//! instead of a string means a kind nobody implements is refused once, when the file is read,
//! and never reaches a run. Serialized as the lowercase word the fleet file uses, in every
//! format, so JSON views and stored specs read the same as before the enum existed.
//!
//! Pure: no IO.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// What carries a step out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ActuatorKind {
    /// Runs a program.
    Exec,
    /// Calls a controller over HTTP(S).
    Http,
    /// Announces or withdraws routes through the site's BGP speaker.
    Bgp,
    /// Brings a WireGuard tunnel up or down.
    Vpn,
}

impl ActuatorKind {
    /// Every kind, in the order messages list them.
    pub const ALL: [ActuatorKind; 4] = [
        ActuatorKind::Exec,
        ActuatorKind::Http,
        ActuatorKind::Bgp,
        ActuatorKind::Vpn,
    ];

    /// The word the fleet file uses: "exec", "http", "bgp" or "vpn".
    pub fn as_str(self) -> &'static str {
        match self {
            ActuatorKind::Exec => "exec",
            ActuatorKind::Http => "http",
            ActuatorKind::Bgp => "bgp",
            ActuatorKind::Vpn => "vpn",
        }
    }

    /// "exec, http, bgp, vpn": the allowed kinds, for messages.
    pub fn allowed() -> String {
        ActuatorKind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for ActuatorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A step kind no actuator implements; nothing was parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown step kind {given:?}: use one of {}", ActuatorKind::allowed())]
pub struct UnknownActuatorKind {
    /// The kind as written.
    pub given: String,
}

impl FromStr for ActuatorKind {
    type Err = UnknownActuatorKind;
    fn from_str(s: &str) -> Result<ActuatorKind, UnknownActuatorKind> {
        ActuatorKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownActuatorKind {
                given: s.to_string(),
            })
    }
}

impl Serialize for ActuatorKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ActuatorKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ActuatorKind, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_from_its_own_word() {
        for k in ActuatorKind::ALL {
            assert_eq!(k.as_str().parse::<ActuatorKind>(), Ok(k));
            assert_eq!(k.to_string(), k.as_str());
        }
    }

    #[test]
    fn an_unknown_kind_is_refused_naming_the_allowed_ones() {
        let err = "Bgp".parse::<ActuatorKind>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown step kind \"Bgp\": use one of exec, http, bgp, vpn"
        );
    }

    #[test]
    fn a_kind_serializes_as_the_lowercase_word_of_the_fleet_file() {
        assert_eq!(
            serde_json::to_string(&ActuatorKind::Bgp).unwrap(),
            "\"bgp\""
        );
        assert_eq!(
            serde_json::from_str::<ActuatorKind>("\"vpn\"").unwrap(),
            ActuatorKind::Vpn
        );
        assert!(serde_json::from_str::<ActuatorKind>("\"smoke\"").is_err());
    }
}
