"""Links signed by botocore with a running server's own key work on Keyhole's edge.

Usage: python edge_check.py BASE_URL DATA_DIR

BASE_URL is the server's public URL (it listens there); DATA_DIR its data directory, whose
keys/private.pem and keys/key-pair-id botocore signs with. Checks: a botocore-signed upload URL
accepts the bytes; a botocore-signed download URL (canned and custom policy, SHA-1) serves them
byte-identically; tampered, expired and method-swapped links get CloudFront's 403 / 405.
Prints `N passed, M failed`; exit status 1 on any failure.
"""

from __future__ import annotations

import datetime
import json
import sys
import time
import urllib.error
import urllib.request

from botocore.signers import CloudFrontSigner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

BASE, DATA = sys.argv[1].rstrip("/"), sys.argv[2]
with open(f"{DATA}/keys/private.pem", "rb") as f:
    KEY = serialization.load_pem_private_key(f.read(), password=None)
with open(f"{DATA}/keys/key-pair-id") as f:
    KEY_ID = f.read().strip()
SIGNER = CloudFrontSigner(KEY_ID, lambda m: KEY.sign(m, padding.PKCS1v15(), hashes.SHA1()))
passed = failed = 0


def check(name: str, ok: bool, detail: str = "") -> None:
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def request(method: str, url: str, body: bytes | None = None, headers: dict | None = None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def utc(seconds_from_now: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(time.time() + seconds_from_now, tz=datetime.timezone.utc)


payload = b"signed by botocore, served by keyhole\n" * 1000
status, body = request(
    "POST",
    f"{BASE}/api/files/upload",
    json.dumps({"filename": "botocore.txt", "contentType": "text/plain", "size": len(payload)}).encode(),
    {"content-type": "application/json"},
)
check("create upload link", status == 200, f"{status} {body[:200]!r}")
file_id = json.loads(body)["fileId"]

# Upload through a link botocore signed (the server's own link is not used).
upload_url = SIGNER.generate_presigned_url(f"{BASE}/uploads/{file_id}", date_less_than=utc(600))
status, body = request("PUT", upload_url, payload, {"content-type": "text/plain"})
check("botocore upload link accepted", status == 200, f"{status} {body[:200]!r}")
status, _ = request("PUT", upload_url, payload, {"content-type": "text/plain"})
check("second PUT on the link refused (write-once)", status == 409, str(status))

download = f"{BASE}/files/{file_id}"
canned = SIGNER.generate_presigned_url(download, date_less_than=utc(600))
status, body = request("GET", canned)
check("botocore canned download link", status == 200 and body == payload, str(status))
policy = SIGNER.build_policy(f"{BASE}/files/*", utc(600), ip_address="127.0.0.0/8")
custom = SIGNER.generate_presigned_url(download, policy=policy)
status, body = request("GET", custom)
check("botocore custom wildcard + IP link", status == 200 and body == payload, str(status))

for name, url, method, want in [
    ("tampered signature", canned.replace("Signature=", "Signature=A", 1), "GET", 403),
    ("expired link", SIGNER.generate_presigned_url(download, date_less_than=utc(-60)), "GET", 403),
    ("download link used to PUT", canned, "PUT", 405),
    ("other network", SIGNER.generate_presigned_url(
        download, policy=SIGNER.build_policy(download, utc(600), ip_address="10.0.0.0/8")), "GET", 403),
]:
    status, body = request(method, url, b"x" if method == "PUT" else None)
    check(name, status == want, f"got {status} {body[:120]!r}")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
