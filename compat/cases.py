"""Deterministic case list for Keyhole's cross-SDK compatibility suite.

Every case describes one URL to sign and the policy to sign it with; both reference signers
(botocore and @aws-sdk/cloudfront-signer) sign every case, and `check.py` verifies and compares
the results with the `keyhole` CLI. The list comes from a seeded generator, so a failing case id
reproduces with the same `COMPAT_SEED` and `COMPAT_NOW`.

Run directly to print the cases as JSON lines:  python3 compat/cases.py [COUNT]
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import re
import sys
import time
import urllib.parse

ORIGIN = "https://cdn.example.com"
HOST = "cdn.example.com"

DEFAULT_SEED = 20260301
DEFAULT_COUNT = 200
# The "current time" every verification is made at. Fixed so runs reproduce; moved forward
# automatically once the wall clock gets close, so expiries always lie in the future.
DEFAULT_NOW = 1_900_000_000
MAX_EPOCH = 2_147_483_647


def compat_now() -> int:
    if os.environ.get("COMPAT_NOW"):
        return int(os.environ["COMPAT_NOW"])
    now = DEFAULT_NOW
    while now < time.time() + 90 * 86400:
        now += 100_000_000
    return now


# Directory names: only characters that no SDK re-encodes, so wildcard patterns built on them
# cover the URL as every signer emits it.
DIRS = ["files", "uploads", "media", "docs", "img", "v1", "static", "a", "Reports", "2026"]

# Path segments: plain, already percent-encoded (upper and lower case escapes, multi-byte UTF-8,
# encoded slash and percent), RFC 3986 sub-delimiters that are legal unencoded in a path, and
# unreserved punctuation.
SEGMENTS = [
    "report.pdf", "index.html", "a-b_c.d", "UPPER.TXT", "x", "archive.tar.gz",
    "report%202026.pdf", "with%20two%20spaces", "%E2%82%AC100.txt", "caf%C3%A9.png",
    "%E6%97%A5%E6%9C%AC.txt", "dir%2Fslash", "100%25", "%7Euser", "%e2%82%ac-lower.txt",
    "~user", "(1).jpg", "it's.txt", "a!b", "star*name", "x:y", "a@b", "a,b", "a;b", "k=v",
    "a+b", "a$b", "a&b", "file.json", "%F0%9F%93%84doc",
]

# Query strings (without the leading '?'). An empty string means a bare '?'.
QUERIES = [
    "size=large", "a=1&b=2", "v=1.2.3&lang=en-US", "q=a+b", "empty=", "flag",
    "response-content-disposition=attachment%3B%20filename%3D%22a.pdf%22",
    "response-content-type=application%2Fpdf", "list=a,b,c", "a=1&a=2", "MyExpires=1",
    "redirect=https://x.example/y", "x-id=GetObject&partNumber=3", "a=1&", "",
    "name=%E2%82%AC", "t=1700000000",
]

SAFE_WILDCARD = re.compile(r"^[A-Za-z0-9._~/:*?-]+$")


def js_encode_url(url: str) -> str:
    """A port of @aws-sdk/cloudfront-signer's `encodeUrlPath` (3.1166.0): each path segment is
    decodeURIComponent'ed and encodeURIComponent'ed again; query pairs keep their %XX escapes
    (upper-cased) and '+', empty pairs are dropped and every pair gets an '='. Used only to pick
    wildcard patterns that cover both SDKs' URLs; the checks use what the SDK really emits."""

    def decode_component(seg: str) -> str:
        if re.search(r"%(?![0-9A-Fa-f]{2})", seg):
            raise ValueError("malformed escape")
        return urllib.parse.unquote_to_bytes(seg).decode("utf-8")  # strict, like JS

    def encode_component(text: str) -> str:
        return urllib.parse.quote(text, safe="-_.!~*'()")

    def encode_path_segment(seg: str) -> str:
        try:
            return encode_component(decode_component(seg))
        except ValueError:
            return encode_component(seg)

    def encode_query_component(comp: str) -> str:
        parts = re.split(r"(%[0-9A-Fa-f]{2}|\+)", comp)
        out = []
        for i, part in enumerate(parts):
            if i % 2 == 1:
                out.append(part if part == "+" else part.upper())
            else:
                out.append(encode_component(part).replace("'", "%27"))
        return "".join(out)

    scheme_end = url.find("//")
    if scheme_end < 0:
        return url
    path_start = url.find("/", scheme_end + 2)
    if path_start < 0:
        return url
    origin, rest = url[:path_start], url[path_start:]
    raw_path, _, raw_query = rest.partition("?")
    has_query = "?" in rest
    path = re.sub(r"[^/]+", lambda m: encode_path_segment(m.group(0)), raw_path)
    query = ""
    if has_query:
        pairs = []
        for pair in raw_query.split("&"):
            if not pair:
                continue
            key, _, value = pair.partition("=")
            pairs.append(f"{encode_query_component(key)}={encode_query_component(value)}")
        query = "?" + "&".join(pairs) if pairs else ""
    return origin + path + query


def wildcard_match(pattern: str, text: str) -> bool:
    """CloudFront's Resource match: '*' any run of characters, '?' exactly one."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, text, re.DOTALL) is not None


def _random_ip(rng: random.Random) -> ipaddress.IPv4Address:
    net = rng.choice(["198.51.100.0/24", "203.0.113.0/24", "192.0.2.0/24", "10.0.0.0/8",
                      "172.16.0.0/12", "100.64.0.0/10"])
    net = ipaddress.ip_network(net)
    return net[rng.randrange(1, net.num_addresses - 1)]


def _ip_condition(rng: random.Random):
    """Returns (condition text as given to signers, client ip inside, client ip outside or None)."""
    addr = _random_ip(rng)
    style = rng.choice(["bare", "/32", "/24", "/24", "/16", "/8", "/20", "hostbits", "/0"])
    if style == "bare":
        cond, net = str(addr), ipaddress.ip_network(f"{addr}/32")
    elif style == "hostbits":
        # A CIDR whose host bits are set: signers pass it through unchanged.
        net = ipaddress.ip_network(f"{addr}/24", strict=False)
        cond = f"{addr}/24"
    else:
        prefix = int(style[1:])
        net = ipaddress.ip_network(f"{addr}/{prefix}", strict=False)
        cond = f"{net.network_address}/{prefix}"
    inside = net[rng.randrange(0, net.num_addresses)] if net.num_addresses > 1 else net[0]
    if rng.random() < 0.15:
        client = f"::ffff:{inside}"  # IPv4-mapped IPv6 form, as dual-stack servers report it
    else:
        client = str(inside)
    outside = None
    if net.prefixlen > 0:
        flipped = int(net.network_address) ^ (1 << (32 - net.prefixlen))
        outside = str(ipaddress.IPv4Address(flipped))
    return cond, client, outside


def _path(rng: random.Random) -> str:
    segs = [rng.choice(DIRS)]
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        segs.append(rng.choice(SEGMENTS + DIRS))
    if rng.random() < 0.03:
        # A long URL (1-3 KB): still far below CloudFront's 8 KB request line.
        segs += [rng.choice(SEGMENTS + DIRS) for _ in range(rng.randrange(60, 150))]
    r = rng.random()
    if r < 0.05:
        segs.append("")  # trailing slash
    elif r < 0.08:
        segs.insert(1, "")  # an empty segment: '//'
    if len(segs) == 1 or rng.random() < 0.6:
        segs.append(rng.choice(SEGMENTS))
    return "/" + "/".join(segs)


def _patterns(rng: random.Random, url: str, path: str):
    """Candidate wildcard Resource patterns for url; all cover both url and js_encode_url(url)."""
    first = path.split("/")[1]
    cands = [
        f"{ORIGIN}/{first}/*",
        f"{ORIGIN}/*",
        f"http*://{HOST}/{first}/*",
        f"{ORIGIN}/{first}/*/*",
        f"https://cdn.example.co?/*",
        f"{ORIGIN}/*{path[-3:]}" if SAFE_WILDCARD.match(path[-3:]) else f"{ORIGIN}/*",
    ]
    stable = js_encode_url(url)
    if stable == url:
        # Exact URL with single characters wildcarded.
        chars = list(url)
        positions = [i for i, c in enumerate(chars) if i > len(ORIGIN) and c.isalnum()]
        if positions:
            for i in rng.sample(positions, min(2, len(positions))):
                chars[i] = "?"
            cands.append("".join(chars))
    good = [p for p in cands if wildcard_match(p, url) and wildcard_match(p, stable)]
    return good


def generate(count: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED, now: int | None = None):
    now = compat_now() if now is None else now
    rng = random.Random(seed)
    cases = []
    for n in range(count):
        path = _path(rng)
        query = None
        if rng.random() < 0.35:
            query = rng.choice(QUERIES)
        url = ORIGIN + path + ("" if query is None else "?" + query)

        key = "ec" if rng.random() < 0.25 else "rsa"
        hash_ = "sha256" if key == "ec" or rng.random() < 0.35 else "sha1"

        r = rng.random()
        if r < 0.03:
            expires = MAX_EPOCH
        elif r < 0.5:
            expires = now + rng.randrange(1, 3600)
        else:
            expires = now + rng.randrange(3600, 30 * 86400)

        case = {
            "id": f"c{n:03d}",
            "key": key,
            "hash": hash_,
            "url": url,
            "policy": "canned",
            "resource": None,
            "expires": expires,
            "not_before": None,
            "ip": None,
            "client_ip": None,
            "wrong_ip": None,
        }
        if rng.random() < 0.5:
            case["policy"] = "custom"
            kind = rng.random()
            if kind < 0.45:
                pats = _patterns(rng, url, path)
                case["resource"] = rng.choice(pats) if pats else url
            elif kind < 0.55:
                case["resource"] = url  # custom policy, exact resource, maybe no condition
            if rng.random() < 0.45:
                case["not_before"] = now - rng.randrange(1, 30 * 86400)
            if rng.random() < 0.45:
                case["ip"], case["client_ip"], case["wrong_ip"] = _ip_condition(rng)
            if case["resource"] is None and case["not_before"] is None and case["ip"] is None:
                case["not_before"] = now - rng.randrange(1, 86400)
        if case["client_ip"] is None and rng.random() < 0.5:
            case["client_ip"] = str(_random_ip(rng))
        cases.append(case)
    return cases


def load(path: str):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("COMPAT_CASES", DEFAULT_COUNT))
    seed = int(os.environ.get("COMPAT_SEED", DEFAULT_SEED))
    now = compat_now()
    for c in generate(count, seed, now):
        print(json.dumps(c, separators=(",", ":")))
