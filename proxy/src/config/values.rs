//! Small config value types that validate themselves during deserialization.
use serde::Deserialize;
use std::net::IpAddr;
use std::time::Duration;

/// An address prefix such as `10.0.0.0/8` or `fd00::/64` (a bare address means a single host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Cidr(pub ipnet::IpNet);

impl TryFrom<String> for Cidr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if let Ok(net) = s.parse::<ipnet::IpNet>() {
            if net.trunc() != net {
                return Err(format!("CIDR `{s}` has host bits set (did you mean `{}`?)", net.trunc()));
            }
            return Ok(Cidr(net));
        }
        s.parse::<IpAddr>().map(|ip| Cidr(ipnet::IpNet::from(ip))).map_err(|_| format!("invalid CIDR `{s}` (expected e.g. 10.0.0.0/24 or fd00::/64)"))
    }
}

impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl Cidr {
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.0.contains(ip)
    }
}

/// A port (`8080`) or an inclusive range (`"8000-8100"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "PortSpec")]
pub struct PortRange {
    pub min: u16,
    pub max: u16,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PortSpec {
    Num(i64),
    Text(String),
}

impl TryFrom<PortSpec> for PortRange {
    type Error = String;
    fn try_from(spec: PortSpec) -> Result<Self, String> {
        let port = |v: &str| -> Result<u16, String> {
            match v.trim().parse::<u16>() {
                Ok(p) if p > 0 => Ok(p),
                _ => Err(format!("invalid port `{v}` (1-65535)")),
            }
        };
        let (min, max) = match spec {
            PortSpec::Num(n) => {
                let p = u16::try_from(n).ok().filter(|p| *p > 0).ok_or(format!("invalid port {n} (1-65535)"))?;
                (p, p)
            }
            PortSpec::Text(s) => match s.split_once('-') {
                Some((a, b)) => (port(a)?, port(b)?),
                None => (port(&s)?, port(&s)?),
            },
        };
        if min > max {
            return Err(format!("port range {min}-{max} is empty"));
        }
        Ok(PortRange { min, max })
    }
}

impl serde::Serialize for PortRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}-{}", self.min, self.max))
    }
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        (self.min..=self.max).contains(&port)
    }
}

/// A shell-style glob (`*` stays within one path segment, `**` crosses them).
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct Glob {
    pub pattern: String,
    pub matcher: globset::GlobMatcher,
}

impl TryFrom<String> for Glob {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let glob = globset::GlobBuilder::new(&s).literal_separator(true).build().map_err(|e| format!("invalid glob `{s}`: {e}"))?;
        Ok(Glob { matcher: glob.compile_matcher(), pattern: s })
    }
}

impl Glob {
    pub fn is_match(&self, s: &str) -> bool {
        self.matcher.is_match(s)
    }
}

/// A SHA-256 digest as `sha256sum FILE` prints it: 64 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Sha256Digest(pub [u8; 32]);

impl TryFrom<String> for Sha256Digest {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let bad = || format!("invalid sha256 `{s}` (64 hex digits, as `sha256sum FILE` prints them)");
        if s.len() != 64 {
            return Err(bad());
        }
        let mut digest = [0u8; 32];
        for (i, byte) in digest.iter_mut().enumerate() {
            *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16).map_err(|_| bad())?;
        }
        Ok(Sha256Digest(digest))
    }
}

/// A positive whole number and a unit: `500ms`, `30s`, `5m`, `1h`, `1d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct HumanDuration(pub Duration);

impl TryFrom<String> for HumanDuration {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let bad = || format!("invalid duration `{s}` (expected e.g. 30s, 5m, 1h)");
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().map_err(|_| bad())?;
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            "d" => Duration::from_secs(n * 86400),
            _ => return Err(bad()),
        };
        if d.is_zero() {
            return Err(format!("duration `{s}` must be positive"));
        }
        Ok(HumanDuration(d))
    }
}

/// A TLS key exchange group, by the name IANA gives it (any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum KeyExchange {
    /// Hybrid post-quantum: X25519 with ML-KEM-768 (what peers prefer since 2025).
    X25519Mlkem768,
    /// Hybrid post-quantum: secp256r1 (P-256) with ML-KEM-768.
    Secp256r1Mlkem768,
    /// Elliptic-curve Diffie-Hellman on Curve25519 (not post-quantum).
    X25519,
    /// Elliptic-curve Diffie-Hellman on P-256 (not post-quantum); also `P-256`.
    Secp256r1,
    /// Elliptic-curve Diffie-Hellman on P-384 (not post-quantum); also `P-384`.
    Secp384r1,
}

impl KeyExchange {
    pub const NAMES: &'static [&'static str] = &["X25519MLKEM768", "SecP256r1MLKEM768", "X25519", "secp256r1", "secp384r1"];

    pub fn is_post_quantum(self) -> bool {
        matches!(self, KeyExchange::X25519Mlkem768 | KeyExchange::Secp256r1Mlkem768)
    }
}

impl TryFrom<String> for KeyExchange {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "x25519mlkem768" => KeyExchange::X25519Mlkem768,
            "secp256r1mlkem768" => KeyExchange::Secp256r1Mlkem768,
            "x25519" => KeyExchange::X25519,
            "secp256r1" | "p-256" => KeyExchange::Secp256r1,
            "secp384r1" | "p-384" => KeyExchange::Secp384r1,
            _ => return Err(format!("unknown key exchange group `{s}` (known: {})", KeyExchange::NAMES.join(", "))),
        })
    }
}

impl From<KeyExchange> for String {
    fn from(k: KeyExchange) -> String {
        match k {
            KeyExchange::X25519Mlkem768 => "X25519MLKEM768",
            KeyExchange::Secp256r1Mlkem768 => "SecP256r1MLKEM768",
            KeyExchange::X25519 => "X25519",
            KeyExchange::Secp256r1 => "secp256r1",
            KeyExchange::Secp384r1 => "secp384r1",
        }
        .into()
    }
}

/// Key exchange groups, most preferred first: at least one, each once (a copyable list, as the
/// tunnel's settings are).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Vec<KeyExchange>")]
pub struct KeyExchangeList {
    groups: [KeyExchange; 5],
    len: usize,
}

impl KeyExchangeList {
    pub fn as_slice(&self) -> &[KeyExchange] {
        &self.groups[..self.len]
    }
}

impl TryFrom<Vec<KeyExchange>> for KeyExchangeList {
    type Error = String;
    fn try_from(list: Vec<KeyExchange>) -> Result<Self, String> {
        if list.is_empty() {
            return Err("give at least one key exchange group".into());
        }
        let mut groups = [KeyExchange::X25519Mlkem768; 5];
        for (i, g) in list.iter().enumerate() {
            if list[..i].contains(g) {
                return Err(format!("key exchange group {} is listed twice", String::from(*g)));
            }
            groups[i] = *g;
        }
        Ok(KeyExchangeList { groups, len: list.len() })
    }
}
