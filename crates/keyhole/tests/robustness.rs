//! Hostile and malformed requests against one running server: every one must get a 4xx (never
//! a 5xx, never a hang), and the server must still be healthy and move files afterwards. Also
//! the sweeper: expired pending uploads and files past retention disappear with their objects.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{now, pseudo_random, sha256_hex, TestServer, PUBLIC};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// No single request may take longer than this.
const TIMEOUT: Duration = Duration::from_secs(10);
/// A well-formed random prefix that no stored file has.
const PREFIX: &str = "abcdefghijklmnopqrstuvwxyz";
/// Size of the file the range and download cases use.
const FILE_SIZE: usize = 1000;

/// What a case must be answered with.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// Any 4xx.
    Client,
    /// Exactly this status.
    Is(u16),
    /// One of these.
    Any(&'static [u16]),
}

impl Want {
    fn accepts(self, status: u16) -> bool {
        (400..500).contains(&status)
            && match self {
                Want::Client => true,
                Want::Is(s) => status == s,
                Want::Any(list) => list.contains(&status),
            }
    }
}

/// The status line and headers of a response.
#[derive(Debug)]
struct Head {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Counts cases and collects every mismatch, so one run shows all of them.
#[derive(Default)]
struct Tally {
    total: usize,
    by_section: BTreeMap<&'static str, usize>,
    failures: Vec<String>,
}

impl Tally {
    fn check(&mut self, section: &'static str, what: &str, got: &Result<Head, String>, want: Want) {
        self.total += 1;
        *self.by_section.entry(section).or_default() += 1;
        match got {
            Ok(head) if want.accepts(head.status) => {}
            Ok(head) => self.failures.push(format!(
                "[{section}] {what}: got {}, want {want:?}",
                head.status
            )),
            Err(e) => self
                .failures
                .push(format!("[{section}] {what}: no answer ({e})")),
        }
    }

    /// Checks a header of a response that already passed [`Tally::check`].
    fn check_header(&mut self, what: &str, got: &Result<Head, String>, name: &str, value: &str) {
        if let Ok(head) = got {
            if head.header(name) != Some(value) {
                self.failures.push(format!(
                    "{what}: header {name} is {:?}, want {value:?}",
                    head.header(name)
                ));
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Builds an HTTP/1.1 request by hand: `target` goes on the request line byte for byte, `extra`
/// holds complete header lines (each ending in CRLF). A Content-Length is added for a body unless
/// `extra` already frames it.
fn request(method: &str, target: &[u8], extra: &[u8], body: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(target.len() + extra.len() + body.len() + 128);
    r.extend_from_slice(method.as_bytes());
    r.push(b' ');
    r.extend_from_slice(target);
    r.extend_from_slice(b" HTTP/1.1\r\nHost: files.keyhole.test\r\nConnection: close\r\n");
    r.extend_from_slice(extra);
    let lower = String::from_utf8_lossy(extra).to_ascii_lowercase();
    let framed = lower.contains("content-length:") || lower.contains("transfer-encoding:");
    if !framed && (!body.is_empty() || method == "PUT" || method == "POST") {
        r.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    r.extend_from_slice(b"\r\n");
    r.extend_from_slice(body);
    r
}

/// Sends raw bytes and reads the response head. The server may answer (and close) before it has
/// read everything we send; its answer is what counts.
async fn raw(addr: SocketAddr, bytes: Vec<u8>) -> Result<Head, String> {
    let exchange = async move {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.write_all(&bytes).await;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                buf.truncate(end);
                break;
            }
            match stream.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if buf.is_empty() => return Err(format!("read: {e}")),
                Err(_) => break,
            }
        }
        let text = String::from_utf8_lossy(&buf);
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("not an HTTP response: {status_line:?}"))?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Ok(Head { status, headers })
    };
    match tokio::time::timeout(TIMEOUT, exchange).await {
        Ok(result) => result,
        Err(_) => Err(format!("no response within {TIMEOUT:?}")),
    }
}

/// Sends a request built with reqwest (the client carries [`TIMEOUT`]).
async fn send(builder: reqwest::RequestBuilder) -> Result<Head, String> {
    let response = builder.send().await.map_err(|e| e.to_string())?;
    let head = Head {
        status: response.status().as_u16(),
        headers: response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    };
    // Read the body too, so a response that stalls half-way is a failure.
    response.bytes().await.map_err(|e| e.to_string())?;
    Ok(head)
}

/// A signed URL's path and query (what goes on the request line).
fn target_of(signed: &str) -> String {
    signed
        .strip_prefix(PUBLIC)
        .unwrap_or_else(|| panic!("not on the public origin: {signed}"))
        .to_owned()
}

/// The signing parameters of a canned-policy link: (path, Expires, Signature, Key-Pair-Id).
fn split_signed(target: &str) -> (String, String, String, String) {
    let (path, query) = target.split_once('?').expect("signed link has a query");
    let mut fields: BTreeMap<&str, &str> = BTreeMap::new();
    for pair in query.split('&') {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        fields.insert(n, v);
    }
    (
        path.to_owned(),
        fields["Expires"].to_owned(),
        fields["Signature"].to_owned(),
        fields["Key-Pair-Id"].to_owned(),
    )
}

/// CloudFront's URL-safe base64 (`+=/` become `-_~`).
fn cloudfront_b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(bytes)
        .replace('+', "-")
        .replace('=', "_")
        .replace('/', "~")
}

/// Query strings that break a valid canned link (expires `e`, signature `s`, key pair id `k`)
/// in every way the verifier has to survive.
fn tampered_queries(e: &str, s: &str, k: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut add = |what: &str, q: String| out.push((what.to_owned(), q));
    let huge_sig = "A".repeat(2000);
    let flipped = {
        let mut c: Vec<char> = s.chars().collect();
        c[10] = if c[10] == 'B' { 'C' } else { 'B' };
        c.into_iter().collect::<String>()
    };
    // Signature: bad base64, wrong but decodable, truncated, huge, non-UTF-8, missing.
    for (what, sig) in [
        ("signature !!!!", "!!!!".to_owned()),
        ("signature %%%%", "%%%%".to_owned()),
        ("signature bad escape", "%ZZ".to_owned()),
        ("signature one char", "a".to_owned()),
        ("signature empty", String::new()),
        ("signature padding only", "____".to_owned()),
        ("signature decodable but wrong", "AAAA".to_owned()),
        ("signature truncated", s[..s.len() / 2].to_owned()),
        ("signature one char flipped", flipped),
        ("signature 2000 chars", huge_sig),
        ("signature invalid utf-8", "%FF%FE".to_owned()),
        ("signature unicode", "%C3%A9%C3%A9%C3%A9%C3%A9".to_owned()),
        ("signature NUL", format!("{s}%00")),
    ] {
        add(what, format!("Expires={e}&Signature={sig}&Key-Pair-Id={k}"));
    }
    add("signature missing", format!("Expires={e}&Key-Pair-Id={k}"));
    add("no signing parameters", "x=1".to_owned());
    // Policy: bad base64, not JSON, wrong JSON, too large, together with Expires.
    let good_json = br#"{"Statement":[{"Resource":"*","Condition":{"DateLessThan":{"AWS:EpochTime":4102444800}}}]}"#;
    for (what, policy) in [
        ("policy !!!!", "!!!!".to_owned()),
        ("policy empty", String::new()),
        ("policy not JSON", cloudfront_b64(b"not json at all")),
        ("policy empty object", cloudfront_b64(b"{}")),
        ("policy invalid utf-8", "%FF%FE%FD".to_owned()),
        (
            "policy valid but not what was signed",
            cloudfront_b64(good_json),
        ),
        ("policy 9 KiB", "A".repeat(9 * 1024)),
        (
            "policy 12 KiB of JSON",
            cloudfront_b64(&vec![b' '; 9 * 1024]),
        ),
        ("policy 20 KiB", "A".repeat(20 * 1024)),
    ] {
        add(
            what,
            format!("Policy={policy}&Signature={s}&Key-Pair-Id={k}"),
        );
    }
    add(
        "policy and expires together",
        format!(
            "Expires={e}&Policy={}&Signature={s}&Key-Pair-Id={k}",
            cloudfront_b64(good_json)
        ),
    );
    add(
        "neither policy nor expires",
        format!("Signature={s}&Key-Pair-Id={k}"),
    );
    // Expires: negative, milliseconds, letters, empty, overflowing, other notations.
    let ms = format!("{e}000");
    let later = (e.parse::<u64>().unwrap() + 1).to_string();
    for (what, exp) in [
        ("expires negative", "-1".to_owned()),
        ("expires negated", format!("-{e}")),
        ("expires in milliseconds", ms),
        ("expires letters", "abc".to_owned()),
        ("expires empty", String::new()),
        ("expires 20 digits", "99999999999999999999".to_owned()),
        ("expires u64 max + 1", "18446744073709551616".to_owned()),
        ("expires exponent", "1e10".to_owned()),
        ("expires fraction", format!("{e}.5")),
        ("expires plus sign", format!("%2B{e}")),
        ("expires leading space", format!("%20{e}")),
        ("expires hex", "0x7fffffff".to_owned()),
        ("expires trailing letters", format!("{e}abc")),
        ("expires zero", "0".to_owned()),
        ("expires not what was signed", later),
        ("expires NUL", format!("{e}%00")),
    ] {
        add(what, format!("Expires={exp}&Signature={s}&Key-Pair-Id={k}"));
    }
    // Duplicated signing parameters.
    add(
        "duplicate Expires",
        format!("Expires={e}&Expires={e}&Signature={s}&Key-Pair-Id={k}"),
    );
    add(
        "duplicate Signature",
        format!("Expires={e}&Signature={s}&Signature={s}&Key-Pair-Id={k}"),
    );
    add(
        "duplicate Key-Pair-Id",
        format!("Expires={e}&Signature={s}&Key-Pair-Id={k}&Key-Pair-Id={k}"),
    );
    add(
        "duplicate Hash-Algorithm",
        format!(
            "Expires={e}&Signature={s}&Key-Pair-Id={k}&Hash-Algorithm=SHA1&Hash-Algorithm=SHA1"
        ),
    );
    add(
        "duplicate Policy",
        format!("Policy=AAAA&Policy=AAAA&Signature={s}&Key-Pair-Id={k}"),
    );
    // Key-Pair-Id: unknown, empty, huge, odd bytes.
    for (what, kid) in [
        ("key pair id unknown", "APKAUNKNOWNEXAMPLE".to_owned()),
        ("key pair id empty", String::new()),
        ("key pair id 200 chars", "K".repeat(200)),
        ("key pair id 10000 chars", "K".repeat(10_000)),
        ("key pair id NUL", "%00".to_owned()),
        ("key pair id invalid utf-8", "%FF".to_owned()),
        ("key pair id lower-cased", k.to_ascii_lowercase()),
        ("key pair id with suffix", format!("{k}x")),
        ("key pair id with leading space", format!("%20{k}")),
    ] {
        add(what, format!("Expires={e}&Signature={s}&Key-Pair-Id={kid}"));
    }
    add("key pair id missing", format!("Expires={e}&Signature={s}"));
    // Hash-Algorithm: bogus names (SHA256 is real, but the link was signed with SHA-1).
    for alg in [
        "MD5", "SHA512", "sha1", "sha256", "", "%FF", "SHA-256", "SHA256",
    ] {
        add(
            &format!("hash algorithm {alg:?}"),
            format!("Expires={e}&Signature={s}&Key-Pair-Id={k}&Hash-Algorithm={alg}"),
        );
    }
    out
}

/// What a refused signed request gets: 403, or 414 when the target alone is too long.
fn refusal(target: &str) -> Want {
    if target.len() > 16 * 1024 {
        Want::Is(414)
    } else {
        Want::Is(403)
    }
}

#[tokio::test]
async fn malformed_requests_get_4xx_and_the_server_survives() {
    let started = Instant::now();
    let ts = TestServer::start().await;
    let addr = ts.running().addr;
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut t = Tally::default();

    // Fixtures: one uploaded file, one pending upload, and links for both.
    let content = pseudo_random(FILE_SIZE, 7);
    let file_id = ts.upload("fixture.bin", content.clone()).await;
    let (status, link) = ts.download_link(&file_id).await;
    assert_eq!(status, 200, "{link}");
    let download = target_of(link["downloadUrl"].as_str().unwrap());
    let pending = ts.upload_link("pending.bin", None, None).await;
    let pending_id = pending["fileId"].as_str().unwrap().to_owned();
    let upload = target_of(pending["uploadUrl"].as_str().unwrap());
    let expires = now() + 3600;
    let signer = ts.signer();
    let sign = |path: &str| -> Option<String> {
        signer
            .sign_url(
                &format!("{PUBLIC}{path}"),
                &keyhole_sign::Policy::canned(expires).unwrap(),
            )
            .ok()
            .map(|u| target_of(&u))
    };

    // 1. Tampered signing parameters on a real download and a real pending upload.
    for (base, method) in [(&download, "GET"), (&upload, "PUT"), (&download, "HEAD")] {
        let (path, e, s, k) = split_signed(base);
        for (what, query) in tampered_queries(&e, &s, &k) {
            let target = format!("{path}?{query}");
            let got = raw(
                addr,
                request(
                    method,
                    target.as_bytes(),
                    b"Content-Type: application/octet-stream\r\n",
                    if method == "PUT" { b"hello" } else { b"" },
                ),
            )
            .await;
            t.check(
                "signature",
                &format!("{method} {what}"),
                &got,
                refusal(&target),
            );
        }
    }
    // Signed cookies that are garbage.
    for cookie in [
        "CloudFront-Signature=!!!; CloudFront-Key-Pair-Id=x; CloudFront-Policy=!!!".to_owned(),
        "CloudFront-Policy=".to_owned() + &"A".repeat(20_000),
        "CloudFront-Expires=abc; CloudFront-Signature=AAAA; CloudFront-Key-Pair-Id=K".to_owned(),
    ] {
        let path = download.split_once('?').unwrap().0;
        let extra = format!("Cookie: {cookie}\r\n");
        let got = raw(addr, request("GET", path.as_bytes(), extra.as_bytes(), b"")).await;
        t.check("signature", "garbage signed cookies", &got, Want::Is(403));
    }

    // 2. Hostile file ids on the edge (signed, so the id check is reached, and unsigned) and on
    // the API routes that take an id.
    let long_name = "x".repeat(101);
    let ids: Vec<(String, Vec<u8>)> = vec![
        ("..".into(), b"..".to_vec()),
        ("%2e%2e".into(), b"%2e%2e".to_vec()),
        ("%2E%2E".into(), b"%2E%2E".to_vec()),
        ("../ traversal".into(), b"../../etc/passwd".to_vec()),
        (
            "encoded traversal".into(),
            b"..%2f..%2fetc%2fpasswd".to_vec(),
        ),
        (
            "fully encoded traversal".into(),
            b"%2e%2e%2f%2e%2e%2fetc%2fpasswd".to_vec(),
        ),
        (
            "backslash traversal".into(),
            b"..%5c..%5cwindows%5cwin.ini".to_vec(),
        ),
        ("%00".into(), b"%00".to_vec()),
        ("NUL inside".into(), format!("{PREFIX}_a%00b").into_bytes()),
        (
            "encoded slash".into(),
            format!("{PREFIX}_a%2fb").into_bytes(),
        ),
        ("slash".into(), format!("{PREFIX}_a/b").into_bytes()),
        (
            "encoded backslash".into(),
            format!("{PREFIX}_a%5cb").into_bytes(),
        ),
        (
            "encoded unicode".into(),
            format!("{PREFIX}_caf%C3%A9.txt").into_bytes(),
        ),
        (
            "encoded invalid utf-8".into(),
            format!("{PREFIX}_%FF%FE").into_bytes(),
        ),
        ("empty segment".into(), b"/".to_vec()),
        ("encoded slash only".into(), b"%2f".to_vec()),
        (
            "name too long".into(),
            format!("{PREFIX}_{long_name}").into_bytes(),
        ),
        (
            "upper-case prefix".into(),
            format!("{}_a", PREFIX.to_ascii_uppercase()).into_bytes(),
        ),
        (
            "hidden name".into(),
            format!("{PREFIX}_.hidden").into_bytes(),
        ),
        ("dash name".into(), format!("{PREFIX}_-x").into_bytes()),
        ("short prefix".into(), b"short_x".to_vec()),
        ("no underscore".into(), PREFIX.as_bytes().to_vec()),
        ("empty name".into(), format!("{PREFIX}_").into_bytes()),
        (
            "dot-dot after id".into(),
            format!("{pending_id}/../{file_id}").into_bytes(),
        ),
        (
            "encoded dot-dot after id".into(),
            format!("{file_id}%2f%2e%2e%2f{pending_id}").into_bytes(),
        ),
        (
            "well-formed, unknown".into(),
            format!("{PREFIX}_unknown.txt").into_bytes(),
        ),
    ];
    for (what, id) in &ids {
        let id_text = String::from_utf8(id.clone()).unwrap();
        for (method, prefix, body) in [
            ("GET", "/files/", &b""[..]),
            ("PUT", "/uploads/", &b"hello"[..]),
        ] {
            let path = format!("{prefix}{id_text}");
            let headers = b"Content-Type: application/octet-stream\r\n";
            // Unsigned: refused before the id is looked at.
            let got = raw(addr, request(method, path.as_bytes(), headers, body)).await;
            t.check(
                "file id",
                &format!("{method} {prefix}{what} unsigned"),
                &got,
                Want::Client,
            );
            // Signed for exactly this path: the signature passes and the id must be refused.
            match sign(&path) {
                Some(target) => {
                    let got = raw(addr, request(method, target.as_bytes(), headers, body)).await;
                    t.check(
                        "file id",
                        &format!("{method} {prefix}{what} signed"),
                        &got,
                        Want::Any(&[400, 404]),
                    );
                }
                None => panic!("cannot sign {path}"),
            }
        }
        for (method, prefix, suffix) in [
            ("GET", "/api/files/download/", ""),
            ("DELETE", "/api/files/", ""),
            ("GET", "/api/files/", "/parts"),
            ("POST", "/api/files/", "/complete"),
        ] {
            let path = format!("{prefix}{id_text}{suffix}");
            let got = raw(addr, request(method, path.as_bytes(), b"", b"")).await;
            let label = format!("{method} {prefix}{what}{suffix}");
            t.check("file id", &label, &got, Want::Any(&[400, 404]));
        }
    }
    // Bytes no client library will put on a request line: raw NUL, raw non-ASCII, invalid UTF-8,
    // raw backslashes, control characters.
    let raw_ids: [(&str, &[u8]); 8] = [
        ("raw NUL", b"\x00"),
        ("raw NUL inside", b"abcdefghijklmnopqrstuvwxyz_a\x00b"),
        ("raw unicode", "abcdefghijklmnopqrstuvwxyz_café".as_bytes()),
        ("raw invalid utf-8", b"abcdefghijklmnopqrstuvwxyz_\xff\xfe"),
        ("raw backslash", b"..\\..\\windows"),
        ("raw tab", b"a\tb"),
        ("raw DEL", b"a\x7fb"),
        ("raw lone continuation byte", b"\x80"),
    ];
    for (what, id) in raw_ids {
        for (method, prefix) in [
            ("GET", &b"/files/"[..]),
            ("PUT", b"/uploads/"),
            ("GET", b"/api/files/download/"),
            ("DELETE", b"/api/files/"),
        ] {
            let mut target = prefix.to_vec();
            target.extend_from_slice(id);
            target.extend_from_slice(b"?Expires=1&Signature=AAAA&Key-Pair-Id=K");
            let got = raw(addr, request(method, &target, b"", b"")).await;
            let label = format!("{method} {}{what}", String::from_utf8_lossy(prefix));
            t.check("file id", &label, &got, Want::Client);
        }
    }

    // 3. Bad JSON bodies for POST /api/files/upload.
    let max_upload = client
        .get(ts.url("/api/config"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["maxUploadBytes"]
        .as_u64()
        .expect("maxUploadBytes in /api/config");
    let ok = |extra: Value| {
        let mut v = json!({"filename": "a.txt", "contentType": "text/plain"});
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        v.to_string().into_bytes()
    };
    let json_ct = Some("application/json");
    let mut bodies: Vec<(String, Vec<u8>, Option<&str>, Want)> = vec![
        ("empty".into(), vec![], json_ct, Want::Is(400)),
        ("empty, no content type".into(), vec![], None, Want::Is(400)),
        ("lone brace".into(), b"{".to_vec(), json_ct, Want::Is(400)),
        (
            "truncated".into(),
            br#"{"filename":"a.txt","contentType":"text/pl"#.to_vec(),
            json_ct,
            Want::Is(400),
        ),
        ("null".into(), b"null".to_vec(), json_ct, Want::Is(400)),
        ("array".into(), b"[]".to_vec(), json_ct, Want::Is(400)),
        ("number".into(), b"42".to_vec(), json_ct, Want::Is(400)),
        ("string".into(), b"\"a\"".to_vec(), json_ct, Want::Is(400)),
        ("true".into(), b"true".to_vec(), json_ct, Want::Is(400)),
        (
            "empty object".into(),
            b"{}".to_vec(),
            json_ct,
            Want::Is(400),
        ),
        (
            "trailing garbage".into(),
            [ok(json!({})), b"xyz".to_vec()].concat(),
            json_ct,
            Want::Is(400),
        ),
        (
            "invalid utf-8".into(),
            b"{\"filename\":\"\xff\xfe\",\"contentType\":\"text/plain\"}".to_vec(),
            json_ct,
            Want::Is(400),
        ),
        (
            "NUL byte outside strings".into(),
            b"{\"filename\":\"a\",\x00\"contentType\":\"text/plain\"}".to_vec(),
            json_ct,
            Want::Is(400),
        ),
        (
            "duplicate key".into(),
            br#"{"filename":"a","filename":"b","contentType":"text/plain"}"#.to_vec(),
            json_ct,
            Want::Is(400),
        ),
        (
            "deeply nested arrays".into(),
            "[".repeat(60_000).into_bytes(),
            json_ct,
            Want::Is(400),
        ),
        (
            "deeply nested value".into(),
            format!("{{\"filename\":{}", "{\"a\":".repeat(10_000)).into_bytes(),
            json_ct,
            Want::Is(400),
        ),
        (
            "filename 70 KiB".into(),
            ok(json!({"filename": "a".repeat(70 * 1024)})),
            json_ct,
            Want::Is(413),
        ),
        (
            "70 KiB of whitespace".into(),
            [vec![b' '; 70 * 1024], ok(json!({}))].concat(),
            json_ct,
            Want::Is(413),
        ),
        (
            "1 MiB".into(),
            ok(json!({"pad": "x".repeat(1 << 20)})),
            json_ct,
            Want::Is(413),
        ),
    ];
    for (what, field, value) in [
        ("filename number", "filename", json!(42)),
        ("filename null", "filename", json!(null)),
        ("filename array", "filename", json!(["a"])),
        ("filename object", "filename", json!({"a": 1})),
        ("contentType number", "contentType", json!(1)),
        ("contentType null", "contentType", json!(null)),
        ("size string", "size", json!("10")),
        ("size negative", "size", json!(-1)),
        ("size fraction", "size", json!(1.5)),
        ("size 1e30", "size", json!(1e30)),
        ("size bool", "size", json!(true)),
        ("sha256 number", "sha256", json!(123)),
        ("sha256 array", "sha256", json!([])),
        ("unknown field", "owner", json!("mallory")),
        ("unknown field status", "status", json!("uploaded")),
        ("snake_case field", "content_type", json!("text/plain")),
        // Invalid values.
        ("filename empty", "filename", json!("")),
        ("filename 256 bytes", "filename", json!("a".repeat(256))),
        ("filename NUL", "filename", json!("a\u{0}b")),
        ("filename newline", "filename", json!("a\nb")),
        ("filename DEL", "filename", json!("\u{7f}")),
        ("filename tab", "filename", json!("a\tb")),
        ("contentType empty", "contentType", json!("")),
        ("contentType no slash", "contentType", json!("pdf")),
        ("contentType no subtype", "contentType", json!("text/")),
        ("contentType no type", "contentType", json!("/plain")),
        (
            "contentType header injection",
            "contentType",
            json!("text/plain\r\nX-Injected: 1"),
        ),
        ("contentType unicode", "contentType", json!("tëxt/plain")),
        (
            "contentType 300 bytes",
            "contentType",
            json!(format!("a/{}", "b".repeat(300))),
        ),
        ("contentType space", "contentType", json!("text /plain")),
        (
            "contentType NUL parameter",
            "contentType",
            json!("text/plain;\u{0}"),
        ),
        ("sha256 short", "sha256", json!("abc")),
        ("sha256 63 hex", "sha256", json!("a".repeat(63))),
        ("sha256 65 hex", "sha256", json!("a".repeat(65))),
        ("sha256 non-hex", "sha256", json!("g".repeat(64))),
        ("sha256 unicode", "sha256", json!("é".repeat(32))),
        ("sha256 empty", "sha256", json!("")),
        (
            "sha256 with spaces",
            "sha256",
            json!(format!(" {} ", "a".repeat(62))),
        ),
    ] {
        bodies.push((
            what.into(),
            ok(json!({ field: value })),
            json_ct,
            Want::Is(400),
        ));
    }
    for (what, size) in [
        ("size over the limit", json!(max_upload + 1)),
        ("size u64 max", json!(u64::MAX)),
    ] {
        bodies.push((
            what.into(),
            ok(json!({ "size": size })),
            json_ct,
            Want::Is(413),
        ));
    }
    bodies.push((
        "size u64 max + 1".into(),
        br#"{"filename":"a","contentType":"text/plain","size":18446744073709551616}"#.to_vec(),
        json_ct,
        Want::Is(400),
    ));
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "application/xml",
        "json",
        "",
    ] {
        bodies.push((
            format!("content type {ct:?}"),
            ok(json!({})),
            Some(ct),
            Want::Is(415),
        ));
    }
    // A control character in a header value: refused by the HTTP layer itself.
    bodies.push((
        "content type with a control character".into(),
        ok(json!({})),
        Some("application/json\u{1}"),
        Want::Is(400),
    ));
    for (what, body, ct, want) in bodies {
        let mut extra = Vec::new();
        if let Some(ct) = ct {
            extra.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        let got = raw(addr, request("POST", b"/api/files/upload", &extra, &body)).await;
        t.check("json", &what, &got, want);
    }
    // Bodies that lie about their length or framing.
    for (what, extra, body) in [
        (
            "content-length longer than the body",
            &b"Content-Type: application/json\r\nContent-Length: 100\r\n"[..],
            &br#"{"filename":"a"}"#[..],
        ),
        (
            "broken chunked framing",
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
            b"zz\r\n{}\r\n0\r\n\r\n",
        ),
        (
            "content-length not a number",
            b"Content-Type: application/json\r\nContent-Length: abc\r\n",
            b"{}",
        ),
        (
            "two content-lengths",
            b"Content-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 3\r\n",
            b"{}",
        ),
    ] {
        let mut bytes = request("POST", b"/api/files/upload", extra, body);
        let exchange = async {
            let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            s.write_all(&bytes).await.map_err(|e| e.to_string())?;
            // Half-close so a server waiting for more body sees the end.
            s.shutdown().await.map_err(|e| e.to_string())?;
            bytes.clear();
            s.read_to_end(&mut bytes).await.map_err(|e| e.to_string())?;
            let line = String::from_utf8_lossy(&bytes);
            line.get(9..12)
                .and_then(|c| c.parse::<u16>().ok())
                .map(|status| Head {
                    status,
                    headers: vec![],
                })
                .ok_or_else(|| format!("not an HTTP response: {line:?}"))
        };
        let got = tokio::time::timeout(TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
        t.check("json", what, &got, Want::Client);
    }

    // 4. Absurd ranges on a valid download link: 416 with the size in Content-Range.
    let download_url = format!("{}{download}", ts.base);
    for range in [
        "bytes=999999999999-",
        "bytes=5-2",
        "bytes=abc",
        "bytes=-0",
        "bytes=1000-",
        "bytes=1000-2000",
        "bytes=",
        "bytes=-",
        "bytes=--1",
        "bytes=1-2-3",
        "bytes=-abc",
        "bytes=0x10-",
        "bytes=99999999999999999999-",
        "bytes=18446744073709551615-",
        "bytes=+1-2",
    ] {
        for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
            let got = send(
                client
                    .request(method.clone(), &download_url)
                    .header("range", range),
            )
            .await;
            let what = format!("{method} Range: {range}");
            t.check("range", &what, &got, Want::Is(416));
            t.check_header(
                &what,
                &got,
                "content-range",
                &format!("bytes */{FILE_SIZE}"),
            );
        }
    }

    // 5. Oversized request heads: 431.
    let big_value = format!("X-Big: {}\r\n", "v".repeat(40 * 1024));
    let forty_headers: String = (0..40)
        .map(|i| format!("X-H{i}: {}\r\n", "v".repeat(1024)))
        .collect();
    let many = |n: usize| -> String { (0..n).map(|i| format!("X-N{i}: v\r\n")).collect() };
    let big_cookie = format!("Cookie: a={}\r\n", "c".repeat(33 * 1024));
    let huge_value = format!("X-Huge: {}\r\n", "v".repeat(200 * 1024));
    for (what, path, extra) in [
        (
            "one 40 KiB header",
            "/healthz".to_owned(),
            big_value.clone(),
        ),
        (
            "one 40 KiB header on a download",
            download.clone(),
            big_value.clone(),
        ),
        (
            "one 40 KiB header on the API",
            "/api/files".to_owned(),
            big_value,
        ),
        (
            "40 headers of 1 KiB",
            "/api/files".to_owned(),
            forty_headers.clone(),
        ),
        (
            "40 headers of 1 KiB on an upload",
            upload.clone(),
            forty_headers,
        ),
        ("101 headers", "/api/config".to_owned(), many(101)),
        ("150 headers", "/healthz".to_owned(), many(150)),
        ("150 headers on a download", download.clone(), many(150)),
        ("33 KiB cookie", download.clone(), big_cookie),
        ("one 200 KiB header", "/healthz".to_owned(), huge_value),
    ] {
        let got = raw(addr, request("GET", path.as_bytes(), extra.as_bytes(), b"")).await;
        t.check("headers", what, &got, Want::Is(431));
    }

    // 6. Request targets over 16 KiB: 414.
    let pad = "p".repeat(17 * 1024);
    for (what, target) in [
        ("health query", format!("/healthz?pad={pad}")),
        (
            "signed download plus padding",
            format!("{download}&pad={pad}"),
        ),
        ("signed upload plus padding", format!("{upload}&pad={pad}")),
        ("list cursor", format!("/api/files?cursor={pad}")),
        ("upload path", format!("/uploads/{pad}")),
        ("download path", format!("/files/{pad}")),
        ("download-link path", format!("/api/files/download/{pad}")),
        ("unknown route", format!("/{pad}")),
        (
            "70 KiB target",
            format!("/healthz?pad={}", "p".repeat(70 * 1024)),
        ),
    ] {
        let got = raw(addr, request("GET", target.as_bytes(), b"", b"")).await;
        t.check("uri", what, &got, Want::Is(414));
    }

    // 7. Wrong methods: 405 (with Allow on the edge paths).
    let file_path = format!("/files/{file_id}");
    let upload_path = format!("/uploads/{pending_id}");
    for (method, path, allow) in [
        ("PUT", file_path.clone(), Some("GET, HEAD")),
        ("POST", file_path.clone(), Some("GET, HEAD")),
        ("DELETE", file_path.clone(), Some("GET, HEAD")),
        ("PATCH", file_path.clone(), Some("GET, HEAD")),
        ("PUT", download.clone(), Some("GET, HEAD")),
        ("GET", upload_path.clone(), Some("PUT")),
        ("HEAD", upload_path.clone(), Some("PUT")),
        ("POST", upload_path.clone(), Some("PUT")),
        ("DELETE", upload_path.clone(), Some("PUT")),
        ("PATCH", upload_path.clone(), Some("PUT")),
        ("GET", upload.clone(), Some("PUT")),
        ("GET", "/api/files/upload".to_owned(), None),
        ("PUT", "/api/files/upload".to_owned(), None),
        ("DELETE", "/api/files".to_owned(), None),
        ("POST", "/api/files".to_owned(), None),
        ("PUT", format!("/api/files/{file_id}"), None),
        ("POST", format!("/api/files/download/{file_id}"), None),
        ("POST", "/api/config".to_owned(), None),
        ("PUT", "/healthz".to_owned(), None),
        ("POST", "/metrics".to_owned(), None),
        ("DELETE", "/readyz".to_owned(), None),
    ] {
        let got = raw(addr, request(method, path.as_bytes(), b"", b"")).await;
        let what = format!("{method} {}", path.split('?').next().unwrap());
        t.check("method", &what, &got, Want::Is(405));
        if let Some(allow) = allow {
            t.check_header(&what, &got, "allow", allow);
        }
    }
    // No file there: not a resource that takes other methods.
    for (method, path) in [
        ("DELETE", "/uploads"),
        ("GET", "/uploads"),
        ("POST", "/uploads"),
        ("GET", "/files"),
    ] {
        let got = raw(addr, request(method, path.as_bytes(), b"", b"")).await;
        t.check("method", &format!("{method} {path}"), &got, Want::Is(404));
    }
    for path in ["/files", "/files/"] {
        let got = raw(addr, request("POST", path.as_bytes(), b"", b"")).await;
        t.check(
            "method",
            &format!("POST {path}"),
            &got,
            Want::Any(&[404, 405]),
        );
    }

    // 8. Listing with bad parameters.
    let b64 = |s: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    for query in [
        "limit=0".to_owned(),
        "limit=100000".to_owned(),
        "limit=1001".to_owned(),
        "limit=-1".to_owned(),
        "limit=abc".to_owned(),
        "limit=1.5".to_owned(),
        "limit=".to_owned(),
        "limit=18446744073709551616".to_owned(),
        "limit=1&limit=2".to_owned(),
        "cursor=!!!".to_owned(),
        format!("cursor={}", b64(b"no colon")),
        format!("cursor={}", b64(b"x:y")),
        format!("cursor={}", b64(b"99999999999999999999:id")),
        format!("cursor={}", "a".repeat(600)),
        "cursor=%FF%FE".to_owned(),
        "cursor=%00".to_owned(),
        format!("cursor={}", b64(&[0xff, 0xfe, b':', b'x'])),
    ] {
        let got = send(client.get(ts.url(&format!("/api/files?{query}")))).await;
        t.check("list", &query, &got, Want::Is(400));
    }

    // 9. Bodies a valid upload link must refuse: a declared size of 10 and a declared SHA-256.
    let good = b"0123456789".to_vec();
    let strict = ts
        .upload_link("strict.bin", Some(10), Some(&sha256_hex(&good)))
        .await;
    let strict_url = target_of(strict["uploadUrl"].as_str().unwrap());
    let octets = "Content-Type: application/octet-stream\r\n";
    let chunked = format!("{octets}Transfer-Encoding: chunked\r\n");
    for (what, extra, body, want) in [
        (
            "wrong content type",
            "Content-Type: text/plain\r\n".to_owned(),
            good.clone(),
            Want::Is(400),
        ),
        (
            "content type not UTF-8",
            String::new(),
            good.clone(),
            Want::Is(400),
        ),
        (
            "longer than declared",
            octets.to_owned(),
            b"0123456789a".to_vec(),
            Want::Is(413),
        ),
        (
            "shorter than declared",
            octets.to_owned(),
            b"012345678".to_vec(),
            Want::Is(400),
        ),
        (
            "wrong bytes",
            octets.to_owned(),
            b"9876543210".to_vec(),
            Want::Is(400),
        ),
        (
            "chunked, too long",
            chunked.clone(),
            b"c\r\n0123456789ab\r\n0\r\n\r\n".to_vec(),
            Want::Is(413),
        ),
        (
            "chunked, too short",
            chunked.clone(),
            b"9\r\n012345678\r\n0\r\n\r\n".to_vec(),
            Want::Is(400),
        ),
        (
            "chunked, broken framing",
            chunked,
            b"zz\r\n0123\r\n".to_vec(),
            Want::Is(400),
        ),
        (
            "content-length not a number",
            format!("{octets}Content-Length: ten\r\n"),
            good.clone(),
            Want::Is(400),
        ),
        (
            "content-length negative",
            format!("{octets}Content-Length: -10\r\n"),
            good.clone(),
            Want::Is(400),
        ),
    ] {
        let extra = if what == "content type not UTF-8" {
            b"Content-Type: application/\xff\xfe\r\n".to_vec()
        } else {
            extra.into_bytes()
        };
        let got = raw(addr, request("PUT", strict_url.as_bytes(), &extra, &body)).await;
        t.check("upload body", what, &got, want);
    }
    // After all that the link still works once, and never again.
    let ok_put = raw(
        addr,
        request("PUT", strict_url.as_bytes(), octets.as_bytes(), &good),
    )
    .await;
    assert_eq!(ok_put.as_ref().map(|h| h.status), Ok(200), "{ok_put:?}");
    let again = raw(
        addr,
        request("PUT", strict_url.as_bytes(), octets.as_bytes(), &good),
    )
    .await;
    t.check(
        "upload body",
        "second upload through the same link",
        &again,
        Want::Is(409),
    );
    let (p, _, s, k) = split_signed(&sign(&upload_path).unwrap());
    let stale = format!("{p}?Expires=1000000000&Signature={s}&Key-Pair-Id={k}");
    let got = raw(
        addr,
        request("PUT", stale.as_bytes(), octets.as_bytes(), b"x"),
    )
    .await;
    t.check("upload body", "expired link", &got, Want::Is(403));
    let stale = ts.sign(&upload_path, now() - 10);
    let got = raw(
        addr,
        request("PUT", target_of(&stale).as_bytes(), octets.as_bytes(), b"x"),
    )
    .await;
    t.check(
        "upload body",
        "properly signed but expired link",
        &got,
        Want::Is(403),
    );
    let got = send(client.get(ts.url(&format!("/api/files/download/{pending_id}")))).await;
    t.check(
        "upload body",
        "download link for a pending upload",
        &got,
        Want::Is(409),
    );

    // 10. Multipart uploads: malformed part parameters on properly signed links, and bad
    // completion requests.
    let (status, multi) = ts
        .create_upload(json!({
            "filename": "multi.bin",
            "contentType": "application/octet-stream",
            "size": 12 * 1024 * 1024,
            "multipart": true,
        }))
        .await;
    assert_eq!(status, 200, "{multi}");
    let multi_id = multi["fileId"].as_str().unwrap().to_owned();
    let upload_id = multi["uploadId"].as_str().expect("uploadId").to_owned();
    let part_count = multi["parts"].as_array().expect("parts").len();
    let multi_path = format!("/uploads/{multi_id}");
    let beyond = (part_count + 1).to_string();
    let mut part_queries: Vec<String> = [
        "0",
        "-1",
        "abc",
        "10001",
        "99999999999999999999",
        "",
        "1.5",
        "01",
        "%31",
        "+1",
        "%201",
        "0x1",
        &beyond,
    ]
    .iter()
    .map(|n| format!("partNumber={n}&uploadId={upload_id}"))
    .collect();
    for u in [
        "0123456789abcdef0123456789abcdef".to_owned(),
        String::new(),
        "u".repeat(1000),
        "..%2f..%2fobjects".to_owned(),
        "%00".to_owned(),
        upload_id.to_ascii_uppercase(),
    ] {
        part_queries.push(format!("partNumber=1&uploadId={u}"));
    }
    part_queries.push("partNumber=1".to_owned());
    part_queries.push(format!("uploadId={upload_id}"));
    for query in &part_queries {
        let target = sign(&format!("{multi_path}?{query}")).expect("signable");
        let put = request("PUT", target.as_bytes(), octets.as_bytes(), b"hello");
        let got = raw(addr, put).await;
        let what = format!("PUT part {query}");
        t.check("multipart", &what, &got, Want::Any(&[400, 404]));
    }
    let single_part = sign(&format!("{upload_path}?partNumber=1&uploadId={upload_id}")).unwrap();
    let put = request("PUT", single_part.as_bytes(), octets.as_bytes(), b"hello");
    let got = raw(addr, put).await;
    t.check(
        "multipart",
        "part of a single-part upload",
        &got,
        Want::Is(400),
    );
    let whole = sign(&multi_path).unwrap();
    let put = request("PUT", whole.as_bytes(), octets.as_bytes(), b"hello");
    let got = raw(addr, put).await;
    t.check(
        "multipart",
        "whole body to a multipart upload",
        &got,
        Want::Is(400),
    );
    let complete = format!("/api/files/{multi_id}/complete");
    let json_head = b"Content-Type: application/json\r\n";
    for (what, body) in [
        ("empty body, no parts stored", Vec::new()),
        ("lone brace", b"{".to_vec()),
        ("array", b"[]".to_vec()),
        ("parts not a list", br#"{"parts":"x"}"#.to_vec()),
        ("part number 0", br#"{"parts":[{"partNumber":0}]}"#.to_vec()),
        (
            "part number negative",
            br#"{"parts":[{"partNumber":-1}]}"#.to_vec(),
        ),
        (
            "part number huge",
            br#"{"parts":[{"partNumber":99999999999}]}"#.to_vec(),
        ),
        (
            "parts descending",
            br#"{"parts":[{"partNumber":2},{"partNumber":1}]}"#.to_vec(),
        ),
        (
            "parts repeated",
            br#"{"parts":[{"partNumber":1},{"partNumber":1}]}"#.to_vec(),
        ),
        (
            "etag a number",
            br#"{"parts":[{"partNumber":1,"etag":5}]}"#.to_vec(),
        ),
        ("unknown field", br#"{"parts":[],"extra":true}"#.to_vec()),
        ("empty object, no parts stored", b"{}".to_vec()),
        ("3 MiB", vec![b' '; 3 << 20]),
    ] {
        let got = raw(addr, request("POST", complete.as_bytes(), json_head, &body)).await;
        t.check(
            "multipart",
            &format!("complete: {what}"),
            &got,
            Want::Client,
        );
    }
    for (what, method, path) in [
        (
            "parts of a single-part upload",
            "GET",
            format!("/api/files/{pending_id}/parts"),
        ),
        (
            "complete a single-part upload",
            "POST",
            format!("/api/files/{pending_id}/complete"),
        ),
        (
            "parts of an uploaded file",
            "GET",
            format!("/api/files/{file_id}/parts"),
        ),
        (
            "complete an uploaded file",
            "POST",
            format!("/api/files/{file_id}/complete"),
        ),
        (
            "complete an unknown file",
            "POST",
            format!("/api/files/{PREFIX}_x/complete"),
        ),
        ("GET complete", "GET", complete.clone()),
        ("POST parts", "POST", format!("/api/files/{multi_id}/parts")),
    ] {
        let got = raw(addr, request(method, path.as_bytes(), b"", b"")).await;
        t.check("multipart", what, &got, Want::Client);
    }
    for (what, extra) in [
        ("multipart without a size", json!({"multipart": true})),
        (
            "multipart of an empty file",
            json!({"multipart": true, "size": 0}),
        ),
        (
            "multipart not a bool",
            json!({"multipart": "yes", "size": 10}),
        ),
    ] {
        let body = ok(extra);
        let got = raw(
            addr,
            request("POST", b"/api/files/upload", json_head, &body),
        )
        .await;
        t.check("multipart", what, &got, Want::Is(400));
    }

    // 11. Not HTTP at all, or broken HTTP.
    for (what, bytes) in [
        ("garbage line", b"GARBAGE\r\n\r\n".to_vec()),
        ("method only", b"GET\r\n\r\n".to_vec()),
        (
            "header without colon",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n".to_vec(),
        ),
        (
            "space in header name",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n".to_vec(),
        ),
        (
            "NUL in header value",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n".to_vec(),
        ),
        (
            "bare LF line with NUL",
            b"GET /\x00 HTTP/1.1\nHost: x\n\n".to_vec(),
        ),
        ("binary noise", pseudo_random(512, 3)),
    ] {
        let got = raw(addr, bytes).await;
        t.check("protocol", what, &got, Want::Client);
    }

    // The server is still healthy, moves files, and never answered 5xx.
    let health = send(client.get(ts.url("/healthz"))).await.unwrap();
    assert_eq!(health.status, 200);
    let ready = send(client.get(ts.url("/readyz"))).await.unwrap();
    assert_eq!(ready.status, 200);
    let after = pseudo_random(64 * 1024, 11);
    let id = ts.upload("after-the-storm.bin", after.clone()).await;
    assert_eq!(ts.download(&id).await, after);
    assert_eq!(ts.download(&file_id).await, content);
    let metrics = client
        .get(ts.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let server_errors: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("keyhole_http_requests_total{") && l.contains("status=\"5"))
        .collect();
    assert!(server_errors.is_empty(), "5xx answers: {server_errors:?}");
    assert!(
        metrics.contains("keyhole_edge_transfers_in_flight 0"),
        "transfers still counted in flight"
    );
    assert_eq!(ts.staged(), 0, "refused uploads left staged bytes");

    println!(
        "{} malformed requests in {:.1?}: {:?}",
        t.total,
        started.elapsed(),
        t.by_section
    );
    assert!(
        t.failures.is_empty(),
        "{} of {} cases failed:\n{}",
        t.failures.len(),
        t.total,
        t.failures.join("\n")
    );
    assert!(t.total >= 200, "only {} cases", t.total);
    ts.stop().await;
}

/// Polls `check` every 100 ms until it holds or `limit` passes.
async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn sweeper_removes_expired_uploads_and_files_past_retention() {
    let ts = TestServer::start_with(|c| {
        c.upload_ttl = Duration::from_secs(1);
        c.pending_grace = Duration::ZERO;
        c.retention = Duration::from_secs(2);
        c.sweep_interval = Duration::from_secs(1);
    })
    .await;
    // Links live only until the end of the next second; start right after a second begins so
    // the upload has most of a second to get through.
    let content = pseudo_random(4096, 5);
    let mut uploaded = None;
    for _ in 0..5 {
        let into_second = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_millis();
        tokio::time::sleep(Duration::from_millis(u64::from(1000 - into_second) + 10)).await;
        let link = ts.upload_link("kept-briefly.bin", Some(4096), None).await;
        let r = ts
            .put(link["uploadUrl"].as_str().unwrap(), content.clone())
            .await;
        if r.status() == 200 {
            uploaded = Some(link["fileId"].as_str().unwrap().to_owned());
            break;
        }
    }
    let uploaded = uploaded.expect("an upload within its one-second link");
    let pending = ts.upload_link("abandoned.bin", None, None).await;
    let pending = pending["fileId"].as_str().unwrap().to_owned();
    let object = ts.object_path(&uploaded);
    assert!(object.exists());
    assert_eq!(ts.download(&uploaded).await, content);

    let db_path = ts.data().join("metadata.db");
    let rows = || {
        let db = rusqlite::Connection::open(&db_path).unwrap();
        db.query_row("SELECT COUNT(*) FROM files", [], |r| r.get::<_, i64>(0))
            .unwrap()
    };
    let gone = eventually(Duration::from_secs(8), || async {
        let listed = ts.list_all().await;
        let ids: Vec<&str> = listed.iter().filter_map(|f| f["fileId"].as_str()).collect();
        !ids.contains(&uploaded.as_str())
            && !ids.contains(&pending.as_str())
            && !object.exists()
            // The records are really deleted, not only hidden from the listing.
            && rows() == 0
    })
    .await;
    assert!(
        gone,
        "expired records or object still present: {} rows, object {}, listed {:?}",
        rows(),
        object.exists(),
        ts.list_all().await
    );
    let metrics = ts.metrics().await;
    for kind in ["pending", "uploaded"] {
        let prefix = format!("keyhole_sweeper_deleted_files_total{{kind=\"{kind}\"}} ");
        let count: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {prefix:?} in\n{metrics}"));
        assert!(count >= 1, "{prefix}{count}");
    }
    let (status, _) = ts.download_link(&uploaded).await;
    assert_eq!(status, 404);
    ts.stop().await;
}

/// A backlog of expired files larger than one batch goes in one sweep, and files whose removal
/// keeps failing do not hold up the ones behind them.
#[tokio::test]
async fn one_sweep_works_through_a_backlog_past_files_that_fail() {
    use keyhole::store::{FileRecord, Status};
    let ts = TestServer::start_with(|c| c.sweep_interval = Duration::from_secs(3600)).await;
    let state = ts.server.as_ref().unwrap().state.clone();
    let now = now() as i64;
    let record = |name: &str, ttl: i64| {
        let file_id = keyhole::ids::new_file_id(name).unwrap();
        FileRecord {
            object_key: keyhole::ids::object_key(&file_id),
            file_id,
            original_filename: name.to_owned(),
            content_type: "application/octet-stream".to_owned(),
            upload_url_generated_at: (ttl - 600) * 1000,
            uploaded_at: None,
            size: None,
            declared_size: None,
            declared_sha256: None,
            sha256: None,
            etag: None,
            status: Status::Pending,
            owner: "local".to_owned(),
            ttl: Some(ttl),
            upload_id: None,
            part_size: None,
        }
    };
    // The sweeper's pass at start-up must be over before the backlog is made, or it takes part
    // of it (the next pass is an hour away).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while state.metrics.sweeps.get() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the start-up sweep never finished"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // More failing files than one batch, expiring first: a non-empty directory stands where
    // each one's object would be, so removing it fails.
    let failing: Vec<FileRecord> = (0..600).map(|_| record("stuck.bin", now - 2000)).collect();
    let plain: Vec<FileRecord> = (0..700).map(|_| record("old.bin", now - 1000)).collect();
    for r in &failing {
        std::fs::create_dir_all(ts.object_path(&r.file_id).join("in-the-way")).unwrap();
    }
    let created =
        futures_util::future::join_all(failing.iter().chain(&plain).map(|r| state.meta.create(r)))
            .await;
    assert!(created.iter().all(Result::is_ok));

    // A pass whose deadline has come does nothing and says so.
    let past = std::time::Instant::now();
    let pass = keyhole::sweeper::sweep_until(&state, Some(past)).await;
    assert_eq!(
        pass,
        keyhole::sweeper::Pass {
            removed: 0,
            out_of_time: true
        }
    );
    assert!(state.meta.get(&plain[0].file_id).await.unwrap().is_some());

    let later = std::time::Instant::now() + Duration::from_secs(3600);
    let pass = keyhole::sweeper::sweep_until(&state, Some(later)).await;
    assert_eq!(
        pass.removed, 700,
        "every plain expired file goes in one sweep"
    );
    assert!(!pass.out_of_time, "the pass finished its work in time");
    for r in &plain {
        assert!(state.meta.get(&r.file_id).await.unwrap().is_none());
    }
    for r in &failing {
        assert!(state.meta.get(&r.file_id).await.unwrap().is_some());
    }
}

/// Reads from `stream` until the server closes it; how long that took, or `None` if it was
/// still open after `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<(Duration, Vec<u8>)> {
    let started = Instant::now();
    let mut seen = Vec::new();
    let read_all = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read_all).await.ok()?;
    Some((started.elapsed(), seen))
}

#[tokio::test]
async fn slow_silent_and_inventive_clients_cannot_hold_the_server() {
    let ts = TestServer::start_with(|c| c.client_timeout = Duration::from_secs(1)).await;
    let addr = ts.running().addr;

    // Headers a byte at a time, or never, or an idle keep-alive connection: closed once the
    // client timeout has passed.
    let mut trickle = TcpStream::connect(addr).await.unwrap();
    trickle
        .write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    for (what, stream) in [
        ("partial headers", &mut trickle),
        ("no request", &mut silent),
        ("idle keep-alive", &mut idle),
    ] {
        let closed = closed_within(stream, TIMEOUT).await;
        assert!(closed.is_some(), "{what}: still open after {TIMEOUT:?}");
    }

    // An upload whose body stops: 408, and nothing left staged.
    let (status, link) = ts
        .create_upload(
            json!({"filename": "slow.bin", "contentType": "application/octet-stream", "size": 10}),
        )
        .await;
    assert_eq!(status, 200, "{link}");
    let url = ts.local(link["uploadUrl"].as_str().unwrap());
    let target = url.strip_prefix(&ts.base).unwrap();
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT {target} HTTP/1.1\r\nHost: files.keyhole.test\r\nContent-Type: application/octet-stream\r\nContent-Length: 10\r\n\r\nx"
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    let (_, answer) = closed_within(&mut stalled, TIMEOUT)
        .await
        .expect("a stalled upload is answered and closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("<Code>RequestTimeout</Code>"), "{answer}");
    assert_eq!(ts.staged(), 0, "the stalled upload's bytes are gone");
    // The link still works for a client that sends its body.
    let r = ts
        .put(link["uploadUrl"].as_str().unwrap(), b"0123456789".to_vec())
        .await;
    assert_eq!(r.status(), 200);

    // Cleartext HTTP/2 is not spoken: the preface gets an HTTP/1.1 refusal or a close.
    let mut h2 = TcpStream::connect(addr).await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let (_, answer) = closed_within(&mut h2, TIMEOUT).await.expect("closed");
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 4") || answer.starts_with(b"HTTP/1.1 5"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );

    // Invented methods do not each add a series to /metrics.
    for i in 0..50 {
        let head = raw(
            addr,
            request(&format!("QX{i}{}", "A".repeat(200)), b"/healthz", b"", b""),
        )
        .await
        .unwrap();
        assert!((400..500).contains(&head.status), "{}", head.status);
    }
    let metrics = ts.metrics().await;
    assert!(!metrics.contains("QX"), "client methods in /metrics");
    assert!(metrics.contains("method=\"other\""), "{metrics}");
}
