#!/usr/bin/env bash
# Runs the shell blocks of the documentation that are marked runnable, so the commands the docs
# show keep working.
#
#   bash scripts/doc-commands.sh                     # README.md, docs/*.md, docs/runbooks/*.md
#   bash scripts/doc-commands.sh docs/runbooks/backup-restore.md
#   bash scripts/doc-commands.sh --list              # show the runnable blocks, run nothing
#   KEYHOLE=target/release/keyhole bash scripts/doc-commands.sh
#
# The convention (also in docs/runbooks/README.md):
#
#   - A block is runnable when the line right before its opening fence is `<!-- runnable -->`
#     and the fence is ```sh or ```bash. The comment does not show on GitHub. A marker that is not
#     directly followed by such a fence is an error.
#   - The runnable blocks of one Markdown file run in order, each in its own
#     `bash -euo pipefail`, all in the same fresh temporary directory (so a block can use the files
#     an earlier block of the same page wrote, but not its variables), against one fresh
#     `keyhole serve` started for that file: loopback, no tokens, its own data directory,
#     --public-url http://127.0.0.1:PORT.
#   - Each block sees:
#       KEYHOLE_SERVER  that server's URL (the CLI client's variable, so `keyhole ls` etc. use it)
#       DATA            that server's data directory (keys/, metadata.db, objects/)
#       TEST_PORT       another free loopback port, for a block that starts a second server
#       PATH            with the `keyhole` under test first
#     and the literal address http://127.0.0.1:8080 (the default the README uses) is replaced by
#     $KEYHOLE_SERVER before the block runs.
#   - A block fails on any non-zero exit status (set -e, pipefail) or after DOC_BLOCK_TIMEOUT
#     seconds (default 90). Processes a block leaves behind (its process group) are stopped after
#     it.
#
# The last line is "N passed, M failed"; the exit status is non-zero on any failure. Only the
# processes this script starts are stopped, by their ids.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
KEYHOLE=${KEYHOLE:-target/debug/keyhole}
case $KEYHOLE in /*) ;; *) KEYHOLE="$ROOT/$KEYHOLE" ;; esac
TIMEOUT=${DOC_BLOCK_TIMEOUT:-90}
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"

LIST=
FILES=()
for arg in "$@"; do
  case $arg in
    --list) LIST=1 ;;
    -h | --help)
      sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *) FILES+=("$arg") ;;
  esac
done
if ((${#FILES[@]} == 0)); then
  shopt -s nullglob
  FILES=(README.md docs/*.md docs/runbooks/*.md)
fi

passed=0
failed=0
SERVER_PID=
WORK=$(mktemp -d "${TMPDIR:-/tmp}/keyhole-doc-commands.XXXXXX")
cleanup() {
  if [[ -n $SERVER_PID ]]; then
    kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  fi
  if [[ -n ${DOC_KEEP:-} ]]; then echo "doc-commands: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

die() {
  echo "doc-commands: $*" >&2
  echo "$passed passed, $((failed + 1)) failed"
  exit 1
}

command -v python3 >/dev/null || die "python3 is needed to extract the blocks"
command -v setsid >/dev/null || die "setsid (util-linux) is needed to run blocks in their own process group"

# Extracts the runnable blocks of one file into DIR/NNN.sh, with DIR/NNN.line holding the line of
# the block's opening fence. Prints the number of blocks; fails on a marker that marks nothing.
extract() {
  python3 - "$1" "$2" <<'PY'
import os, re, sys

path, out = sys.argv[1], sys.argv[2]
lines = open(path, encoding="utf-8").read().split("\n")
marker = re.compile(r"^\s*<!--\s*runnable\s*-->\s*$")
opening = re.compile(r"^(\s*)(```+|~~~+)\s*(sh|bash)\s*$")
any_fence = re.compile(r"^\s*(```+|~~~+)")
count, i, errors = 0, 0, []
while i < len(lines):
    if marker.match(lines[i]):
        m = opening.match(lines[i + 1]) if i + 1 < len(lines) else None
        if not m:
            errors.append(f"{path}:{i + 1}: <!-- runnable --> is not directly followed by a ```sh or ```bash fence")
            i += 1
            continue
        indent, fence = m.group(1), m.group(2)
        body, j = [], i + 2
        while j < len(lines) and lines[j].strip() != fence:
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j])
            j += 1
        if j == len(lines):
            errors.append(f"{path}:{i + 2}: the runnable block is never closed")
            break
        count += 1
        with open(os.path.join(out, f"{count:03d}.sh"), "w", encoding="utf-8") as f:
            f.write("\n".join(body) + "\n")
        with open(os.path.join(out, f"{count:03d}.line"), "w") as f:
            f.write(str(i + 2))
        i = j + 1
    elif (m := any_fence.match(lines[i])):
        # Any other fenced block: skip to its end, so examples of the marker inside code are inert.
        fence, j = m.group(1), i + 1
        while j < len(lines) and not (lines[j].strip().startswith(fence[0] * len(fence)) and lines[j].strip().strip(fence[0]) == ""):
            j += 1
        i = j + 1
    else:
        i += 1
for e in errors:
    print(e, file=sys.stderr)
print(count)
sys.exit(1 if errors else 0)
PY
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts a fresh server for one file; sets KEYHOLE_SERVER, DATA, SERVER_PID.
start_server() {
  local dir=$1 port attempt
  for attempt in 1 2 3; do
    port=$(free_port)
    DATA="$dir/data"
    rm -rf "$DATA"
    "$KEYHOLE" serve --data-dir "$DATA" --listen "127.0.0.1:$port" \
      --public-url "http://127.0.0.1:$port" --log-format json >"$dir/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 200); do
      if curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null; then
        KEYHOLE_SERVER="http://127.0.0.1:$port"
        return 0
      fi
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=
    echo "doc-commands: server did not come up on port $port (attempt $attempt):" >&2
    tail -n 5 "$dir/server.log" >&2
  done
  return 1
}

stop_server() {
  if [[ -n $SERVER_PID ]]; then
    kill "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=
  fi
}

# Runs one block in its own session (process group) with a time limit; stops what it leaves.
run_block() {
  local script=$1 out=$2 pid rc waited=0
  setsid bash -euo pipefail "$script" >"$out" 2>&1 </dev/null &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    if ((waited >= TIMEOUT * 10)); then
      echo "doc-commands: timed out after ${TIMEOUT}s" >>"$out"
      kill -TERM -- "-$pid" 2>/dev/null
      sleep 1
      kill -KILL -- "-$pid" 2>/dev/null
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  wait "$pid"
  rc=$?
  kill -TERM -- "-$pid" 2>/dev/null # anything the block started and left running
  return "$rc"
}

# Pass 1: extract every file's blocks (and list them with --list).
n=0
DIRS=()
for file in "${FILES[@]}"; do
  [[ -f $file ]] || die "no such file: $file"
  n=$((n + 1))
  dir="$WORK/$n"
  mkdir -p "$dir/blocks" "$dir/work"
  echo "$file" >"$dir/source"
  if ! count=$(extract "$file" "$dir/blocks"); then
    failed=$((failed + 1))
    echo "FAIL $file: misplaced runnable marker (see above)"
  fi
  ((count > 0)) || continue
  DIRS+=("$dir")
  if [[ -n $LIST ]]; then
    for script in "$dir"/blocks/*.sh; do
      echo "== $file:$(cat "${script%.sh}.line")"
      cat "$script"
    done
  fi
done
[[ -n $LIST ]] && exit "$((failed > 0))"

# Tools the blocks use beyond bash, coreutils, curl and python3: installed from Debian's packages
# when missing (as e2e/run.sh does for the browsers).
[[ -x $KEYHOLE ]] || die "no keyhole binary at $KEYHOLE (build it with: cargo build -p keyhole --bin keyhole, or set KEYHOLE)"
command -v curl >/dev/null || die "curl is needed"
if ((${#DIRS[@]})) && grep -rqw --include='*.sh' sqlite3 "${DIRS[@]}" && ! command -v sqlite3 >/dev/null; then
  echo "doc-commands: installing Debian's sqlite3 package (the runbooks use the sqlite3 shell)"
  if [[ $(id -u) == 0 ]]; then SUDO=; else
    command -v sudo >/dev/null || die "sqlite3 is missing, and not root and no sudo to install it (apt-get install sqlite3)"
    SUDO=sudo
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -qq sqlite3 >/dev/null 2>&1 || {
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq sqlite3
  } || die "apt-get install sqlite3 failed"
fi
mkdir -p "$WORK/bin"
ln -s "$KEYHOLE" "$WORK/bin/keyhole"

# Pass 2: per file, a fresh server, then its blocks in order.
for dir in "${DIRS[@]}"; do
  file=$(cat "$dir/source")
  count=$(find "$dir/blocks" -name '*.sh' | wc -l)
  if ! start_server "$dir"; then
    failed=$((failed + count))
    echo "FAIL $file: cannot start keyhole serve for its $count blocks"
    continue
  fi
  TEST_PORT=$(free_port)
  for script in "$dir"/blocks/*.sh; do
    line=$(cat "${script%.sh}.line")
    sed -i "s#http://127\.0\.0\.1:8080#$KEYHOLE_SERVER#g" "$script"
    out="${script%.sh}.out"
    start=$SECONDS
    (
      cd "$dir/work" || exit 1
      export PATH="$WORK/bin:$PATH" KEYHOLE_SERVER DATA TEST_PORT
      run_block "$script" "$out"
    )
    rc=$?
    if ((rc == 0)); then
      passed=$((passed + 1))
      echo "PASS $file:$line ($((SECONDS - start))s)"
    else
      failed=$((failed + 1))
      echo "FAIL $file:$line (exit $rc)"
      echo "---- block"
      sed 's/^/   | /' "$script"
      echo "---- output"
      tail -n 40 "$out" | sed 's/^/   > /'
      echo "---- server log (last lines)"
      tail -n 10 "$dir/server.log" | sed 's/^/   > /'
    fi
  done
  stop_server
done

echo "$passed passed, $failed failed"
[[ $failed == 0 ]]
