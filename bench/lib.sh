# Shell helpers the bench scripts share (sourced, not run).

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
