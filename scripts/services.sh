#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer where JOBWIRE_DATABASE_URL / JOBWIRE_REDIS_URL point.
# Remote servers are only checked; on this machine, a server that is not listening is started, and
# installed from Debian's packages first when it is missing. Safe to run any number of times.
set -euo pipefail

DB_URL=${JOBWIRE_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/jobwire}
REDIS_URL=${JOBWIRE_REDIS_URL:-redis://127.0.0.1:6379/0}

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

say() { echo "services: $*" >&2; }

# host and port of a URL, defaults filled in
host_of() { python3 -c 'import sys, urllib.parse as u; print(u.urlsplit(sys.argv[1]).hostname or "127.0.0.1")' "$1"; }
port_of() { python3 -c 'import sys, urllib.parse as u; print(u.urlsplit(sys.argv[1]).port or int(sys.argv[2]))' "$1" "$2"; }

listening() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_listening() {
  for _ in $(seq 1 100); do
    if listening "$1" "$2"; then return 0; fi
    sleep 0.2
  done
  return 1
}

is_local() { case "$1" in 127.*|localhost|::1) return 0 ;; *) return 1 ;; esac; }

apt_install() {
  say "installing $* from Debian's packages"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_redis() {
  local host port
  host=$(host_of "$REDIS_URL"); port=$(port_of "$REDIS_URL" 6379)
  if listening "$host" "$port"; then return 0; fi
  if ! is_local "$host"; then say "Redis at $host:$port does not answer"; return 1; fi
  command -v redis-server >/dev/null || apt_install redis-server
  say "starting redis-server on $host:$port"
  # a job queue whose truth lives in PostgreSQL: this local Redis keeps nothing on disk
  redis-server --daemonize yes --bind "$host" --port "$port" --save "" --appendonly no >/dev/null
  wait_listening "$host" "$port" || { say "redis-server did not start"; return 1; }
}

ensure_postgres() {
  local host port installed=0
  host=$(host_of "$DB_URL"); port=$(port_of "$DB_URL" 5432)
  if ! listening "$host" "$port"; then
    if ! is_local "$host"; then say "PostgreSQL at $host:$port does not answer"; return 1; fi
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
      apt_install postgresql
      installed=1
    fi
    local version
    version=$(ls /etc/postgresql | sort -V | tail -1)
    say "starting PostgreSQL $version (cluster main)"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_listening "$host" "$port" || { say "PostgreSQL did not start on $host:$port"; return 1; }
    if [ "$installed" = 1 ]; then
      # A fresh Debian cluster asks for a password on TCP; a local development server trusts
      # connections from this machine, as the default JOBWIRE_DATABASE_URL expects.
      local hba
      hba=$(ls /etc/postgresql/"$version"/main/pg_hba.conf)
      say "allowing trusted local TCP connections in $hba"
      $SUDO sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
      $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    fi
  fi
}

ensure_postgres
ensure_redis
