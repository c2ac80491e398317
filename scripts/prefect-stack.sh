#!/usr/bin/env bash
# Local Prefect stack for corpusflow: server + `local` process work pool + deployments + worker,
# all on 127.0.0.1, stopped by PID (worker first, then server).
#
#   scripts/prefect-stack.sh start    server, work pool, `prefect deploy --all`, worker
#   scripts/prefect-stack.sh deploy   re-run `prefect deploy --all` against the running server
#   scripts/prefect-stack.sh stop     stop the worker, then the server (SIGTERM, then SIGKILL)
#   scripts/prefect-stack.sh status   which of the two are running, and the API URL (exit 0)
#   scripts/prefect-stack.sh running  exit 0 if server and worker both run, 1 if not (quiet)
#   scripts/prefect-stack.sh env      print `export` lines to point a shell at the server
#                                     (only needed for PREFECT_PORT other than prefect.toml's 4200)
#
# Settings (environment):
#   PREFECT_PORT            API/UI port on 127.0.0.1                    (default 4200)
#   CORPUSFLOW_PREFECT_DIR  PREFECT_HOME, PID files and logs            (default data/prefect)
#   CORPUSFLOW_BIN          directory holding `prefect` and `python`    (default .venv/bin)
#   PREFECT_STACK_TIMEOUT   seconds to wait for the server to be healthy (default 90)
#   PREFECT_WORKER_QUERY_SECONDS  worker poll interval                  (default 2)
set -euo pipefail
set -m # background jobs get their own process group and keep default SIGTERM handling

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PORT="${PREFECT_PORT:-4200}"
STATE="${CORPUSFLOW_PREFECT_DIR:-$ROOT/data/prefect}"
mkdir -p "$STATE"
STATE="$(cd "$STATE" && pwd)"
BIN="${CORPUSFLOW_BIN:-$ROOT/.venv/bin}"
if [[ ! -x "$BIN/prefect" ]]; then
  BIN="$(dirname "$(command -v prefect)")"
fi
TIMEOUT="${PREFECT_STACK_TIMEOUT:-90}"

SERVER_PID="$STATE/server.pid"
WORKER_PID="$STATE/worker.pid"
SERVER_LOG="$STATE/server.log"
WORKER_LOG="$STATE/worker.log"

# Offline-first (docs/architecture.md, decision 4) and everything pointed at this server only.
export PREFECT_HOME="$STATE/home"
export PREFECT_API_URL="http://127.0.0.1:$PORT/api"
export PREFECT_SERVER_API_HOST=127.0.0.1
export PREFECT_SERVER_API_PORT="$PORT"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT=false
export DO_NOT_TRACK=1
export PREFECT_WORKER_QUERY_SECONDS="${PREFECT_WORKER_QUERY_SECONDS:-2}"
export PREFECT_RUNNER_POLL_FREQUENCY="${PREFECT_RUNNER_POLL_FREQUENCY:-2}"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
export TRANSFORMERS_OFFLINE="${TRANSFORMERS_OFFLINE:-1}"
export HF_HUB_DISABLE_TELEMETRY=1
export TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}"
export DVC_NO_ANALYTICS=1
export COMET_ERROR_TRACKING_ENABLE=false
mkdir -p "$PREFECT_HOME"

log() { printf 'prefect-stack: %s\n' "$*" >&2; }

alive() { # alive PIDFILE -> 0 if the process in it runs
  [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

healthy() {
  "$BIN/python" - "$PREFECT_API_URL/health" <<'EOF' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
EOF
}

stop_one() { # stop_one NAME PIDFILE: SIGTERM its process group, wait, then SIGKILL
  local name="$1" file="$2" pid i
  if ! alive "$file"; then
    rm -f "$file"
    return 0
  fi
  pid="$(cat "$file")"
  log "stopping $name (pid $pid)"
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do # up to 20 s
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name did not stop on SIGTERM: SIGKILL"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

start_server() {
  if alive "$SERVER_PID"; then
    log "server already running (pid $(cat "$SERVER_PID")) on $PREFECT_API_URL"
    return 0
  fi
  if healthy; then
    log "error: something else already answers on $PREFECT_API_URL; set PREFECT_PORT"
    exit 1
  fi
  local started=$SECONDS i
  "$BIN/prefect" server start --host 127.0.0.1 --port "$PORT" \
    </dev/null >"$SERVER_LOG" 2>&1 &
  echo $! >"$SERVER_PID"
  for ((i = 0; i < TIMEOUT * 4; i++)); do
    if healthy; then
      log "server healthy after $((SECONDS - started)) s: ${PREFECT_API_URL%/api}"
      return 0
    fi
    if ! alive "$SERVER_PID"; then
      log "error: server exited; last lines of $SERVER_LOG:"
      tail -n 20 "$SERVER_LOG" >&2
      rm -f "$SERVER_PID"
      exit 1
    fi
    sleep 0.25
  done
  log "error: server not healthy after $TIMEOUT s (log: $SERVER_LOG)"
  stop_one server "$SERVER_PID"
  exit 1
}

deploy() {
  "$BIN/prefect" work-pool create local --type process --overwrite >/dev/null
  "$BIN/prefect" --no-prompt deploy --all
}

start_worker() {
  if alive "$WORKER_PID"; then
    log "worker already running (pid $(cat "$WORKER_PID"))"
    return 0
  fi
  "$BIN/prefect" worker start --pool local --type process --name "corpusflow-local" \
    </dev/null >"$WORKER_LOG" 2>&1 &
  echo $! >"$WORKER_PID"
  log "worker started (pid $!, log $WORKER_LOG)"
}

status() { # always exit 0: "stopped" is an answer, not an error
  if alive "$SERVER_PID"; then
    echo "server: running (pid $(cat "$SERVER_PID")) ${PREFECT_API_URL%/api}"
  else
    echo "server: stopped"
  fi
  if alive "$WORKER_PID"; then
    echo "worker: running (pid $(cat "$WORKER_PID")) pool local"
  else
    echo "worker: stopped"
  fi
  if ! alive "$SERVER_PID" && ! alive "$WORKER_PID"; then
    echo "the stack is stopped: make prefect-up (or scripts/prefect-stack.sh start) starts it"
  fi
}

case "${1:-}" in
  start)
    start_server
    if ! "$BIN/prefect" work-pool create local --type process --overwrite >/dev/null; then
      log "error: cannot create the work pool; stopping the server"
      stop_one server "$SERVER_PID"
      exit 1
    fi
    start_worker # starts while the deployments are registered
    if ! "$BIN/prefect" --no-prompt deploy --all; then
      log "error: deploy failed; stopping the worker and the server"
      stop_one worker "$WORKER_PID"
      stop_one server "$SERVER_PID"
      exit 1
    fi
    ;;
  deploy) deploy ;;
  stop)
    stop_one worker "$WORKER_PID"
    stop_one server "$SERVER_PID"
    ;;
  status) status ;;
  running) alive "$SERVER_PID" && alive "$WORKER_PID" ;;
  env)
    echo "export PREFECT_HOME='$PREFECT_HOME'"
    echo "export PREFECT_API_URL='$PREFECT_API_URL'"
    echo "export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1"
    ;;
  *)
    echo "usage: $0 start|stop|status|running|deploy|env" >&2
    exit 2
    ;;
esac
