//! Requests to one registry: authentication (anonymous, Basic, Bearer tokens per scope), manual
//! redirects that drop `Authorization` when leaving the registry's origin (SECURITY G3), and
//! bounded retries for 429/502/503/504 honouring `Retry-After`, and an overall deadline per
//! transfer (`RegistryConfig::deadline`) on top of the per-read timeout.

use super::auth::{self, realm_allowed, url_origin, Challenge, Lookup, Secret};
use super::host::{Host, RegistryConfig};
pub use super::url::{encode_query, resolve_location, with_query};
use super::{redact_url, RegistryError};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use ureq::http;

pub type Response = http::Response<ureq::Body>;

/// Attempts per request for retryable statuses and dropped connections (containerd: 5).
pub const MAX_ATTEMPTS: u32 = 5;
/// Redirect hops followed per request.
const MAX_REDIRECTS: usize = 5;
/// Longest `Retry-After` honoured; longer waits fail with the registry's status instead.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// A request body that can be produced again for a retry or a 307/308 redirect.
#[derive(Clone, Copy)]
pub enum Payload<'a> {
    Empty,
    Bytes(&'a [u8]),
    File(&'a Path),
}

/// One request.
pub struct Req<'a> {
    pub method: &'a str,
    pub url: String,
    /// Token scopes (`repository:NAME:pull[,push]`).
    pub scopes: Vec<String>,
    pub headers: Vec<(&'static str, String)>,
    pub payload: Payload<'a>,
    /// When the whole transfer must be done; `None`: the client's deadline from `send` on.
    pub deadline: Option<Instant>,
}

impl<'a> Req<'a> {
    pub fn new(method: &'a str, url: String, scopes: Vec<String>) -> Self {
        Req {
            method,
            url,
            scopes,
            headers: Vec::new(),
            payload: Payload::Empty,
            deadline: None,
        }
    }

    /// Shares one deadline between several requests (a blob download and its resumes).
    pub fn deadline(mut self, d: Option<Instant>) -> Self {
        self.deadline = d;
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn payload(mut self, p: Payload<'a>) -> Self {
        self.payload = p;
        self
    }
}

struct Token {
    header: String,
    expires: Instant,
}

#[derive(Default)]
struct AuthState {
    challenge: Option<Challenge>,
    tokens: HashMap<String, Token>,
}

/// A client for one registry host; shareable between threads.
pub struct Client {
    agent: ureq::Agent,
    pub host: Host,
    lookup: Lookup,
    state: Mutex<AuthState>,
    /// Overall deadline of one transfer; `None`: none.
    pub deadline: Option<Duration>,
}

/// `repository:NAME:ACTIONS`.
pub fn scope(repo: &str, actions: &str) -> String {
    format!("repository:{repo}:{actions}")
}

fn header_str(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `Retry-After` in seconds (the HTTP-date form falls back to exponential backoff).
fn retry_after(resp: &Response) -> Option<Duration> {
    header_str(resp, "retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64 << attempt.min(6))
}

/// The registry's error codes and messages from an error body, for messages.
pub fn error_detail(resp: Response) -> String {
    let mut body = Vec::new();
    let _ = resp
        .into_body()
        .into_reader()
        .take(16 * 1024)
        .read_to_end(&mut body);
    #[derive(serde::Deserialize)]
    struct Errs {
        errors: Vec<ErrItem>,
    }
    #[derive(serde::Deserialize)]
    struct ErrItem {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Errs>(&body) {
        Ok(e) if !e.errors.is_empty() => {
            let parts: Vec<String> = e
                .errors
                .iter()
                .map(|i| format!("{} {}", i.code, i.message).trim().to_string())
                .collect();
            format!(": {}", parts.join("; "))
        }
        _ => String::new(),
    }
}

impl Client {
    /// A client for the registry serving `domain` (`docker.io`, `127.0.0.1:5000`).
    pub fn new(domain: &str, cfg: &RegistryConfig) -> Result<Client, RegistryError> {
        let host = Host::new(domain, cfg);
        let lookup = auth::lookup(&host, cfg)?;
        let mut client = Self::with_lookup(host, lookup);
        client.deadline = cfg.deadline();
        Ok(client)
    }

    /// A client with explicitly given credentials (login verifies them this way).
    pub fn with_lookup(host: Host, lookup: Lookup) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("rbuild/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_per_read(Some(Duration::from_secs(120)))
            .build();
        Client {
            agent: ureq::Agent::new_with_config(config),
            host,
            lookup,
            state: Mutex::new(AuthState::default()),
            deadline: Some(super::host::DEFAULT_TRANSFER_DEADLINE),
        }
    }

    /// The instant a transfer starting now must be done by.
    pub fn transfer_deadline(&self) -> Option<Instant> {
        self.deadline.map(|d| Instant::now() + d)
    }

    /// Time left before `deadline`; an error naming `url` once it has passed.
    pub fn time_left(
        &self,
        deadline: Option<Instant>,
        url: &str,
    ) -> Result<Option<Duration>, RegistryError> {
        let Some(d) = deadline else {
            return Ok(None);
        };
        match d.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Ok(Some(left)),
            _ => Err(self.deadline_error(url)),
        }
    }

    fn deadline_error(&self, url: &str) -> RegistryError {
        RegistryError::Deadline {
            url: redact_url(url),
            secs: self.deadline.map(|d| d.as_secs()).unwrap_or(0),
        }
    }

    /// Runs one request with ureq's global timeout set to what is left of the deadline, so a
    /// body dripping in after the headers is cut off too (the budget keeps running while the
    /// caller reads the body).
    fn run<S: ureq::AsSendBody>(
        &self,
        r: http::Request<S>,
        left: Option<Duration>,
        url: &str,
    ) -> Result<Response, RegistryError> {
        let r = match left {
            Some(d) => self
                .agent
                .configure_request(r)
                .timeout_global(Some(d))
                .build(),
            None => r,
        };
        self.agent.run(r).map_err(|e| match e {
            ureq::Error::Timeout(ureq::Timeout::Global) => self.deadline_error(url),
            e => RegistryError::Transport {
                url: redact_url(url),
                message: e.to_string(),
            },
        })
    }

    /// `scheme://authority/v2/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/v2/{path}", self.host.base_url())
    }

    /// Describes the credential tried, for 401/403 errors.
    pub fn tried(&self) -> String {
        self.lookup.describe(&self.host)
    }

    /// Sends a request: authenticates on 401 once, follows redirects, retries 429/5xx and
    /// dropped connections of idempotent requests. Returns whatever status came last.
    pub fn send(&self, req: &Req<'_>) -> Result<Response, RegistryError> {
        let mut auth_retried = false;
        let mut attempt = 0;
        let deadline = req.deadline.or_else(|| self.transfer_deadline());
        loop {
            self.time_left(deadline, &req.url)?;
            let auth = self.auth_header(&req.scopes)?;
            let resp = match self.send_following(req, auth.as_deref(), deadline) {
                Ok(r) => r,
                Err(e)
                    if matches!(e, RegistryError::Transport { .. })
                        && matches!(req.method, "GET" | "HEAD")
                        && attempt + 1 < MAX_ATTEMPTS =>
                {
                    std::thread::sleep(backoff(attempt));
                    attempt += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let status = resp.status().as_u16();
            if status == 401 && !auth_retried {
                auth_retried = true;
                if self.on_unauthorized(&resp, &req.scopes, auth.is_some())? {
                    continue;
                }
                return Ok(resp);
            }
            if matches!(status, 429 | 502 | 503 | 504) && attempt + 1 < MAX_ATTEMPTS {
                let wait = retry_after(&resp).unwrap_or_else(|| backoff(attempt));
                if wait <= MAX_RETRY_AFTER {
                    std::thread::sleep(wait);
                    attempt += 1;
                    continue;
                }
            }
            return Ok(resp);
        }
    }

    /// Sends and maps unexpected statuses to errors (401/403 name the credential tried).
    pub fn send_expect(&self, req: &Req<'_>, ok: &[u16]) -> Result<Response, RegistryError> {
        let resp = self.send(req)?;
        self.expect(resp, &req.url, ok)
    }

    pub fn expect(&self, resp: Response, url: &str, ok: &[u16]) -> Result<Response, RegistryError> {
        let status = resp.status().as_u16();
        if ok.contains(&status) {
            return Ok(resp);
        }
        let url = redact_url(url);
        let detail = error_detail(resp);
        Err(match status {
            401 | 403 => RegistryError::Unauthorized {
                url,
                status,
                tried: format!("{}{detail}", self.tried()),
            },
            404 => RegistryError::NotFound { url },
            _ => RegistryError::Status {
                url,
                status,
                detail,
            },
        })
    }

    /// One request, following redirects; `Authorization` only goes to the registry's origin.
    fn send_following(
        &self,
        req: &Req<'_>,
        auth: Option<&str>,
        deadline: Option<Instant>,
    ) -> Result<Response, RegistryError> {
        let mut url = req.url.clone();
        let mut method = req.method.to_string();
        let mut payload = req.payload;
        for _ in 0..=MAX_REDIRECTS {
            let same_origin = url_origin(&url).is_some_and(|(s, a)| {
                s == self.host.scheme && a.eq_ignore_ascii_case(&self.host.authority)
            });
            let mut b = http::Request::builder().method(method.as_str()).uri(&url);
            for (k, v) in &req.headers {
                b = b.header(*k, v.as_str());
            }
            if same_origin {
                if let Some(a) = auth {
                    b = b.header("Authorization", a);
                }
            }
            let transport = |e: &dyn std::fmt::Display| RegistryError::Transport {
                url: redact_url(&url),
                message: e.to_string(),
            };
            let left = self.time_left(deadline, &url)?;
            let result = match payload {
                Payload::Empty => b
                    .body(ureq::SendBody::none())
                    .map_err(|e| transport(&e))
                    .and_then(|r| self.run(r, left, &url)),
                Payload::Bytes(bytes) => b
                    .body(bytes)
                    .map_err(|e| transport(&e))
                    .and_then(|r| self.run(r, left, &url)),
                Payload::File(path) => {
                    let f = std::fs::File::open(path).map_err(RegistryError::io(path))?;
                    b.body(f)
                        .map_err(|e| transport(&e))
                        .and_then(|r| self.run(r, left, &url))
                }
            };
            let resp = result?;
            let status = resp.status().as_u16();
            if matches!(status, 301 | 302 | 303 | 307 | 308) {
                let Some(loc) = header_str(&resp, "location") else {
                    return Ok(resp);
                };
                url = resolve_location(&url, &loc);
                if status == 303 || (matches!(status, 301 | 302) && method != "HEAD") {
                    method = "GET".to_string();
                    payload = Payload::Empty;
                }
                continue;
            }
            return Ok(resp);
        }
        Err(RegistryError::Transport {
            url: redact_url(&req.url),
            message: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    /// The `Authorization` value for these scopes under the current challenge, if any.
    fn auth_header(&self, scopes: &[String]) -> Result<Option<String>, RegistryError> {
        let mut st = self
            .state
            .lock()
            .map_err(|_| RegistryError::Other("auth state poisoned".into()))?;
        match st.challenge.clone() {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self.lookup.credential.as_ref().and_then(|c| c.basic())),
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let mut all: Vec<String> = scopes.to_vec();
                if let Some(s) = scope {
                    if all.is_empty() {
                        all.push(s);
                    }
                }
                let key = all.join(" ");
                if let Some(t) = st.tokens.get(&key) {
                    if t.expires > Instant::now() {
                        return Ok(Some(t.header.clone()));
                    }
                }
                let t = self.fetch_token(&realm, service.as_deref(), &all)?;
                let h = t.header.clone();
                st.tokens.insert(key, t);
                Ok(Some(h))
            }
        }
    }

    /// Handles a 401: records the challenge and drops stale tokens. False if retrying is pointless.
    fn on_unauthorized(
        &self,
        resp: &Response,
        scopes: &[String],
        sent_auth: bool,
    ) -> Result<bool, RegistryError> {
        let mut challenges = Vec::new();
        for v in resp.headers().get_all("www-authenticate") {
            if let Ok(s) = v.to_str() {
                challenges.extend(auth::parse_challenges(s));
            }
        }
        // Prefer a Bearer challenge whose realm may see our credentials; drop off-origin ones
        // when an on-origin one exists (SECURITY G2).
        let bearer_ok = challenges
            .iter()
            .find(|c| matches!(c, Challenge::Bearer { realm, .. } if realm_allowed(&self.host, realm)))
            .cloned();
        let chosen = bearer_ok
            .or_else(|| {
                challenges
                    .iter()
                    .find(|c| matches!(c, Challenge::Bearer { .. }))
                    .cloned()
            })
            .or_else(|| challenges.iter().find(|c| **c == Challenge::Basic).cloned());
        let Some(chosen) = chosen else {
            return Ok(false);
        };
        let mut st = self
            .state
            .lock()
            .map_err(|_| RegistryError::Other("auth state poisoned".into()))?;
        let same = st.challenge.as_ref() == Some(&chosen);
        if chosen == Challenge::Basic && self.lookup.credential.is_none() {
            return Ok(false);
        }
        // Basic credentials already sent and refused: retrying cannot help. A Bearer token may
        // have expired, so it is dropped and fetched again (once: `send` retries a 401 once).
        let pointless = same && sent_auth && chosen == Challenge::Basic;
        st.challenge = Some(chosen);
        st.tokens.remove(&scopes.join(" "));
        Ok(!pointless)
    }

    /// Gets a token from the realm: Basic credentials only if the realm may see them.
    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<Token, RegistryError> {
        let cred = self
            .lookup
            .credential
            .as_ref()
            .filter(|_| realm_allowed(&self.host, realm));
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = service {
            pairs.push(("service", s));
        }
        for s in scopes {
            pairs.push(("scope", s));
        }
        let transport = |e: &dyn std::fmt::Display| RegistryError::Transport {
            url: redact_url(realm),
            message: e.to_string(),
        };
        let resp = match cred.map(|c| &c.secret) {
            Some(Secret::IdentityToken(rt)) => {
                // OAuth2 refresh-token grant, as docker does with `identitytoken`.
                let mut form = format!(
                    "grant_type=refresh_token&client_id=rbuild&refresh_token={}",
                    encode_query(rt)
                );
                for (k, v) in &pairs {
                    form.push_str(&format!("&{k}={}", encode_query(v)));
                }
                let r = http::Request::builder()
                    .method("POST")
                    .uri(realm)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(form.as_bytes())
                    .map_err(|e| transport(&e))?;
                self.run(r, self.deadline, realm)?
            }
            other => {
                let url = with_query(realm, &pairs);
                let mut b = http::Request::builder().method("GET").uri(&url);
                if let (Some(Secret::Password { .. }), Some(c)) = (other, cred) {
                    if let Some(basic) = c.basic() {
                        b = b.header("Authorization", basic);
                    }
                }
                let r = b.body(ureq::SendBody::none()).map_err(|e| transport(&e))?;
                self.run(r, self.deadline, realm)?
            }
        };
        let status = resp.status().as_u16();
        if status != 200 {
            let detail = error_detail(resp);
            return Err(RegistryError::Unauthorized {
                url: redact_url(realm),
                status,
                tried: format!("token request refused; {}{detail}", self.tried()),
            });
        }
        #[derive(serde::Deserialize)]
        struct TokenResp {
            #[serde(default)]
            token: String,
            #[serde(default)]
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let mut body = Vec::new();
        resp.into_body()
            .into_reader()
            .take(1 << 20)
            .read_to_end(&mut body)
            .map_err(|e| transport(&e))?;
        let t: TokenResp = serde_json::from_slice(&body).map_err(|e| RegistryError::Transport {
            url: redact_url(realm),
            message: format!("invalid token response: {e}"),
        })?;
        let value = if t.access_token.is_empty() {
            t.token
        } else {
            t.access_token
        };
        if value.is_empty() {
            return Err(RegistryError::Transport {
                url: redact_url(realm),
                message: "token response has no token".into(),
            });
        }
        // Default lifetime 60 s (token spec); renew 10 s early.
        let secs = t.expires_in.unwrap_or(60).max(60);
        Ok(Token {
            header: format!("Bearer {value}"),
            expires: Instant::now() + Duration::from_secs(secs - 10),
        })
    }
}
