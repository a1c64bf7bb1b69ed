//! An HTTP-aware fault proxy in front of an S3 server. It reads each request's head,
//! names the S3 operation (UploadPart, CompleteMultipartUpload, …), and by a seeded RNG
//! and a fault plan the test sets answers `500 InternalError` or `503 SlowDown`, resets
//! the connection (before the request, mid-body, or after S3 answered: the answer is
//! lost), delays it, or holds it until the test lets it go (so a kill lands while
//! CompleteMultipartUpload is in flight). Everything else passes through.
//!
//! One request per connection: the proxy tells both sides `Connection: close`, so it
//! never has to frame a response. S3 requests of the SDK carry `Content-Length`. Once a
//! request has reached S3 whole, the proxy reads S3's answer to its end even when the
//! caller is gone, as S3 itself finishes what it was sent (s3s-fs would otherwise drop a
//! completion halfway when its caller dies).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// The S3 operation of a request, told from its method, path and query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    CreateMultipart,
    UploadPart,
    ListParts,
    Complete,
    Abort,
    HeadObject,
    GetObject,
    PutObject,
    DeleteObject,
    HeadBucket,
    Other,
}

impl Op {
    /// Every operation ferry sends while it serves uploads.
    pub const UPLOAD_PATH: [Op; 7] =
        [Op::CreateMultipart, Op::UploadPart, Op::ListParts, Op::Complete, Op::Abort, Op::HeadObject, Op::DeleteObject];

    /// Names the operation of `method` on `target` (path-style: `/bucket/key?query`).
    pub fn classify(method: &str, target: &str) -> Op {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let has = |name: &str| query.split('&').any(|p| p.split('=').next() == Some(name));
        let object = path.trim_start_matches('/').split_once('/').is_some_and(|(_, key)| !key.is_empty());
        match method {
            "PUT" if has("partNumber") && has("uploadId") => Op::UploadPart,
            "PUT" if object => Op::PutObject,
            "POST" if has("uploads") => Op::CreateMultipart,
            "POST" if has("uploadId") => Op::Complete,
            "GET" if has("uploadId") => Op::ListParts,
            "GET" if object => Op::GetObject,
            "DELETE" if has("uploadId") => Op::Abort,
            "DELETE" if object => Op::DeleteObject,
            "HEAD" if object => Op::HeadObject,
            "HEAD" => Op::HeadBucket,
            _ => Op::Other,
        }
    }
}

/// What the proxy does to a request instead of passing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `500 InternalError`, after reading the body.
    InternalError,
    /// `503 SlowDown`, after reading the body.
    SlowDown,
    /// A reset before anything reaches S3.
    Reset,
    /// Half the body reaches S3, then both connections are reset.
    ResetMidBody,
    /// S3 gets the whole request and answers; the caller gets a reset instead.
    AnswerLost,
    /// The request waits this long, then passes.
    Delay(Duration),
}

impl Fault {
    /// The name the counts use.
    pub fn name(self) -> &'static str {
        match self {
            Fault::InternalError => "s3-500",
            Fault::SlowDown => "s3-503",
            Fault::Reset => "s3-reset",
            Fault::ResetMidBody => "s3-reset-mid-body",
            Fault::AnswerLost => "s3-answer-lost",
            Fault::Delay(_) => "s3-delay",
        }
    }
}

/// A rule of the plan: of requests for `ops`, each gets `fault` with `probability`,
/// until `budget` faults have been injected.
#[derive(Debug, Clone)]
pub struct Rule {
    pub ops: Vec<Op>,
    pub fault: Fault,
    pub probability: f64,
    pub budget: usize,
}

/// A request the proxy holds for the test, and on which listener it came.
pub struct Held {
    pub listener: usize,
    release: oneshot::Sender<bool>,
}

impl Held {
    /// Lets the request go on to S3 (`forward`), or drops it as if never sent.
    pub fn release(self, forward: bool) {
        let _ = self.release.send(forward);
    }
}

struct Hold {
    op: Op,
    listener: Option<usize>,
    tell: oneshot::Sender<Held>,
}

#[derive(Default)]
struct Plan {
    rules: Vec<Rule>,
    hold: Option<Hold>,
}

struct State {
    upstream: String,
    rng: Mutex<StdRng>,
    plan: Mutex<Plan>,
    counts: Mutex<BTreeMap<&'static str, usize>>,
    /// One line per request the proxy faulted or held: when, which listener, what, to what.
    journal: Mutex<Vec<String>>,
}

/// A running proxy with one listener per caller, so faults and holds can be told apart
/// by caller (ferry instance `i` talks to `addresses[i]`).
pub struct S3FaultProxy {
    pub addresses: Vec<String>,
    state: Arc<State>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Longest a held request waits for the test before it passes on its own.
const HOLD_LIMIT: Duration = Duration::from_secs(15);

impl S3FaultProxy {
    /// A proxy in front of `upstream` (`http://host:port`) with `listeners` listeners and
    /// an RNG seeded with `seed`; it passes everything until a plan is set.
    pub async fn start(upstream: &str, listeners: usize, seed: u64) -> Self {
        let state = Arc::new(State {
            upstream: upstream.trim_start_matches("http://").to_owned(),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            plan: Mutex::new(Plan::default()),
            counts: Mutex::new(BTreeMap::new()),
            journal: Mutex::new(Vec::new()),
        });
        let mut addresses = Vec::new();
        let mut tasks = Vec::new();
        for listener_index in 0..listeners {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            addresses.push(format!("http://{}", listener.local_addr().unwrap()));
            let state = state.clone();
            tasks.push(tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    tokio::spawn(serve(state.clone(), listener_index, client));
                }
            }));
        }
        Self { addresses, state, tasks }
    }

    /// Adds a rule to the plan.
    pub fn add_rule(&self, rule: Rule) {
        self.state.plan.lock().unwrap().rules.push(rule);
    }

    /// Drops every rule and hold: everything passes from now on.
    pub fn clear(&self) {
        *self.state.plan.lock().unwrap() = Plan::default();
    }

    /// Holds the next request for `op` (from `listener`, or any) and returns it once it
    /// arrives, or `None` if none does `within`.
    pub async fn hold_next(&self, op: Op, listener: Option<usize>, within: Duration) -> Option<Held> {
        let (tell, told) = oneshot::channel();
        self.state.plan.lock().unwrap().hold = Some(Hold { op, listener, tell });
        let held = tokio::time::timeout(within, told).await.ok().and_then(Result::ok);
        if held.is_none() {
            self.state.plan.lock().unwrap().hold = None;
        }
        held
    }

    /// Faults injected so far, by name (`s3-500`, …), and requests seen, by operation.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        self.state.counts.lock().unwrap().clone()
    }

    /// Every request faulted or held so far, one line each (UTC time, listener, operation,
    /// fault, target): to lay beside the instances' logs when a run fails.
    pub fn journal(&self) -> Vec<String> {
        self.state.journal.lock().unwrap().clone()
    }
}

impl Drop for S3FaultProxy {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl State {
    fn count(&self, name: &'static str) {
        *self.counts.lock().unwrap().entry(name).or_default() += 1;
    }

    fn note(&self, listener: usize, op: Op, what: &str, target: &str) {
        let at = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ");
        self.journal.lock().unwrap().push(format!("{at} listener={listener} {op:?} {what} {target}"));
    }

    /// The hold waiting for this request, or the fault the plan draws for it.
    fn decide(&self, op: Op, listener: Option<usize>) -> (Option<Hold>, Option<Fault>) {
        let mut plan = self.plan.lock().unwrap();
        let holds = plan.hold.as_ref().is_some_and(|h| h.op == op && h.listener.is_none_or(|l| Some(l) == listener));
        if holds {
            return (plan.hold.take(), None);
        }
        let mut rng = self.rng.lock().unwrap();
        for rule in plan.rules.iter_mut().filter(|r| r.budget > 0 && r.ops.contains(&op)) {
            if rng.random_bool(rule.probability) {
                rule.budget -= 1;
                return (None, Some(rule.fault));
            }
        }
        (None, None)
    }
}

/// One request of one connection: read its head, decide, act.
async fn serve(state: Arc<State>, listener: usize, mut client: TcpStream) {
    let Some(request) = Request::read(&mut client).await else { return };
    let op = Op::classify(&request.method, &request.target);
    state.count(op_name(op));
    let (hold, mut fault) = state.decide(op, Some(listener));
    if let Some(hold) = hold {
        let (release, released) = oneshot::channel();
        state.note(listener, op, "held", &request.target);
        let forward = match hold.tell.send(Held { listener, release }) {
            Ok(()) => tokio::time::timeout(HOLD_LIMIT, released).await.ok().and_then(Result::ok).unwrap_or(true),
            Err(_) => true,
        };
        state.note(listener, op, if forward { "released: forwarded" } else { "released: dropped" }, &request.target);
        if !forward {
            return reset(client);
        }
    }
    if let Some(f) = fault {
        state.count(f.name());
        state.note(listener, op, &format!("{f:?}"), &request.target);
    }
    if let Some(Fault::Delay(pause)) = fault {
        tokio::time::sleep(pause).await;
        fault = None;
    }
    if request.expects_continue {
        let _ = client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
    }
    match fault {
        Some(Fault::Reset) => reset(client),
        Some(f @ (Fault::InternalError | Fault::SlowDown)) => {
            let mut body = (&request.rest[..]).chain(&mut client).take(request.length);
            if tokio::io::copy(&mut body, &mut tokio::io::sink()).await.is_ok() {
                let _ = client.write_all(error_answer(f, &request.method).as_bytes()).await;
                let _ = client.shutdown().await;
            }
        }
        _ => forward(&state, request, client, fault).await,
    }
}

/// Passes the request to S3 and the answer back, with `ResetMidBody` or `AnswerLost`.
async fn forward(state: &State, request: Request, mut client: TcpStream, fault: Option<Fault>) {
    let Ok(mut server) = TcpStream::connect(&state.upstream).await else { return reset(client) };
    if server.write_all(request.head.as_bytes()).await.is_err() {
        return reset(client);
    }
    let send = if fault == Some(Fault::ResetMidBody) { request.length / 2 } else { request.length };
    let mut body = (&request.rest[..]).chain(&mut client).take(send);
    match tokio::io::copy(&mut body, &mut server).await {
        Ok(n) if n == send && send == request.length => {}
        // The caller went away mid-body, or the plan cuts it: S3 sees a torn request.
        _ => {
            reset(server);
            return reset(client);
        }
    }
    // The request is whole at S3: read its answer to the end, whatever the caller does.
    let mut answer = Vec::new();
    let read = server.read_to_end(&mut answer).await;
    if read.is_err() || fault == Some(Fault::AnswerLost) {
        return reset(client);
    }
    let _ = client.write_all(&close_after(answer)).await;
    let _ = client.shutdown().await;
}

/// A request head, rewritten for the upstream, and the body bytes read with it.
struct Request {
    method: String,
    target: String,
    head: String,
    length: u64,
    expects_continue: bool,
    rest: Vec<u8>,
}

impl Request {
    async fn read(client: &mut (impl AsyncRead + Unpin)) -> Option<Request> {
        let mut buf = Vec::new();
        let end = loop {
            let mut chunk = [0u8; 8192];
            let n = client.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > 64 * 1024 {
                return None;
            }
        };
        let text = String::from_utf8_lossy(&buf[..end]).into_owned();
        let mut lines = text.split("\r\n");
        let first = lines.next()?;
        let mut words = first.split(' ');
        let (method, target) = (words.next()?.to_owned(), words.next()?.to_owned());
        let mut head = format!("{first}\r\n");
        let (mut length, mut expects_continue) = (0, false);
        for line in lines.filter(|l| !l.is_empty()) {
            let (name, value) = line.split_once(':')?;
            match name.trim().to_ascii_lowercase().as_str() {
                "expect" => expects_continue = value.trim().eq_ignore_ascii_case("100-continue"),
                "connection" => {}
                lower => {
                    if lower == "content-length" {
                        length = value.trim().parse().ok()?;
                    }
                    head.push_str(&format!("{line}\r\n"));
                }
            }
        }
        head.push_str("Connection: close\r\n\r\n");
        Some(Request { method, target, head, length, expects_continue, rest: buf[end..].to_vec() })
    }
}

/// The upstream's answer with its `Connection` header set to `close`.
fn close_after(answer: Vec<u8>) -> Vec<u8> {
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else { return answer };
    let head = String::from_utf8_lossy(&answer[..end]);
    let mut out: String = head
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    out.push_str("Connection: close\r\n\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&answer[end + 4..]);
    bytes
}

/// An S3 error answer as S3 words it.
fn error_answer(fault: Fault, method: &str) -> String {
    let (status, code, message) = match fault {
        Fault::SlowDown => ("503 Slow Down", "SlowDown", "Please reduce your request rate."),
        _ => ("500 Internal Server Error", "InternalError", "We encountered an internal error. Please try again."),
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>ferry-fault</RequestId></Error>"
    );
    let shown = if method == "HEAD" { "" } else { body.as_str() };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{shown}",
        body.len()
    )
}

/// Closes with a reset: a zero linger leaves nothing to flush, so the drop never blocks.
fn reset(stream: TcpStream) {
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::CreateMultipart => "op-create-multipart",
        Op::UploadPart => "op-upload-part",
        Op::ListParts => "op-list-parts",
        Op::Complete => "op-complete",
        Op::Abort => "op-abort",
        Op::HeadObject => "op-head-object",
        Op::GetObject => "op-get-object",
        Op::PutObject => "op-put-object",
        Op::DeleteObject => "op-delete-object",
        Op::HeadBucket => "op-head-bucket",
        Op::Other => "op-other",
    }
}

#[test]
fn the_proxy_names_the_s3_operations_ferry_sends() {
    let cases = [
        ("PUT", "/b/k/v.mp4?partNumber=2&uploadId=abc&x-id=UploadPart", Op::UploadPart),
        ("POST", "/b/k/v.mp4?uploads&x-id=CreateMultipartUpload", Op::CreateMultipart),
        ("POST", "/b/k/v.mp4?uploadId=abc", Op::Complete),
        ("GET", "/b/k/v.mp4?uploadId=abc&part-number-marker=3", Op::ListParts),
        ("DELETE", "/b/k/v.mp4?uploadId=abc&x-id=AbortMultipartUpload", Op::Abort),
        ("HEAD", "/b/k/v.mp4", Op::HeadObject),
        ("HEAD", "/b", Op::HeadBucket),
        ("GET", "/b/k/v.mp4?x-id=GetObject", Op::GetObject),
        ("PUT", "/b/k/v.mp4?x-id=PutObject", Op::PutObject),
        ("DELETE", "/b/k/v.mp4?x-id=DeleteObject", Op::DeleteObject),
        ("PUT", "/b", Op::Other),
    ];
    for (method, target, op) in cases {
        assert_eq!(Op::classify(method, target), op, "{method} {target}");
    }
}
