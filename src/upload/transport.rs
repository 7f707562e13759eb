//! object_store's HTTP transport, spoken by ureq.
//!
//! object_store (feature `aws-base`, no reqwest) needs an [`HttpConnector`]. This one builds a
//! blocking ureq agent from the [`ClientOptions`] and runs every exchange on the `blocking`
//! thread pool, so neither the smol executor thread nor async-compat's tokio thread ever blocks
//! on the network.
//!
//! Behaviour object_store relies on:
//! - 4xx/5xx statuses come back as responses (`http_status_as_error(false)`): object_store reads
//!   the status and the S3 error body itself and decides whether to retry.
//! - Redirects are not followed (object_store treats a 3xx as an error, as with reqwest + S3).
//! - Transport failures map to the [`HttpErrorKind`] that drives object_store's retries:
//!   `Connect` (nothing was sent: always retried), `Timeout`/`Interrupted` (retried when the
//!   request is idempotent), `Decode`/`Unknown` (not retried).
//! - The response body is read completely inside the blocking call, under the same timeouts, so
//!   a stalled body is a (retryable) error of the request rather than of a later stream poll.
//!   The objects this agent reads are metadata, manifests and ranges of them, so buffering is fine.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use http_body::Body as _;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpRequestBody, HttpResponse, HttpResponseBody,
    HttpService,
};
use object_store::{ClientConfigKey, ClientOptions};

/// The [`HttpConnector`] given to every S3 store: ureq on the `blocking` thread pool, trusting
/// `roots` (see `crate::tls`: empty means the bundled Mozilla roots).
#[derive(Debug, Default, Clone)]
pub struct UreqConnector {
    roots: std::sync::Arc<Vec<rustls::pki_types::CertificateDer<'static>>>,
}

impl UreqConnector {
    pub fn new(roots: Vec<rustls::pki_types::CertificateDer<'static>>) -> Self {
        UreqConnector { roots: std::sync::Arc::new(roots) }
    }
}

impl HttpConnector for UreqConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(UreqService::new(options, &self.roots)?))
    }
}

/// One ureq agent (one connection pool) per store.
#[derive(Debug, Clone)]
struct UreqService {
    agent: ureq::Agent,
    default_headers: http::HeaderMap,
}

fn option_duration(options: &ClientOptions, key: ClientConfigKey) -> Option<Duration> {
    options.get_config_value(&key).and_then(|v| parse_duration(&v))
}

fn option_bool(options: &ClientOptions, key: ClientConfigKey) -> bool {
    options.get_config_value(&key).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

impl UreqService {
    fn new(
        options: &ClientOptions,
        roots: &[rustls::pki_types::CertificateDer<'static>],
    ) -> object_store::Result<Self> {
        let generic = |e: ureq::Error| object_store::Error::Generic { store: "S3", source: Box::new(e) };

        let mut tls = crate::tls::ureq_config(roots);
        if option_bool(options, ClientConfigKey::AllowInvalidCertificates) {
            tls = ureq::tls::TlsConfig::builder().disable_verification(true).build();
        }
        let proxy = match options.get_config_value(&ClientConfigKey::ProxyUrl) {
            Some(url) => Some(ureq::Proxy::new(&url).map_err(generic)?),
            // ureq's default: HTTPS_PROXY / HTTP_PROXY / ALL_PROXY from the environment.
            None => ureq::Proxy::try_from_env(),
        };
        let user_agent = options
            .get_config_value(&ClientConfigKey::UserAgent)
            .unwrap_or_else(|| concat!("frazil/", env!("CARGO_PKG_VERSION")).to_string());

        let idle = option_duration(options, ClientConfigKey::ReadTimeout);
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .https_only(!option_bool(options, ClientConfigKey::AllowHttp))
            .tls_config(tls)
            .proxy(proxy)
            .user_agent(user_agent)
            // `timeout`: the whole exchange, body included (as reqwest's `timeout`).
            .timeout_global(option_duration(options, ClientConfigKey::Timeout))
            .timeout_connect(option_duration(options, ClientConfigKey::ConnectTimeout))
            // `read_timeout`: the longest silence on the connection. ClientOptions has no write
            // timeout, so it bounds each write too: a peer that stops taking an upload is caught.
            .timeout_per_read(idle)
            .timeout_per_write(idle);
        if let Some(age) = option_duration(options, ClientConfigKey::PoolIdleTimeout) {
            config = config.max_idle_age(age);
        }
        if let Some(n) =
            options.get_config_value(&ClientConfigKey::PoolMaxIdlePerHost).and_then(|v| v.parse::<usize>().ok())
        {
            config = config.max_idle_connections_per_host(n);
        }
        Ok(Self {
            agent: config.build().into(),
            default_headers: options.get_default_headers().cloned().unwrap_or_default(),
        })
    }
}

#[async_trait::async_trait]
impl HttpService for UreqService {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (mut parts, body) = req.into_parts();
        for (name, value) in &self.default_headers {
            if !parts.headers.contains_key(name) {
                parts.headers.insert(name.clone(), value.clone());
            }
        }
        let body = collect_request_body(body).await?;
        let agent = self.agent.clone();
        blocking::unblock(move || exchange(&agent, parts, body)).await
    }
}

/// The request body as one contiguous buffer (S3 needs a Content-Length; a payload made from
/// one `Bytes` is not copied). object_store's request bodies are in memory already.
async fn collect_request_body(body: HttpRequestBody) -> Result<Bytes, HttpError> {
    if let Some(bytes) = body.as_bytes() {
        return Ok(bytes.clone());
    }
    let total = body.content_length();
    let mut body = std::pin::pin!(body);
    let mut chunks: Vec<Bytes> = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        if let Ok(data) = frame?.into_data() {
            chunks.push(data);
        }
    }
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().unwrap_or_default(),
        _ => {
            let mut all = Vec::with_capacity(total);
            for chunk in &chunks {
                all.extend_from_slice(chunk);
            }
            Bytes::from(all)
        }
    })
}

/// One blocking HTTP exchange, response body included. Runs on the `blocking` pool.
fn exchange(agent: &ureq::Agent, parts: http::request::Parts, body: Bytes) -> Result<HttpResponse, HttpError> {
    let sends_body =
        !body.is_empty() || matches!(parts.method, http::Method::POST | http::Method::PUT | http::Method::PATCH);
    let result = if sends_body {
        agent.run(http::Request::from_parts(parts, &body[..]))
    } else {
        agent.run(http::Request::from_parts(parts, ()))
    };
    let response = result.map_err(transport_error)?;
    let (parts, mut body) = response.into_parts();
    let bytes = body.with_config().limit(u64::MAX).read_to_vec().map_err(transport_error)?;
    Ok(HttpResponse::from_parts(parts, HttpResponseBody::from(bytes)))
}

/// Sorts a ureq failure into the kind object_store's retry logic understands.
fn transport_error(e: ureq::Error) -> HttpError {
    HttpError::new(error_kind(&e), e)
}

fn error_kind(e: &ureq::Error) -> HttpErrorKind {
    use ureq::Error as E;
    match e {
        // Nothing reached the server: safe to retry any request.
        E::HostNotFound | E::ConnectionFailed | E::ConnectProxyFailed(_) => HttpErrorKind::Connect,
        E::Timeout(ureq::Timeout::Resolve | ureq::Timeout::Connect) => HttpErrorKind::Connect,
        E::Timeout(_) => HttpErrorKind::Timeout,
        E::Io(io) => io_error_kind(io),
        // The peer broke the HTTP exchange (closed early, garbled response): the request may or
        // may not have been applied.
        E::Protocol(_) | E::BodyStalled => HttpErrorKind::Interrupted,
        E::LargeResponseHeader(..) => HttpErrorKind::Decode,
        // Configuration, certificates, bad URLs, redirects: retrying will not help.
        _ => HttpErrorKind::Unknown,
    }
}

fn io_error_kind(e: &io::Error) -> HttpErrorKind {
    use io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused
        | K::NotConnected
        | K::AddrNotAvailable
        | K::AddrInUse
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::NetworkDown => HttpErrorKind::Connect,
        K::TimedOut | K::WouldBlock => HttpErrorKind::Timeout,
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof | K::Interrupted => {
            HttpErrorKind::Interrupted
        }
        _ => HttpErrorKind::Unknown,
    }
}

/// Parses the durations object_store formats with `humantime` ("30s", "1m 30s", "500ms").
fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut any = false;
    for token in text.split_whitespace() {
        let split = token.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        let (number, unit) = token.split_at(split);
        let number: f64 = number.parse().ok()?;
        let seconds = match unit {
            "ns" | "nsec" => 1e-9,
            "us" | "µs" | "usec" => 1e-6,
            "ms" | "msec" => 1e-3,
            "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3_600.0,
            "d" | "day" | "days" => 86_400.0,
            _ => return None,
        };
        total += Duration::try_from_secs_f64(number * seconds).ok()?;
        any = true;
    }
    any.then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_object_store_durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m 30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("2s 500ms"), Some(Duration::from_millis(2_500)));
        assert_eq!(parse_duration("5 s"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn maps_transport_errors_to_retry_kinds() {
        let io = |k| ureq::Error::Io(io::Error::from(k));
        assert_eq!(error_kind(&io(io::ErrorKind::ConnectionRefused)), HttpErrorKind::Connect);
        assert_eq!(error_kind(&io(io::ErrorKind::TimedOut)), HttpErrorKind::Timeout);
        assert_eq!(error_kind(&io(io::ErrorKind::ConnectionReset)), HttpErrorKind::Interrupted);
        assert_eq!(error_kind(&ureq::Error::HostNotFound), HttpErrorKind::Connect);
        assert_eq!(error_kind(&ureq::Error::Timeout(ureq::Timeout::Connect)), HttpErrorKind::Connect);
        assert_eq!(error_kind(&ureq::Error::Timeout(ureq::Timeout::RecvBody)), HttpErrorKind::Timeout);
        assert_eq!(error_kind(&ureq::Error::BadUri("x".into())), HttpErrorKind::Unknown);
    }
}
