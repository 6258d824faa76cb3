#!/usr/bin/env bash
# Start and stop the AWS emulators of the local cloud path, with no Docker:
#   - LocalStack community (S3, KMS, IAM, SSM, CloudFormation, API Gateway with API keys),
#     run on the host from its own virtualenv (.venv-localstack, Python >= 3.12);
#   - moto_server (from .venv) for DynamoDB, which LocalStack cannot run without Docker.
#
# Usage: scripts/localstack.sh install|start|stop|status|logs|env [localstack|moto|all]
#   install  create .venv-localstack from requirements-localstack.txt (skipped when up to date)
#   start    start the service(s), wait until they answer, write PID files and build/emulators/env
#   stop     stop the service(s) by PID (TERM, then KILL after a grace period); always exits 0
#   status   say what is running
#   logs     print the end of the logs (CI calls this when a test fails)
#   env      print the export lines for AWS_ENDPOINT_URL* (also written to $EMULATORS_STATE/env)
#
# Settings (environment): LOCALSTACK_PORT (4566), MOTO_PORT (a free port), LOCALSTACK_PYTHON
# (an interpreter >= 3.12), LOCALSTACK_START_TIMEOUT (90 s), EMULATORS_STATE (the folder for
# PID files and the env file; build/emulators).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${EMULATORS_STATE:-$ROOT/build/emulators}"
LOGS="$ROOT/build/logs"
LS_VENV="$ROOT/.venv-localstack"
LS_REQ="$ROOT/requirements-localstack.txt"
DEV_VENV="$ROOT/${VENV:-.venv}"
LOCALSTACK_PORT="${LOCALSTACK_PORT:-4566}"
START_TIMEOUT="${LOCALSTACK_START_TIMEOUT:-90}"
# Every outbound call LocalStack would make (analytics, license, cert download) goes to a port
# nothing listens on, so it fails at once instead of waiting on a network that is not there.
DEAD="http://127.0.0.1:9"

log() { printf '[localstack.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- helpers --------------------------------------------------------------------------------

find_python() {
	# An interpreter >= 3.12: explicit, then on PATH, then any pyenv version (its shims refuse
	# versions that are installed but not selected, so look in the versions folder directly).
	local candidate
	local -a candidates=()
	[[ -n "${LOCALSTACK_PYTHON:-}" ]] && candidates+=("$LOCALSTACK_PYTHON")
	candidates+=(python3.13 python3.12 python3.14 python3)
	local pyenv_root
	pyenv_root="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"
	# Newest first (the glob sorts 3.12 before 3.13).
	while IFS= read -r candidate; do
		[[ -x "$candidate" ]] && candidates+=("$candidate")
	done < <(ls -d "$pyenv_root"/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -rV)
	for candidate in "${candidates[@]}"; do
		if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
			"$candidate" -c 'import sys; print(sys.executable)'
			return 0
		fi
	done
	die "LocalStack needs Python >= 3.12 and none was found (set LOCALSTACK_PYTHON)"
}

pid_alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }

read_pid() { [[ -f "$STATE/$1.pid" ]] && cat "$STATE/$1.pid" || true; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
	"$DEV_VENV/bin/python" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

now() { date +%s.%N; }

elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

stop_pid() {
	# TERM the process group the service leads (started with setsid), then KILL what is left
	# after a short grace: neither emulator keeps state worth a clean shutdown.
	local name="$1" pid
	pid="$(read_pid "$name")"
	if pid_alive "$pid"; then
		kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 25); do
			pid_alive "$pid" || break
			sleep 0.2
		done
		if pid_alive "$pid"; then
			log "$name ($pid) still running 5 s after TERM; killing it"
			kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
		fi
		log "$name stopped (pid $pid)"
	fi
	rm -f "$STATE/$name.pid"
}

write_env() {
	# boto3 reads service-specific endpoints (AWS_ENDPOINT_URL_<SERVICE>) before the general one:
	# DynamoDB goes to moto_server, everything else to LocalStack.
	local moto_port ls_port
	moto_port="$(cat "$STATE/moto.port" 2>/dev/null || true)"
	ls_port="$(cat "$STATE/localstack.port" 2>/dev/null || echo "$LOCALSTACK_PORT")"
	{
		echo "export AWS_ACCESS_KEY_ID=test"
		echo "export AWS_SECRET_ACCESS_KEY=test"
		echo "export AWS_DEFAULT_REGION=us-east-1"
		echo "export AWS_REGION=us-east-1"
		echo "export AWS_EC2_METADATA_DISABLED=true"
		if pid_alive "$(read_pid localstack)"; then
			echo "export LOCALSTACK_URL=http://127.0.0.1:$ls_port"
			echo "export AWS_ENDPOINT_URL=http://127.0.0.1:$ls_port"
			echo "export AWS_ENDPOINT_URL_S3=http://127.0.0.1:$ls_port"
			echo "export AWS_S3_FORCE_PATH_STYLE=1"
		fi
		if [[ -n "$moto_port" ]] && pid_alive "$(read_pid moto)"; then
			echo "export MOTO_URL=http://127.0.0.1:$moto_port"
			echo "export AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:$moto_port"
		fi
	} >"$STATE/env"
}

# --- commands -------------------------------------------------------------------------------

install_localstack() {
	local stamp="$LS_VENV/.installed"
	if [[ -f "$stamp" && "$stamp" -nt "$LS_REQ" ]]; then
		return 0
	fi
	local python
	python="$(find_python)"
	log "creating $LS_VENV with $python"
	[[ -x "$LS_VENV/bin/python" ]] || "$python" -m venv "$LS_VENV"
	"$LS_VENV/bin/pip" install -q --disable-pip-version-check -r "$LS_REQ"
	touch "$stamp"
}

start_localstack() {
	if pid_alive "$(read_pid localstack)"; then
		log "LocalStack already running (pid $(read_pid localstack))"
		return 0
	fi
	[[ -x "$LS_VENV/bin/python" ]] || install_localstack
	port_busy "$LOCALSTACK_PORT" && die "port $LOCALSTACK_PORT is in use (set LOCALSTACK_PORT)"
	local fsroot t0 logfile="$LOGS/localstack.log"
	# A fresh state folder per run: LocalStack keeps no state across runs, which is the clean
	# teardown (a CloudFormation update that changes routes would otherwise drop the stage).
	fsroot="$(mktemp -d "${TMPDIR:-/tmp}/aimaas-localstack.XXXXXX")"
	echo "$fsroot" >"$STATE/localstack.fsroot"
	echo "$LOCALSTACK_PORT" >"$STATE/localstack.port"
	t0="$(now)"
	# GATEWAY_SERVER=hypercorn: the default server ignores the host part and binds 0.0.0.0.
	# Credentials must be set: without them CreateRestApi fails with a 500.
	env -u AWS_ENDPOINT_URL -u AWS_PROFILE \
		GATEWAY_LISTEN="127.0.0.1:$LOCALSTACK_PORT" \
		GATEWAY_SERVER=hypercorn \
		LOCALSTACK_HOST="localhost.localstack.cloud:$LOCALSTACK_PORT" \
		DNS_ADDRESS=0 \
		DISABLE_EVENTS=1 \
		SKIP_SSL_CERT_DOWNLOAD=1 \
		FILESYSTEM_ROOT="$fsroot" \
		AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
		AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true \
		API_ENDPOINT="$DEAD" ANALYTICS_API="$DEAD" \
		OUTBOUND_HTTP_PROXY="$DEAD" OUTBOUND_HTTPS_PROXY="$DEAD" \
		HTTP_PROXY="$DEAD" HTTPS_PROXY="$DEAD" http_proxy="$DEAD" https_proxy="$DEAD" \
		NO_PROXY="127.0.0.1,localhost,.localhost.localstack.cloud" \
		no_proxy="127.0.0.1,localhost,.localhost.localstack.cloud" \
		setsid "$LS_VENV/bin/python" -m localstack.runtime.main >"$logfile" 2>&1 </dev/null &
	local pid=$!
	echo "$pid" >"$STATE/localstack.pid"
	local url="http://127.0.0.1:$LOCALSTACK_PORT/_localstack/health"
	local deadline=$((SECONDS + START_TIMEOUT))
	until curl -sf --noproxy '*' -o /dev/null "$url"; do
		if ! pid_alive "$pid"; then
			tail -n 40 "$logfile" >&2 || true
			rm -f "$STATE/localstack.pid"
			die "LocalStack exited during start-up (log: $logfile)"
		fi
		if ((SECONDS > deadline)); then
			tail -n 40 "$logfile" >&2 || true
			stop_pid localstack
			die "LocalStack did not answer $url within ${START_TIMEOUT}s"
		fi
		sleep 0.2
	done
	log "LocalStack ready on 127.0.0.1:$LOCALSTACK_PORT in $(elapsed "$t0") s (pid $pid, log $logfile)"
}

stop_localstack() {
	stop_pid localstack
	if [[ -f "$STATE/localstack.fsroot" ]]; then
		rm -rf "$(cat "$STATE/localstack.fsroot")"
		rm -f "$STATE/localstack.fsroot"
	fi
	rm -f "$STATE/localstack.port"
}

start_moto() {
	if pid_alive "$(read_pid moto)"; then
		log "moto_server already running (pid $(read_pid moto))"
		return 0
	fi
	[[ -x "$DEV_VENV/bin/moto_server" ]] || die "$DEV_VENV/bin/moto_server missing (run make setup)"
	local port="${MOTO_PORT:-$(free_port)}" t0 logfile="$LOGS/moto_server.log"
	port_busy "$port" && die "port $port is in use (set MOTO_PORT)"
	t0="$(now)"
	env AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1 \
		setsid "$DEV_VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$logfile" 2>&1 </dev/null &
	local pid=$!
	echo "$pid" >"$STATE/moto.pid"
	echo "$port" >"$STATE/moto.port"
	local deadline=$((SECONDS + 30))
	until curl -sf --noproxy '*' -o /dev/null "http://127.0.0.1:$port/moto-api/"; do
		if ! pid_alive "$pid" || ((SECONDS > deadline)); then
			tail -n 40 "$logfile" >&2 || true
			stop_pid moto
			die "moto_server did not start on 127.0.0.1:$port (log: $logfile)"
		fi
		sleep 0.1
	done
	log "moto_server ready on 127.0.0.1:$port in $(elapsed "$t0") s (pid $pid, log $logfile)"
}

stop_moto() {
	stop_pid moto
	rm -f "$STATE/moto.port"
}

status() {
	local name pid
	for name in localstack moto; do
		pid="$(read_pid "$name")"
		if pid_alive "$pid"; then echo "$name: running (pid $pid)"; else echo "$name: stopped"; fi
	done
}

show_logs() {
	local file
	for file in "$LOGS"/localstack.log "$LOGS"/moto_server.log; do
		[[ -f "$file" ]] || continue
		echo "===== $file (last 80 lines) ====="
		tail -n 80 "$file"
	done
}

main() {
	local command="${1:-}" which="${2:-all}"
	mkdir -p "$STATE" "$LOGS"
	case "$which" in localstack | moto | all) ;; *) die "unknown service '$which'" ;; esac
	case "$command" in
	install) install_localstack ;;
	start)
		[[ "$which" == moto ]] || { install_localstack && start_localstack; }
		[[ "$which" == localstack ]] || start_moto
		write_env
		;;
	stop)
		[[ "$which" == localstack ]] || stop_moto
		[[ "$which" == moto ]] || stop_localstack
		write_env
		;;
	status) status ;;
	logs) show_logs ;;
	env) write_env && cat "$STATE/env" ;;
	*)
		sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
		exit 2
		;;
	esac
}

main "$@"
