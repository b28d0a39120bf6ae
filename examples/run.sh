#!/usr/bin/env bash
# Runs every integration example against real `keyhole serve` processes on 127.0.0.1:
#
#   1. a server without tokens: the Python, Node and curl examples;
#   2. a server with an API token (`keyhole tokens generate --principal ex`): the three examples
#      with KEYHOLE_TOKEN set, and each of them again without it, where it must fail loudly
#      (non-zero exit, the failed step named) — so a token that is not sent cannot go unnoticed;
#   3. a server whose --public-url names a port nothing listens on (a reverse proxy that is not
#      there): each example must fail loudly at the upload step;
#   4. the browser snippet's script parses (node --check).
#
#   bash examples/run.sh                         # uses target/debug/keyhole
#   KEYHOLE=target/release/keyhole bash examples/run.sh
#   EXAMPLES_KEEP=1 bash examples/run.sh          # keep the servers' data and logs
#
# Needs python3, node (20 or newer, for the global fetch), curl and sha256sum. The last line is
# "N passed, M failed"; the exit status is non-zero on any failure. Only the servers this script
# starts are stopped, by their process ids.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
KEYHOLE=${KEYHOLE:-target/debug/keyhole}
case $KEYHOLE in /*) ;; *) KEYHOLE="$ROOT/$KEYHOLE" ;; esac
# The examples talk to 127.0.0.1 directly, never through a proxy from the environment.
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"

passed=0
failed=0
PIDS=()
WORK=$(mktemp -d "${TMPDIR:-/tmp}/keyhole-examples.XXXXXX")

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  if [[ -n ${EXAMPLES_KEEP:-} ]]; then
    echo "examples: kept $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

die() {
  echo "examples: $*" >&2
  echo "$passed passed, $((failed + 1)) failed"
  exit 1
}

[[ -x $KEYHOLE ]] || die "no keyhole binary at $KEYHOLE (build it with: cargo build -p keyhole --bin keyhole, or set KEYHOLE)"
for tool in python3 node curl sha256sum; do
  command -v "$tool" >/dev/null || die "$tool is needed to run the examples"
done
node -e 'process.exit(typeof fetch === "function" ? 0 : 1)' || die "node $(node --version) has no global fetch; Node 20 or newer is needed"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_server NAME [ARGS...]: starts `keyhole serve` on a free loopback port with its own data
# directory and --public-url http://127.0.0.1:PORT (unless ARGS give another), and waits until it
# is ready; sets SERVER_URL. Retries on another port if the chosen one was taken meanwhile.
start_server() {
  local name=$1 attempt port pid public
  shift
  for attempt in 1 2 3; do
    port=$(free_port)
    public=(--public-url "http://127.0.0.1:$port")
    [[ " $* " == *" --public-url "* ]] && public=()
    "$KEYHOLE" serve --data-dir "$WORK/$name-data" --listen "127.0.0.1:$port" \
      "${public[@]}" --log-format json "$@" \
      >"$WORK/$name.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 1 200); do
      if curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null; then
        SERVER_URL="http://127.0.0.1:$port"
        echo "examples: $name server on $SERVER_URL (pid $pid)"
        return 0
      fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    echo "examples: $name server did not come up on port $port (attempt $attempt):" >&2
    tail -n 5 "$WORK/$name.log" >&2
  done
  die "cannot start keyhole serve ($name)"
}

# check NAME EXPECT COMMAND...: runs COMMAND and shows its output. EXPECT=ok passes on exit status
# 0; EXPECT="fail:STEP" passes on a non-zero exit status with "FAILED step STEP" in the output.
check() {
  local name=$1 expect=$2 out rc good=
  shift 2
  out=$("$@" 2>&1)
  rc=$?
  case $expect in
    ok) [[ $rc == 0 ]] && good=1 ;;
    fail:*) [[ $rc != 0 && $out == *"FAILED step ${expect#fail:}"* ]] && good=1 ;;
  esac
  if [[ -n $good ]]; then
    passed=$((passed + 1))
    echo "PASS $name"
  else
    failed=$((failed + 1))
    echo "FAIL $name (exit $rc; expected ${expect/fail:/a failure at step })"
  fi
  # shellcheck disable=SC2001 # indent every line, not one substitution
  sed 's/^/     /' <<<"$out"
}

cd "$WORK" || die "cannot enter $WORK"

# 1. No tokens (the server listens on loopback only, where it allows that).
start_server open
export KEYHOLE_SERVER=$SERVER_URL
unset KEYHOLE_TOKEN
check "python, no token" ok python3 "$HERE/python/keyhole_example.py"
check "node, no token" ok node "$HERE/javascript/keyhole_example.mjs"
check "curl, no token" ok bash "$HERE/curl/keyhole_example.sh"

# 2. With an API token, as a server listening beyond loopback needs.
generated=$("$KEYHOLE" tokens generate --principal ex) || die "keyhole tokens generate failed"
TOKEN=$(sed -n 's/^token: *//p' <<<"$generated")
HASH=$(sed -n 's/^config: *--token ex://p' <<<"$generated")
[[ -n $TOKEN && ${#HASH} == 64 ]] || die "cannot read the token and hash from: $generated"
start_server token --token "ex:$HASH"
export KEYHOLE_SERVER=$SERVER_URL
export KEYHOLE_TOKEN=$TOKEN
check "python, token" ok python3 "$HERE/python/keyhole_example.py"
check "node, token" ok node "$HERE/javascript/keyhole_example.mjs"
check "curl, token" ok bash "$HERE/curl/keyhole_example.sh"
unset KEYHOLE_TOKEN
check "python, token server without the token fails loudly" "fail:1 " python3 "$HERE/python/keyhole_example.py"
check "node, token server without the token fails loudly" "fail:1 " node "$HERE/javascript/keyhole_example.mjs"
check "curl, token server without the token fails loudly" "fail:1 " bash "$HERE/curl/keyhole_example.sh"

# 3. Links that point nowhere: the API answers, the upload link's origin does not.
nowhere=$(free_port)
start_server nowhere --public-url "http://127.0.0.1:$nowhere"
export KEYHOLE_SERVER=$SERVER_URL
check "python, links to an origin nobody serves fail loudly" "fail:2 " python3 "$HERE/python/keyhole_example.py"
check "node, links to an origin nobody serves fail loudly" "fail:2 " node "$HERE/javascript/keyhole_example.mjs"
check "curl, links to an origin nobody serves fail loudly" "fail:2 " bash "$HERE/curl/keyhole_example.sh"

# 4. The browser snippet is not run (it needs a browser and a person to pick a file); its script
#    must at least parse.
sed -n '/<script type="module">/,/<\/script>/p' "$HERE/javascript/browser-snippet.html" | sed '1d;$d' >"$WORK/browser-snippet.mjs"
check "browser snippet parses" ok node --check "$WORK/browser-snippet.mjs"

echo "$passed passed, $failed failed"
[[ $failed == 0 ]]
