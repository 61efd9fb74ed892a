//! Removing a header a workload must not send, under every name a service may read as it.
//! Servers that hand header fields to applications as CGI-style variables (CGI, WSGI, PHP-FPM)
//! turn `-` into `_`, so `x_forwarded_client_cert` and `x-forwarded-client-cert` both become
//! `HTTP_X_FORWARDED_CLIENT_CERT`: removing only the exact name would let a workload forge the
//! identity header, or a header a rule injects, under the other spelling.
use http::{HeaderMap, HeaderName};
use smallvec::SmallVec;

/// The request's field names that contain `_`: the only ones that can be another spelling of a
/// protected name, and usually none, so the common request pays one pass over its names.
pub struct Lookalikes {
    underscored: SmallVec<[HeaderName; 2]>,
}

impl Lookalikes {
    pub fn of(headers: &HeaderMap) -> Self {
        Lookalikes { underscored: headers.keys().filter(|name| has_underscore(name)).cloned().collect() }
    }

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
        let lookalikes = Lookalikes::of(&h);
        lookalikes.strip(&mut h, &HeaderName::from_static("x-forwarded-client-cert"));
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["x-forwarded-client-certs", "x-request-id", "x_forwarded_client", "x_request_id"]);
    }

    #[test]
    fn a_protected_name_spelt_with_underscores_also_takes_the_dashed_one() {
        let mut h = headers(&["x-user-id", "x_user_id", "x-user"]);
        let lookalikes = Lookalikes::of(&h);
        lookalikes.strip(&mut h, &HeaderName::from_static("x_user_id"));
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-user"]);
    }
}
