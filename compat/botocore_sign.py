"""Signs every compatibility case with botocore's CloudFrontSigner.

Usage: python botocore_sign.py CASES.jsonl RSA_KEY.pem RSA_ID EC_KEY.pem EC_ID > OUT.jsonl

botocore only knows RSA-SHA1: its `rsa_signer` is any callable that signs the policy bytes, so
SHA-256 and ECDSA P-256 are plugged in through it, and `Hash-Algorithm=SHA256` is appended to the
URL by hand (botocore has no parameter for it). Canned cases use `date_less_than`; custom cases
use `build_policy` (conditions ordered DateLessThan, IpAddress, DateGreaterThan).
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time

from botocore.signers import CloudFrontSigner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding


def load_key(path: str):
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def signer_fn(key, hash_name: str):
    digest = hashes.SHA256() if hash_name == "sha256" else hashes.SHA1()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return lambda message: key.sign(message, ec.ECDSA(digest))
    return lambda message: key.sign(message, padding.PKCS1v15(), digest)


def utc(epoch: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc)


def sign_case(case, keys) -> str:
    key, key_id = keys[case["key"]]
    signer = CloudFrontSigner(key_id, signer_fn(key, case["hash"]))
    if case["policy"] == "canned":
        url = signer.generate_presigned_url(case["url"], date_less_than=utc(case["expires"]))
    else:
        policy = signer.build_policy(
            case["resource"] or case["url"],
            utc(case["expires"]),
            date_greater_than=utc(case["not_before"]) if case["not_before"] else None,
            ip_address=case["ip"],
        )
        url = signer.generate_presigned_url(case["url"], policy=policy)
    if case["hash"] == "sha256":
        url += "&Hash-Algorithm=SHA256"
    return url


def main(argv):
    cases_path, rsa_path, rsa_id, ec_path, ec_id = argv[1:6]
    keys = {"rsa": (load_key(rsa_path), rsa_id), "ec": (load_key(ec_path), ec_id)}
    out = sys.stdout
    with open(cases_path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            case = json.loads(line)
            out.write(json.dumps({"id": case["id"], "sdk": "botocore", "url": sign_case(case, keys)}) + "\n")
    # Probe: a custom policy laid out like the examples in CloudFront's documentation (indented,
    # with spaces and newlines). botocore signs any policy string as given.
    now = int(os.environ.get("COMPAT_NOW") or time.time())
    key, key_id = keys["rsa"]
    pretty = json.dumps({"Statement": [{"Resource": "https://cdn.example.com/files/*",
                                        "Condition": {"DateLessThan": {"AWS:EpochTime": now + 3600}}}]},
                        indent=4)
    url = CloudFrontSigner(key_id, signer_fn(key, "sha1")).generate_presigned_url(
        "https://cdn.example.com/files/pretty.txt", policy=pretty)
    out.write(json.dumps({"id": "probe-pretty-policy", "sdk": "botocore", "url": url}) + "\n")


if __name__ == "__main__":
    main(sys.argv)
