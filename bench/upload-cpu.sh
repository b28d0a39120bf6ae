#!/usr/bin/env bash
# Where a 1 GiB upload's CPU goes: keyhole's threads, curl, and the whole machine, against an
# nginx WebDAV PUT of the same file. A diagnostic beside bench/serve.sh (which gives the ratios):
# it explains them.
#
#   bash bench/upload-cpu.sh          # ~1 minute; prints one block per upload
#
# For each upload it prints the rate, curl's user and system CPU, the CPU each keyhole thread
# used (`keyhole-http-N` is the worker that receives and hashes the body; `keyhole-http-N-blocking`
# threads write it to disk), and the machine's ticks from /proc/stat over the upload (100 per
# second per core: user, system, idle, iowait, softirq). Idle ticks while the upload runs mean
# the work is waiting on itself, not on the cores.
#
# Environment: KEYHOLE (binary; default target/release/keyhole, built from the working tree
# first), BENCH_ROUNDS (3),
# BENCH_FILE_MIB (1024), BENCH_TMPDIR (default ROOT/target). Needs curl and GNU time (Debian
# package `time`); nginx is optional.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
ROUNDS=${BENCH_ROUNDS:-3}
FILE_MIB=${BENCH_FILE_MIB:-1024}
FILE_BYTES=$((FILE_MIB * 1024 * 1024))
CT=application/octet-stream

log() { printf '[upload-cpu.sh %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
KEYHOLE=$(keyhole_binary "$ROOT")
command -v curl >/dev/null || die "curl is required (apt-get install curl)"
[[ -x /usr/bin/time ]] || die "GNU time is required for curl's CPU (apt-get install time)"
[[ -x "$KEYHOLE" ]] || die "no keyhole binary at $KEYHOLE (cargo build --release -p keyhole)"
NGINX=$(command -v nginx || true); [[ -z "$NGINX" && -x /usr/sbin/nginx ]] && NGINX=/usr/sbin/nginx

mkdir -p "${BENCH_TMPDIR:-$ROOT/target}"
WORK=$(mktemp -d "${BENCH_TMPDIR:-$ROOT/target}/upload-cpu.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -f "$WORK/nginx/nginx.pid" ]] && kill "$(cat "$WORK/nginx/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

ticks() { head -1 /proc/stat; }
tick_delta() { # $1 before, $2 after -> the named fields' differences
  paste <(tr -s ' ' '\n' <<<"$1") <(tr -s ' ' '\n' <<<"$2") | awk 'NR > 1 { d[NR] = $2 - $1 }
    END { printf "  machine ticks: user %d, system %d, idle %d, iowait %d, softirq %d\n", d[2], d[4], d[5], d[6], d[8] }'
}
thread_cpu() { # $1 pid -> "tid name ticks" per thread (names are cut to 15 characters)
  for t in /proc/"$1"/task/*; do
    printf '%s %s %s\n' "${t##*/}" "$(cat "$t/comm")" "$(awk '{ print $14 + $15 }' "$t/stat")"
  done
}
thread_delta() { # $1 before, $2 after -> CPU seconds per thread name, blocking pools summed
  awk 'NR == FNR { was[$1] = $3; next } { d = $3 - was[$1]; if (d > 0) sum[$2] += d }
    END { for (n in sum) { label = n; if (n ~ /-$/) label = n "blocking (all threads)";
          printf "  %s: %.2f s\n", label, sum[n] / 100 } }' <(echo "$1") <(echo "$2") | sort
}
put() { # $1 URL -> prints the rate, curl's CPU
  /usr/bin/time -f '  curl: user %U s, system %S s' curl -sS -o /dev/null -H 'Expect:' \
    -H "Content-Type: $CT" -w '  %{http_code}, %{speed_upload} bytes/s\n' -T "$WORK/src.bin" "$1" 2>&1 \
    | awk '/bytes\/s/ { printf "  HTTP %s %.0f MB/s\n", $1, $2 / 1e6; next } { print }'
}

log "writing a ${FILE_MIB} MiB random file"
head -c "$FILE_BYTES" /dev/urandom >"$WORK/src.bin"

PORT=$(free_port)
printf 'multipart_threshold = %d\n' $((FILE_BYTES * 2)) >"$WORK/keyhole.toml"
"$KEYHOLE" serve --config "$WORK/keyhole.toml" --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" \
  --public-url "http://127.0.0.1:$PORT" >"$WORK/keyhole.log" 2>&1 &
KH=$!; PIDS+=("$KH")
for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.1; done
curl -fs -o /dev/null "http://127.0.0.1:$PORT/healthz" || die "keyhole did not start: $(tail -n 3 "$WORK/keyhole.log")"

for round in $(seq "$ROUNDS"); do
  reply=$(curl -fsS -H 'Content-Type: application/json' \
    -d "{\"filename\":\"cpu-$round.bin\",\"contentType\":\"$CT\",\"size\":$FILE_BYTES}" \
    "http://127.0.0.1:$PORT/api/files/upload")
  url=$(sed -n 's/.*"uploadUrl":"\([^"]*\)".*/\1/p' <<<"$reply")
  id=$(sed -n 's/.*"fileId":"\([^"]*\)".*/\1/p' <<<"$reply")
  sync
  before=$(thread_cpu "$KH"); t0=$(ticks)
  echo "keyhole upload $round:"
  put "$url"
  t1=$(ticks); after=$(thread_cpu "$KH")
  thread_delta "$before" "$after"
  tick_delta "$t0" "$t1"
  curl -fsS -o /dev/null -X DELETE "http://127.0.0.1:$PORT/api/files/$id"
done

if [[ -n "$NGINX" ]]; then
  d="$WORK/nginx"; NPORT=$(free_port)
  mkdir -p "$d/dav/uploads" "$d/dav/tmp"
  { nginx_preamble "$d"; cat <<EOF
  access_log off;
  server {
    listen 127.0.0.1:$NPORT;
    location /uploads/ {
      root $d/dav; dav_methods PUT; create_full_put_path on; client_max_body_size 2g;
      client_body_temp_path $d/dav/tmp;
    }
  }
}
EOF
  } >"$d/nginx.conf"
  "$NGINX" -c "$d/nginx.conf" -p "$d" || die "nginx did not start"
  for round in $(seq "$ROUNDS"); do
    sync
    t0=$(ticks)
    echo "nginx PUT $round:"
    put "http://127.0.0.1:$NPORT/uploads/cpu-$round.bin"
    t1=$(ticks)
    tick_delta "$t0" "$t1"
    rm -f "$d/dav/uploads/cpu-$round.bin"
  done
else
  log "nginx not found: keyhole only"
fi
