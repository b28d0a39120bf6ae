#!/usr/bin/env python3
"""Keyhole from Python, standard library only (urllib, hashlib, json).

Uploads a file through a signed link, downloads it through another and checks it is byte-identical,
lists it, deletes it, and checks that the download link is dead afterwards. Every step that does
not go as documented stops the script with a message naming the step and a non-zero exit status.

    KEYHOLE_SERVER=http://127.0.0.1:8080 python3 examples/python/keyhole_example.py [FILE]

KEYHOLE_SERVER  where the API answers (default http://127.0.0.1:8080)
KEYHOLE_TOKEN   API token, sent as "Authorization: Bearer ..." when set (the server needs one when
                it was started with --token; `keyhole tokens generate --principal NAME` makes one)
FILE            the file to upload; default: 256 KiB of random bytes

The token goes to the API only. Signed links carry their own authorisation and are used exactly as
the API returned them: never rebuilt, re-encoded or unquoted.
"""

import hashlib
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

SERVER = os.environ.get("KEYHOLE_SERVER", "http://127.0.0.1:8080").rstrip("/")
TOKEN = os.environ.get("KEYHOLE_TOKEN", "")
TIMEOUT = 60


class StepFailed(Exception):
    pass


def fail(step, message):
    raise StepFailed(f"{step}: {message}")


def request(step, method, url, body=None, headers=None):
    """Sends one request; returns (status, headers, body bytes) for every status, 4xx/5xx too."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()
    except urllib.error.URLError as err:
        raise StepFailed(f"{step}: {method} {url.split('?')[0]}: cannot connect: {err.reason}") from err


def api(step, method, path, payload=None, expect=200):
    """Calls the JSON API, checks the status and `success`, returns the decoded reply."""
    headers = {"Accept": "application/json"}
    if TOKEN:
        headers["Authorization"] = f"Bearer {TOKEN}"
    body = None
    if payload is not None:
        body = json.dumps(payload).encode()
        headers["Content-Type"] = "application/json"
    status, resp_headers, raw = request(step, method, SERVER + path, body, headers)
    try:
        reply = json.loads(raw or b"null")
    except ValueError:
        fail(step, f"{method} {path} answered {status} with a body that is not JSON: {raw[:200]!r}")
    if status != expect:
        error = reply.get("error", {}) if isinstance(reply, dict) else {}
        fail(
            step,
            f"{method} {path} answered {status} {error.get('code', '')}: {error.get('message', raw[:200])}"
            f" (x-request-id {resp_headers.get('x-request-id')})",
        )
    if expect == 200 and not (isinstance(reply, dict) and reply.get("success") is True):
        fail(step, f"{method} {path} answered 200 without success=true: {raw[:200]!r}")
    return reply


def xml_code(raw):
    """The <Code> of an S3/CloudFront-style XML error body, or ''."""
    text = raw.decode("utf-8", "replace")
    start, end = text.find("<Code>"), text.find("</Code>")
    return text[start + 6 : end] if 0 <= start < end else ""


def ok(number, text):
    print(f"ok {number} {text}", flush=True)


def main():
    if len(sys.argv) > 1:
        path = sys.argv[1]
        with open(path, "rb") as f:
            data = f.read()
        filename = os.path.basename(path)
    else:
        data = os.urandom(256 * 1024)
        filename = "example-python.bin"
    content_type = "application/octet-stream"
    digest = hashlib.sha256(data).hexdigest()
    print(f"server {SERVER}, {'with' if TOKEN else 'without'} a token; {filename}, {len(data)} bytes, sha256 {digest}")

    # 1. Ask for an upload link, declaring size and SHA-256 so the server refuses anything else.
    step = "1 create upload link"
    link = api(step, "POST", "/api/files/upload",
               {"filename": filename, "contentType": content_type, "size": len(data), "sha256": digest})
    upload_url, file_id = link.get("uploadUrl"), link.get("fileId")
    if not upload_url or not file_id:
        fail(step, f"no uploadUrl/fileId in the reply: {link}")
    ok(1, f"upload link for {file_id}, expires {link.get('expiresAt')}")

    # 2. PUT the bytes to the signed link, with the declared Content-Type. No token: the link is
    #    the authorisation.
    step = "2 upload"
    status, headers, raw = request(step, "PUT", upload_url, data, {"Content-Type": content_type})
    if status != 200:
        fail(step, f"PUT answered {status} {xml_code(raw)}: {raw[:300]!r}")
    etag = headers.get("ETag", "")
    if etag.strip('"') != digest:
        fail(step, f"ETag {etag!r} is not the SHA-256 of the bytes sent ({digest})")
    ok(2, f"uploaded, ETag {etag}")

    # 3. Ask for a download link.
    step = "3 create download link"
    quoted_id = urllib.parse.quote(file_id, safe="")
    link = api(step, "GET", f"/api/files/download/{quoted_id}")
    download_url = link.get("downloadUrl")
    if not download_url:
        fail(step, f"no downloadUrl in the reply: {link}")
    ok(3, f"download link, expires {link.get('expiresAt')}")

    # 4. Download and compare byte for byte.
    step = "4 download and verify"
    status, headers, raw = request(step, "GET", download_url)
    if status != 200:
        fail(step, f"GET answered {status} {xml_code(raw)}: {raw[:300]!r}")
    got = hashlib.sha256(raw).hexdigest()
    if raw != data:
        fail(step, f"downloaded {len(raw)} bytes with sha256 {got}, expected {len(data)} bytes with {digest}")
    ok(4, f"downloaded {len(raw)} bytes, sha256 {got} matches; Content-Disposition: {headers.get('Content-Disposition')}")

    # 5. The file is listed, uploaded, with the right size and checksum.
    step = "5 list"
    listing = api(step, "GET", "/api/files?limit=1000")
    entry = next((f for f in listing.get("files", []) if f.get("fileId") == file_id), None)
    if entry is None:
        fail(step, f"{file_id} is not in GET /api/files")
    if entry.get("status") != "uploaded" or entry.get("size") != len(data) or entry.get("sha256") != digest:
        fail(step, f"listed as {entry}, expected status uploaded, size {len(data)}, sha256 {digest}")
    ok(5, f"listed: {entry['filename']}, {entry['size']} bytes, {entry['status']}")

    # 6. Delete it.
    step = "6 delete"
    api(step, "DELETE", f"/api/files/{quoted_id}")
    ok(6, "deleted")

    # 7. The download link handed out before is dead at once, and the API no longer knows the file.
    step = "7 link dead after delete"
    status, _, raw = request(step, "GET", download_url)
    if status != 404:
        fail(step, f"GET on the old download link answered {status} {xml_code(raw)}, expected 404 NoSuchKey")
    api(step, "GET", f"/api/files/{quoted_id}", expect=404)
    ok(7, f"old download link answers 404 {xml_code(raw)}; GET /api/files/{{fileId}} answers 404")

    print("python example: all steps passed")


if __name__ == "__main__":
    try:
        main()
    except StepFailed as err:
        print(f"FAILED step {err}", file=sys.stderr)
        sys.exit(1)
