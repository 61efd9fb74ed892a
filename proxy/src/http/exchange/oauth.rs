//! OAuth 2.0 token requests with the caller's identity: the client credentials grant with a
//! JWT client assertion (RFC 7523), and token exchange with the JWT-SVID as subject token
//! (RFC 8693). Only the answer's access token and lifetime are kept.
use super::{Exchanged, Granted};
use crate::config::{AssertionForm, ClientAuth, CredentialKind, CredentialSource};
use crate::http::secrets::Secret;
use crate::http::JwtIssuer;
use crate::spiffe::SpiffeId;
use std::time::Duration;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// The lifetime assumed when an answer gives no `expires_in` (RFC 6749 leaves it optional).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

/// The form of one token request for `caller`. Holds the JWTs it sends.
pub fn request(source: &CredentialSource, endpoint: &str, jwt: &JwtIssuer, caller: &SpiffeId) -> anyhow::Result<Secret> {
    let client_id = source.client_id.as_deref().map(|c| c.replace("${spiffe_id}", caller.as_str()));
    let client_id = client_id.as_deref().unwrap_or(caller.as_str());
    let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(10);
    let subject;
    match source.kind {
        CredentialKind::OauthTokenExchange => {
            subject = jwt.mint(caller, source.token_audience.as_deref().unwrap_or_default())?;
            pairs.extend([
                ("grant_type", TOKEN_EXCHANGE),
                ("subject_token", as_str(&subject)),
                ("subject_token_type", JWT_TOKEN_TYPE),
                ("requested_token_type", source.requested_token_type.as_deref().unwrap_or(ACCESS_TOKEN_TYPE)),
            ]);
        }
        _ => pairs.push(("grant_type", "client_credentials")),
    }
    let assertion;
    match source.client_auth() {
        ClientAuth::PrivateKeyJwt => {
            let audience = source.assertion_audience.as_deref().unwrap_or(endpoint);
            assertion = match source.assertion {
                AssertionForm::Rfc7523 => jwt.client_assertion(client_id, audience, caller)?,
                AssertionForm::JwtSvid => jwt.mint(caller, audience)?,
            };
            pairs.extend([("client_id", client_id), ("client_assertion_type", ASSERTION_TYPE), ("client_assertion", as_str(&assertion))]);
        }
        ClientAuth::None if source.client_id.is_some() || source.kind == CredentialKind::OauthClientCredentials => {
            pairs.push(("client_id", client_id))
        }
        ClientAuth::None => {}
    }
    for (name, value) in [("scope", &source.scope), ("audience", &source.audience), ("resource", &source.resource)] {
        if let Some(v) = value {
            pairs.push((name, v));
        }
    }
    Ok(Secret::from_bytes(super::client::form(pairs).into()))
}

fn as_str(secret: &Secret) -> &str {
    // JWTs are base64url and dots: always UTF-8.
    std::str::from_utf8(secret.expose()).unwrap_or_default()
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: String,
    token_type: Option<String>,
    expires_in: Option<u64>,
}

#[derive(serde::Deserialize)]
struct ErrorAnswer {
    error: String,
    error_description: Option<String>,
}

/// The access token of a 200 answer, or why there is none (never the answer's secrets).
pub fn answer(status: http::StatusCode, body: &[u8]) -> Result<Granted, String> {
    if !status.is_success() {
        return Err(match serde_json::from_slice::<ErrorAnswer>(body) {
            Ok(e) => format!(
                "token endpoint answered {status}: {}{}",
                printable(&e.error),
                e.error_description.map(|d| format!(" ({})", printable(&d))).unwrap_or_default()
            ),
            Err(_) => format!("token endpoint answered {status}"),
        });
    }
    let parsed: TokenAnswer =
        serde_json::from_slice(body).map_err(|e| format!("token endpoint answered 200 without a token answer ({})", json_problem(&e)))?;
    if let Some(t) = parsed.token_type.as_deref().filter(|t| !t.eq_ignore_ascii_case("bearer") && !t.eq_ignore_ascii_case("N_A")) {
        return Err(format!("token endpoint issued a `{}` token; only bearer tokens can be sent on", printable(t)));
    }
    if parsed.access_token.is_empty() || !parsed.access_token.bytes().all(|b| (b'!'..=b'~').contains(&b)) {
        return Err("token endpoint's access_token is empty or not header-safe".into());
    }
    let lifetime = parsed.expires_in.map(Duration::from_secs).unwrap_or(DEFAULT_LIFETIME);
    Ok(Granted { credential: Exchanged::Bearer(Secret::from_bytes(parsed.access_token.into())), lifetime })
}

/// A server-given text cut short and stripped of control characters, for messages.
pub(super) fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// What kind of JSON problem an answer has, without quoting it (it may hold a token).
fn json_problem(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "i/o",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "no access_token",
        serde_json::error::Category::Eof => "cut short",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn source(toml: &str) -> CredentialSource {
        let text = format!("trust_domain = \"td\"\n[[credential]]\nname = \"t\"\n{toml}");
        crate::config::parse(std::path::Path::new("t.toml"), &text).unwrap_or_else(|e| panic!("{e}")).credentials.remove(0)
    }

    fn claims(jwt: &str) -> serde_json::Value {
        let payload = jwt.split('.').nth(1).unwrap();
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
    }

    #[test]
    fn client_credentials_authenticate_with_an_assertion_for_the_caller() {
        let jwt = JwtIssuer::new(Duration::from_secs(60), "https://issuer.test".into(), None).unwrap();
        let caller = SpiffeId::parse("spiffe://td/app/a").unwrap();
        let s = source("kind = \"oauth_client_credentials\"\nendpoint = \"https://idp.test/token\"\nscope = \"read\"");
        let form = request(&s, "https://idp.test/token", &jwt, &caller).unwrap();
        let pairs: std::collections::HashMap<String, String> = form_urlencoded::parse(form.expose()).into_owned().collect();
        assert_eq!(pairs["grant_type"], "client_credentials");
        assert_eq!(pairs["client_id"], "spiffe://td/app/a");
        assert_eq!(pairs["client_assertion_type"], ASSERTION_TYPE);
        assert_eq!(pairs["scope"], "read");
        let c = claims(&pairs["client_assertion"]);
        assert_eq!(
            (c["iss"].as_str(), c["sub"].as_str(), c["aud"].as_str()),
            (Some("spiffe://td/app/a"), Some("spiffe://td/app/a"), Some("https://idp.test/token"))
        );
        assert!(c["jti"].as_str().is_some_and(|j| j.len() >= 16));
        let again = request(&s, "https://idp.test/token", &jwt, &caller).unwrap();
        assert_ne!(form, again, "every assertion has a jti of its own");
    }

    #[test]
    fn token_exchange_sends_the_callers_jwt_svid_as_subject() {
        let jwt = JwtIssuer::new(Duration::from_secs(60), "https://issuer.test".into(), None).unwrap();
        let caller = SpiffeId::parse("spiffe://td/app/a").unwrap();
        let s =
            source("kind = \"oauth_token_exchange\"\nendpoint = \"https://sts.test/v1/token\"\ntoken_audience = \"sts.test\"\naudience = \"pool\"");
        let form = request(&s, "https://sts.test/v1/token", &jwt, &caller).unwrap();
        let pairs: std::collections::HashMap<String, String> = form_urlencoded::parse(form.expose()).into_owned().collect();
        assert_eq!(pairs["grant_type"], TOKEN_EXCHANGE);
        assert_eq!(pairs["subject_token_type"], JWT_TOKEN_TYPE);
        assert_eq!(pairs["audience"], "pool");
        assert!(!pairs.contains_key("client_assertion") && !pairs.contains_key("client_id"), "a public exchange: {pairs:?}");
        let c = claims(&pairs["subject_token"]);
        assert_eq!(
            (c["iss"].as_str(), c["sub"].as_str(), c["aud"][0].as_str()),
            (Some("https://issuer.test"), Some("spiffe://td/app/a"), Some("sts.test"))
        );
    }

    #[test]
    fn answers_give_a_token_or_a_reason_that_quotes_no_secret() {
        let ok = answer(http::StatusCode::OK, br#"{"access_token":"abc.def","token_type":"Bearer","expires_in":60}"#).unwrap();
        assert!(matches!(&ok.credential, Exchanged::Bearer(t) if t.expose() == b"abc.def"));
        assert_eq!(ok.lifetime, Duration::from_secs(60));
        let refused = answer(http::StatusCode::UNAUTHORIZED, br#"{"error":"invalid_client","error_description":"no such client"}"#).err().unwrap();
        assert_eq!(refused, "token endpoint answered 401 Unauthorized: invalid_client (no such client)");
        let odd = answer(http::StatusCode::OK, br#"{"access_token": 12345678}"#).err().unwrap();
        assert!(odd.contains("no access_token") && !odd.contains("12345678"), "{odd}");
        assert!(answer(http::StatusCode::OK, b"<html>").err().unwrap().contains("not JSON"));
        let mac = answer(http::StatusCode::OK, br#"{"access_token":"x","token_type":"mac"}"#).err().unwrap();
        assert!(mac.contains("only bearer tokens"), "{mac}");
    }
}
