#!/usr/bin/env bash
# Signing and verifying rates: the crypto ceiling (openssl speed, one core) against keyhole's
# library (criterion bench `signing` in keyhole-sign), the keyhole CLI in batch mode, botocore and
# @aws-sdk/cloudfront-signer, with the ratios that matter.
#
#   bash bench/sign.sh            # from the repo root; results also go to bench/out/sign.txt
#
# Environment:
#   BENCH_SECONDS=3        seconds per openssl speed run
#   BENCH_CRITERION=1      0 skips `cargo bench` (then the CLI batch rate stands in for keyhole)
#   BENCH_CRITERION_ARGS   extra criterion args (default: --warm-up-time 1 --measurement-time 3)
#   BENCH_CLI_URLS=20000   URLs per keyhole CLI --stdin batch
#   BENCH_VENV / COMPAT_VENV  reuse a venv that has botocore + cryptography
#   KEYHOLE                keyhole binary (default target/release/keyhole, built from the
#                          working tree first unless BENCH_BUILD=0)
# Every rate is single-threaded. Expect a few percent of noise between runs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SECS=${BENCH_SECONDS:-3}
CLI_URLS=${BENCH_CLI_URLS:-20000}
GIVEN_KEYHOLE=${KEYHOLE:-}
KEYHOLE=${KEYHOLE:-$ROOT/target/release/keyhole}
OUT_DIR="$ROOT/bench/out"
mkdir -p "$OUT_DIR"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/keyhole-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# Pin to one core when possible so every number is a single-core number.
PIN=()
if command -v taskset >/dev/null 2>&1 && taskset -c 0 true 2>/dev/null; then PIN=(taskset -c 0); fi

declare -A R   # name -> operations per second ("" when not measured)
log() { printf '%s\n' "$*" >&2; }

# ------------------------------------------------------------------------------------ openssl
# OpenSSL 3.0's table (Debian bookworm):
#                   sign    verify    sign/s verify/s
#   rsa 2048 bits 0.000321s 0.000019s   3116.0  53508.0
#                                 sign    verify    sign/s verify/s
#    256 bits ecdsa (nistp256)   0.0000s   0.0001s  42803.0  13161.0
# The -mr form (+F2:idx:bits:sign/s:verify/s for RSA, +F4:... for ECDSA) is the fallback.
openssl_rates() { # $1 = algorithm, $2 = table regex, $3 = -mr tag; prints "sign verify"
  local text line
  text=$("${PIN[@]}" openssl speed -seconds "$SECS" "$1" 2>/dev/null) || true
  line=$(grep -E "$2" <<<"$text" | tail -n 1 || true)
  if [[ -n "$line" ]]; then
    awk '{print $(NF-1), $NF}' <<<"$line"
    return
  fi
  text=$("${PIN[@]}" openssl speed -mr -seconds "$SECS" "$1" 2>/dev/null) || true
  grep -E "^\\+$3:" <<<"$text" | tail -n 1 | awk -F: '{print $4, $5}'
}

log "openssl speed rsa2048 (${SECS}s per operation)..."
read -r R[openssl_rsa_sign] R[openssl_rsa_verify] < <(openssl_rates rsa2048 '^rsa +2048 bits' F2) || true
log "openssl speed ecdsap256..."
read -r R[openssl_ec_sign] R[openssl_ec_verify] < <(openssl_rates ecdsap256 'ecdsa \(nistp256\)' F4) || true

# ------------------------------------------------------------------- keyhole (criterion bench)
# Criterion prints, for each benchmark id:
#   rsa2048_sha1/sign_url_canned
#                           time:   [312.45 µs 313.10 µs 313.80 µs]
# (or the id and "time:" on one line). The middle value is the estimate; rate = 1 / time.
criterion_rate() { # $1 = benchmark id, $2 = criterion output file; prints ops/s or nothing
  awk -v id="$1" '
    function secs(v, u) {
      if (u == "ps") return v / 1e12; if (u == "ns") return v / 1e9
      if (u == "µs" || u == "us" || u == "μs") return v / 1e6
      if (u == "ms") return v / 1e3; if (u == "s") return v; return -1
    }
    index($0, id) == 1 && (length($0) == length(id) || substr($0, length(id) + 1, 1) ~ /[ \t]/) { armed = 1 }
    armed && /time:/ {
      s = $0; sub(/.*\[/, "", s); sub(/\].*/, "", s); split(s, f, /[ \t]+/)
      t = secs(f[3] + 0, f[4]); if (t > 0) printf "%.1f\n", 1 / t; exit
    }' "$2"
}

if [[ "${BENCH_CRITERION:-1}" == 1 ]]; then
  log "cargo bench -p keyhole-sign --bench signing (compiles first, on every core)..."
  cargo bench -q -p keyhole-sign --bench signing --no-run >&2 || true
  # shellcheck disable=SC2086
  if "${PIN[@]}" cargo bench -q -p keyhole-sign --bench signing -- ${BENCH_CRITERION_ARGS:---warm-up-time 1 --measurement-time 3} \
      >"$WORK/criterion.txt" 2>"$WORK/criterion.err"; then
    :
  else
    log "  cargo bench failed (exit $?): $(tail -n 3 "$WORK/criterion.err")"
  fi
  cp "$WORK/criterion.txt" "$OUT_DIR/criterion.txt" 2>/dev/null || true
  R[keyhole_rsa_sign]=$(criterion_rate rsa2048_sha1/sign_url_canned "$WORK/criterion.txt")
  R[keyhole_rsa_verify]=$(criterion_rate rsa2048_sha1/verify_url_canned "$WORK/criterion.txt")
  R[keyhole_ec_sign]=$(criterion_rate ecdsa_p256/sign_url_canned "$WORK/criterion.txt")
  R[keyhole_ec_verify]=$(criterion_rate ecdsa_p256/verify_url_canned "$WORK/criterion.txt")
  # Custom policy (wildcard resource, not-before, IP), when the bench has it.
  R[keyhole_rsa_sign_custom]=$(criterion_rate rsa2048_sha1/sign_url_custom "$WORK/criterion.txt")
  R[keyhole_rsa_verify_custom]=$(criterion_rate rsa2048_sha1/verify_url_custom "$WORK/criterion.txt")
  R[keyhole_ec_sign_custom]=$(criterion_rate ecdsa_p256/sign_url_custom "$WORK/criterion.txt")
  R[keyhole_ec_verify_custom]=$(criterion_rate ecdsa_p256/verify_url_custom "$WORK/criterion.txt")
  [[ -n "${R[keyhole_rsa_sign]}" ]] || log "  no rsa2048_sha1/sign_url_canned estimate in the criterion output"
fi

# ------------------------------------------------------------------------ keyhole CLI, batched
# End to end through the binary: one process signs (then verifies) CLI_URLS URLs from stdin.
# Brought up to date with the working tree (a no-op when it is) unless KEYHOLE names a binary:
# one left from an earlier build would measure other code.
if [[ -z "$GIVEN_KEYHOLE" && "${BENCH_BUILD:-1}" == 1 ]]; then
  log "cargo build --release -p keyhole (a no-op when up to date)..."
  cargo build -q --release -p keyhole >&2 || true
fi
if [[ -x "$KEYHOLE" ]]; then
  seq 1 "$CLI_URLS" | sed 's|^|https://cdn.example.com/files/bench-|; s|$|.bin|' >"$WORK/urls.txt"
  now=$(date +%s)
  for alg in rsa-2048 ecdsa-p256; do
    short=${alg%%-*}; [[ $short == ecdsa ]] && short=ec
    id=$("$KEYHOLE" keys generate --algorithm "$alg" --out "$WORK/$short" 2>"$WORK/keys.log" | tr -d '[:space:]')
    t0=$(date +%s.%N)
    if "${PIN[@]}" "$KEYHOLE" sign --key "$WORK/$short/private.pem" --key-pair-id "$id" --expires $((now + 3600)) \
        --stdin <"$WORK/urls.txt" >"$WORK/signed-$short.txt" 2>"$WORK/err.txt"; then
      t1=$(date +%s.%N)
      R[cli_${short}_sign]=$(awk -v n="$CLI_URLS" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n / (b - a) }')
      t0=$(date +%s.%N)
      if "${PIN[@]}" "$KEYHOLE" verify --key "$id=$WORK/$short/public.pem" --now "$now" --stdin \
          <"$WORK/signed-$short.txt" >"$WORK/verified.txt" 2>>"$WORK/err.txt"; then
        t1=$(date +%s.%N)
        R[cli_${short}_verify]=$(awk -v n="$CLI_URLS" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n / (b - a) }')
      else
        log "  keyhole verify --stdin ($alg) failed: $(head -c 300 "$WORK/err.txt"; head -n 2 "$WORK/verified.txt")"
      fi
    else
      log "  keyhole sign --stdin ($alg) failed: $(head -c 300 "$WORK/err.txt")"
    fi
  done
else
  log "  no keyhole binary: CLI rates skipped"
fi

# --------------------------------------------------------------------------------- botocore
openssl genrsa -traditional -out "$WORK/bench-rsa.pem" 2048 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/bench-ec.pem" 2>/dev/null
VENV=${BENCH_VENV:-${COMPAT_VENV:-$WORK/venv}}
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import botocore, cryptography' 2>/dev/null; then
  log "python venv with botocore..."
  python3 -m venv "$VENV" && "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$ROOT/compat/requirements.txt" >&2 || true
fi
log "botocore CloudFrontSigner.generate_presigned_url (cryptography RSA-SHA1)..."
R[botocore_rsa_sign]=$("${PIN[@]}" "$VENV/bin/python" - "$WORK/bench-rsa.pem" <<'PY' 2>"$WORK/py.err" || true
import datetime, sys, timeit
from botocore.signers import CloudFrontSigner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
key = serialization.load_pem_private_key(open(sys.argv[1], "rb").read(), password=None)
signer = CloudFrontSigner("K2JCJMDEHXQW5F", lambda m: key.sign(m, padding.PKCS1v15(), hashes.SHA1()))
when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
fn = lambda: signer.generate_presigned_url("https://cdn.example.com/files/report.pdf", date_less_than=when)
t = timeit.Timer(fn)
n, _ = t.autorange()
n = max(n, 200)
best = min(t.repeat(repeat=3, number=n)) / n
print(f"{1 / best:.1f}")
PY
)
[[ -n "${R[botocore_rsa_sign]}" ]] || log "  botocore failed: $(tail -n 2 "$WORK/py.err")"

# ------------------------------------------------------------------- @aws-sdk/cloudfront-signer
if [[ ! -d "$ROOT/compat/js/node_modules/@aws-sdk/cloudfront-signer" ]]; then
  (cd "$ROOT/compat/js" && npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>&1) || true
fi
log "@aws-sdk/cloudfront-signer getSignedUrl (RSA-SHA1, then ECDSA P-256 SHA-256)..."
js_rate() { # $1 = key file, $2 = algorithm option
  (cd "$ROOT/compat/js" && "${PIN[@]}" node --input-type=module - "$1" "$2" <<'JS' 2>>"$WORK/js.err") || true
import { readFileSync } from "node:fs";
import { getSignedUrl } from "@aws-sdk/cloudfront-signer";
const [keyPath, algorithm] = process.argv.slice(2);
const privateKey = readFileSync(keyPath, "utf8");
const args = { url: "https://cdn.example.com/files/report.pdf", keyPairId: "K2JCJMDEHXQW5F", privateKey,
  dateLessThan: new Date(Date.now() + 3600e3), algorithm: algorithm || undefined };
for (let i = 0; i < 200; i++) getSignedUrl(args);
let best = Infinity;
for (let round = 0; round < 3; round++) {
  let n = 0; const t0 = process.hrtime.bigint(); let t = 0;
  do { getSignedUrl(args); n++; t = Number(process.hrtime.bigint() - t0) / 1e9; } while (t < 1);
  best = Math.min(best, t / n);
}
console.log((1 / best).toFixed(1));
JS
}
R[js_rsa_sign]=$(js_rate "$WORK/bench-rsa.pem" "")
R[js_ec_sign]=$(js_rate "$WORK/bench-ec.pem" SHA256)
[[ -n "${R[js_rsa_sign]}" ]] || log "  JS SDK failed: $(tail -n 2 "$WORK/js.err" 2>/dev/null)"

# ---------------------------------------------------------------------------------- report
fmt() { [[ -n "${1:-}" ]] && awk -v v="$1" 'BEGIN { printf "%12.0f", v }' || printf '%12s' "n/a"; }
ratio() { # $1 / $2
  if [[ -n "${1:-}" && -n "${2:-}" ]]; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; else printf 'n/a'; fi
}
{
  echo "Keyhole signing benchmark — $(date -u +%Y-%m-%dT%H:%M:%SZ), $(openssl version | cut -d' ' -f1-2)," \
       "$(nproc) cores, ${PIN[*]:-unpinned}"
  echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo
  printf '%-58s %12s %12s\n' "operations per second, one core" "RSA-2048" "ECDSA P-256"
  row() { printf '%-58s %s %s\n' "$1" "$(fmt "${R[$2]:-}")" "$(fmt "${R[$3]:-}")"; }
  row "openssl speed: sign (raw digest)"                    openssl_rsa_sign   openssl_ec_sign
  row "openssl speed: verify (raw digest)"                  openssl_rsa_verify openssl_ec_verify
  row "keyhole-sign library: sign canned URL (criterion)"   keyhole_rsa_sign   keyhole_ec_sign
  row "keyhole-sign library: verify canned URL (criterion)" keyhole_rsa_verify keyhole_ec_verify
  if [[ -n "${R[keyhole_rsa_sign_custom]:-}${R[keyhole_ec_sign_custom]:-}" ]]; then
    row "keyhole-sign library: sign custom-policy URL"      keyhole_rsa_sign_custom   keyhole_ec_sign_custom
    row "keyhole-sign library: verify custom-policy URL"    keyhole_rsa_verify_custom keyhole_ec_verify_custom
  fi
  row "keyhole CLI --stdin: sign ($CLI_URLS URLs, 1 process)"    cli_rsa_sign       cli_ec_sign
  row "keyhole CLI --stdin: verify ($CLI_URLS URLs, 1 process)"  cli_rsa_verify     cli_ec_verify
  row "botocore generate_presigned_url (cryptography)"      botocore_rsa_sign  none
  row "@aws-sdk/cloudfront-signer getSignedUrl"             js_rsa_sign        js_ec_sign
  echo
  # keyhole = the criterion figure, or the CLI batch figure when the bench did not run.
  ks=${R[keyhole_rsa_sign]:-${R[cli_rsa_sign]:-}}; kv=${R[keyhole_rsa_verify]:-${R[cli_rsa_verify]:-}}
  es=${R[keyhole_ec_sign]:-${R[cli_ec_sign]:-}}; ev=${R[keyhole_ec_verify]:-${R[cli_ec_verify]:-}}
  src=criterion; [[ -n "${R[keyhole_rsa_sign]:-}" ]] || src="CLI --stdin"
  echo "ratios (keyhole from $src):"
  printf '  %-44s %8s   %s\n' "keyhole sign / openssl sign (RSA-2048)"     "$(ratio "$ks" "${R[openssl_rsa_sign]:-}")"   "1.00x = at the crypto ceiling"
  printf '  %-44s %8s\n'      "keyhole verify / openssl verify (RSA-2048)" "$(ratio "$kv" "${R[openssl_rsa_verify]:-}")"
  printf '  %-44s %8s\n'      "keyhole sign / openssl sign (P-256)"        "$(ratio "$es" "${R[openssl_ec_sign]:-}")"
  printf '  %-44s %8s\n'      "keyhole verify / openssl verify (P-256)"    "$(ratio "$ev" "${R[openssl_ec_verify]:-}")"
  printf '  %-44s %8s\n'      "keyhole sign / botocore sign (RSA-SHA1)"    "$(ratio "$ks" "${R[botocore_rsa_sign]:-}")"
  printf '  %-44s %8s\n'      "keyhole sign / JS SDK sign (RSA-SHA1)"      "$(ratio "$ks" "${R[js_rsa_sign]:-}")"
} | tee "$OUT_DIR/sign.txt"
