#!/usr/bin/env bash
# The end-to-end stage of `make test`: the one suite in tests/e2e/, run against each target.
#   local       python -m aimaas_local serve (folder registry, SQLite keys and ledger)
#   localstack  LocalStack API Gateway (API keys, usage plans, HTTP_PROXY) -> the same app, with
#               its models in LocalStack S3 (SSE-KMS) and its keys/ledger in moto_server DynamoDB
# Everything started here is stopped on exit, also on failure or Ctrl-C; on failure the ends of
# the server and emulator logs (build/logs/) are printed.
#
# Usage: scripts/e2e.sh [local] [localstack]      (default: both; E2E_TARGETS does the same)
# Extra pytest arguments: E2E_PYTEST_ARGS="-k usage -x"
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BIN="$ROOT/${VENV:-.venv}/bin"
REGISTRY="$(realpath "${AIMAAS_REGISTRY:-$ROOT/build/registry}")"
WORK="$ROOT/build/e2e"
LOGS="$ROOT/build/logs"
read -r -a TARGETS <<<"${*:-${E2E_TARGETS:-local localstack}}"
read -r -a PYTEST_ARGS <<<"${E2E_PYTEST_ARGS:-}"
SERVER_PID=""
# The suite's own emulators, apart from any started by hand with `make localstack-start`.
export EMULATORS_STATE="$WORK/emulators"

log() { printf '[e2e] %s\n' "$*" >&2; }

free_port() {
	"$BIN/python" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

stop_server() {
	if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
		kill -TERM -- "-$SERVER_PID" 2>/dev/null || kill -TERM "$SERVER_PID" 2>/dev/null || true
		for _ in $(seq 1 50); do
			kill -0 "$SERVER_PID" 2>/dev/null || break
			sleep 0.2
		done
		kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
	fi
	SERVER_PID=""
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_server
	scripts/localstack.sh stop all || true
	if ((rc != 0)); then
		log "FAILED (exit $rc); log tails follow"
		for file in "$LOGS"/server-*.log; do
			[[ -f "$file" ]] || continue
			echo "===== $file (last 60 lines) ====="
			tail -n 60 "$file"
		done
		scripts/localstack.sh logs || true
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Start a server in its own process group (so stopping it stops its workers too) and wait for
# /health. Usage: start_server NAME PORT COMMAND...
start_server() {
	local name="$1" port="$2"
	shift 2
	local logfile="$LOGS/server-$name.log" start=$SECONDS
	setsid "$@" >"$logfile" 2>&1 </dev/null &
	SERVER_PID=$!
	until curl -sf --noproxy '*' -o /dev/null "http://127.0.0.1:$port/health"; do
		if ! kill -0 "$SERVER_PID" 2>/dev/null; then
			tail -n 40 "$logfile" >&2
			log "server $name exited during start-up"
			return 1
		fi
		if ((SECONDS - start > 120)); then
			log "server $name did not answer /health within 120 s"
			return 1
		fi
		sleep 0.2
	done
	log "server $name up on 127.0.0.1:$port in $((SECONDS - start)) s (log $logfile)"
}

run_suite() {
	local name="$1" start=$SECONDS
	log "running tests/e2e against $name ($AIMAAS_E2E_BASE_URL)"
	"$BIN/pytest" tests/e2e -p no:cacheprovider --timeout=600 "${PYTEST_ARGS[@]}"
	log "$name: e2e passed in $((SECONDS - start)) s"
}

target_local() {
	local port db="$WORK/local/aimaas.db"
	port="$(free_port)"
	mkdir -p "$WORK/local"
	AIMAAS_SQLITE_PATH="$db" AIMAAS_REGISTRY="$REGISTRY" \
		start_server local "$port" "$BIN/python" -m aimaas_local serve \
		--registry "$REGISTRY" --db "$db" --host 127.0.0.1 --port "$port"
	AIMAAS_E2E_TARGET=local \
		AIMAAS_E2E_BASE_URL="http://127.0.0.1:$port" \
		AIMAAS_E2E_ADMIN="--store sqlite --db $db" \
		AIMAAS_E2E_REGISTRY="$REGISTRY" \
		run_suite local
	stop_server
}

target_localstack() {
	local port
	# A free port unless one is asked for: a LocalStack started by hand may hold 4566.
	LOCALSTACK_PORT="${LOCALSTACK_PORT:-$(free_port)}" scripts/localstack.sh start all
	# shellcheck source=/dev/null
	source "$EMULATORS_STATE/env"
	port="$(free_port)"
	"$BIN/python" scripts/deploy_localstack.py --upstream-url "http://127.0.0.1:$port" \
		--registry "$REGISTRY" --env-out "$WORK/localstack.env"
	# shellcheck source=/dev/null
	source "$WORK/localstack.env"
	# The same app, wired to the cloud adapters by its environment (Settings.from_env).
	start_server localstack "$port" "$BIN/python" -m uvicorn --factory aimaas.api:create_app \
		--host 127.0.0.1 --port "$port" --no-access-log
	run_suite localstack
	stop_server
	scripts/localstack.sh stop all
}

main() {
	# Whatever a previous run killed hard left behind goes first (stop is by recorded PID).
	scripts/localstack.sh stop all >/dev/null 2>&1 || true
	rm -rf "$WORK"
	mkdir -p "$WORK" "$LOGS"
	rm -f "$LOGS"/server-*.log "$LOGS"/localstack.log "$LOGS"/moto_server.log
	compgen -G "$REGISTRY/*/*/manifest.json" >/dev/null || { log "no models in $REGISTRY (make models)"; exit 1; }
	local target rc
	local -a failed=()
	for target in "${TARGETS[@]}"; do
		case "$target" in local | localstack) ;; *)
			log "unknown target '$target' (local, localstack)"
			exit 2
			;;
		esac
		# A subshell per target, so one target's environment never leaks into the next; it
		# stops its own server, and the EXIT trap above stops the emulators. Every target runs
		# even when an earlier one failed, so CI shows all failures at once.
		set +e
		(
			set -e
			trap stop_server EXIT
			"target_$target"
		)
		rc=$?
		set -e
		((rc == 0)) || failed+=("$target")
	done
	if ((${#failed[@]})); then
		log "e2e failed on: ${failed[*]}"
		exit 1
	fi
	log "e2e passed on: ${TARGETS[*]}"
}

main
