#!/usr/bin/env bash
# Starts the servers the backend test suites talk to, on 127.0.0.1 only:
#   - PostgreSQL in a throw-away cluster (metadata store suite), and PgBouncer in front of it
#     (Debian package pgbouncer, installed when missing; without it its one test is skipped),
#   - moto_server (DynamoDB, S3, Secrets Manager and Cognito stand-in),
#   - s3s-fs (an S3 server over a directory that checks SigV4 signatures, presigned URLs
#     included, which moto does not; for the s3-presigned link mode's tests).
#
#   eval "$(bash scripts/test-services.sh start)"   # start (or reuse) and export the settings
#   bash scripts/test-services.sh env               # print the exports again
#   bash scripts/test-services.sh stop              # stop both and remove their state
#
# `start` prints only the `export` lines on stdout (progress goes to stderr), so it can be
# eval'ed. State (data, logs, pids, the env file) lives in $KEYHOLE_SERVICES_DIR, default
# /tmp/keyhole-services. Both servers get free ports. As root, PostgreSQL runs as the `postgres`
# user (it refuses to run as root). moto_server comes from PATH, or else from a venv under
# ~/.cache/keyhole that this script fills with `pip install 'moto[server]==5.2.1'` once. s3s-fs comes
# from PATH, or else from ~/.cache/keyhole/s3s-fs, filled with `cargo install s3s-fs` once. It
# accepts only the exported AWS key pair, and serves the bucket $S3S_BUCKET.
set -euo pipefail

DIR=${KEYHOLE_SERVICES_DIR:-/tmp/keyhole-services}
ENV_FILE=$DIR/env
PG_DATA=$DIR/pg/data
PG_SOCK=$DIR/pg/sock
PG_LOG=$DIR/pg/log
PG_USER=keyhole
PG_DB=keyhole_test
PGB_DIR=$DIR/pgbouncer
MOTO_LOG=$DIR/moto.log
MOTO_PID=$DIR/moto.pid
MOTO_VENV=${XDG_CACHE_HOME:-$HOME/.cache}/keyhole/moto-venv
S3S_ROOT=${XDG_CACHE_HOME:-$HOME/.cache}/keyhole/s3s-fs
S3S_VERSION=0.14.1
S3S_DATA=$DIR/s3s
S3S_LOG=$DIR/s3s.log
S3S_PID=$DIR/s3s.pid
S3S_BUCKET=keyhole-test
# The one key pair every stand-in accepts (s3s-fs checks it; moto accepts anything).
ACCESS_KEY_ID=test
SECRET_ACCESS_KEY=test

say() { printf 'test-services: %s\n' "$*" >&2; }
die() {
  say "$*"
  exit 1
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A PostgreSQL server binary: PATH first, then Debian's versioned directories.
pg_bin() {
  local name=$1 dir
  if command -v "$name" >/dev/null 2>&1; then
    command -v "$name"
    return
  fi
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [[ -x $dir/$name ]]; then
      echo "$dir/$name"
      return
    fi
  done
  return 1
}

# Runs a command as the user that owns the cluster: ourselves, or `postgres` when we are root.
as_pg() {
  if [[ $(id -u) == 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pg_running() {
  [[ -f $PG_DATA/postmaster.pid ]] && as_pg "$(pg_bin pg_ctl)" -D "$PG_DATA" status >/dev/null 2>&1
}

moto_running() {
  [[ -f $MOTO_PID ]] && kill -0 "$(cat "$MOTO_PID")" 2>/dev/null
}

s3s_running() {
  [[ -f $S3S_PID ]] && kill -0 "$(cat "$S3S_PID")" 2>/dev/null
}

s3s_bin() {
  if command -v s3s-fs >/dev/null 2>&1; then
    command -v s3s-fs
    return
  fi
  if [[ ! -x $S3S_ROOT/bin/s3s-fs ]]; then
    say "installing s3s-fs $S3S_VERSION into $S3S_ROOT (a few minutes, once)"
    cargo install s3s-fs --version "$S3S_VERSION" --features binary --locked --root "$S3S_ROOT" >&2
  fi
  echo "$S3S_ROOT/bin/s3s-fs"
}

start_s3s() {
  local bin port i
  bin=$(s3s_bin)
  port=$(free_port)
  # A bucket is a directory under the root.
  mkdir -p "$S3S_DATA/$S3S_BUCKET"
  say "starting s3s-fs on 127.0.0.1:$port"
  setsid "$bin" --host 127.0.0.1 --port "$port" \
    --access-key "$ACCESS_KEY_ID" --secret-key "$SECRET_ACCESS_KEY" "$S3S_DATA" \
    </dev/null >"$S3S_LOG" 2>&1 &
  echo $! >"$S3S_PID"
  echo "$port" >"$DIR/s3s.port"
  for i in $(seq 1 120); do
    # Any HTTP answer (403 for an unsigned request) means it is up.
    if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
      return
    fi
    s3s_running || { cat "$S3S_LOG" >&2; die "s3s-fs exited"; }
    ((i == 120)) && die "s3s-fs does not answer on port $port (log: $S3S_LOG)"
    sleep 0.5
  done
}

start_postgres() {
  local initdb pg_ctl port
  if ! initdb=$(pg_bin initdb) || ! pg_ctl=$(pg_bin pg_ctl); then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
      say "installing PostgreSQL (Debian package postgresql)"
      apt-get update -qq >&2 && apt-get install -y -qq postgresql >&2
      initdb=$(pg_bin initdb) && pg_ctl=$(pg_bin pg_ctl) || die "initdb/pg_ctl not found after install"
    else
      die "initdb and pg_ctl are needed (Debian: apt-get install postgresql)"
    fi
  fi
  if [[ $(id -u) == 0 ]] && ! id postgres >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  fi
  port=$(free_port)
  mkdir -p "$PG_SOCK"
  if [[ $(id -u) == 0 ]]; then
    chown -R postgres: "$DIR/pg"
  fi
  chmod 700 "$DIR/pg"
  if [[ $(id -u) == 0 ]]; then
    # The cluster's owner must reach its directory.
    chmod 711 "$DIR"
  fi
  say "initdb in $PG_DATA"
  as_pg "$initdb" -D "$PG_DATA" -U "$PG_USER" --auth=trust -E UTF8 --locale=C.UTF-8 >"$DIR/pg/initdb.log" 2>&1 \
    || as_pg "$initdb" -D "$PG_DATA" -U "$PG_USER" --auth=trust -E UTF8 --locale=C >"$DIR/pg/initdb.log" 2>&1 \
    || { cat "$DIR/pg/initdb.log" >&2; die "initdb failed"; }
  say "starting PostgreSQL on 127.0.0.1:$port"
  as_pg "$pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 \
    -o "-h 127.0.0.1 -p $port -k $PG_SOCK -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start </dev/null >&2 || { cat "$PG_LOG" >&2; die "PostgreSQL did not start"; }
  echo "$port" >"$DIR/pg.port"
  local i
  for i in $(seq 1 60); do
    if as_pg "$(pg_bin psql)" -h 127.0.0.1 -p "$port" -U "$PG_USER" -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1; then
      break
    fi
    ((i == 60)) && die "PostgreSQL does not answer on port $port (log: $PG_LOG)"
    sleep 0.5
  done
  as_pg "$(pg_bin psql)" -h 127.0.0.1 -p "$port" -U "$PG_USER" -d postgres -Atqc "CREATE DATABASE $PG_DB" >&2
}

pgbouncer_running() {
  [[ -f $PGB_DIR/pid ]] && kill -0 "$(cat "$PGB_DIR/pid")" 2>/dev/null
}

# PgBouncer (session pooling, trust) in front of the cluster: the store must start behind a
# pooler that refuses startup options it does not know.
start_pgbouncer() {
  local bin port pg_port i
  bin=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
  if [[ ! -x $bin ]] && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    say "installing PgBouncer (Debian package pgbouncer)"
    apt-get install -y -qq pgbouncer >&2 || { apt-get update -qq >&2 && apt-get install -y -qq pgbouncer >&2; } || true
  fi
  if [[ ! -x $bin ]]; then
    say "PgBouncer is not available: its test will be skipped"
    return 0
  fi
  port=$(free_port)
  pg_port=$(cat "$DIR/pg.port")
  mkdir -p "$PGB_DIR"
  printf '%s\n' \
    '[databases]' \
    "* = host=127.0.0.1 port=$pg_port" \
    '' \
    '[pgbouncer]' \
    'listen_addr = 127.0.0.1' \
    "listen_port = $port" \
    'unix_socket_dir =' \
    'auth_type = trust' \
    "auth_file = $PGB_DIR/users.txt" \
    'pool_mode = session' \
    "logfile = $PGB_DIR/log" \
    "pidfile = $PGB_DIR/pid" >"$PGB_DIR/pgbouncer.ini"
  printf '"%s" ""\n' "$PG_USER" >"$PGB_DIR/users.txt"
  if [[ $(id -u) == 0 ]]; then
    chown -R postgres: "$PGB_DIR"
  fi
  say "starting PgBouncer on 127.0.0.1:$port"
  as_pg "$bin" -d "$PGB_DIR/pgbouncer.ini" </dev/null >&2 || die "PgBouncer did not start (log: $PGB_DIR/log)"
  for i in $(seq 1 40); do
    if as_pg "$(pg_bin psql)" -h 127.0.0.1 -p "$port" -U "$PG_USER" -d "$PG_DB" -Atqc 'SELECT 1' >/dev/null 2>&1; then
      echo "$port" >"$DIR/pgbouncer.port"
      return 0
    fi
    sleep 0.25
  done
  die "PgBouncer does not answer on port $port (log: $PGB_DIR/log)"
}

moto_bin() {
  if command -v moto_server >/dev/null 2>&1 && moto_server --help >/dev/null 2>&1; then
    command -v moto_server
    return
  fi
  if [[ ! -x $MOTO_VENV/bin/moto_server ]]; then
    say "installing moto[server] into $MOTO_VENV"
    python3 -m venv "$MOTO_VENV" >&2
    # Pinned: the stand-in's behaviour is part of what the tests check.
    "$MOTO_VENV/bin/pip" install --quiet 'moto[server]==5.2.1' >&2
  fi
  echo "$MOTO_VENV/bin/moto_server"
}

start_moto() {
  local bin port i
  bin=$(moto_bin)
  port=$(free_port)
  say "starting moto_server on 127.0.0.1:$port"
  # Detached, with no descriptor of ours left open, so `$(... start)` returns at once.
  setsid "$bin" -H 127.0.0.1 -p "$port" </dev/null >"$MOTO_LOG" 2>&1 &
  echo $! >"$MOTO_PID"
  echo "$port" >"$DIR/moto.port"
  for i in $(seq 1 120); do
    if curl -s -o /dev/null "http://127.0.0.1:$port/moto-api/"; then
      return
    fi
    moto_running || { cat "$MOTO_LOG" >&2; die "moto_server exited"; }
    ((i == 120)) && die "moto_server does not answer on port $port (log: $MOTO_LOG)"
    sleep 0.5
  done
}

write_env() {
  local pg_port moto_port s3s_port
  pg_port=$(cat "$DIR/pg.port")
  moto_port=$(cat "$DIR/moto.port")
  s3s_port=$(cat "$DIR/s3s.port")
  cat >"$ENV_FILE" <<EOF
export KEYHOLE_TEST_POSTGRES_URL='postgres://$PG_USER@127.0.0.1:$pg_port/$PG_DB'
export KEYHOLE_TEST_DYNAMODB_ENDPOINT='http://127.0.0.1:$moto_port'
export KEYHOLE_TEST_S3_ENDPOINT='http://127.0.0.1:$moto_port'
export KEYHOLE_TEST_SECRETS_ENDPOINT='http://127.0.0.1:$moto_port'
export KEYHOLE_TEST_COGNITO_ENDPOINT='http://127.0.0.1:$moto_port'
export KEYHOLE_TEST_S3S_ENDPOINT='http://127.0.0.1:$s3s_port'
export KEYHOLE_TEST_S3S_BUCKET='$S3S_BUCKET'
export KEYHOLE_TEST_S3S_ACCESS_KEY_ID='$ACCESS_KEY_ID'
export KEYHOLE_TEST_S3S_SECRET_ACCESS_KEY='$SECRET_ACCESS_KEY'
export AWS_ACCESS_KEY_ID='$ACCESS_KEY_ID'
export AWS_SECRET_ACCESS_KEY='$SECRET_ACCESS_KEY'
export AWS_REGION='us-east-1'
export AWS_DEFAULT_REGION='us-east-1'
export AWS_EC2_METADATA_DISABLED='true'
EOF
  if [[ -f $DIR/pgbouncer.port ]]; then
    echo "export KEYHOLE_TEST_PGBOUNCER_URL='postgres://$PG_USER@127.0.0.1:$(cat "$DIR/pgbouncer.port")/$PG_DB'" >>"$ENV_FILE"
  fi
}

start() {
  mkdir -p "$DIR"
  if pg_running && moto_running && s3s_running && [[ -f $ENV_FILE ]]; then
    say "already running (state in $DIR)"
    cat "$ENV_FILE"
    return
  fi
  stop_services
  mkdir -p "$DIR"
  start_postgres
  start_pgbouncer
  start_moto
  start_s3s
  write_env
  say "ready; stop with: bash scripts/test-services.sh stop"
  cat "$ENV_FILE"
}

stop_services() {
  if pgbouncer_running; then
    say "stopping PgBouncer"
    kill "$(cat "$PGB_DIR/pid")" 2>/dev/null || true
  fi
  if [[ -f $PG_DATA/postmaster.pid ]]; then
    say "stopping PostgreSQL"
    as_pg "$(pg_bin pg_ctl)" -D "$PG_DATA" -m fast -w stop >&2 || true
  fi
  if moto_running; then
    say "stopping moto_server"
    kill "$(cat "$MOTO_PID")" 2>/dev/null || true
    local i
    for i in $(seq 1 20); do
      moto_running || break
      sleep 0.25
    done
    moto_running && kill -9 "$(cat "$MOTO_PID")" 2>/dev/null || true
  fi
  if s3s_running; then
    say "stopping s3s-fs"
    kill "$(cat "$S3S_PID")" 2>/dev/null || true
    local j
    for j in $(seq 1 20); do
      s3s_running || break
      sleep 0.25
    done
    s3s_running && kill -9 "$(cat "$S3S_PID")" 2>/dev/null || true
  fi
  # Only what `start` made, in case the directory was pointed somewhere shared.
  rm -rf "$DIR/pg" "$PGB_DIR" "$DIR/pgbouncer.port" "$MOTO_LOG" "$MOTO_PID" "$DIR/moto.port" "$DIR/pg.port" "$ENV_FILE" \
    "$S3S_DATA" "$S3S_LOG" "$S3S_PID" "$DIR/s3s.port"
  rmdir "$DIR" 2>/dev/null || true
}

case ${1:-} in
  start) start ;;
  stop) stop_services ;;
  env)
    [[ -f $ENV_FILE ]] || die "not started (run: bash scripts/test-services.sh start)"
    cat "$ENV_FILE"
    ;;
  *)
    echo "usage: $0 start|stop|env" >&2
    exit 2
    ;;
esac
