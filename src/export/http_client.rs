//! A minimal blocking HTTP/1.1 client for OTLP/HTTP, on `std::net`: the request is made on the
//! thread that calls the exporter (heapspan's export thread), so the export needs no runtime,
//! no client thread and no allocations outside heapspan's bucket. One connection per request
//! (`Connection: close`), plain `http://` only (for TLS, pass your own providers to heapspan).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};

/// Largest response body read (collectors answer with a few bytes).
const MAX_BODY: usize = 1 << 20;

/// The client; every socket operation is bounded by `timeout`.
#[derive(Debug, Clone)]
pub(crate) struct StdHttpClient {
    timeout: Duration,
    /// Set on every request, replacing what the request has under the same name: the
    /// resolved headers, in which values set in code win over the environment (the SDK's
    /// exporter adds the `OTEL_EXPORTER_OTLP_*HEADERS` ones over those it is given).
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl StdHttpClient {
    /// A client sending `headers` with every request; fails on a header HTTP cannot carry.
    pub(crate) fn new(timeout: Duration, headers: &[(String, String)]) -> Result<Self, String> {
        let headers = headers
            .iter()
            .map(|(k, v)| {
                let name = HeaderName::from_bytes(k.as_bytes())
                    .map_err(|e| format!("header name {k:?}: {e}"))?;
                let value =
                    HeaderValue::from_str(v).map_err(|e| format!("header {k:?}'s value: {e}"))?;
                Ok((name, value))
            })
            .collect::<Result<_, String>>()?;
        Ok(StdHttpClient { timeout, headers })
    }

    fn set_headers(&self, req: &mut Request<Bytes>) {
        for (k, v) in &self.headers {
            req.headers_mut().insert(k.clone(), v.clone());
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for StdHttpClient {
    async fn send_bytes(&self, mut request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        self.set_headers(&mut request);
        send(request, self.timeout).map_err(|e| Box::new(e) as HttpError)
    }
}

fn err(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::other(msg.into())
}

fn send(req: Request<Bytes>, timeout: Duration) -> std::io::Result<Response<Bytes>> {
    let deadline = Instant::now() + timeout;
    let uri = req.uri();
    if uri.scheme_str() != Some("http") {
        return Err(err(format!(
            "heapspan's OTLP/HTTP client speaks plain http:// only, not {uri}"
        )));
    }
    let host = uri.host().ok_or_else(|| err("no host in the endpoint"))?;
    let port = uri.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let host_for_connect = host.trim_start_matches('[').trim_end_matches(']');
    let mut last = err("the endpoint's host did not resolve");
    let mut stream = None;
    for addr in (host_for_connect, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let stream = stream.ok_or(last)?;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| err("timed out"))
    };
    stream.set_write_timeout(Some(left()?))?;
    stream.set_nodelay(true)?;
    let mut head = format!(
        "{} {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-length: {}\r\nconnection: close\r\n",
        req.method(),
        req.body().len()
    );
    for (k, v) in req.headers() {
        if k == http::header::CONTENT_LENGTH || k == http::header::HOST {
            continue;
        }
        if let Ok(v) = v.to_str() {
            head.push_str(k.as_str());
            head.push_str(": ");
            head.push_str(v);
            head.push_str("\r\n");
        }
    }
    head.push_str("\r\n");
    let mut w = &stream;
    w.write_all(head.as_bytes())?;
    w.write_all(req.body())?;
    w.flush()?;

    stream.set_read_timeout(Some(left()?))?;
    let mut r = BufReader::new(&stream);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| err(format!("not an HTTP response: {:?}", line.trim_end())))?;
    let mut builder = Response::builder().status(status);
    let mut len: Option<usize> = None;
    let mut chunked = false;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            break;
        }
        let h = line.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("content-length") {
                len = v.parse().ok();
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.eq_ignore_ascii_case("chunked");
            }
            builder = builder.header(k, v);
        }
    }
    stream.set_read_timeout(Some(left()?))?;
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let n = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| err("bad chunk size"))?;
            if n == 0 || body.len() + n > MAX_BODY {
                break;
            }
            let start = body.len();
            body.resize(start + n, 0);
            r.read_exact(&mut body[start..])?;
            line.clear();
            r.read_line(&mut line)?;
        }
    } else if let Some(n) = len {
        body.resize(n.min(MAX_BODY), 0);
        r.read_exact(&mut body)?;
    } else {
        r.take(MAX_BODY as u64).read_to_end(&mut body)?;
    }
    builder
        .body(Bytes::from(body))
        .map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolved_headers_replace_the_requests_own() {
        let client = StdHttpClient::new(
            Duration::from_secs(1),
            &[
                ("x-token".into(), "code".into()),
                ("X-Other".into(), "o".into()),
            ],
        )
        .unwrap();
        // As the SDK's exporter builds it: the environment's value under the same name.
        let mut req = Request::post("http://h:1/v1/traces")
            .header("x-token", "env")
            .header("user-agent", "sdk")
            .body(Bytes::new())
            .unwrap();
        client.set_headers(&mut req);
        let all: Vec<_> = req.headers().get_all("x-token").iter().collect();
        assert_eq!(all, ["code"]);
        assert_eq!(req.headers()["x-other"], "o");
        assert_eq!(req.headers()["user-agent"], "sdk");
    }

    #[test]
    fn headers_http_cannot_carry_are_refused() {
        let e = StdHttpClient::new(Duration::from_secs(1), &[("x".into(), "a\nb".into())]);
        assert!(e.unwrap_err().contains("header \"x\"'s value"));
        let e = StdHttpClient::new(Duration::from_secs(1), &[("a b".into(), "v".into())]);
        assert!(e.unwrap_err().contains("header name \"a b\""));
    }
}
