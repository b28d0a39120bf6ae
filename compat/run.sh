#!/usr/bin/env bash
# Cross-SDK compatibility suite: URLs and cookies signed by botocore and
# @aws-sdk/cloudfront-signer must verify with `keyhole verify` (and tampered copies must be
# refused with CloudFront's code), and `keyhole sign` must produce the SDKs' bytes.
#
#   cargo build --release -p keyhole && bash compat/run.sh
#
# Environment: KEYHOLE (binary, default target/release/keyhole), COMPAT_VENV (reuse a venv),
# COMPAT_SEED / COMPAT_CASES / COMPAT_NOW (case generator), COMPAT_KEEP=1 (keep the work dir).
# The last line of output is `N passed, M failed`; the exit status is non-zero on any failure.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
COMPAT="$ROOT/compat"
KEYHOLE=${KEYHOLE:-$ROOT/target/release/keyhole}
START=$SECONDS

if [[ ! -x "$KEYHOLE" ]]; then
  echo "compat: $KEYHOLE not found; run: cargo build --release -p keyhole" >&2
  exit 2
fi
for tool in python3 node npm; do
  command -v "$tool" >/dev/null || { echo "compat: $tool is required" >&2; exit 2; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/keyhole-compat.XXXXXX")
if [[ "${COMPAT_KEEP:-0}" == 1 ]]; then
  echo "compat: keeping work files in $WORK"
else
  trap 'rm -rf "$WORK"' EXIT
fi

step() { printf '== %s (%ss)\n' "$*" "$((SECONDS - START))"; }

step "python venv with botocore"
VENV=${COMPAT_VENV:-$WORK/venv}
if [[ ! -x "$VENV/bin/python" ]] && ! python3 -m venv "$VENV" >"$WORK/venv.log" 2>&1; then
  if python3 -c 'import botocore, cryptography' 2>/dev/null; then
    echo "   python3 -m venv failed; using the system python3, which has botocore and cryptography"
    mkdir -p "$VENV/bin" && ln -sf "$(command -v python3)" "$VENV/bin/python" && touch "$VENV/system"
  else
    cat "$WORK/venv.log" >&2
    echo "compat: python3 -m venv failed (on Debian: apt-get install python3-venv)" >&2
    exit 2
  fi
fi
PY="$VENV/bin/python"
if [[ ! -e "$VENV/system" ]] && ! "$PY" - "$COMPAT/requirements.txt" <<'PYEOF' 2>/dev/null; then
import sys
from importlib.metadata import version
want = [l.split("==") for l in open(sys.argv[1]) if "==" in l and not l.startswith("#")]
sys.exit(any(version(n.strip()) != v.strip() for n, v in want))
PYEOF
  "$PY" -m pip install --quiet --disable-pip-version-check -r "$COMPAT/requirements.txt"
fi

step "npm ci in compat/js"
(cd "$COMPAT/js" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

step "fresh keys from keyhole keys generate"
generate() { # $1 = algorithm, $2 = directory; prints the key id
  "$KEYHOLE" keys generate --algorithm "$1" --out "$2" 2>"$WORK/keys.log" | tr -d '[:space:]' \
    || { cat "$WORK/keys.log" >&2; echo "compat: keyhole keys generate --algorithm $1 failed" >&2; return 1; }
}
RSA_ID=$(generate rsa-2048 "$WORK/rsa")
EC_ID=$(generate ecdsa-p256 "$WORK/ec")
for d in rsa ec; do
  [[ -s "$WORK/$d/private.pem" && -s "$WORK/$d/public.pem" ]] || { echo "compat: keys generate wrote no $d key" >&2; exit 1; }
done
echo "   RSA-2048 key id $RSA_ID, ECDSA P-256 key id $EC_ID"

export PYTHONPATH="$COMPAT${PYTHONPATH:+:$PYTHONPATH}"
COMPAT_NOW=$("$PY" -c 'import cases; print(cases.compat_now())')
export COMPAT_NOW
export COMPAT_SEED=${COMPAT_SEED:-$("$PY" -c 'import cases; print(cases.DEFAULT_SEED)')}
"$PY" "$COMPAT/cases.py" > "$WORK/cases.jsonl"
echo "   $(wc -l < "$WORK/cases.jsonl") cases, COMPAT_SEED=$COMPAT_SEED COMPAT_NOW=$COMPAT_NOW"
echo "   botocore $("$PY" -c 'import botocore; print(botocore.__version__)'), cryptography $("$PY" -c 'import cryptography; print(cryptography.__version__)')," \
  "@aws-sdk/cloudfront-signer $(node -p 'require("./compat/js/node_modules/@aws-sdk/cloudfront-signer/package.json").version'), node $(node --version)," \
  "$("$KEYHOLE" --version 2>/dev/null || echo keyhole)"

KEYS=("$WORK/rsa/private.pem" "$RSA_ID" "$WORK/ec/private.pem" "$EC_ID")
step "botocore signs every case"
"$PY" "$COMPAT/botocore_sign.py" "$WORK/cases.jsonl" "${KEYS[@]}" > "$WORK/botocore.jsonl"
step "@aws-sdk/cloudfront-signer signs every case"
node "$COMPAT/js/sign.mjs" "$WORK/cases.jsonl" "${KEYS[@]}" > "$WORK/js.jsonl"

step "keyhole verify and keyhole sign against both SDKs"
status=0
"$PY" "$COMPAT/check.py" --keyhole "$KEYHOLE" --now "$COMPAT_NOW" \
  --cases "$WORK/cases.jsonl" --botocore "$WORK/botocore.jsonl" --js "$WORK/js.jsonl" \
  --rsa-key "$WORK/rsa/private.pem" --rsa-pub "$WORK/rsa/public.pem" --rsa-id "$RSA_ID" \
  --ec-key "$WORK/ec/private.pem" --ec-pub "$WORK/ec/public.pem" --ec-id "$EC_ID" \
  > "$WORK/report.txt" || status=$?
summary=$(tail -n 1 "$WORK/report.txt")
head -n -1 "$WORK/report.txt"
if [[ ! "$summary" =~ ^[0-9]+\ passed,\ [0-9]+\ failed$ ]]; then
  echo "compat: the checker did not finish (exit $status)"
  echo "0 passed, 1 failed"
  exit 1
fi

step "botocore-signed links on a running keyhole serve"
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$KEYHOLE" serve --data-dir "$WORK/serve" --listen "127.0.0.1:$PORT" --public-url "http://127.0.0.1:$PORT" \
  --log-format text > "$WORK/serve.log" 2>&1 &
SERVE_PID=$!
trap 'kill $SERVE_PID 2>/dev/null || true; [[ "${COMPAT_KEEP:-0}" == 1 ]] || rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
edge_status=0
edge=$("$PY" "$COMPAT/edge_check.py" "http://127.0.0.1:$PORT" "$WORK/serve") || edge_status=$?
echo "$edge" | head -n -1
edge_summary=$(echo "$edge" | tail -n 1)
echo "   edge: $edge_summary"
kill "$SERVE_PID" 2>/dev/null || true
echo "compat: finished in $((SECONDS - START))s"
if [[ ! "$edge_summary" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
  echo "compat: the edge check did not finish (exit $edge_status)"
  echo "0 passed, 1 failed"
  exit 1
fi
edge_passed=${BASH_REMATCH[1]}
edge_failed=${BASH_REMATCH[2]}
[[ "$summary" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]
echo "$((BASH_REMATCH[1] + edge_passed)) passed, $((BASH_REMATCH[2] + edge_failed)) failed"
if ((status != 0 || edge_status != 0)); then exit 1; fi
exit 0
