//! The control API over HTTP/1.1 (hyper on a current-thread tokio
//! runtime), on its own thread, off the workers' cores. It parses and
//! authenticates requests and hands each to the controller's owner thread
//! through a channel; it never touches the data path.

use super::engine::{Op, Reply, Request};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, StatusCode};
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// An event time as `apply --at` takes it: RFC 3339 or integer ns since
/// the Unix epoch.
pub fn parse_event_time(s: &str) -> Option<i64> {
    let s = s.trim();
    s.parse::<i64>()
        .ok()
        .or_else(|| crate::codec::time::parse_rfc3339(s.as_bytes()))
}

/// A request on its way to the owner thread, with where to answer.
pub type Envelope = (Request, tokio::sync::oneshot::Sender<Reply>);

/// Largest request body (a table loaded from CSV).
pub const BODY_MAX: usize = 64 << 20;

struct Ctx {
    tx: crossbeam::channel::Sender<Envelope>,
    /// (name, SHA-256 of the secret).
    tokens: Vec<(String, [u8; 32])>,
    ready: Arc<AtomicBool>,
}

/// The running server.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<tokio::sync::Notify>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds `listen` (errors here, before anything runs) and serves it
    /// on a thread named `mutstream-admin`, allowed on `cores` only (all
    /// cores when empty). Requests arrive on the returned channel.
    pub fn start(
        listen: SocketAddr,
        tokens: &[(String, String)],
        cores: Vec<usize>,
        ready: Arc<AtomicBool>,
    ) -> std::io::Result<(Server, crossbeam::channel::Receiver<Envelope>)> {
        let std_listener = std::net::TcpListener::bind(listen)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let (tx, rx) = crossbeam::channel::bounded(64);
        let ctx = Arc::new(Ctx {
            tx,
            tokens: tokens
                .iter()
                .map(|(n, s)| (n.clone(), Sha256::digest(s.as_bytes()).into()))
                .collect(),
            ready,
        });
        let stop = Arc::new(tokio::sync::Notify::new());
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("mutstream-admin".into())
            .spawn(move || {
                crate::sys::allow_cores(&cores);
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .enable_time()
                    .max_blocking_threads(1)
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("admin API: cannot start its runtime: {e}");
                        return;
                    }
                };
                rt.block_on(serve(std_listener, ctx, stop2));
            })?;
        Ok((
            Server {
                addr,
                stop,
                thread: Some(thread),
            },
            rx,
        ))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and ends the thread (open connections are closed).
    pub fn stop(mut self) {
        self.stop.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.notify_one();
    }
}

async fn serve(std_listener: std::net::TcpListener, ctx: Arc<Ctx>, stop: Arc<tokio::sync::Notify>) {
    let listener = match tokio::net::TcpListener::from_std(std_listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("admin API: {e}");
            return;
        }
    };
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (sock, _) = tokio::select! {
            _ = stop.notified() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("admin API: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = sock.set_nodelay(true);
        let ctx = ctx.clone();
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(req, ctx.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .keep_alive(true)
                .serve_connection(hyper_util::rt::TokioIo::new(sock), svc)
                .await;
        });
        while conns.try_join_next().is_some() {}
    }
    conns.shutdown().await;
}

fn respond(status: u16, body: &serde_json::Value) -> hyper::Response<Full<Bytes>> {
    let mut text = serde_json::to_vec(body).expect("serialisable");
    text.push(b'\n');
    let mut r = hyper::Response::new(Full::new(Bytes::from(text)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    if status == 401 {
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer"),
        );
    }
    r
}

fn error(status: u16, msg: impl Into<String>) -> hyper::Response<Full<Bytes>> {
    respond(status, &serde_json::json!({ "error": msg.into() }))
}

/// Constant-time equality of two digests.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut d = 0u8;
    for (x, y) in a.iter().zip(b) {
        d |= x ^ y;
    }
    std::hint::black_box(d) == 0
}

/// The author of an authorised request, or why it is not.
fn authorise(ctx: &Ctx, req: &hyper::Request<Incoming>) -> Result<String, &'static str> {
    if ctx.tokens.is_empty() {
        return Ok("local".into());
    }
    let Some(h) = req.headers().get(hyper::header::AUTHORIZATION) else {
        return Err("missing token: send Authorization: Bearer <token>");
    };
    let given = h
        .to_str()
        .ok()
        .and_then(|s| s.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    let d: [u8; 32] = Sha256::digest(given.as_bytes()).into();
    // Every token is compared, whichever matches.
    let mut who = None;
    for (name, t) in &ctx.tokens {
        if same(t, &d) {
            who = Some(name.clone());
        }
    }
    who.ok_or("wrong token")
}

/// `%XX` and `+` decoding of a query value.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(req: &hyper::Request<Incoming>, key: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| decode(v))
    })
}

fn header(req: &hyper::Request<Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
}

/// A JSON scalar as the text `set` and `table put` parse.
fn scalar(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

async fn handle(
    req: hyper::Request<Incoming>,
    ctx: Arc<Ctx>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let parts: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(decode)
        .collect::<Vec<_>>();
    let p: Vec<&str> = parts.iter().map(String::as_str).collect();
    match (&method, p.as_slice()) {
        (&Method::GET, ["health"]) => {
            return Ok(respond(200, &serde_json::json!({"status": "ok"})));
        }
        (&Method::GET, ["ready"]) => {
            let ready = ctx.ready.load(Ordering::Acquire);
            return Ok(respond(
                if ready { 200 } else { 503 },
                &serde_json::json!({ "ready": ready }),
            ));
        }
        _ => {}
    }
    let author = match authorise(&ctx, &req) {
        Ok(a) => a,
        Err(why) => return Ok(error(401, why)),
    };
    let if_match = match header(&req, "if-match") {
        None => None,
        Some(v) => match v.trim_matches('"').parse::<u64>() {
            Ok(g) => Some(g),
            Err(_) => {
                return Ok(error(
                    400,
                    format!("If-Match: {v:?} is not a generation number"),
                ));
            }
        },
    };
    let idempotency_key = header(&req, "idempotency-key");
    let dry_run = query(&req, "dry_run").is_some_and(|v| v != "0" && v != "false");
    let origin = query(&req, "origin").unwrap_or_else(|| "request".into());
    let generation_q = query(&req, "generation");
    let at_q = query(&req, "at");
    let route = match (&method, p.as_slice()) {
        (&Method::GET, ["v1", "status"]) => Some(Route::Op(Op::Status)),
        (&Method::GET, ["metrics"]) => Some(Route::Op(Op::Metrics)),
        (&Method::GET, ["v1", "history"]) => Some(Route::Op(Op::History)),
        (&Method::POST, ["v1", "pipeline"]) => Some(Route::Pipeline),
        (&Method::PUT, ["v1", "params", name]) => Some(Route::Param(name.to_string())),
        (&Method::PUT, ["v1", "tables", t, key]) => {
            Some(Route::Put(t.to_string(), key.to_string()))
        }
        (&Method::DELETE, ["v1", "tables", t, key]) => Some(Route::Op(Op::TableDel {
            table: t.to_string(),
            key: key.to_string(),
        })),
        (&Method::POST, ["v1", "tables", t]) => Some(Route::Load(t.to_string())),
        (&Method::POST, ["v1", "rollback"]) => Some(Route::Rollback),
        (&Method::POST, ["v1", "tap"]) => Some(Route::Tap),
        (&Method::GET, ["v1", "tap", id]) => match id.parse() {
            Ok(id) => Some(Route::Op(Op::TapRead { id })),
            Err(_) => return Ok(error(404, format!("no tap {id:?}"))),
        },
        (&Method::DELETE, ["v1", "tap", id]) => match id.parse() {
            Ok(id) => Some(Route::Op(Op::TapStop { id })),
            Err(_) => return Ok(error(404, format!("no tap {id:?}"))),
        },
        _ => None,
    };
    let Some(route) = route else {
        let known = matches!(
            p.as_slice(),
            ["v1", "status" | "history" | "pipeline" | "rollback" | "tap"]
                | ["metrics"]
                | ["v1", "tap", _]
                | ["v1", "params", _]
                | ["v1", "tables", ..]
        );
        return Ok(if known {
            error(405, format!("{method} is not allowed on {path}"))
        } else {
            error(404, format!("no such route: {method} {path}"))
        });
    };
    let body = match Limited::new(req.into_body(), BODY_MAX).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(if e.is::<http_body_util::LengthLimitError>() {
                error(413, format!("request body larger than {BODY_MAX} bytes"))
            } else {
                error(400, format!("reading the request body: {e}"))
            });
        }
    };
    let text = match std::str::from_utf8(&body) {
        Ok(t) => t.to_string(),
        Err(_) => return Ok(error(400, "the request body is not UTF-8")),
    };
    let json = || serde_json::from_str::<serde_json::Value>(&text).ok();
    let op = match route {
        Route::Op(op) => op,
        Route::Pipeline => {
            let at = match at_q.as_deref().map(parse_event_time) {
                None => None,
                Some(Some(t)) => Some(t),
                Some(None) => {
                    return Ok(error(
                        400,
                        format!(
                            "at={:?} is neither RFC 3339 (2026-11-30T14:30:00Z) nor integer ns",
                            at_q.unwrap_or_default()
                        ),
                    ));
                }
            };
            Op::Apply {
                text,
                origin,
                dry_run,
                at,
            }
        }
        Route::Param(name) => {
            let value = match json().as_ref() {
                Some(serde_json::Value::Object(o)) => match o.get("value").and_then(scalar) {
                    Some(v) => v,
                    None => return Ok(error(400, "expected {\"value\": <number|bool|string>}")),
                },
                Some(v) => scalar(v).unwrap_or_else(|| text.trim().to_string()),
                None => text.trim().to_string(),
            };
            Op::Set { name, value }
        }
        Route::Put(table, key) => {
            let mut cols = Vec::new();
            if !text.trim().is_empty() {
                let Some(serde_json::Value::Object(o)) = json() else {
                    return Ok(error(
                        400,
                        "expected a JSON object of column values, e.g. {\"sector\": \"tech\"}",
                    ));
                };
                for (k, v) in o {
                    match scalar(&v) {
                        Some(s) => cols.push((k, s)),
                        None => {
                            return Ok(error(
                                400,
                                format!("column {k:?}: expected a number, bool or string"),
                            ));
                        }
                    }
                }
            }
            Op::TablePut { table, key, cols }
        }
        Route::Load(table) => Op::TableLoad { table, csv: text },
        Route::Tap => {
            let Some(serde_json::Value::Object(o)) = json() else {
                return Ok(error(
                    400,
                    "expected {\"stage\": NAME, \"limit\": N, \"interval_ms\": MS}",
                ));
            };
            let Some(stage) = o.get("stage").and_then(|v| v.as_str()) else {
                return Ok(error(400, "stage: expected a stage name"));
            };
            let limit = match o.get("limit") {
                None => 100,
                Some(v) => match v.as_u64().filter(|&n| (1..=10_000).contains(&n)) {
                    Some(n) => n as u32,
                    None => {
                        return Ok(error(400, "limit: expected 1..=10000 records per interval"));
                    }
                },
            };
            let interval_ms = match o.get("interval_ms") {
                None => 500,
                Some(v) => match v.as_u64().filter(|&n| (10..=60_000).contains(&n)) {
                    Some(n) => n,
                    None => return Ok(error(400, "interval_ms: expected 10..=60000")),
                },
            };
            Op::TapStart {
                stage: stage.to_string(),
                limit,
                interval_ns: interval_ms * 1_000_000,
            }
        }
        Route::Rollback => {
            let to = match generation_q {
                Some(g) => Some(g),
                None => json()
                    .and_then(|v| v.get("generation").cloned())
                    .and_then(|g| scalar(&g)),
            };
            match to.map(|g| g.parse::<u64>()) {
                None => Op::Rollback { to: None },
                Some(Ok(g)) => Op::Rollback { to: Some(g) },
                Some(Err(_)) => return Ok(error(400, "generation: expected a number")),
            }
        }
    };
    let metrics = op == Op::Metrics;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let request = Request {
        op,
        author,
        if_match,
        idempotency_key,
    };
    if ctx.tx.send((request, tx)).is_err() {
        return Ok(error(503, "the appliance is stopping"));
    }
    Ok(match rx.await {
        Ok(Reply {
            status: 200,
            body: serde_json::Value::String(text),
        }) if metrics => {
            let mut r = hyper::Response::new(Full::new(Bytes::from(text)));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        Ok(r) => respond(r.status, &r.body),
        Err(_) => error(503, "the appliance is stopping"),
    })
}

enum Route {
    Op(Op),
    Pipeline,
    Param(String),
    Put(String, String),
    Load(String),
    Rollback,
    Tap,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(decode("a%2Fb+c"), "a/b c");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
        assert_eq!(decode("%41"), "A");
    }

    #[test]
    fn digests_compare_whole() {
        let a: [u8; 32] = Sha256::digest(b"secret-secret-secret").into();
        let b: [u8; 32] = Sha256::digest(b"secret-secret-secreT").into();
        assert!(same(&a, &a));
        assert!(!same(&a, &b));
    }
}
