//! One blocking connection to a broker: TCP, TLS and SASL as configured, and a request/response
//! exchange encoded by `kafka-protocol`. The group protocol uses it on the membership thread (a
//! slow publish on the agent's executor never delays a heartbeat); fetches use it on the blocking
//! pool (`fetch.rs`).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

use crate::config::{KafkaConfig, KafkaSasl, SaslMechanism};
use crate::{Error, Result};

/// A request this connection sends, with its API key and its answer. (`kafka_protocol`'s own
/// `Request` trait also wants requests decodable, which only its broker feature provides.)
pub trait Call: Encodable + HeaderVersion {
    const KEY: ApiKey;
    type Answer: Decodable + HeaderVersion;
}

macro_rules! calls {
    ($($req:ident => $resp:ident as $key:ident),* $(,)?) => {
        $(impl Call for $req {
            const KEY: ApiKey = ApiKey::$key;
            type Answer = $resp;
        })*
    };
}

calls! {
    FindCoordinatorRequest => FindCoordinatorResponse as FindCoordinator,
    JoinGroupRequest => JoinGroupResponse as JoinGroup,
    SyncGroupRequest => SyncGroupResponse as SyncGroup,
    HeartbeatRequest => HeartbeatResponse as Heartbeat,
    LeaveGroupRequest => LeaveGroupResponse as LeaveGroup,
    MetadataRequest => MetadataResponse as Metadata,
    FetchRequest => FetchResponse as Fetch,
    SaslHandshakeRequest => SaslHandshakeResponse as SaslHandshake,
    SaslAuthenticateRequest => SaslAuthenticateResponse as SaslAuthenticate,
}

/// A response larger than this is refused unless the connection allows more (a group answer is
/// a few KiB; a fetch connection allows twice `kafka.fetch_max_bytes`).
const MAX_RESPONSE: usize = 64 << 20;

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

pub struct Conn {
    addr: String,
    stream: Box<dyn Stream>,
    tcp: TcpStream,
    client_id: String,
    correlation: i32,
    timeout: Duration,
    max_response: usize,
}

fn broken(addr: &str, what: &str, reason: impl std::fmt::Display) -> Error {
    Error::Source { context: format!("broker {addr}: {what}"), reason: reason.to_string() }
}

impl Conn {
    /// Connects to `addr` (host:port) and logs in as `cfg` says.
    pub fn open(cfg: &KafkaConfig, addr: &str) -> Result<Conn> {
        let timeout = cfg.request_timeout;
        let sock = addr
            .to_socket_addrs()
            .map_err(|e| broken(addr, "resolve", e))?
            .next()
            .ok_or_else(|| broken(addr, "resolve", "no address"))?;
        let tcp = TcpStream::connect_timeout(&sock, timeout).map_err(|e| broken(addr, "connect", e))?;
        tcp.set_nodelay(true).map_err(|e| broken(addr, "connect", e))?;
        let stream: Box<dyn Stream> = match &cfg.tls {
            None => Box::new(tcp.try_clone().map_err(|e| broken(addr, "connect", e))?),
            Some(tls) => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).trim_matches(['[', ']']).to_string();
                let name = rustls::pki_types::ServerName::try_from(host).map_err(|e| {
                    Error::config("kafka.brokers", format!("`{addr}`: {e}"), "name brokers by host:port")
                })?;
                let tls_cfg: Arc<rustls::ClientConfig> = super::security::tls_config(tls)?;
                let session = rustls::ClientConnection::new(tls_cfg, name).map_err(|e| broken(addr, "TLS", e))?;
                let sock = tcp.try_clone().map_err(|e| broken(addr, "connect", e))?;
                Box::new(rustls::StreamOwned::new(session, sock))
            }
        };
        let mut conn = Conn {
            addr: addr.to_string(),
            stream,
            tcp,
            client_id: cfg.client_id.clone(),
            correlation: 0,
            timeout,
            max_response: MAX_RESPONSE,
        };
        if let Some(sasl) = &cfg.sasl {
            conn.login(sasl)?;
        }
        Ok(conn)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Allows answers of up to `bytes` (never less than the default).
    pub fn allow_answers_of(&mut self, bytes: usize) {
        self.max_response = bytes.max(MAX_RESPONSE);
    }

    /// Sends `req` at `version` and reads its answer, waiting up to the request timeout plus `extra`
    /// (a JoinGroup is held by the coordinator until the group has rejoined).
    pub fn call<R: Call>(&mut self, req: &R, version: i16, extra: Duration) -> Result<R::Answer> {
        let what = format!("{:?} v{version}", R::KEY);
        self.correlation = self.correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_string(self.client_id.clone())));
        let mut body = BytesMut::new();
        header.encode(&mut body, R::header_version(version)).map_err(|e| broken(&self.addr, &what, e))?;
        req.encode(&mut body, version).map_err(|e| broken(&self.addr, &what, e))?;
        let mut frame = Vec::with_capacity(body.len() + 4);
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&body);
        self.tcp.set_read_timeout(Some(self.timeout + extra)).map_err(|e| broken(&self.addr, &what, e))?;
        self.tcp.set_write_timeout(Some(self.timeout)).map_err(|e| broken(&self.addr, &what, e))?;
        self.stream.write_all(&frame).and_then(|()| self.stream.flush()).map_err(|e| broken(&self.addr, &what, e))?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).map_err(|e| broken(&self.addr, &what, e))?;
        let len = u32::from_be_bytes(len) as usize;
        if len > self.max_response {
            return Err(broken(&self.addr, &what, format!("answer of {len} bytes")));
        }
        let mut buf = vec![0u8; len];
        self.stream.read_exact(&mut buf).map_err(|e| broken(&self.addr, &what, e))?;
        let mut buf = Bytes::from(buf);
        let h = ResponseHeader::decode(&mut buf, R::Answer::header_version(version))
            .map_err(|e| broken(&self.addr, &what, e))?;
        if h.correlation_id != self.correlation {
            return Err(broken(
                &self.addr,
                &what,
                format!("answer to request {} instead of {}", h.correlation_id, self.correlation),
            ));
        }
        R::Answer::decode(&mut buf, version).map_err(|e| broken(&self.addr, &what, e))
    }

    /// SASL login (SaslHandshake v1, then SaslAuthenticate v1 until the mechanism is done).
    fn login(&mut self, sasl: &KafkaSasl) -> Result<()> {
        use rsasl::prelude::{Mechname, SASLClient, SASLConfig};
        let mechanism = match sasl.mechanism {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        };
        let refused = |reason: String| {
            Error::config(
                "kafka.password",
                format!("the broker refused the SASL login of frazil's own connection ({reason})"),
                "check kafka.username, kafka.password and kafka.sasl_mechanism",
            )
        };
        let hs = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism));
        let answer = self.call(&hs, 1, Duration::ZERO)?;
        if answer.error_code != 0 {
            return Err(refused(format!("mechanism {mechanism}: error {}", answer.error_code)));
        }
        let config = SASLConfig::with_credentials(None, sasl.username.clone(), sasl.password.clone())
            .map_err(|e| refused(e.to_string()))?;
        let name = Mechname::parse(mechanism.as_bytes()).map_err(|e| refused(e.to_string()))?;
        let mut session = SASLClient::new(config).start_suggested(&[name]).map_err(|e| refused(e.to_string()))?;
        let mut received: Option<Vec<u8>> = None;
        loop {
            let mut out = Vec::new();
            let state = session.step(received.as_deref(), &mut out).map_err(|e| refused(e.to_string()))?;
            if state.has_sent_message() {
                let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(out));
                let answer = self.call(&req, 1, Duration::ZERO)?;
                if answer.error_code != 0 {
                    let msg = answer.error_message.map(|m| m.to_string()).unwrap_or_default();
                    return Err(refused(format!("error {}: {msg}", answer.error_code)));
                }
                received = Some(answer.auth_bytes.to_vec());
            }
            if state.is_finished() {
                return Ok(());
            }
        }
    }
}
