#!/usr/bin/env bash
# End-to-end server benchmark for `keyhole serve`, each figure divided by a reference measured in
# the same run on the same machine:
#
#   1. link minting   POST /api/files/upload with wrk (64 connections, 2 threads), RSA-2048 key
#                     (the first-start default) against `openssl speed -multi 2 rsa2048`, then an
#                     ECDSA P-256 key (absolute target).
#   2. download       a 1 GiB file through a signed URL, 1 stream and 16 concurrent streams, against
#                     nginx serving the same file behind `secure_link` (plus keyhole's peak RSS).
#   3. upload         a 1 GiB PUT to a signed upload URL, against an nginx WebDAV PUT and a
#                     `dd conv=fsync` write to the same disk (plus keyhole's peak RSS).
#
#   bash bench/serve.sh              # from anywhere; results also go to bench/out/serve.txt
#
# Environment:
#   BENCH_MINT_SECONDS=10   wrk duration per minting run
#   BENCH_MINT_CONNS=64     wrk connections;  BENCH_WRK_THREADS=2  wrk threads
#   BENCH_OPENSSL_SECONDS=5 seconds per openssl speed operation (sign, then verify)
#   BENCH_VARIANTS=1        also mint 5 s each with RUST_LOG=warn (no per-request log line), with
#                           the data dir on tmpfs (/dev/shm: no disk sync), and both; 0 skips them
#   BENCH_MINT_ROUNDS=3     minting rounds per key: wrk on keyhole, then (RSA) openssl speed,
#                           interleaved; the best round of each side is kept (rate and that round's p99)
#   BENCH_ROUNDS=3          transfer rounds, keyhole and references interleaved; best of each kept
#   BENCH_FILE_MIB=1024     size of the transfer file
#   BENCH_STREAMS=16        concurrent download streams
#   BENCH_PHASES="mint download upload"   which phases to run (any subset, in this order)
#   BENCH_INSTALL=1         0: never apt-get install nginx/wrk (missing tools are then skipped)
#   BENCH_TMPDIR            where the work directory goes (default: ROOT/target, the disk of the
#                           checkout); needs ~4 x the file size free
#   KEYHOLE                 keyhole binary (default: target/release/keyhole, built from the working
#                           tree first, a no-op when up to date)
#
# The minting runs use a config file that raises the per-principal rate limit to 1,000,000/s so
# the limiter is not what is measured. wrk, curl, nginx, openssl and keyhole all share the same
# cores: nothing is pinned, so each ratio compares like with like (client and server together).
# The machine may be shared with other work: minting and transfers run interleaved rounds
# (BENCH_MINT_ROUNDS, BENCH_ROUNDS) and keep each side's best, so a burst of outside load hits
# both sides alike; every round's figures are printed too. MB = 10^6 bytes.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
MINT_SECS=${BENCH_MINT_SECONDS:-10}
MINT_CONNS=${BENCH_MINT_CONNS:-64}
WRK_THREADS=${BENCH_WRK_THREADS:-2}
SSL_SECS=${BENCH_OPENSSL_SECONDS:-5}
VARIANTS=${BENCH_VARIANTS:-1}
ROUNDS=${BENCH_ROUNDS:-3}
MINT_ROUNDS=${BENCH_MINT_ROUNDS:-3}
FILE_MIB=${BENCH_FILE_MIB:-1024}
STREAMS=${BENCH_STREAMS:-16}
PHASES=" ${BENCH_PHASES:-mint download upload} "
phase() { [[ "$PHASES" == *" $1 "* ]]; }
OUT_DIR="$ROOT/bench/out"
FILE_BYTES=$((FILE_MIB * 1024 * 1024))
CT=application/octet-stream

log() { printf '[serve.sh %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
KEYHOLE=$(keyhole_binary "$ROOT")

# ----------------------------------------------------------------------------- tools
have() { command -v "$1" >/dev/null 2>&1; }
apt_install() { # installs Debian packages by name when allowed and possible
  [[ "${BENCH_INSTALL:-1}" == 1 ]] || return 1
  have apt-get || return 1
  local sudo=()
  if [[ $EUID -ne 0 ]]; then have sudo && sudo -n true 2>/dev/null || return 1; sudo=(sudo -n); fi
  log "apt-get install -y $*"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 && return 0
  log "apt-get update (packages not found)"
  "${sudo[@]}" apt-get update -q >/dev/null 2>&1 || true
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1
}
NGINX=$(command -v nginx || true); [[ -z "$NGINX" && -x /usr/sbin/nginx ]] && NGINX=/usr/sbin/nginx
missing=()
have wrk || missing+=(wrk)
[[ -n "$NGINX" ]] || missing+=(nginx)
have curl || missing+=(curl)
have openssl || missing+=(openssl)
if ((${#missing[@]})); then apt_install "${missing[@]}" || log "could not install: ${missing[*]}"; fi
NGINX=$(command -v nginx || true); [[ -z "$NGINX" && -x /usr/sbin/nginx ]] && NGINX=/usr/sbin/nginx
have curl || die "curl is required (apt-get install curl)"
have wrk || log "wrk is not available: the minting phase will be SKIPPED"
[[ -n "$NGINX" ]] || log "nginx is not available: the nginx references will be SKIPPED"
have openssl || log "openssl is not available: the openssl reference will be SKIPPED"

[[ -x "$KEYHOLE" ]] || die "no keyhole binary at $KEYHOLE"

# ------------------------------------------------------------------ work dir and cleanup
TMP_PARENT=${BENCH_TMPDIR:-$ROOT/target}
mkdir -p "$TMP_PARENT" "$OUT_DIR"
WORK=$(mktemp -d "$TMP_PARENT/keyhole-serve-bench.XXXXXX")
DATA="$WORK/data"
KH_DATA=$DATA    # the data dir the next start_keyhole uses
SHM=""           # tmpfs copy of the data dir for the no-disk-sync minting variant
PIDS=()          # every background process this script started
KEYHOLE_PID=""
NGINX_PID=""
cleanup() {
  local rc=$? p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$WORK"
  [[ -z "$SHM" ]] || rm -rf "$SHM"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "failed at line $LINENO: $BASH_COMMAND"' ERR
trap 'exit 130' INT TERM
forget_pid() { local p keep=(); for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done; PIDS=("${keep[@]}"); }


fcalc() { awk "BEGIN { printf \"$1\", $2 }"; }     # fcalc FORMAT EXPR
ratio() { # a / b with 3 decimals (so a verdict is never decided by rounding), or n/a
  if [[ -n "${1:-}" && -n "${2:-}" && "${2:-0}" != 0 && "$2" != 0.0 ]]; then fcalc %.3f "$1 / $2"; else echo n/a; fi
}
verdict() { # $1 value, $2 op (ge|lt), $3 target
  [[ -n "${1:-}" && "$1" != n/a ]] || { echo "n/a"; return; }
  if awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN { exit !((op == "ge") ? v >= t : v < t) }'; then echo met; else echo MISSED; fi
}
SUMMARY=()
say() { printf '%s\n' "$*"; SUMMARY+=("$*"); }

# ----------------------------------------------------------------------- keyhole server
KH_PORT=$(free_port)
KH_URL="http://127.0.0.1:$KH_PORT"
cat >"$WORK/keyhole.toml" <<EOF
# The transfer phases measure one 1 GiB PUT against nginx's single PUT, so the file must not be
# split into parts: the multipart threshold is raised to S3's single-PUT limit (5 GiB).
multipart_threshold = 5368709120
# Benchmark only: the per-principal limiter must not be what is measured.
[rate_limit]
burst = 1000000
per_second = 1000000
EOF

start_keyhole() { # $1 = log file; extra env (e.g. RUST_LOG) comes from the caller's environment
  "$KEYHOLE" serve --config "$WORK/keyhole.toml" --data-dir "$KH_DATA" --listen "127.0.0.1:$KH_PORT" \
    --public-url "$KH_URL" --log-format json >"$1" 2>"$1.err" &
  KEYHOLE_PID=$!
  PIDS+=("$KEYHOLE_PID")
  for _ in $(seq 300); do
    curl -fsS -o /dev/null --max-time 1 "$KH_URL/healthz" 2>/dev/null && return 0
    kill -0 "$KEYHOLE_PID" 2>/dev/null || break
    sleep 0.1
  done
  die "keyhole did not start: $(tail -n 5 "$1.err")"
}
stop_keyhole() {
  [[ -n "$KEYHOLE_PID" ]] || return 0
  kill -TERM "$KEYHOLE_PID" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$KEYHOLE_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$KEYHOLE_PID" 2>/dev/null || true
  wait "$KEYHOLE_PID" 2>/dev/null || true
  forget_pid "$KEYHOLE_PID"
  KEYHOLE_PID=""
}

# Peak resident memory of keyhole, sampled every 0.2 s (pure bash: no fork per sample).
RSS_PID=""
rss_start() {
  local pid=$KEYHOLE_PID out="$WORK/rss.max"
  echo 0 >"$out"
  (
    max=0
    end=$((SECONDS + 900))
    while ((SECONDS < end)) && [[ -r /proc/$pid/status ]]; do
      while read -r k v _; do
        if [[ $k == VmRSS: ]]; then
          if ((v > max)); then max=$v; echo "$max" >"$out"; fi
          break
        fi
      done <"/proc/$pid/status" 2>/dev/null || true
      sleep 0.2
    done
  ) &
  RSS_PID=$!
  PIDS+=("$RSS_PID")
}
rss_stop() { # prints peak MB (10^6 bytes)
  kill -TERM "$RSS_PID" 2>/dev/null || true
  wait "$RSS_PID" 2>/dev/null || true
  forget_pid "$RSS_PID"
  fcalc %.1f "$(cat "$WORK/rss.max") * 1024 / 1e6"
}

gt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'; }   # gt A B: A > B, as numbers
best() { # max of the non-empty arguments, or empty
  local v b=""
  for v in "$@"; do
    [[ -n "$v" ]] || continue
    if [[ -z "$b" ]] || gt "$v" "$b"; then b=$v; fi
  done
  echo "$b"
}
median() { # median of the numeric arguments, or n/a
  (($#)) || { echo n/a; return; }
  printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) printf "%.3f\n", a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
json_field() { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p"; }
mint_upload() { # $1 filename, $2 size -> prints "fileId uploadUrl"
  local reply
  reply=$(curl -fsS --max-time 10 -H 'Content-Type: application/json' \
    -d "{\"filename\":\"$1\",\"contentType\":\"$CT\",\"size\":$2}" "$KH_URL/api/files/upload") \
    || die "POST /api/files/upload failed"
  printf '%s %s\n' "$(json_field fileId <<<"$reply")" "$(json_field uploadUrl <<<"$reply")"
}

# --------------------------------------------------------------------------- machine
log "work dir $WORK ($(df -h "$WORK" | awk 'NR==2 { print $1 ", " $4 " free" }'))"
HEADER="keyhole serve benchmark — $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $("$KEYHOLE" --version 2>/dev/null || echo keyhole)"
echo "$HEADER"

# ============================================================= 1. link minting (wrk)
cat >"$WORK/mint.lua" <<EOF
wrk.method = "POST"
wrk.body = '{"filename":"bench.bin","contentType":"$CT","size":1048576}'
wrk.headers["Content-Type"] = "application/json"
EOF
# wrk --latency output -> "rps p99_ms requests non2xx socket_errors"
parse_wrk() {
  awk '
    function ms(s) { if (s ~ /us$/) return s / 1000; if (s ~ /ms$/) return s + 0; if (s ~ /m$/) return s * 60000; if (s ~ /s$/) return s * 1000; return s }
    $1 == "99%" && p99 == "" { p99 = ms($2) }
    /requests in/ { n = $1 }
    /Non-2xx or 3xx responses:/ { bad = $NF }
    /Socket errors:/ { gsub(/,/, ""); err = $4 + $6 + $8 + $10 }
    /^Requests\/sec:/ { rps = $2 }
    END { printf "%s %s %s %d %d\n", rps, p99, n, bad, err }' "$1"
}
run_wrk() { # $1 label, $2 seconds -> prints parse_wrk fields; raw output kept in WORK/wrk-$1.txt
  timeout $(($2 + 30)) wrk -t"$WRK_THREADS" -c"$MINT_CONNS" -d"${2}s" --timeout 10s --latency \
    -s "$WORK/mint.lua" "$KH_URL/api/files/upload" >"$WORK/wrk-$1.txt" 2>&1 || true
  cp "$WORK/wrk-$1.txt" "$OUT_DIR/serve-wrk-$1.txt"
  parse_wrk "$WORK/wrk-$1.txt"
}
openssl_multi() { # $1 algorithm, $2 table regex, $3 seconds -> sign/s summed over 2 processes
  local text
  text=$(timeout $((4 * $3 + 60)) openssl speed -multi 2 -seconds "$3" "$1" 2>/dev/null) || true
  grep -E "$2" <<<"$text" | tail -n 1 | awk '{ print $(NF-1) }'
}
mint_variant() { # $1 label, $2 RUST_LOG, $3 data dir: restart keyhole that way, 5 s of wrk
  local rps p99 bad err
  stop_keyhole
  KH_DATA=$3 RUST_LOG=$2 start_keyhole "$WORK/keyhole-variant.log"
  log "mint $1 (RUST_LOG=$2, data dir ${3%/*}): wrk 5 s"
  read -r rps p99 _ bad err < <(run_wrk "$1" 5)
  R[$1]=$rps; R[$1_p99]=$p99
}
mint_phase() { # $1 label (rsa|ec), $2 openssl algorithm, $3 its table regex, $4 its seconds
  # MINT_ROUNDS rounds of wrk against keyhole, each followed by openssl speed -multi 2 on the same
  # cores; the best of each side is kept (for keyhole, that round's p99 with it).
  local label=$1 round rps p99 bad err peak ssl rounds="" best_rps="" best_ssl=""
  R[mint_${label}_bad]=0
  rss_start
  for round in $(seq "$MINT_ROUNDS"); do
    log "mint_$label round $round/$MINT_ROUNDS: wrk -t$WRK_THREADS -c$MINT_CONNS -d${MINT_SECS}s POST /api/files/upload"
    read -r rps p99 _ bad err < <(run_wrk "$label-$round" "$MINT_SECS")
    [[ -n "$rps" ]] || log "wrk produced no result: $(tail -n 3 "$WORK/wrk-$label-$round.txt")"
    ((bad == 0 && err == 0)) || log "mint_$label: $bad non-2xx responses, $err socket errors (see bench/out/serve-wrk-$label-$round.txt)"
    R[mint_${label}_bad]=$((R[mint_${label}_bad] + bad + err))
    ssl=""
    if have openssl; then
      log "mint_$label round $round/$MINT_ROUNDS: openssl speed -multi 2 -seconds $4 $2"
      ssl=$(openssl_multi "$2" "$3" "$4")
    fi
    rounds+="${rounds:+; }${rps:-n/a} req/s p99 ${p99:-n/a} ms / openssl ${ssl:-n/a}"
    if [[ -n "$rps" ]] && { [[ -z "$best_rps" ]] || gt "$rps" "$best_rps"; }; then
      best_rps=$rps; R[mint_${label}_p99]=$p99
    fi
    best_ssl=$(best "$best_ssl" "$ssl")
  done
  peak=$(rss_stop)
  R[mint_${label}]=$best_rps; R[ssl_${label}]=$best_ssl; R[mint_${label}_rss]=$peak
  R[mint_${label}_rounds]=$rounds
  if [[ "$VARIANTS" == 1 ]]; then
    mint_variant "mint_${label}_warn" warn "$DATA"
    if [[ -n "$SHM" ]]; then
      rm -rf "$SHM/data"; mkdir -p "$SHM/data"; cp -a "$DATA/keys" "$SHM/data/keys"
      mint_variant "mint_${label}_tmpfs" info "$SHM/data"
      mint_variant "mint_${label}_tmpfs_warn" warn "$SHM/data"
      rm -rf "$SHM/data"
    fi
    stop_keyhole
    start_keyhole "$WORK/keyhole.log"
  fi
}
variants_line() { # $1 label -> one line with the variant figures
  [[ "$VARIANTS" == 1 ]] || return 0
  local l=$1 out="  mint_$1 variants (5 s each): RUST_LOG=warn ${R[mint_${1}_warn]:-n/a} req/s"
  out+=" (p99 ${R[mint_${l}_warn_p99]:-n/a} ms)"
  if [[ -n "$SHM" ]]; then
    out+="; data dir on tmpfs ${R[mint_${l}_tmpfs]:-n/a} req/s (p99 ${R[mint_${l}_tmpfs_p99]:-n/a} ms)"
    out+="; tmpfs + RUST_LOG=warn ${R[mint_${l}_tmpfs_warn]:-n/a} req/s (p99 ${R[mint_${l}_tmpfs_warn_p99]:-n/a} ms)"
  fi
  say "$out"
}
if [[ "$VARIANTS" == 1 ]] && [[ -d /dev/shm && -w /dev/shm ]]; then
  SHM=$(mktemp -d /dev/shm/keyhole-serve-bench.XXXXXX)
fi
declare -A R
start_keyhole "$WORK/keyhole.log"
if ! phase mint; then
  :
elif have wrk; then
  mint_phase rsa rsa2048 '^rsa +2048 bits' "$SSL_SECS"
  r=$(ratio "${R[mint_rsa]:-}" "${R[ssl_rsa]:-}")
  say "mint_rsa: ${R[mint_rsa]:-n/a} req/s, p99 ${R[mint_rsa_p99]:-n/a} ms, openssl -multi 2: ${R[ssl_rsa]:-n/a} signs/s, ratio $r (target 0.80: $(verdict "$r" ge 0.80); p99 target < 20 ms: $(verdict "${R[mint_rsa_p99]:-}" lt 20))"
  say "  mint_rsa rounds (keyhole / openssl rsa2048 sign/s): ${R[mint_rsa_rounds]}"
  variants_line rsa

  stop_keyhole
  rm -rf "$DATA/keys"
  "$KEYHOLE" keys generate --algorithm ecdsa-p256 --out "$DATA/keys" >/dev/null 2>&1 || die "keys generate failed"
  start_keyhole "$WORK/keyhole.log"
  mint_phase ec ecdsap256 'ecdsa \(nistp256\)' 3
  say "mint_ecdsa: ${R[mint_ec]:-n/a} req/s, p99 ${R[mint_ec_p99]:-n/a} ms (target 15000 req/s: $(verdict "${R[mint_ec]:-}" ge 15000)), openssl -multi 2 ecdsap256: ${R[ssl_ec]:-n/a} signs/s, ratio $(ratio "${R[mint_ec]:-}" "${R[ssl_ec]:-}")"
  say "  mint_ecdsa rounds (keyhole / openssl ecdsap256 sign/s): ${R[mint_ec_rounds]}"
  variants_line ec
  say "  (rate limit raised to 1,000,000/s by config; wrk -t$WRK_THREADS -c$MINT_CONNS shares the $(nproc) cores with the server; non-2xx+socket errors: rsa ${R[mint_rsa_bad]:-}, ecdsa ${R[mint_ec_bad]:-}; peak RSS rsa ${R[mint_rsa_rss]:-} MB, ecdsa ${R[mint_ec_rss]:-} MB)"
else
  say "mint: SKIPPED (wrk not available)"
fi

# ====================================================================== nginx reference
NG_PORT=""
NG_PORT2=""      # same files with sendfile off: shows what the zero-copy path is worth
NG_SECRET=keyhole-bench-secret
start_nginx() {
  [[ -n "$NGINX" ]] || return 1
  NG_PORT=$(free_port)
  NG_PORT2=$(free_port)
  local d="$WORK/nginx"
  mkdir -p "$d/www/files" "$d/dav/uploads"
  # Reference file server: Debian's nginx with its stock transfer settings (sendfile on), a
  # secure_link check on both paths, WebDAV PUT for uploads.
  { nginx_preamble "$d"; cat <<EOF
  sendfile on;
  tcp_nopush on;
  types { }
  default_type $CT;
  access_log $d/logs/access.log;
  server {
    listen 127.0.0.1:$NG_PORT;
    root $d/www;
    location /files/ {
      secure_link \$arg_md5,\$arg_expires;
      secure_link_md5 "\$secure_link_expires\$uri $NG_SECRET";
      if (\$secure_link = "") { return 403; }
      if (\$secure_link = "0") { return 410; }
    }
    location /uploads/ {
      root $d/dav;
      secure_link \$arg_md5,\$arg_expires;
      secure_link_md5 "\$secure_link_expires\$uri $NG_SECRET";
      if (\$secure_link = "") { return 403; }
      if (\$secure_link = "0") { return 410; }
      dav_methods PUT;
      create_full_put_path on;
      client_max_body_size 2g;
      client_body_temp_path $d/dav/tmp;
    }
  }
  server {
    listen 127.0.0.1:$NG_PORT2;
    root $d/www;
    sendfile off;
    location /files/ {
      secure_link \$arg_md5,\$arg_expires;
      secure_link_md5 "\$secure_link_expires\$uri $NG_SECRET";
      if (\$secure_link = "") { return 403; }
      if (\$secure_link = "0") { return 410; }
    }
  }
}
EOF
  } >"$d/nginx.conf"
  mkdir -p "$d/dav/tmp"
  "$NGINX" -t -p "$d" -c "$d/nginx.conf" -e "$d/logs/error.log" >"$d/logs/test.txt" 2>&1 \
    || { log "nginx -t failed: $(tail -n 3 "$d/logs/test.txt")"; return 1; }
  "$NGINX" -p "$d" -c "$d/nginx.conf" -e "$d/logs/error.log" -g 'daemon off;' >"$d/logs/stdout.txt" 2>&1 &
  NGINX_PID=$!
  PIDS+=("$NGINX_PID")
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$NG_PORT") 2>/dev/null && return 0
    kill -0 "$NGINX_PID" 2>/dev/null || break
    sleep 0.1
  done
  log "nginx did not start: $(tail -n 3 "$d/logs/error.log" 2>/dev/null)"
  return 1
}
nginx_link() { # $1 path [$2 port] -> signed URL (secure_link_md5 with an expiry one hour out)
  local exp md5 port=${2:-$NG_PORT}
  exp=$(($(date +%s) + 3600))
  md5=$(printf '%s%s %s' "$exp" "$1" "$NG_SECRET" | openssl md5 -binary | openssl base64 | tr '+/' '-_' | tr -d '=')
  echo "http://127.0.0.1:$port$1?md5=$md5&expires=$exp"
}
NGINX_OK=0
if start_nginx; then NGINX_OK=1; else [[ -n "$NGINX" ]] && log "nginx references SKIPPED"; fi

# ====================================================================== 2. download
SRC="$WORK/src.bin"
log "writing a ${FILE_MIB} MiB random file..."
head -c "$FILE_BYTES" /dev/urandom >"$SRC"
sync

curl_get() { # $1 URL -> "code bytes seconds"
  curl -sS -o /dev/null --max-time 300 -w '%{http_code} %{size_download} %{time_total}\n' "$1" || echo "000 0 0"
}
single_stream() { # $1 URL -> MB/s of one full download
  local code bytes secs
  read -r code bytes secs < <(curl_get "$1")
  if [[ $code != 200 || $bytes != "$FILE_BYTES" ]]; then log "download failed: HTTP $code, $bytes bytes from ${1%%\?*}"; echo ""; return; fi
  fcalc %.1f "$bytes / $secs / 1e6"
}
multi_stream() { # $1 URL -> aggregate MB/s of STREAMS parallel full downloads
  local i t0 t1 total=0 ok=1 code bytes secs pids=()
  t0=$(date +%s.%N)
  for i in $(seq "$STREAMS"); do
    curl_get "$1" >"$WORK/stream.$i" &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || true; done
  t1=$(date +%s.%N)
  for i in $(seq "$STREAMS"); do
    read -r code bytes secs <"$WORK/stream.$i"
    [[ $code == 200 && $bytes == "$FILE_BYTES" ]] || { ok=0; log "stream $i: HTTP $code, $bytes bytes"; }
    total=$((total + bytes))
  done
  ((ok)) || { echo ""; return; }
  fcalc %.1f "$total / ($t1 - $t0) / 1e6"
}

if phase download; then
log "uploading the file through keyhole (staging for the download test)..."
read -r DL_ID UP_URL < <(mint_upload bench-download.bin "$FILE_BYTES")
[[ -n "$UP_URL" ]] || die "POST /api/files/upload gave no uploadUrl"
code=$(curl -sS -o /dev/null --max-time 300 -w '%{http_code}' -H 'Expect:' -H "Content-Type: $CT" -T "$SRC" "$UP_URL") || code=000
[[ $code == 200 ]] || die "staging upload failed: HTTP $code"
DL_URL=$(curl -fsS --max-time 10 "$KH_URL/api/files/download/$DL_ID" | json_field downloadUrl) || die "GET /api/files/download/$DL_ID failed"
[[ -n "$DL_URL" ]] || die "GET /api/files/download/$DL_ID gave no downloadUrl"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "${DL_URL/Signature=/Signature=x}") || true
[[ $code == 403 ]] || log "warning: keyhole answered a tampered signature with $code, not 403"
if ((NGINX_OK)); then
  ln "$SRC" "$WORK/nginx/www/files/bench-download.bin" 2>/dev/null || cp "$SRC" "$WORK/nginx/www/files/bench-download.bin"
  NG_DL=$(nginx_link /files/bench-download.bin)
  NG_DL2=$(nginx_link /files/bench-download.bin "$NG_PORT2")
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "${NG_DL/md5=/md5=x}") || true
  [[ $code == 403 ]] || log "warning: nginx answered a bad secure_link with $code, not 403"
fi
cat "$DATA/objects/"*/* "$SRC" >/dev/null 2>&1 || true   # both copies in the page cache

KH1=(); KHN=(); NG1=(); NGN=(); NG1_NOSF=(); NGN_NOSF=()
rss_start
for round in $(seq "$ROUNDS"); do
  log "download round $round/$ROUNDS: keyhole 1 stream, nginx 1 stream, keyhole $STREAMS streams, nginx $STREAMS streams"
  KH1+=("$(single_stream "$DL_URL")")
  ((NGINX_OK)) && NG1+=("$(single_stream "$NG_DL")")
  KHN+=("$(multi_stream "$DL_URL")")
  ((NGINX_OK)) && NGN+=("$(multi_stream "$NG_DL")")
done
R[kh_dl_rss]=$(rss_stop)
if ((NGINX_OK)); then
  log "nginx with sendfile off (diagnostic): 1 stream, $STREAMS streams"
  NG1_NOSF+=("$(single_stream "$NG_DL2")")
  NGN_NOSF+=("$(multi_stream "$NG_DL2")")
fi
R[kh_dl1]=$(best "${KH1[@]}"); R[kh_dlN]=$(best "${KHN[@]}")
R[ng_dl1]=$(best "${NG1[@]}"); R[ng_dlN]=$(best "${NGN[@]}")
R[ng_dl1_nosf]=$(best "${NG1_NOSF[@]}"); R[ng_dlN_nosf]=$(best "${NGN_NOSF[@]}")
r1=$(ratio "${R[kh_dl1]:-}" "${R[ng_dl1]:-}"); rN=$(ratio "${R[kh_dlN]:-}" "${R[ng_dlN]:-}")
say "download_1: keyhole ${R[kh_dl1]:-n/a} MB/s, nginx ${R[ng_dl1]:-n/a} MB/s, ratio $r1 (target 0.90: $(verdict "$r1" ge 0.90)) [rounds: keyhole ${KH1[*]}; nginx ${NG1[*]:-n/a}]"
say "download_$STREAMS: keyhole ${R[kh_dlN]:-n/a} MB/s aggregate, nginx ${R[ng_dlN]:-n/a} MB/s, ratio $rN (target 0.90: $(verdict "$rN" ge 0.90)) [rounds: keyhole ${KHN[*]}; nginx ${NGN[*]:-n/a}]"
((NGINX_OK)) && say "  nginx with sendfile off (copies through user space like keyhole): 1 stream ${R[ng_dl1_nosf]:-n/a} MB/s, $STREAMS streams ${R[ng_dlN_nosf]:-n/a} MB/s; keyhole/that: $(ratio "${R[kh_dl1]:-}" "${R[ng_dl1_nosf]:-}"), $(ratio "${R[kh_dlN]:-}" "${R[ng_dlN_nosf]:-}")"
say "download_rss: keyhole peak RSS ${R[kh_dl_rss]:-} MB over all download rounds (target < 100 MB: $(verdict "${R[kh_dl_rss]:-}" lt 100))"
rm -f "$WORK/nginx/www/files/bench-download.bin"
fi

# ======================================================================== 3. upload
curl_put() { # $1 URL, $2 file -> "code bytes seconds"
  curl -sS -o /dev/null --max-time 300 -w '%{http_code} %{size_upload} %{time_total}\n' \
    -H 'Expect:' -H "Content-Type: $CT" -T "$2" "$1" || echo "000 0 0"
}
if phase upload; then
KHU=(); NGU=(); DDU=(); KHU_RSS=()
# Each round's rates too, to pair keyhole with the references measured beside it.
declare -A KH_ROUND=() NG_ROUND=() DD_ROUND=()
for round in $(seq "$ROUNDS"); do
  log "upload round $round/$ROUNDS: keyhole PUT, nginx PUT, dd conv=fsync (${FILE_MIB} MiB each)"
  sync
  read -r UP_ID UP_URL < <(mint_upload "bench-upload-$round.bin" "$FILE_BYTES")
  [[ -n "$UP_URL" ]] || die "POST /api/files/upload gave no uploadUrl"
  rss_start
  read -r code bytes secs < <(curl_put "$UP_URL" "$SRC")
  KHU_RSS+=("$(rss_stop)")
  if [[ $code == 200 && $bytes == "$FILE_BYTES" ]]; then
    KHU+=("$(fcalc %.1f "$bytes / $secs / 1e6")"); KH_ROUND[$round]=${KHU[-1]}
  else
    log "keyhole upload: HTTP $code"
  fi
  curl -fsS -o /dev/null --max-time 30 -X DELETE "$KH_URL/api/files/$UP_ID" || log "could not delete $UP_ID"
  sync
  if ((NGINX_OK)); then
    read -r code bytes secs < <(curl_put "$(nginx_link "/uploads/bench-upload-$round.bin")" "$SRC")
    if [[ $code == 201 || $code == 204 ]] && [[ $bytes == "$FILE_BYTES" ]]; then
      NGU+=("$(fcalc %.1f "$bytes / $secs / 1e6")"); NG_ROUND[$round]=${NGU[-1]}
    else
      log "nginx upload: HTTP $code ($(tail -n 2 "$WORK/nginx/logs/error.log" 2>/dev/null))"
    fi
    rm -f "$WORK/nginx/dav/uploads/bench-upload-$round.bin"
    sync
  fi
  t0=$(date +%s.%N)
  if dd if=/dev/zero of="$WORK/dd.bin" bs=1M count="$FILE_MIB" conv=fsync status=none; then
    t1=$(date +%s.%N)
    DDU+=("$(fcalc %.1f "$FILE_BYTES / ($t1 - $t0) / 1e6")"); DD_ROUND[$round]=${DDU[-1]}
  fi
  rm -f "$WORK/dd.bin"
done
R[kh_up]=$(best "${KHU[@]}"); R[ng_up]=$(best "${NGU[@]}"); R[dd]=$(best "${DDU[@]}"); R[kh_up_rss]=$(best "${KHU_RSS[@]}")
rn=$(ratio "${R[kh_up]:-}" "${R[ng_up]:-}"); rd=$(ratio "${R[kh_up]:-}" "${R[dd]:-}")
say "upload: keyhole ${R[kh_up]:-n/a} MB/s, nginx PUT ${R[ng_up]:-n/a} MB/s, ratio $rn (target 0.70: $(verdict "$rn" ge 0.70)); dd conv=fsync ${R[dd]:-n/a} MB/s, ratio $rd (target 0.70: $(verdict "$rd" ge 0.70)) [rounds: keyhole ${KHU[*]}; nginx ${NGU[*]:-n/a}; dd ${DDU[*]}]"
# The references drift more between rounds than keyhole does; each round's keyhole against the
# references measured right after it, and the median of those, is the steadier comparison.
PAIRED_NG=(); PAIRED_DD=()
for round in $(seq "$ROUNDS"); do
  [[ -n ${KH_ROUND[$round]:-} ]] || continue
  if [[ -n ${NG_ROUND[$round]:-} ]]; then PAIRED_NG+=("$(ratio "${KH_ROUND[$round]}" "${NG_ROUND[$round]}")"); fi
  if [[ -n ${DD_ROUND[$round]:-} ]]; then PAIRED_DD+=("$(ratio "${KH_ROUND[$round]}" "${DD_ROUND[$round]}")"); fi
done
say "upload_paired: keyhole / nginx PUT by round ${PAIRED_NG[*]:-n/a}, median $(median "${PAIRED_NG[@]}"); keyhole / dd by round ${PAIRED_DD[*]:-n/a}, median $(median "${PAIRED_DD[@]}")"
if have openssl; then
  # The SHA-256 every upload computes is most of its CPU; one core's rate puts the figures above
  # in proportion (the upload shares the machine's cores with curl and the kernel's copies).
  R[sha256]=$(timeout 60 openssl speed -seconds 2 -bytes 16384 -evp sha256 2>/dev/null \
    | awk '/^sha256/ { v = $NF; sub(/k$/, "", v); printf "%.1f", v * 1000 / 1e6 }') || true
fi
say "  (keyhole hashes SHA-256 and fsyncs before it answers; nginx's PUT does neither; dd writes zeros and fsyncs; SHA-256 alone on one core, openssl speed: ${R[sha256]:-n/a} MB/s)"
say "upload_rss: keyhole peak RSS ${R[kh_up_rss]:-n/a} MB during the uploads (target < 100 MB: $(verdict "${R[kh_up_rss]:-}" lt 100))"
fi

# ======================================================================== summary
{
  echo
  echo "== summary =="
  echo "$HEADER"
  printf '%s\n' "${SUMMARY[@]}"
} | tee "$OUT_DIR/serve.txt"
log "done in ${SECONDS}s; raw wrk output in bench/out/serve-wrk-*.txt"
