#!/usr/bin/env bash
# Checks what the container runtime stage promises, without a container engine: the
# release binary starts from an empty working directory, as a non-root user (65532, like
# distroless :nonroot), with the root filesystem read-only except its data directory,
# serves discovery and JWKS, and stops on SIGTERM. Needs root (for unshare/mount/setpriv).
#
#   scripts/test-runtime.sh [path/to/authserver]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/gatehouse/target}"
BIN=${1:-$CARGO_TARGET_DIR/release/authserver}
[[ -x "$BIN" ]] || { echo "test-runtime: build first: cargo build --release -p authserver" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "test-runtime: needs root (unshare, mount, setpriv)" >&2; exit 1; }

work=$(mktemp -d)
chmod 755 "$work"
install -m 0755 "$BIN" "$work/authserver"          # readable by the unprivileged user
mkdir -m 0700 "$work/data" "$work/empty"
chown 65532:65532 "$work/data" "$work/empty"
PORT=${PORT:-18191}
server=
# A failed check must not leave the server running (it would hold the port).
cleanup() {
  if [[ -n "$server" ]]; then kill "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# In a private mount namespace: the whole tree read-only, the data dir a writable tmpfs.
# A clean environment, as in the container: CI exports DATABASE_URL (and REDIS_URL) for
# the tests, and `--dev` would use that database instead of the SQLite file.
unshare --mount --propagation private bash -c "
  set -euo pipefail
  mount -o remount,bind,ro /
  mount -t tmpfs -o size=64m,uid=65532,gid=65532,mode=0700 tmpfs '$work/data'
  cd '$work/empty'
  if touch /probe-ro 2>/dev/null; then echo 'test-runtime: root filesystem is writable' >&2; exit 1; fi
  exec env -i PATH=\"\$PATH\" setpriv --reuid=65532 --regid=65532 --clear-groups --inh-caps=-all \
    '$work/authserver' serve --dev --data-dir '$work/data' --listen 127.0.0.1:$PORT
" >"$work.log" 2>&1 &
server=$!
ok=
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; then ok=1; break; fi
  kill -0 "$server" 2>/dev/null || break
  sleep 0.1
done
if [[ -z "$ok" ]]; then
  echo "test-runtime: server did not become ready:" >&2
  cat "$work.log" >&2
  exit 1
fi
keys=$(curl -fsS -H "Host: localhost:$PORT" "http://127.0.0.1:$PORT/jwks" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["keys"]))')
[[ "$keys" == 3 ]] || { echo "test-runtime: expected 3 keys, got $keys" >&2; exit 1; }
# unshare and bash exec into the server, so $server is the authserver process itself.
uid=$(ps -o uid= -p "$server" | tr -d ' ')
[[ "$uid" == 65532 ]] || { echo "test-runtime: server runs as uid $uid, not 65532" >&2; exit 1; }
kill -TERM "$server"
wait "$server" || { echo "test-runtime: server exited non-zero on SIGTERM" >&2; cat "$work.log" >&2; exit 1; }
rm -f "$work.log"
echo "test-runtime: ok (non-root uid ${uid:-65532}, read-only root, empty cwd, 3 keys, clean SIGTERM)"
