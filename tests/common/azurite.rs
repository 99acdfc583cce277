//! A real Azurite blob emulator on a free loopback port, signed SAS tokens for its well-known
//! development account, a minimal HTTP client that seeds and inspects it independently of
//! stylemill's own blob code, and a proxy that injects network faults.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub const ACCOUNT: &str = "devstoreaccount1";
/// Azurite's published development key (not a secret).
const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

pub struct Azurite {
    child: Child,
    pub port: u16,
}

/// A port that nothing listened on a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

impl Azurite {
    pub fn start() -> Azurite {
        let program = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/azurite/node_modules/.bin/azurite-blob");
        assert!(
            program.exists(),
            "{} is missing: run scripts/test-tools.sh",
            program.display()
        );
        // Port 0 lets Azurite bind a port itself: a port picked here and released could be
        // taken by a parallel test's mpirun or proxy before Azurite binds it.
        let mut child = Command::new(program)
            .args(["--blobHost", "127.0.0.1", "--blobPort", "0"])
            .args([
                "--inMemoryPersistence",
                "--silent",
                "--skipApiVersionCheck",
                "--disableTelemetry",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("azurite starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let port = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| {
                line.split_once("successfully listens on http://127.0.0.1:")
                    .and_then(|(_, port)| port.trim().parse().ok())
            })
            .expect("Azurite reports the port it listens on");
        std::thread::spawn(move || lines.for_each(drop));
        Azurite { child, port }
    }

    /// The account's service URL, as given to `--blob-endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// The URL of `name` in `container`, with `sas` as its query when given.
    pub fn url(&self, container: &str, name: &str, sas: Option<&str>) -> String {
        let mut url = format!("{}/{container}", self.endpoint());
        if !name.is_empty() {
            url = format!("{url}/{}", encode_path(name));
        }
        match sas {
            Some(sas) => format!("{url}?{sas}"),
            None => url,
        }
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        http(
            self.port,
            method,
            &format!("/{ACCOUNT}/{path}"),
            headers,
            body,
        )
    }

    pub fn create_container(&self, container: &str) {
        let sas = sas("racwdl", "2099-01-01T00:00:00Z");
        let (status, _) = self.request(
            "PUT",
            &format!("{container}?restype=container&{sas}"),
            &[],
            &[],
        );
        assert_eq!(status, 201, "creating container {container}");
    }

    pub fn put(&self, container: &str, name: &str, bytes: &[u8]) {
        let sas = sas("racwdl", "2099-01-01T00:00:00Z");
        let (status, _) = self.request(
            "PUT",
            &format!("{container}/{}?{sas}", encode_path(name)),
            &[("x-ms-blob-type", "BlockBlob")],
            bytes,
        );
        assert_eq!(status, 201, "uploading {name}");
    }

    /// The blob's bytes, or `None` when it does not exist.
    pub fn get(&self, container: &str, name: &str) -> Option<Vec<u8>> {
        let sas = sas("racwdl", "2099-01-01T00:00:00Z");
        let (status, body) = self.request(
            "GET",
            &format!("{container}/{}?{sas}", encode_path(name)),
            &[],
            &[],
        );
        match status {
            200 => Some(body),
            404 => None,
            other => panic!("GET {name}: HTTP {other}"),
        }
    }

    /// Names of the committed blobs in `container`.
    pub fn list(&self, container: &str) -> Vec<String> {
        let sas = sas("racwdl", "2099-01-01T00:00:00Z");
        let (status, body) = self.request(
            "GET",
            &format!("{container}?restype=container&comp=list&{sas}"),
            &[],
            &[],
        );
        assert_eq!(status, 200, "listing {container}");
        let text = String::from_utf8_lossy(&body);
        text.split("<Name>")
            .skip(1)
            .filter_map(|rest| rest.split("</Name>").next())
            .map(|name| {
                name.replace("&amp;", "&")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
            })
            .collect()
    }

    /// Stops the emulator (a storage outage).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An account SAS for the development account: `permissions` such as `racwdl`, expiring at
/// `expiry` (ISO 8601).
pub fn sas(permissions: &str, expiry: &str) -> String {
    let version = "2022-11-02";
    let to_sign = [
        ACCOUNT,
        permissions,
        "b",
        "sco",
        "",
        expiry,
        "",
        "",
        version,
        "",
    ]
    .join("\n")
        + "\n";
    let key = base64::engine::general_purpose::STANDARD
        .decode(KEY)
        .expect("key");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("hmac key");
    mac.update(to_sign.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    format!(
        "sv={version}&ss=b&srt=sco&sp={permissions}&se={}&sig={}",
        encode_component(expiry),
        encode_component(&signature)
    )
}

/// The signature part of a SAS, as it appears in URLs.
pub fn signature_of(sas: &str) -> &str {
    sas.split('&')
        .find_map(|pair| pair.strip_prefix("sig="))
        .expect("a sig")
}

fn encode_component(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every byte but the unreserved ones encoded, `/` too: the service decodes `%2F` back, so
/// even names with `..` segments reach it unchanged.
fn encode_path(name: &str) -> String {
    encode_component(name)
}

/// One HTTP/1.1 request on a fresh connection.
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connects");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nx-ms-version: 2021-08-06\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("sends");
    stream.write_all(body).expect("sends");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("reads");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header");
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let mut body = response[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size");
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..line_end]).trim(), 16)
            .expect("hex");
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&data[line_end + 2..line_end + 2 + size]);
        data = &data[line_end + 4 + size..];
    }
}

/// What a [`FaultyProxy`] breaks, once.
#[derive(Clone, Copy)]
pub enum Fault {
    /// Drops every open connection once `bytes` have gone towards the server; with
    /// `stay_down` it refuses every later connection too.
    CutAfter { bytes: usize, stay_down: bool },
    /// Forwards the first request whose head contains the text, then drops its connection
    /// instead of passing the answer back: the server did the work, the client never hears.
    LoseAnswerTo(&'static str),
}

/// A loopback proxy in front of Azurite that injects one [`Fault`].
pub struct FaultyProxy {
    pub port: u16,
    /// How many times the fault struck (0 or 1).
    pub faults: Arc<AtomicUsize>,
}

impl FaultyProxy {
    pub fn start(target: u16, fault: Fault) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let port = listener.local_addr().expect("addr").port();
        let faults = Arc::new(AtomicUsize::new(0));
        let strike = {
            let faults = faults.clone();
            move || {
                faults
                    .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            }
        };
        let sent = Arc::new(AtomicUsize::new(0));
        let down = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if down.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let this_connection = [client.try_clone().unwrap(), server.try_clone().unwrap()];
                open.lock().unwrap().extend(
                    this_connection
                        .iter()
                        .map(|stream| stream.try_clone().unwrap()),
                );
                let asked = Arc::new(AtomicBool::new(false));
                let towards_server = {
                    let (sent, down, open, asked, strike) = (
                        sent.clone(),
                        down.clone(),
                        open.clone(),
                        asked.clone(),
                        strike.clone(),
                    );
                    move |chunk: &[u8]| match fault {
                        Fault::CutAfter { bytes, stay_down } => {
                            let total = sent.fetch_add(chunk.len(), Ordering::SeqCst) + chunk.len();
                            if total <= bytes || !strike() {
                                return true;
                            }
                            down.store(stay_down, Ordering::SeqCst);
                            for stream in open.lock().unwrap().drain(..) {
                                let _ = stream.shutdown(Shutdown::Both);
                            }
                            false
                        }
                        Fault::LoseAnswerTo(text) => {
                            if contains(chunk, text.as_bytes()) {
                                asked.store(true, Ordering::SeqCst);
                            }
                            true
                        }
                    }
                };
                let strike = strike.clone();
                let towards_client = move |_: &[u8]| {
                    if asked.load(Ordering::SeqCst) && strike() {
                        for stream in &this_connection {
                            let _ = stream.shutdown(Shutdown::Both);
                        }
                        return false;
                    }
                    true
                };
                let (from_client, to_client) =
                    (client.try_clone().unwrap(), client.try_clone().unwrap());
                let (from_server, to_server) = (server.try_clone().unwrap(), server);
                std::thread::spawn(move || pump(from_server, to_client, towards_client));
                std::thread::spawn(move || pump(from_client, to_server, towards_server));
            }
        });
        FaultyProxy { port, faults }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Copies `from` to `to` while `pass` lets each chunk through.
fn pump(mut from: TcpStream, mut to: TcpStream, mut pass: impl FnMut(&[u8]) -> bool) {
    let mut buffer = [0u8; 16384];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if !pass(&buffer[..n]) || to.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
