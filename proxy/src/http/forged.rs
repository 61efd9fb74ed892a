//! Removing a header a workload must not send, under every name a service may read as it.
//! Servers that hand header fields to applications as CGI-style variables (CGI, WSGI, PHP-FPM)
//! turn `-` into `_`, so `x_forwarded_client_cert` and `x-forwarded-client-cert` both become
//! `HTTP_X_FORWARDED_CLIENT_CERT`: removing only the exact name would let a workload forge the
//! identity header, or a header a rule injects, under the other spelling.
use http::{HeaderMap, HeaderName};
use smallvec::SmallVec;

/// Names no workload may send, each under every spelling with `_` for `-`: stripped in one
/// pass over a request's field names.
#[derive(Debug, Default)]
pub struct Protected {
    /// Folded to `-`, lower case.
    names: Vec<Box<str>>,
    /// Bit `n` set when some name is `n` bytes long (`n` < 64; longer ones set bit 63): most
    /// fields are ruled out by their length alone.
    lengths: u64,
}

impl Protected {
    pub fn new<'a>(names: impl IntoIterator<Item = &'a HeaderName>) -> Self {
        let mut set = Protected::default();
        for name in names {
            let folded: Box<str> = name.as_str().replace('_', "-").into();
            if !set.names.contains(&folded) {
                set.lengths |= length_bit(folded.len());
                set.names.push(folded);
            }
        }
        set
    }

    /// Whether a field called `name` is one of these names under some spelling.
    pub fn covers(&self, name: &str) -> bool {
        self.lengths & length_bit(name.len()) != 0 && self.names.iter().any(|p| same_when_folded(name, p))
    }

    /// Removes every field these names cover, in one pass over the names; returns the
    /// remaining names with `_`, for `Lookalikes::strip` (a rule's `remove` list).
    pub fn strip(&self, headers: &mut HeaderMap) -> Lookalikes {
        let mut doomed = SmallVec::<[HeaderName; 2]>::new();
        let mut underscored = SmallVec::new();
        for name in headers.keys() {
            if self.covers(name.as_str()) {
                doomed.push(name.clone());
            } else if has_underscore(name) {
                underscored.push(name.clone());
            }
        }
        for name in &doomed {
            headers.remove(name);
        }
        Lookalikes { underscored }
    }
}

fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

/// The request's field names that contain `_`: the only ones that can be another spelling of a
/// protected name, and usually none, so the common request pays one pass over its names.
pub struct Lookalikes {
    underscored: SmallVec<[HeaderName; 2]>,
}

impl Lookalikes {
    /// Removes every field named `name`, or named like it with `_` and `-` taken as one.
    pub fn strip(&self, headers: &mut HeaderMap, name: &HeaderName) {
        headers.remove(name);
        if has_underscore(name) {
            // A protected name spelt with `_` (configs may) has dashed look-alikes too.
            let all: SmallVec<[HeaderName; 2]> = headers.keys().filter(|other| same_when_folded(other.as_str(), name.as_str())).cloned().collect();
            for other in &all {
                headers.remove(other);
            }
            return;
        }
        for other in self.underscored.iter().filter(|other| same_when_folded(other.as_str(), name.as_str())) {
            headers.remove(other);
        }
    }
}

/// A byte search: this runs for every field of every request on the HTTP-aware path.
fn has_underscore(name: &HeaderName) -> bool {
    name.as_str().as_bytes().contains(&b'_')
}

/// Header names are lower case here (`HeaderName` guarantees it).
fn same_when_folded(a: &str, b: &str) -> bool {
    let fold = |c: u8| if c == b'_' { b'-' } else { c };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(names: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for n in names {
            h.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_static("v"));
        }
        h
    }

    #[test]
    fn every_spelling_of_the_name_goes_and_nothing_else() {
        let mut h = headers(&[
            "X-Forwarded-Client-Cert",
            "X_Forwarded_Client_Cert",
            "x-forwarded_client-cert",
            "x-forwarded-client-certs",
            "x_forwarded_client",
            "x-request-id",
            "x_request_id",
        ]);
        let mut by_lookalikes = h.clone();
        Protected::new(&[HeaderName::from_static("x-forwarded-client-cert")]).strip(&mut h);
        Protected::default().strip(&mut by_lookalikes).strip(&mut by_lookalikes, &HeaderName::from_static("x-forwarded-client-cert"));
        for h in [h, by_lookalikes] {
            let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
            left.sort();
            assert_eq!(left, ["x-forwarded-client-certs", "x-request-id", "x_forwarded_client", "x_request_id"]);
        }
    }

    #[test]
    fn a_protected_set_strips_every_spelling_of_its_names_in_one_pass() {
        let mut h = headers(&["Authorization", "x_caller", "X-Caller", "x-callers", "x-call", "x_request_id", "via", "x-tier"]);
        let names = [HeaderName::from_static("authorization"), HeaderName::from_static("x-caller"), HeaderName::from_static("x_tier")];
        let protected = Protected::new(&names);
        assert!(protected.covers("x-tier") && protected.covers("x_caller") && !protected.covers("x-callers"));
        let left_over = protected.strip(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["via", "x-call", "x-callers", "x_request_id"]);
        assert_eq!(left_over.underscored.as_slice(), [HeaderName::from_static("x_request_id")]);
    }

    #[test]
    fn a_protected_name_spelt_with_underscores_also_takes_the_dashed_one() {
        let mut h = headers(&["x-user-id", "x_user_id", "x-user"]);
        let lookalikes = Protected::default().strip(&mut h);
        lookalikes.strip(&mut h, &HeaderName::from_static("x_user_id"));
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-user"]);
    }
}
