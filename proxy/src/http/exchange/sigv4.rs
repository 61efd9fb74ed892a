//! SigV4 signing of a workload's request with a role's temporary credentials (aws-sigv4, the
//! AWS SDK's own signer). The request is signed as it will leave: every header it carries but
//! the hop-by-hop ones, its Host, its path and query as written.
use super::aws::AwsCredentials;
use crate::config::{AwsSigV4, PayloadSigning};
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings, UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use http::header::{HeaderName, HeaderValue};
use http::request::Parts;
use std::borrow::Cow;
use std::time::SystemTime;

/// The headers the signature sets: no workload may send its own.
pub const SIGNED_BY_IDGATE: [&str; 4] = ["authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"];

/// Headers a hop may change or drop: never signed.
const UNSIGNED: [&str; 9] =
    ["connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "expect", "content-length", "x-forwarded-client-cert"];

/// Signs `parts` in place. `body` is the whole body when `payload = "signed"` (None otherwise).
pub fn sign_request(parts: &mut Parts, body: Option<&[u8]>, rule: &AwsSigV4, credentials: &AwsCredentials, now: SystemTime) -> Result<(), String> {
    let host = crate::http::rules::request_hosts(parts).0.into_iter().next().ok_or("the request names no host to sign for")?;
    let authority = parts.uri.authority().map(|a| a.as_str().to_string()).unwrap_or(host);
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let url = format!("https://{authority}{path}");
    let mut headers = Vec::with_capacity(parts.headers.len() + 1);
    let has_host = parts.headers.contains_key(http::header::HOST);
    if !has_host {
        // HTTP/2's :authority stands for Host; SigV4 signs it as `host`.
        headers.push(("host", authority.as_str()));
    }
    for (name, value) in &parts.headers {
        if UNSIGNED.contains(&name.as_str()) || SIGNED_BY_IDGATE.contains(&name.as_str()) {
            continue;
        }
        let value = value.to_str().map_err(|_| format!("header `{name}` is not ASCII text: it cannot be signed"))?;
        headers.push((name.as_str(), value));
    }
    let signable_body = match (rule.payload, body) {
        (PayloadSigning::Signed, Some(bytes)) => SignableBody::Bytes(bytes),
        (PayloadSigning::Signed, None) => return Err("the body was not read for signing".into()),
        (PayloadSigning::Unsigned, _) => SignableBody::UnsignedPayload,
    };
    let request = SignableRequest::new(parts.method.as_str(), url.as_str(), headers.into_iter(), signable_body).map_err(|e| format!("SigV4: {e}"))?;
    let identity = aws_credential_types::Credentials::new(
        credentials.access_key_id.clone(),
        String::from_utf8_lossy(credentials.secret_access_key.expose()).into_owned(),
        Some(String::from_utf8_lossy(credentials.session_token.expose()).into_owned()),
        Some(credentials.expiration),
        "idgate",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    if let Some(excluded) = settings.excluded_headers.as_mut() {
        excluded.extend(UNSIGNED.iter().map(|h| Cow::Borrowed(*h)));
    }
    if rule.service == "s3" {
        // S3 signs the path as sent: no second encoding, no normalization.
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&rule.region)
        .name(&rule.service)
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| format!("SigV4: {e}"))?
        .into();
    let (instructions, _signature) = sign(request, &params).map_err(|e| format!("SigV4: {e}"))?.into_parts();
    let (new_headers, _) = instructions.into_parts();
    for header in new_headers {
        let mut value = HeaderValue::from_str(header.value()).map_err(|_| "SigV4 produced a header value that is not one".to_string())?;
        value.set_sensitive(header.sensitive() || header.name() == "authorization");
        parts.headers.insert(HeaderName::from_static(header.name()), value);
    }
    Ok(())
}
