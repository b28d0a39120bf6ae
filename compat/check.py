"""Checks the `keyhole` CLI against URLs and cookies signed by botocore and
@aws-sdk/cloudfront-signer, and compares the bytes `keyhole sign` produces with theirs.

Called by run.sh; run by hand with the same arguments to reproduce (see compat/README.md).
Prints one line per failure, a summary by section, and last a line `N passed, M failed`.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import subprocess
import sys
import time
from collections import OrderedDict, defaultdict
from concurrent.futures import ThreadPoolExecutor

import cases as casegen

SIGNING = ("Expires", "Policy", "Signature", "Key-Pair-Id", "Hash-Algorithm")
B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-~"
RESULT_RE = re.compile(r"(valid|[A-Za-z]+ \([a-z_]+\))\s*$")

VALID = "valid"
BAD_SIG = "AccessDenied (bad_signature)"
EXPIRED = "AccessDenied (expired)"
NOT_YET = "AccessDenied (not_yet_valid)"
RES_MISMATCH = "AccessDenied (resource_mismatch)"
IP_MISMATCH = "AccessDenied (ip_mismatch)"
MISSING_KEY = "MissingKey (missing_key_pair_id)"
UNKNOWN_KEY = "InvalidKey (unknown_key)"
MISSING_SIG = "MalformedSignature (missing_signature)"
BAD_HASH = "MalformedSignature (unsupported_hash_algorithm)"
BAD_POLICY = "MalformedPolicy (malformed_policy)"


# ---------------------------------------------------------------------------------------------
# URL helpers. A signed URL is kept as (prefix, pairs): everything before the first '?', and the
# '&'-separated query pairs in order (None when there is no '?'), so tampering keeps every other
# byte as the signer emitted it.


def split_url(url: str):
    if "?" not in url:
        return url, None
    prefix, query = url.split("?", 1)
    return prefix, query.split("&")


def join_url(prefix: str, pairs) -> str:
    return prefix if pairs is None else prefix + "?" + "&".join(pairs)


def pname(pair: str) -> str:
    return pair.split("=", 1)[0]


def param(url: str, name: str):
    _, pairs = split_url(url)
    for pair in pairs or []:
        if pname(pair) == name:
            return pair.split("=", 1)[1] if "=" in pair else ""
    return None


def set_param(url: str, name: str, value) -> str:
    """Replaces (value given), removes (value None) or appends a signing parameter."""
    prefix, pairs = split_url(url)
    pairs = list(pairs or [])
    out, seen = [], False
    for pair in pairs:
        if pname(pair) == name:
            seen = True
            if value is not None:
                out.append(f"{name}={value}")
        else:
            out.append(pair)
    if not seen and value is not None:
        out.append(f"{name}={value}")
    return join_url(prefix, out)


def base_url(url: str) -> str:
    """The URL without CloudFront's signing parameters (what the policy covers)."""
    prefix, pairs = split_url(url)
    if pairs is None:
        return prefix
    kept = [p for p in pairs if pname(p) not in SIGNING]
    return prefix + ("?" + "&".join(kept) if kept else "")


def cf_b64decode(text: str) -> bytes:
    return base64.b64decode(text.replace("-", "+").replace("_", "=").replace("~", "/"))


def cf_b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode().replace("+", "-").replace("=", "_").replace("/", "~")


def canned_json(resource: str, expires: int) -> str:
    return ('{"Statement":[{"Resource":"%s","Condition":{"DateLessThan":{"AWS:EpochTime":%d}}}]}'
            % (resource, expires))


def policy_of(url: str):
    """(policy bytes that were signed, parsed JSON or None for canned)."""
    pol = param(url, "Policy")
    if pol is not None:
        raw = cf_b64decode(pol)
        return raw, json.loads(raw)
    return canned_json(base_url(url), int(param(url, "Expires"))).encode(), None


def tweak_char(value: str, pos: int) -> str:
    c = value[pos]
    i = B64_ALPHABET.find(c)
    repl = B64_ALPHABET[(i + 1) % len(B64_ALPHABET)] if i >= 0 else "A"
    return value[:pos] + repl + value[pos + 1:]


# ---------------------------------------------------------------------------------------------


class Suite:
    def __init__(self):
        self.results = []  # (section, name, ok, detail)
        self.notes = []

    def check(self, section, name, ok, detail=""):
        self.results.append((section, name, bool(ok), detail))
        return ok

    def note(self, text):
        self.notes.append(text)


class Keyhole:
    def __init__(self, binary, keys, suite):
        self.binary = binary
        self.keys = keys
        self.suite = suite
        help_text = self.run(["verify", "--help"]).stdout + self.run(["verify", "--help"]).stderr
        self.verify_stdin = "--stdin" in help_text
        help_text = self.run(["sign", "--help"]).stdout
        self.sign_stdin = "--stdin" in help_text
        self.processes = 0

    def run(self, args, stdin=None):
        return subprocess.run([self.binary, *args], input=stdin, capture_output=True, text=True,
                              timeout=120)

    def key_args(self):
        args = []
        for k in self.keys.values():
            args += ["--key", f"{k['id']}={k['pub']}"]
        return args

    def verify_batch(self, jobs):
        """Runs verification jobs; returns the observed result line for each, in order."""
        results = [None] * len(jobs)
        groups = defaultdict(list)
        for i, job in enumerate(jobs):
            if job.get("cookies") or not self.verify_stdin:
                groups[("single", i)].append(i)
            else:
                groups[(job["now"], job.get("client_ip"))].append(i)

        def common(job):
            args = ["verify", *self.key_args(), "--now", str(job["now"])]
            if job.get("client_ip"):
                args += ["--client-ip", job["client_ip"]]
            for name, value in (job.get("cookies") or {}).items():
                args += ["--cookie", f"{name}={value}"]
            return args

        def run_group(key_idx):
            key, idx = key_idx
            first = jobs[idx[0]]
            if key[0] == "single":
                proc = self.run([*common(first), first["url"]])
                text = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
                line = text[-1] if text else ""
                got = parse_result(line)
                if got == VALID and proc.returncode != 0:
                    got = f"valid-but-exit-{proc.returncode}"
                elif got not in (VALID, None) and proc.returncode != 1:
                    got = f"{got} [exit {proc.returncode}]"
                return [(idx[0], got if got else f"unparsed: {line!r} (exit {proc.returncode})")]
            stdin = "".join(jobs[i]["url"] + "\n" for i in idx)
            proc = self.run([*common(first), "--stdin"], stdin=stdin)
            lines = [l for l in proc.stdout.splitlines() if l.strip()]
            if len(lines) != len(idx):
                return [(i, f"--stdin gave {len(lines)} lines for {len(idx)} URLs "
                            f"(exit {proc.returncode}): {proc.stderr.strip()[:200]}") for i in idx]
            out = []
            all_valid = True
            for i, line in zip(idx, lines):
                got = parse_result(line)
                all_valid &= got == VALID
                out.append((i, got if got else f"unparsed: {line!r}"))
            if all_valid != (proc.returncode == 0):
                out = [(i, f"{g} [batch exit {proc.returncode}]") for i, g in out]
            return out

        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            for chunk in pool.map(run_group, groups.items()):
                for i, got in chunk:
                    results[i] = got
        self.processes += len(groups)
        return results


def parse_result(line: str):
    m = RESULT_RE.search(line.strip())
    return m.group(1) if m else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keyhole", required=True)
    ap.add_argument("--cases", required=True)
    ap.add_argument("--botocore", required=True)
    ap.add_argument("--js", required=True)
    ap.add_argument("--now", type=int, required=True)
    for k in ("rsa", "ec"):
        ap.add_argument(f"--{k}-key", required=True)
        ap.add_argument(f"--{k}-pub", required=True)
        ap.add_argument(f"--{k}-id", required=True)
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()

    t0 = time.time()
    suite = Suite()
    keys = {
        "rsa": {"key": a.rsa_key, "pub": a.rsa_pub, "id": a.rsa_id},
        "ec": {"key": a.ec_key, "pub": a.ec_pub, "id": a.ec_id},
    }
    kh = Keyhole(a.keyhole, keys, suite)
    now = a.now
    cases = {c["id"]: c for c in casegen.load(a.cases)}
    signed = defaultdict(dict)  # id -> sdk -> record
    for path in (a.botocore, a.js):
        for rec in casegen.load(path):
            signed[rec["id"]][rec["sdk"]] = rec

    if not kh.verify_stdin:
        suite.note("`keyhole verify --help` shows no --stdin: every URL was verified in its own process.")

    # ----------------------------------------------------------------------------- verification
    jobs = []

    def job(section, name, url, expect, now_=None, client_ip="__case__", case=None, cookies=None):
        if client_ip == "__case__":
            client_ip = case["client_ip"] if case else None
        jobs.append({"section": section, "name": name, "url": url, "expect": expect,
                     "now": now if now_ is None else now_, "client_ip": client_ip,
                     "cookies": cookies})

    def expect_for_changed_url(url, new_base):
        """Expected result when the request URL changes but the signature material does not."""
        _, policy = policy_of(url)
        if policy is None:
            return BAD_SIG
        resource = policy["Statement"][0].get("Resource")
        if resource is None or casegen.wildcard_match(resource, new_base):
            return VALID
        return RES_MISMATCH

    def tamper_jobs(section, c, url):
        cid = c["id"]
        job(section, f"{cid} accepted", url, VALID, case=c)
        sig = param(url, "Signature")
        job(section, f"{cid} signature char changed", set_param(url, "Signature", tweak_char(sig, len(sig) // 2)),
            BAD_SIG, case=c)
        prefix, pairs = split_url(url)
        changed = join_url(prefix + "x", pairs)
        job(section, f"{cid} path changed", changed, expect_for_changed_url(url, base_url(changed)), case=c)
        changed = join_url(prefix.replace(casegen.HOST, "cdn.example.net", 1), pairs)
        job(section, f"{cid} host changed", changed, expect_for_changed_url(url, base_url(changed)), case=c)
        kept = [i for i, p in enumerate(pairs or []) if pname(p) not in SIGNING and p]
        if kept:
            new_pairs = list(pairs)
            new_pairs[kept[0]] += "x"
            changed = join_url(prefix, new_pairs)
            job(section, f"{cid} query value changed", changed,
                expect_for_changed_url(url, base_url(changed)), case=c)
        raw, policy = policy_of(url)
        if policy is None:
            exp = int(param(url, "Expires"))
            job(section, f"{cid} Expires changed", set_param(url, "Expires", str(exp + 1)), BAD_SIG, case=c)
            job(section, f"{cid} Expires not a number", set_param(url, "Expires", "12x"), BAD_POLICY, case=c)
            expires = exp
        else:
            cond = policy["Statement"][0]["Condition"]
            expires = cond["DateLessThan"]["AWS:EpochTime"]
            forged = raw.replace(b'"AWS:EpochTime":%d' % expires, b'"AWS:EpochTime":%d' % (expires + 86400))
            job(section, f"{cid} policy changed (later expiry)",
                set_param(url, "Policy", cf_b64encode(forged)), BAD_SIG, case=c)
            job(section, f"{cid} policy not base64", set_param(url, "Policy", param(url, "Policy") + "!!"),
                BAD_POLICY, case=c)
        job(section, f"{cid} Key-Pair-Id dropped", set_param(url, "Key-Pair-Id", None), MISSING_KEY, case=c)
        job(section, f"{cid} Key-Pair-Id unknown", set_param(url, "Key-Pair-Id", "KUNKNOWN0000"), UNKNOWN_KEY,
            case=c)
        job(section, f"{cid} Signature dropped", set_param(url, "Signature", None), MISSING_SIG, case=c)
        if param(url, "Hash-Algorithm") is not None:
            job(section, f"{cid} Hash-Algorithm dropped", set_param(url, "Hash-Algorithm", None), BAD_SIG, case=c)
        else:
            job(section, f"{cid} Hash-Algorithm=SHA256 added", set_param(url, "Hash-Algorithm", "SHA256"),
                BAD_SIG, case=c)
        job(section, f"{cid} Hash-Algorithm=MD5", set_param(url, "Hash-Algorithm", "MD5"), BAD_HASH, case=c)
        job(section, f"{cid} at expiry", url, EXPIRED, now_=expires, case=c)
        job(section, f"{cid} one second before expiry", url, VALID, now_=expires - 1, case=c)
        if policy is not None:
            cond = policy["Statement"][0]["Condition"]
            if "DateGreaterThan" in cond:
                nb = cond["DateGreaterThan"]["AWS:EpochTime"]
                job(section, f"{cid} at not-before", url, NOT_YET, now_=nb, case=c)
                job(section, f"{cid} one second after not-before", url, VALID, now_=nb + 1, case=c)
            if "IpAddress" in cond:
                if c["wrong_ip"]:
                    job(section, f"{cid} client outside IP range", url, IP_MISMATCH, client_ip=c["wrong_ip"], case=c)
                job(section, f"{cid} client IP unknown", url, IP_MISMATCH, client_ip=None, case=c)
                job(section, f"{cid} IPv6 client", url, IP_MISMATCH, client_ip="2001:db8::7", case=c)

    for cid, c in cases.items():
        for sdk in ("botocore", "js"):
            rec = signed[cid].get(sdk)
            if not suite.check(f"{sdk}: signed", f"{cid} signed by {sdk}", rec is not None, "no output"):
                continue
            tamper_jobs(f"{sdk} URLs: keyhole verify", c, rec["url"])
        rec = signed[cid].get("js")
        if rec and rec.get("cookies"):
            cookies = {k: str(v) for k, v in rec["cookies"].items()}
            job("js cookies: keyhole verify", f"{cid} cookies accepted", c["url"], VALID, case=c, cookies=cookies)
            bad = dict(cookies)
            bad["CloudFront-Signature"] = tweak_char(bad["CloudFront-Signature"], len(bad["CloudFront-Signature"]) // 2)
            job("js cookies: keyhole verify", f"{cid} cookie signature changed", c["url"], BAD_SIG, case=c,
                cookies=bad)

    probe = signed.get("probe-raw-resource-policy", {}).get("js")
    if probe:
        job("JS SDK pitfalls: keyhole verify", "custom policy naming the unencoded URL (SDK re-encodes '@')",
            probe["url"], RES_MISMATCH, client_ip=None)
    probe = signed.get("probe-pretty-policy", {}).get("botocore")
    if probe:
        job("policy layout: keyhole verify", "botocore URL with an indented, multi-line custom policy",
            probe["url"], VALID, client_ip=None)
    probe = signed.get("probe-no-resource-policy", {}).get("js")
    if probe:
        job("policy layout: keyhole verify", "JS SDK URL with a custom policy without Resource",
            probe["url"], VALID, client_ip=None)
    probe = signed.get("probe-ec-default-hash", {}).get("js")
    if probe:
        job("probe", "ECDSA key with the JS SDK's default algorithm (ECDSA-SHA1, no Hash-Algorithm)",
            probe["url"], None, client_ip=None)

    # Notes on what the JS SDK did to the URL (not failures: its output verifies as it is).
    rewritten = [(cid, cases[cid]["url"], base_url(signed[cid]["js"]["url"]))
                 for cid in cases if "js" in signed[cid] and base_url(signed[cid]["js"]["url"]) != cases[cid]["url"]]
    if rewritten:
        suite.note(f"@aws-sdk/cloudfront-signer rewrote {len(rewritten)} of {len(cases)} input URLs before signing "
                   f"(botocore and keyhole sign them as given); e.g.:")
        for cid, before, after in rewritten[:6]:
            suite.note(f"  {cid}: {before}\n        -> {after}")

    # ----------------------------------------------------------------------------- keyhole sign
    def sign_args(c, url, resource):
        k = keys[c["key"]]
        args = ["sign", "--key", k["key"], "--key-pair-id", k["id"], "--expires", str(c["expires"])]
        if c["not_before"]:
            args += ["--not-before", str(c["not_before"])]
        if c["ip"]:
            args += ["--ip", c["ip"]]
        if resource is not None:
            args += ["--resource", resource]
        if c["key"] == "rsa" and c["hash"] == "sha256":
            args += ["--hash", "sha256"]
        return args + [url]

    sign_tasks = []  # (case, which, url, resource)
    for cid, c in cases.items():
        sign_tasks.append((c, "input", c["url"], c["resource"]))
        if "js" in signed[cid]:
            jb = base_url(signed[cid]["js"]["url"])
            if jb != c["url"]:
                res = jb if c["resource"] == c["url"] else c["resource"]
                sign_tasks.append((c, "js-base", jb, res))

    def do_sign(task):
        c, which, url, resource = task
        return task, kh.run(sign_args(c, url, resource))

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        sign_results = list(pool.map(do_sign, sign_tasks))
    kh.processes += len(sign_tasks)

    keyhole_urls = {}  # (cid, which) -> url
    for (c, which, url, resource), proc in sign_results:
        cid = c["id"]
        out = proc.stdout.strip()
        ok = proc.returncode == 0 and out.count("\n") == 0 and out.startswith(url)
        if not suite.check("keyhole sign: runs", f"{cid} keyhole sign ({which})", ok,
                           f"exit {proc.returncode}: {proc.stderr.strip()[:300]} | stdout {out[:200]!r}"):
            continue
        keyhole_urls[(cid, which)] = out

    both_conditions = lambda c: bool(c["ip"]) and bool(c["not_before"])
    for cid, c in cases.items():
        k_in = keyhole_urls.get((cid, "input"))
        if k_in is None:
            continue
        b = signed[cid].get("botocore", {}).get("url")
        j = signed[cid].get("js", {}).get("url")
        if c["key"] == "rsa" and b:
            if c["policy"] == "canned":
                suite.check("keyhole sign == botocore (canned RSA, byte-for-byte)",
                            f"{cid} canned {c['hash']}", k_in == b, f"url {c['url']}\n  keyhole  {k_in}\n  botocore {b}")
            elif not both_conditions(c):
                suite.check("keyhole sign == botocore (custom RSA, same policy JSON, byte-for-byte)",
                            f"{cid} custom {c['hash']}", k_in == b, f"url {c['url']}\n  keyhole  {k_in}\n  botocore {b}")
            else:
                _, kp = policy_of(k_in)
                _, bp = policy_of(b)
                suite.check("keyhole policy == botocore policy as JSON (IpAddress/DateGreaterThan order differs)",
                            f"{cid} custom {c['hash']}", kp == bp and base_url(k_in) == base_url(b),
                            f"keyhole {kp}\n  botocore {bp}")
        if c["key"] == "rsa" and j:
            jb = base_url(j)
            k_js = k_in if jb == c["url"] else keyhole_urls.get((cid, "js-base"))
            if k_js is not None:
                same = (base_url(k_js) == jb and all(param(k_js, n) == param(j, n) for n in SIGNING))
                section = ("keyhole sign == JS SDK (canned RSA: Expires, Signature)" if c["policy"] == "canned"
                           else "keyhole sign == JS SDK (custom RSA: Policy, Signature)")
                suite.check(section, f"{cid} {c['policy']} {c['hash']}", same,
                            f"url given to keyhole {jb}\n  keyhole {k_js}\n  js      {j}")
        if c["key"] == "rsa" and b and j and base_url(j) == c["url"] and not both_conditions(c):
            # Identical input, identical policy JSON: the two SDKs must agree with each other too.
            suite.check("botocore == JS SDK (sanity of the harness)", f"{cid}",
                        param(b, "Signature") == param(j, "Signature") and param(b, "Policy") == param(j, "Policy"),
                        f"botocore {b}\n  js {j}")
        # Every URL keyhole signed must verify on keyhole, and EC ones independently too.
        for which in ("input", "js-base"):
            ku = keyhole_urls.get((cid, which))
            if ku is None:
                continue
            job("keyhole-signed URLs: keyhole verify", f"{cid} ({which}) accepted", ku, VALID, case=c)
            if c["key"] == "ec":
                suite.check("keyhole-signed ECDSA URLs: verified by cryptography", f"{cid} ({which})",
                            ec_verify(keys["ec"]["key"], ku), ku)

    # keyhole sign --stdin: one process, many URLs, same bytes as botocore.
    canned_rsa = [c["url"] for c in cases.values() if c["key"] == "rsa"]
    fixed_expiry = now + 3600
    if kh.sign_stdin:
        k = keys["rsa"]
        proc = kh.run(["sign", "--key", k["key"], "--key-pair-id", k["id"], "--expires", str(fixed_expiry),
                       "--stdin"], stdin="".join(u + "\n" for u in canned_rsa))
        lines = proc.stdout.splitlines()
        expected = botocore_canned(k["key"], k["id"], canned_rsa, fixed_expiry)
        suite.check("keyhole sign --stdin == botocore", f"{len(canned_rsa)} URLs in one process",
                    proc.returncode == 0 and lines == expected,
                    f"exit {proc.returncode}, {len(lines)} lines; first difference: "
                    + next((f"{x!r} vs {y!r}" for x, y in zip(lines, expected) if x != y), "(line count)"))
    else:
        suite.note("`keyhole sign --help` shows no --stdin: batch signing not checked.")

    # keyhole sign --ttl: Expires is now + TTL.
    k = keys["rsa"]
    t_before = int(time.time())
    proc = kh.run(["sign", "--key", k["key"], "--key-pair-id", k["id"], "--ttl", "15m", f"{casegen.ORIGIN}/files/ttl.txt"])
    t_after = int(time.time())
    exp = param(proc.stdout.strip(), "Expires") if proc.returncode == 0 else None
    suite.check("keyhole sign: options", "--ttl 15m gives Expires = now + 900",
                exp is not None and t_before + 900 <= int(exp) <= t_after + 901,
                f"exit {proc.returncode} {proc.stdout.strip()[:200]} {proc.stderr.strip()[:200]}")

    # keyhole sign refuses inputs it would have to re-encode or that would corrupt the policy.
    for bad in [f"{casegen.ORIGIN}/a b.txt", f"{casegen.ORIGIN}/caf\u00e9.txt", f"{casegen.ORIGIN}/a.txt#frag",
                f'{casegen.ORIGIN}/a".txt', f"{casegen.ORIGIN}/a.txt?Expires=1", f"{casegen.ORIGIN}/a.txt?x=1&Signature=2",
                f"{casegen.ORIGIN}/a{{1}}.txt", f"{casegen.ORIGIN}/a.txt?f=UTF-8''a.txt",
                "/relative/path.txt"]:
        proc = kh.run(["sign", "--key", k["key"], "--key-pair-id", k["id"], "--expires", str(now + 60), bad])
        suite.check("keyhole sign: refuses unsafe input", repr(bad), proc.returncode != 0 and not proc.stdout.strip(),
                    f"exit {proc.returncode}, stdout {proc.stdout.strip()[:200]!r}")

    # keyhole sign --cookies: same values as the JS SDK's getSignedCookies (RSA, deterministic).
    cookie_checked = 0
    for cid, c in cases.items():
        rec = signed[cid].get("js")
        if c["key"] != "rsa" or not rec or cookie_checked >= 40:
            continue
        cookie_checked += 1
        res = c["resource"]
        proc = kh.run(sign_args(c, c["url"], res)[:-1] + ["--cookies", c["url"]])
        got = parse_cookies(proc.stdout)
        want = {k: str(v) for k, v in rec["cookies"].items()}
        suite.check("keyhole sign --cookies == JS getSignedCookies (RSA)", f"{cid} {c['policy']}",
                    proc.returncode == 0 and got == want,
                    f"exit {proc.returncode}\n  keyhole {got or proc.stdout.strip()[:300]} {proc.stderr.strip()[:200]}\n  js      {want}")
    kh.processes += cookie_checked

    # ------------------------------------------------------------------------------ run verify
    t_verify = time.time()
    results = kh.verify_batch(jobs)
    for jb, got in zip(jobs, results):
        if jb["expect"] is None:
            suite.note(f"{jb['name']}: keyhole verify says {got}")
            continue
        detail = (f"expected {jb['expect']}, got {got}\n  url {jb['url']}\n  --now {jb['now']}"
                  f" --client-ip {jb['client_ip']}" + (f" cookies {jb['cookies']}" if jb["cookies"] else ""))
        suite.check(jb["section"], jb["name"], got == jb["expect"], detail)
    t_verify = time.time() - t_verify

    # ---------------------------------------------------------------------------------- report
    by_section = OrderedDict()
    for section, name, ok, detail in suite.results:
        s = by_section.setdefault(section, [0, 0])
        s[0 if ok else 1] += 1
    failures = [r for r in suite.results if not r[2]]
    if failures:
        print(f"\nFAILURES ({len(failures)}; first 60 shown):")
        for section, name, ok, detail in failures[:60]:
            print(f"FAIL [{section}] {name}\n  {detail}")
    print("\nSummary by section:")
    for section, (p, f) in by_section.items():
        print(f"  {'ok  ' if f == 0 else 'FAIL'} {p:5d} passed {f:4d} failed  {section}")
    if suite.notes:
        print("\nNotes:")
        for n in suite.notes:
            print(f"  {n}")
    print(f"\n{len(cases)} cases, {sum(1 for c in cases.values() if c['key'] == 'ec')} ECDSA; "
          f"{len(jobs)} verifications in {t_verify:.1f}s; {kh.processes} keyhole processes; "
          f"checks took {time.time() - t0:.1f}s")
    passed = sum(1 for r in suite.results if r[2])
    print(f"{passed} passed, {len(failures)} failed")
    return 1 if failures else 0


def parse_cookies(text: str):
    """CloudFront-* name/value pairs from `keyhole sign --cookies` output, in any of the usual
    shapes (NAME=VALUE lines, a Cookie header, Set-Cookie lines)."""
    found = {}
    for m in re.finditer(r"(CloudFront-(?:Expires|Policy|Signature|Key-Pair-Id|Hash-Algorithm))[=:]\s*\"?([A-Za-z0-9_~.\-]+)",
                         text):
        found.setdefault(m.group(1), m.group(2))
    return found


def botocore_canned(key_path, key_id, urls, expires):
    import datetime

    from botocore.signers import CloudFrontSigner
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    with open(key_path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    signer = CloudFrontSigner(key_id, lambda m: key.sign(m, padding.PKCS1v15(), hashes.SHA1()))
    when = datetime.datetime.fromtimestamp(expires, tz=datetime.timezone.utc)
    return [signer.generate_presigned_url(u, date_less_than=when) for u in urls]


def ec_verify(key_path, url) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    with open(key_path, "rb") as f:
        pub = serialization.load_pem_private_key(f.read(), password=None).public_key()
    raw, _ = policy_of(url)
    digest = hashes.SHA256() if param(url, "Hash-Algorithm") == "SHA256" else hashes.SHA1()
    try:
        pub.verify(cf_b64decode(param(url, "Signature")), raw, ec.ECDSA(digest))
        return True
    except (InvalidSignature, ValueError):
        return False


if __name__ == "__main__":
    sys.exit(main())
