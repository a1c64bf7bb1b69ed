//! A real webhook receiver: an HTTP server on its own thread that checks each delivery's
//! Standard Webhooks signature with the spec's own library and keeps what it got. It can
//! be told to fail its first tries.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::Value;

/// A whsec_ secret for tests.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One delivery as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    /// `webhook-id`.
    pub id: String,
    /// The body.
    pub event: Value,
    /// Whether its signature checked out (with the receiver's secret, now).
    pub verified: bool,
    /// Whether the receiver answered 2xx.
    pub accepted: bool,
}

#[derive(Default)]
struct State {
    got: Vec<Received>,
    /// Answer 500 to this many tries before accepting.
    fail_first: usize,
}

/// A running receiver.
pub struct Receiver {
    pub url: String,
    state: Arc<Mutex<State>>,
    handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    /// A receiver on a free port that fails its first `fail_first` tries with 500.
    pub fn start(fail_first: usize) -> Self {
        Self::start_on(0, fail_first)
    }

    /// A receiver on `port` (0: a free one).
    pub fn start_on(port: u16, fail_first: usize) -> Self {
        let state = Arc::new(Mutex::new(State { got: Vec::new(), fail_first }));
        let shared = Arc::clone(&state);
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let data = web::Data::new(shared);
                let server =
                    HttpServer::new(move || App::new().app_data(data.clone()).route("/hook", web::post().to(receive)))
                        .workers(1)
                        .bind(("127.0.0.1", port))
                        .expect("the receiver binds");
                let port = server.addrs()[0].port();
                let server = server.run();
                tx.send((server.handle(), port)).unwrap();
                let _ = server.await;
            })
        });
        let (handle, port) = rx.recv().expect("the receiver starts");
        Self { url: format!("http://127.0.0.1:{port}/hook"), state, handle, thread: Some(thread) }
    }

    /// Every delivery so far, in the order they came.
    pub fn got(&self) -> Vec<Received> {
        self.state.lock().unwrap().got.clone()
    }

    /// The events it accepted, each once (by id), in the order first accepted.
    pub fn accepted(&self) -> Vec<Value> {
        let mut seen = std::collections::HashSet::new();
        self.got().into_iter().filter(|r| r.accepted && seen.insert(r.id.clone())).map(|r| r.event).collect()
    }

    /// Waits (up to 30 s) until an accepted event of `kind` about upload `id` came.
    pub async fn await_event(&self, id: &str, kind: &str) -> Value {
        for _ in 0..300 {
            let found = self.accepted().into_iter().find(|e| e["upload_id"] == id && e["type"] == kind);
            if let Some(event) = found {
                return event;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("no {kind} event for {id}; got {:#?}", self.got());
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn receive(state: web::Data<Arc<Mutex<State>>>, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in request.headers() {
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(name.as_str().as_bytes()),
            reqwest::header::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            headers.append(name, value);
        }
    }
    let verified = standardwebhooks::Webhook::new(SECRET).unwrap().verify(&body, &headers).is_ok();
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let event = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut state = state.lock().unwrap();
    let accepted = verified && state.fail_first == 0;
    state.fail_first = state.fail_first.saturating_sub(1);
    state.got.push(Received { id, event, verified, accepted });
    if accepted {
        HttpResponse::NoContent().finish()
    } else {
        HttpResponse::InternalServerError().finish()
    }
}
