//! Test doubles for the AWS tests: a `moto_server` child process, and an HTTP proxy in front of
//! it that injects AWS errors (moto cannot throttle) and answers chosen operations with scripted
//! bodies (states moto skips, such as an account creation IN_PROGRESS).
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

/// A moto server of the test's own.
pub struct Moto {
    child: Child,
    pub address: SocketAddr,
}

impl Moto {
    /// Starts moto on a port the kernel picks (`-p 0`) and reads the port back from the line
    /// werkzeug prints. Choosing a free port first and handing it over raced with the other tests'
    /// servers: a port freed by the probe could be taken before moto bound it, and the test then
    /// talked to another server (CI saw "connection reset by peer" on the first request).
    pub async fn start() -> Moto {
        let mut child = match Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "moto_server is not on PATH: the AWS connector tests need the moto AWS emulator. \
                 Install it with: pip install 'moto[server]'"
            ),
            Err(e) => panic!("cannot start moto_server: {e}"),
        };
        let stderr = child.stderr.take().expect("moto_server's stderr");
        let (port_tx, port_rx) = tokio::sync::oneshot::channel();
        // werkzeug logs every request to stderr: the thread keeps reading after the port line so
        // that moto never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut port_tx = Some(port_tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(port) = line
                    .split_once("Running on http://127.0.0.1:")
                    .and_then(|(_, rest)| rest.trim().parse::<u16>().ok())
                    && let Some(tx) = port_tx.take()
                {
                    let _ = tx.send(port);
                }
            }
        });
        let port = match tokio::time::timeout(Duration::from_secs(60), port_rx).await {
            Ok(Ok(port)) => port,
            Ok(Err(_)) => panic!(
                "moto_server exited at start ({:?})",
                child.try_wait().expect("moto_server status")
            ),
            Err(_) => panic!("moto_server did not listen within 60 s"),
        };
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        // The first request is a read that may be repeated, so a server still warming up under a
        // loaded CI machine costs a retry here, not a failed seed.
        let deadline = Instant::now() + Duration::from_secs(60);
        while try_get(address, "/").await.is_none() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Moto { child, address }
    }

    /// Queues Cost Explorer answers, in the order distinct requests will take them.
    pub async fn seed(&self, results: Vec<Value>) {
        let body = json!({ "results": results }).to_string();
        let (status, _) = post(
            self.address,
            "/moto-api/static/ce/cost-and-usage-results",
            body,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "seeding moto");
    }

    /// Forgets every seeded and already handed-out answer.
    pub async fn reset(&self) {
        let (status, _) = post(self.address, "/moto-api/reset", String::new()).await;
        assert!(status.is_success(), "resetting moto: {status}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn post(address: SocketAddr, path: &str, body: String) -> (StatusCode, Bytes) {
    let request = Request::post(path)
        .header("host", address.to_string())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    send(address, request).await
}

/// The status of a GET, or None when the connection failed before an answer.
async fn try_get(address: SocketAddr, path: &str) -> Option<StatusCode> {
    let stream = TcpStream::connect(address).await.ok()?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(connection);
    let request = Request::get(path)
        .header("host", address.to_string())
        .body(Full::new(Bytes::new()))
        .unwrap();
    Some(sender.send_request(request).await.ok()?.status())
}

/// One request on a connection of its own.
async fn send(address: SocketAddr, request: Request<Full<Bytes>>) -> (StatusCode, Bytes) {
    let stream = TcpStream::connect(address).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP handshake");
    tokio::spawn(connection);
    let response = sender.send_request(request).await.expect("HTTP request");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, body)
}

/// An HTTP proxy to moto that answers the first requests with queued AWS errors.
pub struct FaultProxy {
    address: SocketAddr,
    state: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

struct ProxyState {
    upstream: SocketAddr,
    faults: Mutex<VecDeque<(u16, &'static str)>>,
    bodies: Mutex<Vec<Value>>,
    /// Scripted answers (status, JSON body) per operation name, taken in order.
    scripted: Mutex<HashMap<String, VecDeque<(u16, Value)>>>,
    operations: Mutex<Vec<String>>,
    /// Operations forwarded to moto (so they take effect) whose answers are withheld until
    /// `release`: the caller sees a call that never returns, as if it died right after it.
    withheld_operations: Mutex<Vec<String>>,
    withheld: std::sync::atomic::AtomicUsize,
    released: tokio::sync::watch::Sender<bool>,
}

impl FaultProxy {
    /// `faults`: (HTTP status, AWS error code) answered to the first requests, in order.
    pub async fn start(upstream: SocketAddr, faults: &[(u16, &'static str)]) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let state = Arc::new(ProxyState {
            upstream,
            faults: Mutex::new(faults.iter().copied().collect()),
            bodies: Mutex::new(Vec::new()),
            scripted: Mutex::new(HashMap::new()),
            operations: Mutex::new(Vec::new()),
            withheld_operations: Mutex::new(Vec::new()),
            withheld: Default::default(),
            released: tokio::sync::watch::channel(false).0,
        });
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, hyper::Error>(state.handle(request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FaultProxy {
            address,
            state,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The JSON bodies of every request seen, faulted ones included.
    pub fn bodies(&self) -> Vec<Value> {
        self.state.bodies.lock().unwrap().clone()
    }

    /// Answers the next request for `operation` (the X-Amz-Target's operation, e.g.
    /// "CreateAccount") with `status` and `body` instead of forwarding it; queued in order.
    pub fn script(&self, operation: &str, status: u16, body: Value) {
        self.state
            .scripted
            .lock()
            .unwrap()
            .entry(operation.to_string())
            .or_default()
            .push_back((status, body));
    }

    /// Queues more faults for the next requests, whatever their operation.
    pub fn fault(&self, faults: &[(u16, &'static str)]) {
        self.state
            .faults
            .lock()
            .unwrap()
            .extend(faults.iter().copied());
    }

    /// The operation of every request seen, in order, faulted and scripted ones included.
    pub fn operations(&self) -> Vec<String> {
        self.state.operations.lock().unwrap().clone()
    }

    /// From now on, requests for `operation` reach moto (and take effect) but their answers are
    /// withheld until [`FaultProxy::release`].
    pub fn withhold_answers(&self, operation: &str) {
        self.state
            .withheld_operations
            .lock()
            .unwrap()
            .push(operation.to_string());
    }

    /// Requests that took effect at moto and whose answers are being (or were) withheld.
    pub fn withheld(&self) -> usize {
        self.state
            .withheld
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Answers every withheld request and stops withholding.
    pub fn release(&self) {
        self.state.withheld_operations.lock().unwrap().clear();
        self.state.released.send_replace(true);
    }

    /// How many requests for `operation` were seen.
    pub fn count(&self, operation: &str) -> usize {
        self.operations().iter().filter(|o| *o == operation).count()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ProxyState {
    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let body = body.collect().await.expect("request body").to_bytes();
        self.bodies
            .lock()
            .unwrap()
            .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
        let operation = parts
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or_default()
            .to_string();
        self.operations.lock().unwrap().push(operation.clone());
        let fault = self.faults.lock().unwrap().pop_front();
        if let Some((status, code)) = fault {
            let error = json!({ "__type": code, "message": "injected by the test proxy" });
            return json_response(status, &error);
        }
        let scripted = self
            .scripted
            .lock()
            .unwrap()
            .get_mut(&operation)
            .and_then(VecDeque::pop_front);
        if let Some((status, body)) = scripted {
            return json_response(status, &body);
        }
        let mut forward = Request::from_parts(parts, Full::new(body));
        forward.headers_mut().remove("connection");
        let (status, body) = send(self.upstream, forward).await;
        let withhold = self
            .withheld_operations
            .lock()
            .unwrap()
            .contains(&operation);
        if withhold {
            self.withheld
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut released = self.released.subscribe();
            let _ = released.wait_for(|released| *released).await;
        }
        Response::builder()
            .status(status)
            .header("content-type", "application/x-amz-json-1.1")
            .body(Full::new(body))
            .unwrap()
    }
}

fn json_response(status: u16, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}
