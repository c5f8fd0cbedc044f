#!/usr/bin/env bash
# A Switchboard cluster on loopback, to try things out: redis-server, three nodes (ADAPTER=redis, NODE_ID node1..3)
# and HAProxy (or nginx) in front with cookie stickiness, rendered from deploy/haproxy.cfg / deploy/nginx.conf.
# Ctrl-C (or SIGTERM) stops everything it started.
#
#   deploy/cluster.sh [--port 3000] [--balancer haproxy|nginx] [--node-ports "3001 3002 3003"] [--redis-port 6390]
#
# Environment: SWITCHBOARD_BIN (default .tmp/bin/switchboard, built with `go build` when missing), JWT_SECRET
# (default: random for this run), FRONT_PORT / BALANCER / NODE_PORTS / REDIS_PORT (same as the flags), and any other
# Switchboard setting (e.g. LOG_LEVEL) is passed to the nodes. Ports that are taken are skipped for the next free one
# (the front port too, with a warning). Logs and rendered configs go to a temporary directory, printed at start and
# removed at exit (set KEEP_RUN_DIR=1 to keep it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPLOY="$ROOT/deploy"
FRONT_PORT="${FRONT_PORT:-3000}"
BALANCER="${BALANCER:-haproxy}"
NODE_PORTS="${NODE_PORTS:-}"
REDIS_PORT="${REDIS_PORT:-6390}"
STICKY_COOKIE="${STICKY_COOKIE:-sb_node}"

while [ $# -gt 0 ]; do
  case "$1" in
    --port) FRONT_PORT="$2"; shift 2 ;;
    --balancer) BALANCER="$2"; shift 2 ;;
    --node-ports) NODE_PORTS="$2"; shift 2 ;;
    --redis-port) REDIS_PORT="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "cluster.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$BALANCER" in haproxy|nginx) ;; *) echo "cluster.sh: --balancer must be haproxy or nginx" >&2; exit 2 ;; esac

find_bin() { # name, fallback paths...
  local name="$1"; shift
  if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return; fi
  for p in "$@"; do [ -x "$p" ] && { echo "$p"; return; }; done
  echo "cluster.sh: $name not found (Debian: apt-get install $name)" >&2
  exit 1
}
REDIS_BIN="$(find_bin redis-server /usr/bin/redis-server)"
if [ "$BALANCER" = haproxy ]; then LB_BIN="$(find_bin haproxy /usr/sbin/haproxy)"; else LB_BIN="$(find_bin nginx /usr/sbin/nginx)"; fi

BIN="${SWITCHBOARD_BIN:-$ROOT/.tmp/bin/switchboard}"
if [ ! -x "$BIN" ]; then
  echo "building $BIN"
  (cd "$ROOT" && go build -o "$BIN" ./cmd/switchboard)
fi

# --- ports -----------------------------------------------------------------------------------------------------------
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
TAKEN=" "
FREE=""
next_free() { # sets FREE to the first port >= $1 that is free and not handed out yet
  local p="$1"
  while port_taken "$p" || [[ "$TAKEN" == *" $p "* ]]; do
    p=$((p + 1))
    [ "$p" -lt 65535 ] || { echo "cluster.sh: no free port" >&2; exit 1; }
  done
  TAKEN="$TAKEN$p "
  FREE="$p"
}
want_front="$FRONT_PORT"
next_free "$FRONT_PORT"; FRONT_PORT="$FREE"
[ "$FRONT_PORT" = "$want_front" ] || echo "warning: port $want_front is taken, the front listens on $FRONT_PORT" >&2
PORTS=()
if [ -z "$NODE_PORTS" ]; then
  base=$((FRONT_PORT + 1))
  for _ in 1 2 3; do next_free "$base"; PORTS+=("$FREE"); base=$((FREE + 1)); done
else
  for p in $NODE_PORTS; do next_free "$p"; PORTS+=("$FREE"); done
  [ "${#PORTS[@]}" -eq 3 ] || { echo "cluster.sh: --node-ports needs three ports" >&2; exit 2; }
fi
[ "$REDIS_PORT" != 6379 ] || REDIS_PORT=6390 # leave a system Redis alone
next_free "$REDIS_PORT"; REDIS_PORT="$FREE"

RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/switchboard-cluster.XXXXXX")"
chmod 755 "$RUN_DIR" # nginx workers (another user when started as root) reach their temp files through it
JWT_SECRET="${JWT_SECRET:-$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')}"
export JWT_SECRET

# --- process bookkeeping: everything started is stopped on exit ---------------------------------------------------
PIDS=()
NAMES=()
stopping=0
cleanup() {
  [ "$stopping" = 0 ] || return 0
  stopping=1
  trap - INT TERM
  echo
  echo "stopping..."
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill -TERM "${PIDS[$i]}" 2>/dev/null || true; done
  for _ in $(seq 1 50); do
    local alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${KEEP_RUN_DIR:-0}" = 1 ]; then echo "logs kept in $RUN_DIR"; else rm -rf "$RUN_DIR"; fi
  echo "stopped."
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start() { # name, logfile, command...
  local name="$1" log="$2"; shift 2
  "$@" >"$log" 2>&1 &
  PIDS+=("$!")
  NAMES+=("$name")
}

http_status() { # port path → HTTP status code, or 000
  local line
  line="$( (exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3 && timeout 2 head -n1 <&3) 2>/dev/null || true)"
  line="${line#HTTP/1.? }"
  echo "${line:0:3}" | grep -E '^[0-9]{3}$' || echo 000
}

wait_for() { # description, seconds, command...
  local what="$1" secs="$2"; shift 2
  local deadline=$((SECONDS + secs))
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "cluster.sh: $what did not come up within ${secs}s; logs in $RUN_DIR:" >&2
      tail -n 20 "$RUN_DIR"/*.log >&2 || true
      KEEP_RUN_DIR=1
      exit 1
    fi
    sleep 0.1
  done
}

# --- Redis -------------------------------------------------------------------------------------------------------
start redis "$RUN_DIR/redis.log" "$REDIS_BIN" --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$RUN_DIR" --daemonize no --loglevel notice
redis_up() { [ "$( (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT" && printf 'PING\r\n' >&3 && timeout 1 head -c5 <&3) 2>/dev/null || true)" = "+PONG" ]; }
wait_for "redis-server" 10 redis_up

# --- nodes -------------------------------------------------------------------------------------------------------
for i in 1 2 3; do
  port="${PORTS[$((i - 1))]}"
  start "node$i" "$RUN_DIR/node$i.log" env ADAPTER=redis REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" NODE_ID="node$i" \
    STICKY_COOKIE="$STICKY_COOKIE" TRUSTED_PROXIES=127.0.0.1/32 ADDR="127.0.0.1:$port" LOG_FORMAT="${LOG_FORMAT:-console}" "$BIN"
done
for i in 1 2 3; do
  port="${PORTS[$((i - 1))]}"
  node_ready() { [ "$(http_status "$port" /readyz)" = 200 ]; }
  wait_for "node$i (port $port)" 15 node_ready
done

# --- balancer ----------------------------------------------------------------------------------------------------
render() { # template → stdout, every @@NAME@@ substituted
  sed -e "s|@@LISTEN@@|127.0.0.1:$FRONT_PORT|g" \
      -e "s|@@NODE1@@|127.0.0.1:${PORTS[0]}|g" -e "s|@@NODE2@@|127.0.0.1:${PORTS[1]}|g" -e "s|@@NODE3@@|127.0.0.1:${PORTS[2]}|g" \
      -e "s|@@RUN_DIR@@|$RUN_DIR|g" -e "s|@@LOG_DIR@@|$RUN_DIR|g" -e "s|@@STICKY_COOKIE@@|$STICKY_COOKIE|g" \
      -e "s|@@NGINX_USER@@|$(id -un)|g" "$1"
}
if [ "$BALANCER" = haproxy ]; then
  render "$DEPLOY/haproxy.cfg" >"$RUN_DIR/haproxy.cfg"
  CFG="$RUN_DIR/haproxy.cfg"
  start haproxy "$RUN_DIR/haproxy.log" "$LB_BIN" -db -f "$CFG"
else
  render "$DEPLOY/nginx.conf" >"$RUN_DIR/nginx.conf"
  CFG="$RUN_DIR/nginx.conf"
  start nginx "$RUN_DIR/nginx.log" "$LB_BIN" -p "$RUN_DIR" -e "$RUN_DIR/error.log" -c "$CFG" -g 'daemon off;'
fi
if grep -q '@@[A-Z0-9_]*@@' "$CFG"; then echo "cluster.sh: unrendered placeholders in $CFG" >&2; exit 1; fi
front_up() { [ "$(http_status "$FRONT_PORT" /healthz)" = 200 ]; }
wait_for "$BALANCER on port $FRONT_PORT" 10 front_up

URL="http://127.0.0.1:$FRONT_PORT"
TOKEN="$("$BIN" token --sub alice --name Alice --ttl 24h)"
cat <<EOF

Switchboard cluster is up ($BALANCER in front, cookie stickiness):
  URL         $URL            (demo page: open it, unfold "token" and paste one)
  nodes       node1 127.0.0.1:${PORTS[0]}   node2 127.0.0.1:${PORTS[1]}   node3 127.0.0.1:${PORTS[2]}   (GET /healthz, /readyz, /metrics)
  redis       redis://127.0.0.1:$REDIS_PORT/0 (prefix socket.io)
  logs        $RUN_DIR

A token for alice (24 h):
  $TOKEN
More tokens (the nodes share this secret; /auth/dev-token is off in this mode):
  JWT_SECRET=$JWT_SECRET $BIN token --sub bob --name Bob
From socket.io-client:
  io("$URL", { auth: { token }, withCredentials: true })   // withCredentials keeps the sticky cookie
Try a failover: kill -9 <pid of a node> (pids: $(for i in 1 2 3; do printf 'node%s=%s ' "$i" "${PIDS[$i]}"; done))

Ctrl-C stops everything.
EOF

# Wait until Ctrl-C, or until one of the processes dies (then stop the rest).
while :; do
  for idx in "${!PIDS[@]}"; do
    if ! kill -0 "${PIDS[$idx]}" 2>/dev/null; then
      if [[ "${NAMES[$idx]}" == node* ]]; then
        # A node that dies is what failover demos do: keep the rest running, say it once.
        if [ -z "${REPORTED:-}" ] || [[ "$REPORTED" != *"${NAMES[$idx]}"* ]]; then
          echo "${NAMES[$idx]} (pid ${PIDS[$idx]}) exited; the others keep serving. Log: $RUN_DIR/${NAMES[$idx]}.log"
          REPORTED="${REPORTED:-} ${NAMES[$idx]}"
        fi
      else
        echo "${NAMES[$idx]} exited unexpectedly; stopping. Last lines of its log:" >&2
        tail -n 20 "$RUN_DIR/${NAMES[$idx]}.log" >&2 || true
        KEEP_RUN_DIR=1
        exit 1
      fi
    fi
  done
  sleep 1
done
