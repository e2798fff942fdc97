//! Raw HTTP against the query service's listener: gRPC-web as a browser sends it, plain GETs.

use std::{ffi::OsStr, net::SocketAddr, path::Path};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::WAIT;

/// One gRPC-web call over plain HTTP/1.1, as a browser makes it: the body and the trailers come
/// back as length-prefixed frames in one HTTP response.
pub async fn grpc_web_call(
    addr: SocketAddr,
    token: &str,
    path: &str,
    message: &[u8],
) -> (String, Vec<u8>, String) {
    let mut body = vec![0u8];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(message);
    let (headers, payload) = http_post(
        addr,
        path,
        &format!(
            "Content-Type: application/grpc-web+proto\r\nAccept: application/grpc-web+proto\r\n\
             X-Grpc-Web: 1\r\nAuthorization: Bearer {token}\r\n"
        ),
        &body,
    )
    .await;
    let (mut data, mut trailers) = (Vec::new(), String::new());
    let mut rest = payload.as_slice();
    while rest.len() >= 5 {
        let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        let frame = &rest[5..5 + len];
        if rest[0] & 0x80 == 0 {
            data.extend_from_slice(frame);
        } else {
            trailers.push_str(&String::from_utf8_lossy(frame));
        }
        rest = &rest[5 + len..];
    }
    (headers, data, trailers)
}

/// One HTTP/1.1 POST with `extra_headers` (each line ending in CRLF): the response's headers and
/// its body, de-chunked.
pub async fn http_post(
    addr: SocketAddr,
    path: &str,
    extra_headers: &str,
    body: &[u8],
) -> (String, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{extra_headers}Content-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("the HTTP response")
        .unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP headers");
    let headers = String::from_utf8_lossy(&response[..split]).to_string();
    let mut payload = response[split + 4..].to_vec();
    if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        payload = dechunk(&payload);
    }
    (headers, payload)
}

pub fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap().trim(), 16)
                .unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[line_end + 2..line_end + 2 + size]);
        body = &body[line_end + 2 + size + 2..];
    }
}

/// A plain HTTP/1.1 GET; the whole response, headers and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    http_get_with(addr, path, "").await
}

/// A GET with extra header lines (each ending in `\r\n`).
pub async fn http_get_with(addr: SocketAddr, path: &str, headers: &str) -> String {
    String::from_utf8_lossy(&http_get_bytes(addr, path, headers).await).into_owned()
}

/// [`http_get_with`]'s response as bytes, for a binary body.
pub async fn http_get_bytes(addr: SocketAddr, path: &str, headers: &str) -> Vec<u8> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("the HTTP response")
        .unwrap();
    response
}

/// Chromium for the browser tests: $CHROMIUM, else Debian's.
pub fn chromium() -> String {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "no Chromium at {chromium}: run deploy/local/test.sh (installs Debian's chromium) or set CHROMIUM"
    );
    chromium
}

/// The console's browser tests (`npm run e2e` in services/whistle-query/console) in `chromium`
/// with `env`; fails the test with their report unless every one passed, else prints it.
pub async fn browser_tests(chromium: &str, env: &[(&str, &dyn AsRef<OsStr>)]) {
    let console = Path::new(env!("CARGO_MANIFEST_DIR")).join("../services/whistle-query/console");
    let mut npm = tokio::process::Command::new("npm");
    for (name, value) in env {
        npm.env(name, value);
    }
    let out = npm
        .args(["run", "--silent", "e2e"])
        .current_dir(&console)
        .env("CHROMIUM", chromium)
        .output()
        .await
        .expect("running npm run e2e (is Node.js installed? deploy/local/test.sh installs it)");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the browser tests failed:\n{report}");
    println!("{report}");
}
