#!/usr/bin/env bash
# Benchmarks Switchboard against the Node socket.io 4.8 reference server
# (compat-tests/bench/node-server.js) on this machine, in one run.
#
#   compat-tests/bench/run-bench.sh            full run (~17 min): 3 rounds of every scenario
#   compat-tests/bench/run-bench.sh --quick    ~4 min on a 2-core machine, smaller and shorter
#   compat-tests/bench/run-bench.sh --smoke    ~20-30 s, tiny: checks that the tooling works
#
# Options: --rounds N (default 3), --only idle,echo,fanout-rate,fanout-max,rooms,polling,
#          --idle-max (full/quick: also one run per server with as many idle connections as the
#          fd limit allows), --no-pin, --out DIR (default .tmp/bench/<timestamp>).
# Environment: GOTAGS (build tags for the switchboard binary, e.g. GOTAGS=ownengine; default none),
#          LOAD_CPUS (CPUs of the load side, comma-separated, default 1), LOAD_PROCS (load
#          processes, default 1; process k runs on the k-th of LOAD_CPUS), BENCH_PORT (29170).
#
# Each scenario runs against Switchboard and Node alternately (A B A B ...), each run on a fresh
# server process. With taskset and at least 2 CPUs, the server is pinned to CPU 0 and the load
# generator to CPU 1 (LOAD_CPUS; so Switchboard gets GOMAXPROCS=1 and Node its one core). Both get
# the same settings: RATE_LIMIT=0, MAX_CONNECTIONS=0, MAX_CONNECTIONS_PER_USER=0, per-IP limits off, defaults
# otherwise (connection state recovery on, 2m). Results: one JSON line per run in
# results.jsonl, then a table of medians with the ratio Switchboard/Node per metric.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$(pwd)
CMDLINE="compat-tests/bench/run-bench.sh $*"

MODE=full
ROUNDS=3
ONLY=""
PIN=1
IDLE_MAX=0
OUT=""
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) MODE=quick ;;
	--smoke) MODE=smoke ;;
	--full) MODE=full ;;
	--rounds) ROUNDS="$2"; shift ;;
	--only) ONLY="$2"; shift ;;
	--no-pin) PIN=0 ;;
	--idle-max) IDLE_MAX=1 ;;
	--out) OUT="$2"; shift ;;
	-h | --help) sed -n '2,23p' "$0"; exit 0 ;;
	*) echo "run-bench: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
if [ "$MODE" = smoke ] && [ "$ROUNDS" = 3 ]; then ROUNDS=1; fi

# File descriptors: as many as the hard limit allows (each connection is one fd on each side).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FD_LIMIT=$(ulimit -n)

OUT=${OUT:-.tmp/bench/$(date -u +%Y%m%dT%H%M%SZ)-$MODE}
mkdir -p "$OUT"
BIN=.tmp/bench/bin
mkdir -p "$BIN"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

GOTAGS=${GOTAGS:-}
log "building into $BIN${GOTAGS:+ (switchboard with -tags $GOTAGS)}"
go build -tags "$GOTAGS" -o "$BIN/switchboard" ./cmd/switchboard
go build -o "$BIN/switchboard-load" ./cmd/switchboard-load
if ! node -e "require.resolve('socket.io')" >/dev/null 2>&1 && [ ! -d node_modules/socket.io ]; then
	log "node_modules missing: running npm ci"
	npm ci --no-audit --no-fund >/dev/null
fi

NCPU=$(nproc)
SERVER_PIN=()
LOAD_PIN=()
# The load side: LOAD_PROCS processes on LOAD_CPUS (process k on the k-th CPU of the list, wrapping).
# The server's CPU is read from its own /proc entry either way, so its cost per delivery is its own.
LOAD_CPUS=${LOAD_CPUS:-1}
LOAD_PROCS=${LOAD_PROCS:-1}
LOAD_ARGS=()
if [ "$LOAD_PROCS" -gt 1 ]; then
	LOAD_ARGS=(--procs "$LOAD_PROCS")
fi
if [ "$PIN" = 1 ] && command -v taskset >/dev/null 2>&1 && [ "$NCPU" -ge 2 ]; then
	case ",$LOAD_CPUS," in
	*,0,*) echo "run-bench: LOAD_CPUS must not include CPU 0 (the server's)" >&2; exit 2 ;;
	esac
	SERVER_PIN=(taskset -c 0)
	LOAD_PIN=(taskset -c "${LOAD_CPUS%%,*}")
	if [ "$LOAD_PROCS" -gt 1 ]; then
		LOAD_ARGS+=(--proc-cpus "$LOAD_CPUS")
	fi
	PINNING="server on CPU 0, load generator ($LOAD_PROCS process(es)) on CPU $LOAD_CPUS (taskset)"
else
	PINNING="none (taskset missing, --no-pin, or fewer than 2 CPUs); $LOAD_PROCS load process(es)"
fi

SECRET="bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
# Below the ephemeral port range (32768-60999 here), so that no outgoing connection holds it.
PORT=${BENCH_PORT:-29170}
URL="http://127.0.0.1:$PORT"

# Scenario parameters per mode: name -> load generator arguments.
declare -A ARGS
case "$MODE" in
full)
	ARGS[idle]="idle --clients 10000 --settle 5s --hold 10s"
	ARGS[echo]="echo --clients 1000 --interval 200ms --duration 20s"
	ARGS[fanout-rate]="fanout --clients 5000 --users 50 --rate 2 --duration 20s"
	ARGS[fanout-max]="fanout --clients 5000 --users 50 --rate 0 --duration 20s"
	ARGS[rooms]="rooms --clients 10000 --room-size 10 --interval 5s --duration 30s"
	ARGS[polling]="polling --clients 500 --interval 1s --duration 20s"
	IDLE_MAX_CLIENTS=$((FD_LIMIT - 200))
	;;
quick)
	ARGS[idle]="idle --clients 3000 --settle 1s --hold 1s"
	ARGS[echo]="echo --clients 300 --interval 100ms --duration 3s"
	ARGS[fanout-rate]="fanout --clients 2000 --users 50 --rate 5 --duration 3s"
	ARGS[fanout-max]="fanout --clients 2000 --users 50 --rate 0 --duration 3s"
	ARGS[rooms]="rooms --clients 2000 --room-size 10 --interval 2s --duration 3s"
	ARGS[polling]="polling --clients 200 --interval 1s --duration 3s"
	IDLE_MAX_CLIENTS=$((FD_LIMIT - 200))
	;;
smoke)
	ARGS[idle]="idle --clients 100 --settle 200ms --hold 300ms"
	ARGS[echo]="echo --clients 20 --interval 100ms --duration 1s"
	ARGS[fanout-rate]="fanout --clients 50 --users 10 --rate 10 --duration 1s"
	ARGS[fanout-max]="fanout --clients 50 --users 10 --rate 0 --duration 1s"
	ARGS[rooms]="rooms --clients 100 --room-size 10 --interval 500ms --duration 1s"
	ARGS[polling]="polling --clients 10 --interval 500ms --duration 1s"
	IDLE_MAX_CLIENTS=0
	;;
esac
SCENARIOS=(idle echo fanout-rate fanout-max rooms polling)
if [ -n "$ONLY" ]; then IFS=, read -r -a SCENARIOS <<<"$ONLY"; fi

SERVER_PID=""
# Same settings for both servers. env and taskset exec the server, so $! is the server's pid.
SERVER_ENV=(env JWT_SECRET="$SECRET" ADDR="127.0.0.1:$PORT" RATE_LIMIT=0 MAX_CONNECTIONS=0 MAX_CONNECTIONS_PER_USER=0
	MAX_CONNECTIONS_PER_IP=0 HANDSHAKE_RATE_PER_IP=0 MAX_PENDING_SESSIONS=0 LOG_LEVEL=warn DRAIN_TIMEOUT=1s)
start_server() { # kind logfile
	local kind=$1 logf=$2
	if curl -fsS -o /dev/null "$URL/healthz" 2>/dev/null; then
		log "something already serves $URL: stop it (or set BENCH_PORT)"
		return 1
	fi
	case "$kind" in
	switchboard) "${SERVER_ENV[@]}" "${SERVER_PIN[@]}" "$BIN/switchboard" >"$logf" 2>&1 & ;;
	node) "${SERVER_ENV[@]}" "${SERVER_PIN[@]}" node compat-tests/bench/node-server.js >"$logf" 2>&1 & ;;
	esac
	SERVER_PID=$!
	for _ in $(seq 1 100); do
		if curl -fsS -o /dev/null "$URL/healthz" 2>/dev/null && kill -0 "$SERVER_PID" 2>/dev/null; then return 0; fi
		if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
		sleep 0.1
	done
	log "$kind did not come up; log:"
	cat "$logf" >&2
	return 1
}
stop_server() {
	[ -n "$SERVER_PID" ] || return 0
	kill -TERM "$SERVER_PID" 2>/dev/null || true
	for _ in $(seq 1 50); do
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$SERVER_PID" 2>/dev/null || true
	wait "$SERVER_PID" 2>/dev/null || true
	SERVER_PID=""
}
trap stop_server EXIT INT TERM

RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
: >"$OUT/commands.txt"
echo "# loadavg before each run (1/5/15 min) — other work on this machine shows here" >"$OUT/loadavg.txt"

run_one() { # kind scenario-name args...
	local kind=$1 name=$2
	shift 2
	local tag="$name-$kind-r$round"
	start_server "$kind" "$OUT/$tag.server.log"
	local cmd=("${LOAD_PIN[@]}" "$BIN/switchboard-load" "$@" "${LOAD_ARGS[@]}" --url "$URL" --server-pid "$SERVER_PID" --label "$kind")
	echo "JWT_SECRET=... ${cmd[*]}" >>"$OUT/commands.txt"
	echo "$tag $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/loadavg.txt"
	log "$tag: ${cmd[*]}"
	if JWT_SECRET="$SECRET" "${cmd[@]}" >"$OUT/$tag.json" 2>"$OUT/$tag.load.log"; then
		cat "$OUT/$tag.json" >>"$RESULTS"
		"$BIN/switchboard-load" report --lines "$OUT/$tag.json" >&2 || true
	else
		log "$tag failed; tail of its log:"
		tail -5 "$OUT/$tag.load.log" >&2
	fi
	stop_server
}

START=$(date +%s)
log "mode $MODE, $ROUNDS rounds, scenarios ${SCENARIOS[*]}; pinning: $PINNING; fd limit $FD_LIMIT; switchboard tags: ${GOTAGS:-none}; output $OUT"
for name in "${SCENARIOS[@]}"; do
	if [ -z "${ARGS[$name]:-}" ]; then
		log "unknown scenario $name"
		exit 2
	fi
	# shellcheck disable=SC2206
	args=(${ARGS[$name]})
	for round in $(seq 1 "$ROUNDS"); do
		run_one switchboard "$name" "${args[@]}"
		run_one node "$name" "${args[@]}"
	done
done
if [ "$IDLE_MAX" = 1 ] && [ "${IDLE_MAX_CLIENTS:-0}" -gt 0 ]; then
	round=max
	RESULTS="$OUT/idle-max.jsonl"
	: >"$RESULTS"
	for kind in switchboard node; do
		run_one "$kind" idle-max idle --clients "$IDLE_MAX_CLIENTS" --settle 5s --hold 5s --connect-timeout 240s
	done
fi
ELAPSED=$(($(date +%s) - START))

{
	echo
	echo "Switchboard vs Node socket.io 4.8 reference: medians of $ROUNDS rounds (mode $MODE, ${ELAPSED}s)"
	echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), kernel $(uname -r), $(go version | cut -d' ' -f3), node $(node --version)"
	echo "pinning: $PINNING; fd limit: $FD_LIMIT; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "switchboard build tags: ${GOTAGS:-none}"
	echo "command: $CMDLINE"
	echo
	"$BIN/switchboard-load" report "$OUT/results.jsonl"
	if [ "$IDLE_MAX" = 1 ] && [ "${IDLE_MAX_CLIENTS:-0}" -gt 0 ]; then
		echo
		echo "idle-max (one run each, $IDLE_MAX_CLIENTS connections asked):"
		"$BIN/switchboard-load" report --lines "$OUT/idle-max.jsonl"
	fi
	echo
	echo "results: $OUT/results.jsonl (per-run logs and commands beside it)"
} | tee "$OUT/table.txt"
"$BIN/switchboard-load" report --markdown "$OUT/results.jsonl" >"$OUT/table.md"

# The smoke mode checks the tooling: every run must have produced a sound result.
if [ "$MODE" = smoke ]; then
	want=$((${#SCENARIOS[@]} * ROUNDS * 2))
	got=$(grep -c '"ok":true}$' "$OUT/results.jsonl" || true)
	if [ "$got" != "$want" ]; then
		echo "smoke: $got of $want runs ok" >&2
		exit 1
	fi
	echo "smoke: $got of $want runs ok"
fi
