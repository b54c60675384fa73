//! Network prefixes as operators write them ("198.19.255.0/24", "2001:db8::/48") and the one
//! parser for them. The anycast rule reasons about `Prefix` values and the bgp actuator
//! announces the very same values, so there is no second reading of a prefix that could
//! disagree with this one. An interface address ("10.0.0.1/24", host bits allowed) is another
//! fact with its own type, `InterfaceAddr`, read by the same length rules.
//!
//! What the parser accepts, and why: `ADDRESS/LENGTH` with no whitespace anywhere; ADDRESS is
//! what `IpAddr` parses (IPv4 dotted quad, any IPv6 spelling, so "2001:DB8::/32" and
//! "2001:db8::/32" are one prefix); LENGTH is one to three ASCII digits (no sign, so "+24"
//! is refused; a leading zero as in "024" reads as 24), at most 32 (IPv4) or 128 (IPv6). A
//! prefix must not have host bits set: "198.19.255.1/24" is refused, naming the network address
//! to write instead, because a router would silently announce "198.19.255.0/24" and the rule
//! would judge a prefix nobody wrote.
//!
//! Pure: no IO.

use core::net::IpAddr;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// The address family of a prefix, as routers name it ("ipv4", "ipv6").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AddressFamily {
    Ipv4,
    Ipv6,
}

impl AddressFamily {
    /// The family of `addr`.
    pub fn of(addr: IpAddr) -> AddressFamily {
        match addr {
            IpAddr::V4(_) => AddressFamily::Ipv4,
            IpAddr::V6(_) => AddressFamily::Ipv6,
        }
    }

    /// "ipv4" or "ipv6": the word BIRD channels and `gobgp -a` use.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressFamily::Ipv4 => "ipv4",
            AddressFamily::Ipv6 => "ipv6",
        }
    }

    /// The longest prefix length of the family: 32 or 128.
    pub fn max_len(self) -> u8 {
        match self {
            AddressFamily::Ipv4 => 32,
            AddressFamily::Ipv6 => 128,
        }
    }
}

impl fmt::Display for AddressFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a text is not a prefix (or an interface address). Each message quotes the text and
/// says what to write instead; nothing was parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    /// There is no `/`.
    #[error("{text:?} has no length; write it as ADDRESS/LENGTH, e.g. \"198.19.255.0/24\"")]
    NoLength { text: String },
    /// The part before `/` is not an IP address.
    #[error("{text:?}: {addr:?} is not an IPv4 or IPv6 address")]
    NotAnAddress { text: String, addr: String },
    /// The part after `/` is not a plain number within the family's bounds.
    #[error("{text:?}: the length {len:?} must be a number from 0 to {max}")]
    BadLength { text: String, len: String, max: u8 },
    /// The address has bits set after the length; `network` is what to write.
    #[error("{text:?} has host bits set; write the network address: \"{network}\"")]
    HostBits { text: String, network: Prefix },
}

/// An IPv4 or IPv6 network prefix in normal form: the network address (no host bits set) and
/// the length, written as `IpAddr`'s canonical text ("198.19.255.0/24", "2001:db8::/48"). Two
/// spellings of one prefix ("2001:DB8:0::/48", "2001:db8::/48") parse to equal values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

impl Prefix {
    /// Parses "ADDRESS/LENGTH" by the rules of the module docs.
    pub fn parse(s: &str) -> Result<Prefix, PrefixError> {
        let (addr, len) = address_and_length(s)?;
        let network = mask(addr, len);
        if network != addr {
            return Err(PrefixError::HostBits {
                text: s.to_string(),
                network: Prefix { addr: network, len },
            });
        }
        Ok(Prefix { addr, len })
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn length(&self) -> u8 {
        self.len
    }

    pub fn family(&self) -> AddressFamily {
        AddressFamily::of(self.addr)
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;
    fn from_str(s: &str) -> Result<Prefix, PrefixError> {
        Prefix::parse(s)
    }
}

impl Serialize for Prefix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Prefix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Prefix, D::Error> {
        let s = String::deserialize(d)?;
        Prefix::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An address on an interface with the length of its subnet ("10.0.0.1/24"): host bits are
/// the point here, so only the address and the length bounds are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InterfaceAddr {
    addr: IpAddr,
    len: u8,
}

impl InterfaceAddr {
    /// Parses "ADDRESS/LENGTH" by the rules of the module docs, host bits allowed.
    pub fn parse(s: &str) -> Result<InterfaceAddr, PrefixError> {
        let (addr, len) = address_and_length(s)?;
        Ok(InterfaceAddr { addr, len })
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn length(&self) -> u8 {
        self.len
    }

    /// The subnet the address is in.
    pub fn network(&self) -> Prefix {
        Prefix {
            addr: mask(self.addr, self.len),
            len: self.len,
        }
    }
}

impl fmt::Display for InterfaceAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for InterfaceAddr {
    type Err = PrefixError;
    fn from_str(s: &str) -> Result<InterfaceAddr, PrefixError> {
        InterfaceAddr::parse(s)
    }
}

/// The address and the length of "ADDRESS/LENGTH", each checked on its own.
fn address_and_length(s: &str) -> Result<(IpAddr, u8), PrefixError> {
    let (a, l) = s.split_once('/').ok_or_else(|| PrefixError::NoLength {
        text: s.to_string(),
    })?;
    let addr: IpAddr = a.parse().map_err(|_| PrefixError::NotAnAddress {
        text: s.to_string(),
        addr: a.to_string(),
    })?;
    let max = AddressFamily::of(addr).max_len();
    // Digits only: `u8::from_str` alone would take "+24".
    let len = Some(l)
        .filter(|l| !l.is_empty() && l.len() <= 3 && l.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|l| l.parse::<u8>().ok())
        .filter(|&n| n <= max)
        .ok_or_else(|| PrefixError::BadLength {
            text: s.to_string(),
            len: l.to_string(),
            max,
        })?;
    Ok((addr, len))
}

/// `addr` with every bit after the first `len` cleared.
fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let keep = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & keep).into())
        }
        IpAddr::V6(v6) => {
            let keep = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & keep).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_knows_its_family_and_the_family_its_bounds() {
        let v4 = Prefix::parse("198.19.255.0/24").unwrap();
        let v6 = Prefix::parse("2001:db8::/32").unwrap();
        assert_eq!(
            (v4.family(), v4.family().as_str(), v4.family().max_len()),
            (AddressFamily::Ipv4, "ipv4", 32)
        );
        assert_eq!(
            (v6.family(), v6.family().as_str(), v6.family().max_len()),
            (AddressFamily::Ipv6, "ipv6", 128)
        );
    }

    #[test]
    fn a_sign_or_whitespace_in_the_length_is_refused() {
        for text in [
            "10.0.0.0/+8",
            "10.0.0.0/-8",
            "10.0.0.0/ 8",
            "10.0.0.0/8 ",
            "10.0.0.0/8\n",
        ] {
            assert!(
                matches!(Prefix::parse(text), Err(PrefixError::BadLength { .. })),
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_host_bits_refusal_carries_the_network_to_write() {
        match Prefix::parse("192.0.2.77/28") {
            Err(PrefixError::HostBits { network, .. }) => {
                assert_eq!(network.to_string(), "192.0.2.64/28")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_interface_address_keeps_its_host_bits_under_the_same_length_rules() {
        let a = InterfaceAddr::parse("198.18.9.1/24").unwrap();
        assert_eq!(a.to_string(), "198.18.9.1/24");
        assert_eq!(a.network(), Prefix::parse("198.18.9.0/24").unwrap());
        assert_eq!(
            InterfaceAddr::parse("2001:DB8::1/64").unwrap().to_string(),
            "2001:db8::1/64"
        );
        for text in ["198.18.9.1/+24", "198.18.9.1/33", "198.18.9.1", "host/24"] {
            assert!(InterfaceAddr::parse(text).is_err(), "{text:?}");
        }
    }
}
