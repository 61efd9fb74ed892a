//! `[[credential]]`: sources that exchange the calling workload's JWT-SVID for a short-lived
//! credential at an authorization server or a cloud's token service, so that no host keeps a
//! long-lived secret. `[[http_rule]]`s use them: `${credential:NAME}` in a header template
//! (OAuth access tokens), `aws_sigv4` (AWS requests signed with the role's credentials).
use super::HumanDuration;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// What a credential source exchanges the caller's JWT-SVID for, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// OAuth 2.0 client credentials grant; the client authenticates with a JWT (RFC 7523)
    /// that idgate signs for the caller (`client_auth = "private_key_jwt"`).
    OauthClientCredentials,
    /// OAuth 2.0 token exchange (RFC 8693): the caller's JWT-SVID is the subject token (the
    /// protocol of GCP's STS too).
    OauthTokenExchange,
    /// AWS STS `AssumeRoleWithWebIdentity` with the caller's JWT-SVID; requests are then
    /// signed (SigV4) by `[[http_rule]] aws_sigv4`.
    AwsWebIdentity,
}

/// How idgate authenticates as the OAuth client at the token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// A JWT signed with idgate's JWT key sent as `client_assertion` (RFC 7523 section 2.2).
    #[default]
    PrivateKeyJwt,
    /// Only `client_id`, if any (a public client; GCP's STS takes no client authentication).
    None,
}

/// The claims of the client assertion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssertionForm {
    /// `iss` and `sub` are the client ID (RFC 7523 client authentication, as authorization
    /// servers that register the workload as a client expect).
    #[default]
    Rfc7523,
    /// The caller's JWT-SVID itself: `iss` is idgate's issuer, `sub` the caller's SPIFFE ID
    /// (federated credentials, such as Microsoft Entra's, whose client ID is the app's).
    JwtSvid,
}

/// One `[[credential]]` source. Fields that do not apply to its `kind` are refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialSource {
    /// How rules name it: `${credential:NAME}`, `aws_sigv4.credential = "NAME"`.
    pub name: CredentialName,
    /// `oauth_client_credentials`, `oauth_token_exchange` or `aws_web_identity`.
    pub kind: CredentialKind,
    /// The token endpoint (OAuth) or the STS endpoint (AWS), `https://` only: the request
    /// carries the caller's JWT-SVID. For AWS the default is `https://sts.<region>.amazonaws.com/`.
    pub endpoint: Option<HttpsUrl>,
    /// OAuth: the client ID sent; the default is the caller's SPIFFE ID (each workload its
    /// own client). `${spiffe_id}` in it stands for the caller's SPIFFE ID.
    pub client_id: Option<String>,
    /// OAuth: how the client authenticates (`private_key_jwt` or `none`). Default:
    /// `private_key_jwt` for client credentials, `none` for token exchange.
    pub client_auth: Option<ClientAuth>,
    /// OAuth with `private_key_jwt`: the assertion's claims (`rfc7523` or `jwt_svid`).
    #[serde(default)]
    pub assertion: AssertionForm,
    /// OAuth with `private_key_jwt`: the assertion's `aud`. Default: the endpoint.
    pub assertion_audience: Option<String>,
    /// Token exchange and AWS: the `aud` of the caller's JWT-SVID sent as the subject
    /// token (AWS default: `sts.amazonaws.com`).
    pub token_audience: Option<String>,
    /// OAuth: the `scope` parameter (space-separated scopes).
    pub scope: Option<String>,
    /// OAuth: the `audience` parameter (token exchange; some servers take it for client
    /// credentials too).
    pub audience: Option<String>,
    /// OAuth: the `resource` parameter (RFC 8707).
    pub resource: Option<String>,
    /// Token exchange: `requested_token_type`. Default:
    /// `urn:ietf:params:oauth:token-type:access_token`.
    pub requested_token_type: Option<String>,
    /// AWS: the role assumed (`arn:aws:iam::ACCOUNT:role/NAME`); the session name is made from
    /// the caller's SPIFFE ID.
    pub role_arn: Option<String>,
    /// AWS: the STS region (for the default endpoint).
    pub region: Option<String>,
    /// AWS: how long the role's credentials last (`DurationSeconds`, 15 minutes to 12 hours).
    #[serde(default = "default_session_duration")]
    pub duration: HumanDuration,
    /// How long one exchange may take, connection included; past it the request waiting for
    /// the credential is answered 503.
    #[serde(default = "default_exchange_timeout")]
    pub timeout: HumanDuration,
    /// PEM CA certificates to verify the endpoint with; default: the system's roots.
    pub ca_bundle: Option<PathBuf>,
}

fn default_session_duration() -> HumanDuration {
    HumanDuration(Duration::from_secs(3600))
}

fn default_exchange_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}

impl CredentialSource {
    pub fn client_auth(&self) -> ClientAuth {
        self.client_auth.unwrap_or(match self.kind {
            CredentialKind::OauthTokenExchange => ClientAuth::None,
            _ => ClientAuth::PrivateKeyJwt,
        })
    }

    /// The fields set that `kind` does not use, by their config names.
    pub fn unused_fields(&self) -> Vec<&'static str> {
        let oauth = matches!(self.kind, CredentialKind::OauthClientCredentials | CredentialKind::OauthTokenExchange);
        let set = [
            ("client_id", self.client_id.is_some(), oauth),
            ("client_auth", self.client_auth.is_some(), oauth),
            ("assertion_audience", self.assertion_audience.is_some(), oauth),
            ("token_audience", self.token_audience.is_some(), self.kind != CredentialKind::OauthClientCredentials),
            ("scope", self.scope.is_some(), oauth),
            ("audience", self.audience.is_some(), oauth),
            ("resource", self.resource.is_some(), oauth),
            ("requested_token_type", self.requested_token_type.is_some(), self.kind == CredentialKind::OauthTokenExchange),
            ("role_arn", self.role_arn.is_some(), !oauth),
            ("region", self.region.is_some(), !oauth),
        ];
        set.iter().filter(|(_, present, used)| *present && !used).map(|(name, ..)| *name).collect()
    }
}

/// A credential source's name: letters, digits, `-`, `_`, `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct CredentialName(pub String);

impl TryFrom<String> for CredentialName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
            return Err(format!("credential name `{s}` must be letters, digits, '-', '_' or '.'"));
        }
        Ok(CredentialName(s))
    }
}

impl std::fmt::Display for CredentialName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An `https://` URL with a host: the exchange carries the caller's JWT-SVID, never in
/// plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct HttpsUrl(pub http::Uri);

impl TryFrom<String> for HttpsUrl {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let uri: http::Uri = s.parse().map_err(|e| format!("`{s}` is not a URL: {e}"))?;
        if uri.scheme() != Some(&http::uri::Scheme::HTTPS) || uri.host().is_none_or(str::is_empty) {
            return Err(format!("`{s}` must be an https:// URL with a host (the exchange carries the caller's JWT-SVID)"));
        }
        Ok(HttpsUrl(uri))
    }
}

/// `[http_rule.aws_sigv4]`: sign the request for AWS with an `aws_web_identity` source's
/// credentials (SigV4, headers `authorization`, `x-amz-date`, `x-amz-security-token`,
/// `x-amz-content-sha256`, each stripped from workloads' requests first).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSigV4 {
    /// The `[[credential]]` (kind `aws_web_identity`) whose role signs.
    pub credential: CredentialName,
    /// The service's signing name: `s3`, `sts`, `dynamodb`, ...
    pub service: String,
    /// The region the request is for: `us-east-1`, ...
    pub region: String,
    /// `unsigned`: `x-amz-content-sha256: UNSIGNED-PAYLOAD` (S3 allows it; the body streams
    /// through). `signed`: the body is read first (up to `max_body`, else 413) and its SHA-256
    /// signed, as services other than S3 require.
    #[serde(default)]
    pub payload: PayloadSigning,
    /// The largest body `payload = "signed"` reads before signing, in bytes.
    #[serde(default = "default_max_signed_body")]
    pub max_body: u64,
}

fn default_max_signed_body() -> u64 {
    1_048_576
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadSigning {
    /// `x-amz-content-sha256: UNSIGNED-PAYLOAD`; the body streams through unread.
    Unsigned,
    /// The body's SHA-256, read whole first (at most `max_body`).
    #[default]
    Signed,
}
