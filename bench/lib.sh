# Shell helpers the bench scripts share (sourced, not run; the sourcing script defines `die`).

# keyhole_binary ROOT: the keyhole binary to measure, on stdout. KEYHOLE when set, as it is;
# otherwise ROOT/target/release/keyhole, brought up to date with the working tree first (cargo
# does nothing when it is): a binary left from an earlier build would measure other code.
keyhole_binary() {
  local root=$1
  if [[ -n "${KEYHOLE:-}" ]]; then
    echo "$KEYHOLE"
    return
  fi
  command -v cargo >/dev/null || die "no cargo to build keyhole (or set KEYHOLE to a binary)"
  echo "[bench] cargo build --release -p keyhole (a no-op when up to date)..." >&2
  (cd "$root" && cargo build -q --release -p keyhole >&2) || die "cargo build failed"
  echo "$root/target/release/keyhole"
}

free_port() { # a port nothing on 127.0.0.1 answers on
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
  die "no free port"
}

# nginx_preamble DIR: the start of a generated nginx.conf whose pid, logs and temporary files all
# live under DIR, up to and including the `http {` line and its temporary paths. Creates the
# directories. As root it adds a `user` line naming the current user: nginx would otherwise
# serve as `nobody`, who cannot read the bench's files.
nginx_preamble() {
  local d=$1 t
  mkdir -p "$d/logs" "$d/tmp/body" "$d/tmp/proxy" "$d/tmp/fastcgi" "$d/tmp/uwsgi" "$d/tmp/scgi"
  [[ $EUID -eq 0 ]] && echo "user $(id -un) $(id -gn);"
  cat <<CONF
worker_processes auto;
pid $d/nginx.pid;
error_log $d/logs/error.log warn;
events { worker_connections 1024; }
http {
CONF
  for t in client_body proxy fastcgi uwsgi scgi; do
    echo "  ${t}_temp_path $d/tmp/${t#client_};"
  done
}
