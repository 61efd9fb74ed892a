//! AWS STS `AssumeRoleWithWebIdentity` with the caller's JWT-SVID (an unsigned call: the token
//! is the proof), and the temporary credentials of its answer.
use super::{Exchanged, Granted};
use crate::config::CredentialSource;
use crate::http::secrets::Secret;
use crate::http::JwtIssuer;
use crate::spiffe::SpiffeId;
use std::time::{Duration, SystemTime};

/// The audience AWS documents for web identity tokens.
pub const DEFAULT_AUDIENCE: &str = "sts.amazonaws.com";

/// A role's temporary credentials.
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Secret,
    pub expiration: SystemTime,
}

/// The STS endpoint of a source: its `endpoint`, else the region's.
pub fn endpoint(source: &CredentialSource) -> String {
    match &source.endpoint {
        Some(url) => url.0.to_string(),
        None => format!("https://sts.{}.amazonaws.com/", source.region.as_deref().unwrap_or("us-east-1")),
    }
}

/// The form of the `AssumeRoleWithWebIdentity` call for `caller`.
pub fn request(source: &CredentialSource, jwt: &JwtIssuer, caller: &SpiffeId) -> anyhow::Result<Secret> {
    let token = jwt.mint(caller, source.token_audience.as_deref().unwrap_or(DEFAULT_AUDIENCE))?;
    let duration = source.duration.0.as_secs().to_string();
    let session = session_name(caller);
    let pairs = [
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", "2011-06-15"),
        ("RoleArn", source.role_arn.as_deref().unwrap_or_default()),
        ("RoleSessionName", session.as_str()),
        ("WebIdentityToken", std::str::from_utf8(token.expose()).unwrap_or_default()),
        ("DurationSeconds", duration.as_str()),
    ];
    Ok(Secret::from_bytes(super::client::form(pairs).into()))
}

/// The session name CloudTrail shows for the caller: its SPIFFE ID's trust domain and path in
/// the characters STS allows (`[\w+=,.@-]`, 2 to 64), a digest of the whole ID at the end when
/// it had to be cut.
pub fn session_name(id: &SpiffeId) -> String {
    let text = id.as_str().trim_start_matches("spiffe://");
    let mut name: String = text.chars().map(|c| if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) { c } else { '-' }).collect();
    if name.len() > 64 {
        let digest = ring::digest::digest(&ring::digest::SHA256, id.as_str().as_bytes());
        let tail: String = digest.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect();
        name.truncate(64 - 9);
        name.push('-');
        name.push_str(&tail);
    }
    name
}

/// The credentials of STS's answer, or why there are none (never the answer's secrets).
pub fn answer(status: http::StatusCode, body: &[u8]) -> Result<Granted, String> {
    let text = std::str::from_utf8(body).map_err(|_| format!("STS answered {status}, not in UTF-8"))?;
    let doc = roxmltree::Document::parse(text).map_err(|_| format!("STS answered {status}, not XML"))?;
    let find = |name: &str| doc.descendants().find(|n| n.has_tag_name(name)).and_then(|n| n.text()).map(str::trim);
    if !status.is_success() {
        let code = find("Code").map(super::oauth::printable).unwrap_or_default();
        let message = find("Message").map(super::oauth::printable).unwrap_or_default();
        return Err(format!("STS answered {status}: {code} ({message})"));
    }
    let field = |name: &str| find(name).filter(|v| !v.is_empty()).ok_or_else(|| format!("STS answer has no {name}"));
    let expiration = field("Expiration")?;
    let expires = time::OffsetDateTime::parse(expiration, &time::format_description::well_known::Rfc3339)
        .map_err(|_| format!("STS answer's Expiration `{}` is not a date", super::oauth::printable(expiration)))?;
    let expiration = SystemTime::from(expires);
    let lifetime = expiration.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO);
    let credentials = AwsCredentials {
        access_key_id: field("AccessKeyId")?.to_string(),
        secret_access_key: Secret::from_bytes(field("SecretAccessKey")?.to_string().into()),
        session_token: Secret::from_bytes(field("SessionToken")?.to_string().into()),
        expiration,
    };
    Ok(Granted { credential: Exchanged::Aws(std::sync::Arc::new(credentials)), lifetime })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_fit_sts() {
        let id = SpiffeId::parse("spiffe://example.org/ns/prod/sa/billing").unwrap();
        assert_eq!(session_name(&id), "example.org-ns-prod-sa-billing");
        let long = SpiffeId::parse(&format!("spiffe://example.org/{}", "x".repeat(80))).unwrap();
        let name = session_name(&long);
        assert_eq!(name.len(), 64);
        assert!(name.starts_with("example.org-xxx") && name.as_bytes()[55] == b'-', "{name}");
    }

    #[test]
    fn answers_give_credentials_or_a_reason_without_secrets() {
        let ok = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
          <AssumeRoleWithWebIdentityResult><Credentials>
            <AccessKeyId>ASIAEXAMPLE</AccessKeyId><SecretAccessKey>s3cr3t</SecretAccessKey>
            <SessionToken>tok3n</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration>
          </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"#;
        let granted = answer(http::StatusCode::OK, ok.as_bytes()).unwrap();
        let Exchanged::Aws(c) = granted.credential else { panic!("not AWS credentials") };
        assert_eq!(c.access_key_id, "ASIAEXAMPLE");
        assert_eq!(c.secret_access_key.expose(), b"s3cr3t");
        assert!(granted.lifetime > Duration::from_secs(3600));
        let denied = r#"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>Not authorized</Message></Error></ErrorResponse>"#;
        assert_eq!(
            answer(http::StatusCode::FORBIDDEN, denied.as_bytes()).err().unwrap(),
            "STS answered 403 Forbidden: AccessDenied (Not authorized)"
        );
        let partial = ok.replace("<SessionToken>tok3n</SessionToken>", "");
        let why = answer(http::StatusCode::OK, partial.as_bytes()).err().unwrap();
        assert!(why.contains("SessionToken") && !why.contains("s3cr3t"), "{why}");
        assert!(answer(http::StatusCode::OK, b"garbage").err().unwrap().contains("not XML"));
    }
}
