#!/usr/bin/env bash
# tools/cluster.sh: a local Quiver cluster on this machine's loopback (issue 18).
#
#   tools/cluster.sh up [--nodes 4] [--shards 2] [--replicas 2] [--build DIR]
#                       [--create NAME:DIM:METRIC]... [--dir DIR] [--wait SECONDS]
#   tools/cluster.sh status [--dir DIR]
#   tools/cluster.sh down [--dir DIR] [--timeout SECONDS] [--purge]
#   . cluster-data/env     # QUIVER_ADDR (node 1), QUIVER_CLUSTER_ETCD, QUIVER_CLUSTER_NATS,
#                          # QUIVER_CLUSTER_NODES, QUIVER_SHARDS, QUIVER_REPLICAS
#
# `up` starts a 3-node NATS JetStream cluster, one etcd and N quiverd nodes on free
# loopback ports, with all data under ./cluster-data/ (nats1..3, etcd, node1..N; each
# folder holds its process's log), records the pids in ./cluster-data/pids, prints the
# addresses and `quiver cluster status`. `down` stops exactly those processes (SIGTERM,
# SIGKILL after --timeout). A second `up` on the same folder reuses its data and, when
# they are still free, its ports. --nodes 0 starts the engines alone.
# Needs: nats-server, etcd (tools/deps.sh), curl, python3 (free ports, JSON).
set -euo pipefail

PROG=tools/cluster.sh
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
  cat <<EOF
Usage: $PROG up [options]     start NATS (3 servers), etcd and N quiverd nodes
       $PROG status [--dir DIR]
       $PROG down [--dir DIR] [--timeout S] [--purge]

A local Quiver cluster on loopback ports chosen at run time, data under ./cluster-data/.

up options:
  --nodes N             quiverd nodes (default 4; 0: the engines alone)
  --shards N            shards of the collections it suggests / creates (default 2)
  --replicas N          replicas of each shard (default 2)
  --build DIR           where quiverd and quiver are (default ./build, else the
                        build/ folder next to tools/)
  --create NAME:DIM:METRIC
                        create this collection (metric l2, ip or cosine) with
                        --shards and --replicas once the cluster is up (repeatable)
  --dir DIR             data folder (default ./cluster-data)
  --wait SECONDS        how long to wait for each piece to be ready (default 60)
down options:
  --timeout SECONDS     SIGTERM, then SIGKILL after this long (default 15)
  --purge               also delete the data folder

After up: '. cluster-data/env' sets QUIVER_ADDR (node 1: the quiver CLI's default
address), QUIVER_CLUSTER_NODES, QUIVER_CLUSTER_ETCD, QUIVER_CLUSTER_NATS,
QUIVER_SHARDS and QUIVER_REPLICAS.
EOF
}

die() { echo "$PROG: $*" >&2; exit 1; }
usage_error() { echo "$PROG: $*" >&2; echo "Try '$PROG --help'." >&2; exit 2; }
need_int() { [[ "$2" =~ ^[0-9]+$ ]] || usage_error "$1 needs a whole number, got '$2'"; }

# ------------------------------------------------------------------ options
CMD=${1:-}
[ $# -gt 0 ] && shift
case "$CMD" in
  -h|--help|help) usage; exit 0 ;;
  up|down|status) ;;
  "") usage >&2; exit 2 ;;
  *) usage_error "unknown command '$CMD'" ;;
esac

NODES=4 SHARDS=2 REPLICAS=2 BUILD="" DIR=./cluster-data WAIT=60 TIMEOUT=15 PURGE=0
CREATE=()
while [ $# -gt 0 ]; do
  opt=$1
  case "$opt" in
    -h|--help) usage; exit 0 ;;
    --purge) PURGE=1; shift; continue ;;
    --*=*) set -- "${opt%%=*}" "${opt#*=}" "${@:2}"; continue ;;
  esac
  case "$CMD:$opt" in
    up:--nodes|up:--shards|up:--replicas|up:--build|up:--create|up:--wait|down:--timeout|*:--dir) ;;
    *) usage_error "unknown option '$opt' for '$CMD'" ;;
  esac
  [ $# -ge 2 ] || usage_error "$opt needs a value"
  val=$2
  case "$CMD:$opt" in
    up:--nodes) need_int "$opt" "$val"; NODES=$val ;;
    up:--shards) need_int "$opt" "$val"; SHARDS=$val ;;
    up:--replicas) need_int "$opt" "$val"; REPLICAS=$val ;;
    up:--build) BUILD=$val ;;
    up:--create)
      [[ "$val" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]*:[0-9]+:(l2|ip|cosine)$ ]] ||
        usage_error "--create wants NAME:DIM:METRIC (metric l2, ip or cosine), got '$val'"
      CREATE+=("$val") ;;
    up:--wait) need_int "$opt" "$val"; WAIT=$val ;;
    down:--timeout) need_int "$opt" "$val"; TIMEOUT=$val ;;
    *:--dir) DIR=$val ;;
    *) usage_error "unknown option '$opt' for '$CMD'" ;;
  esac
  shift 2
done
[ "$PURGE" = 0 ] || [ "$CMD" = down ] || usage_error "--purge is an option of 'down'"
[ "$SHARDS" -ge 1 ] || usage_error "--shards must be at least 1"
[ "$REPLICAS" -ge 1 ] || usage_error "--replicas must be at least 1"

[ "$CMD" != up ] || mkdir -p "$DIR" || die "cannot create $DIR"
if [ -d "$DIR" ]; then DIR=$(cd "$DIR" && pwd); fi
PIDS=$DIR/pids
ENVF=$DIR/env
NATS_N=3

# ---------------------------------------------------------------- processes
# The pids file: one line per process, "NAME PID COMM STARTTIME" (STARTTIME: field 22
# of /proc/PID/stat), so a pid the kernel has reused for something else is never ours.
start_time() { # PID -> start time, or nothing when the process is gone
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  s=${s##*) }
  # shellcheck disable=SC2086
  set -- $s
  echo "${20}"
}
is_ours() { # PID COMM STARTTIME: running, and still the process we started (the pid
  # and its start time; COMM is for people: a wrapper script may exec another program)
  local st
  st=$(start_time "$1")
  [ -n "$st" ] && [ "$st" = "$3" ] || return 1
  ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}
proc_running() { # PID: exists and is no zombie
  [ -e "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}
running_lines() { # the pids-file lines whose process still runs
  [ -f "$PIDS" ] || return 0
  local name pid comm st
  while read -r name pid comm st; do
    [ -n "${pid:-}" ] || continue
    if is_ours "$pid" "$comm" "$st"; then echo "$name $pid $comm $st"; fi
  done <"$PIDS"
}

launch() { # NAME LOGFILE OUTFILE CMD... : start CMD in its own session, record it
  local name=$1 log=$2 out=$3
  shift 3
  echo "=== $PROG up, $(date '+%F %T'): $*" >>"$log"
  setsid "$@" </dev/null >>"$out" 2>>"$log" &
  local pid=$! st="" i
  for i in $(seq 1 50); do
    st=$(start_time "$pid")
    # setsid execs the program (no fork: a background job of a script is no
    # process-group leader), so the pid is the program's once exec is done
    [ -n "$st" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != setsid ] && break
    sleep 0.02
  done
  local comm
  comm=$(cat "/proc/$pid/comm" 2>/dev/null || basename "$1")
  [ -n "$st" ] || st=0
  echo "$name $pid $comm $st" >>"$PIDS"
  LAUNCHED_PID=$pid
}

stop_lines() { # LINES TIMEOUT: SIGTERM these processes, SIGKILL what is left after TIMEOUT
  local lines=$1 timeout=$2 name pid comm st left t
  [ -n "$lines" ] || return 0
  while read -r name pid comm st; do
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
  done <<<"$lines"
  t=0
  while :; do
    left=$(while read -r name pid comm st; do
             if is_ours "$pid" "$comm" "$st"; then echo "$name $pid $comm $st"; fi
           done <<<"$lines")
    [ -n "$left" ] || return 0
    [ "$t" -lt $((timeout * 10)) ] || break
    sleep 0.1
    t=$((t + 1))
  done
  while read -r name pid comm st; do
    echo "$PROG: $name (pid $pid) did not stop within ${timeout}s of SIGTERM: SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  done <<<"$left"
  for t in $(seq 1 50); do # gone within 5 s (a process in D state takes a moment)
    left=$(while read -r name pid comm st; do
             if is_ours "$pid" "$comm" "$st"; then echo "$name"; fi
           done <<<"$left")
    [ -n "$left" ] || return 0
    sleep 0.1
  done
  echo "$PROG: still running after SIGKILL: $left" >&2
}

stop_all() { # TIMEOUT: quiverd nodes first (they deregister), then etcd and NATS
  local timeout=$1 run
  run=$(running_lines)
  stop_lines "$(grep '^node' <<<"$run" || true)" "$timeout"
  stop_lines "$(grep -v '^node' <<<"$run" || true)" "$timeout"
  rm -f "$PIDS"
}

# ---------------------------------------------------------------- helpers
# ports NAME...: a free loopback port per name, one "NAME PORT" line each; a port the
# folder's last run used is kept while it is still free (etcd keeps its peer URL in
# its data, quiverd nodes their advertised address in etcd)
ports() {
  python3 - "$DIR/ports" "$@" <<'EOF'
import socket, sys
path, names = sys.argv[1], sys.argv[2:]
old = {}
try:
    for line in open(path):
        w = line.split()
        if len(w) == 2:
            old[w[0]] = int(w[1])
except OSError:
    pass
held, out = [], {}
def hold(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if port:   # as the servers bind it: a TIME_WAIT left by a closed connection is no owner
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        return None
    held.append(s)
    return s.getsockname()[1]
for n in names:
    p = hold(old[n]) if n in old else None
    out[n] = p if p is not None else hold(0)
old.update(out)
with open(path, "w") as f:
    for n, p in sorted(old.items()):
        f.write("%s %d\n" % (n, p))
for n in names:
    print(n, out[n])
EOF
}

json_get() { # URL EXPR: python expression over the JSON document j; empty on failure
  local body
  body=$(curl -fsS --max-time 2 "$1" 2>/dev/null) || return 0
  python3 -c 'import json,sys
try:
    j = json.loads(sys.stdin.read()); v = eval(sys.argv[1])
except Exception:
    v = None
print("" if v is None else v)' "$2" <<<"$body" 2>/dev/null || true
}

log_tail() { echo "--- last lines of $1 ---" >&2; tail -n 20 "$1" >&2 2>/dev/null || true; }

wait_until() { # SECONDS WHAT PIDNAME CHECK...: poll CHECK until it succeeds
  local secs=$1 what=$2 pid=$3
  shift 3
  local t=0
  until "$@"; do
    if ! proc_running "$pid"; then echo "$PROG: $what: the process exited" >&2; return 1; fi
    [ "$t" -lt $((secs * 10)) ] || { echo "$PROG: $what: not ready within ${secs}s" >&2; return 1; }
    sleep 0.1
    t=$((t + 1))
  done
}

nats_ready() { # HTTP_PORT: /healthz ok (JetStream included) and a meta leader elected
  curl -fsS --max-time 2 "http://127.0.0.1:$1/healthz" >/dev/null 2>&1 || return 1
  [ -n "$(json_get "http://127.0.0.1:$1/jsz" '(j.get("meta_cluster") or {}).get("leader")')" ]
}
etcd_ready() { # CLIENT_URL
  curl -fsS --max-time 2 "$1/health" 2>/dev/null | grep -q '"health":"true"'
}
quiverd_ready() { # OUTFILE: the first stdout line says it listens
  grep -q '^listening on port [0-9]' "$1" 2>/dev/null
}

dir_opt() { [ "$DIR" = "$(pwd)/cluster-data" ] || echo " --dir $DIR"; }

find_build() {
  if [ -z "$BUILD" ]; then
    if [ -x ./build/quiverd ]; then BUILD=./build; else BUILD=$SCRIPT_DIR/../build; fi
  fi
  BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || die "build folder '$BUILD' not found (--build DIR)"
}

# ---------------------------------------------------------------- commands
cmd_up() {
  local run
  run=$(running_lines)
  if [ -n "$run" ]; then
    echo "$PROG: a cluster is running from $DIR (pids in $PIDS):" >&2
    while read -r line; do echo "  $line"; done <<<"$run" >&2
    die "stop it first: $PROG down$(dir_opt)"
  fi
  rm -f "$PIDS"
  command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] ||
    die "nats-server not found (tools/deps.sh installs it: Debian nats-server)"
  local NATS_BIN ETCD_BIN
  NATS_BIN=$(command -v nats-server || echo /usr/sbin/nats-server)
  ETCD_BIN=$(command -v etcd) || die "etcd not found (tools/deps.sh installs it: Debian etcd-server)"
  command -v curl >/dev/null || die "curl not found (apt-get install curl)"
  command -v python3 >/dev/null || die "python3 not found"
  local QUIVERD="" QUIVER=""
  if [ "$NODES" -gt 0 ]; then
    find_build
    QUIVERD=$BUILD/quiverd QUIVER=$BUILD/quiver
    [ -x "$QUIVERD" ] || die "$QUIVERD not found (build the project, or --build DIR)"
    local help
    help=$("$QUIVERD" --help 2>&1 || true)
    [[ "$help" == *--cluster-etcd* ]] ||
      die "$QUIVERD has no cluster mode (no --cluster-etcd in its --help): build a newer one, or --nodes 0 for the engines alone"
  fi
  if [ "$REPLICAS" -gt "$NODES" ] && [ "$NODES" -gt 0 ]; then
    echo "$PROG: warning: --replicas $REPLICAS is more than --nodes $NODES" >&2
  fi

  # from here on a failure (or Ctrl-C) stops what was started
  trap 'rc=$?; trap - EXIT INT TERM; if [ "${UP_DONE:-0}" != 1 ]; then echo "$PROG: up failed: stopping what it started" >&2; stop_all 5; fi; exit $rc' EXIT
  trap 'exit 130' INT TERM

  local names=() i
  for i in $(seq 1 $NATS_N); do names+=("nats$i.client" "nats$i.cluster" "nats$i.http"); done
  names+=(etcd.client etcd.peer)
  for i in $(seq 1 "$NODES"); do names+=("node$i"); done
  declare -A P
  local n p
  while read -r n p; do P[$n]=$p; done < <(ports "${names[@]}")

  # NATS: 3 servers, one JetStream cluster
  local routes="" urls=""
  for i in $(seq 1 $NATS_N); do
    routes+="${routes:+, }nats-route://127.0.0.1:${P[nats$i.cluster]}"
    urls+="${urls:+,}nats://127.0.0.1:${P[nats$i.client]}"
  done
  for i in $(seq 1 $NATS_N); do
    local d=$DIR/nats$i
    mkdir -p "$d"
    cat >"$d/nats.conf" <<EOF
# written by $PROG up
server_name: n$i
listen: 127.0.0.1:${P[nats$i.client]}
http: 127.0.0.1:${P[nats$i.http]}
max_payload: 8MB
jetstream { store_dir: "$d/jetstream", max_memory_store: 256MB, max_file_store: 8GB }
cluster { name: quiver, listen: 127.0.0.1:${P[nats$i.cluster]},
  routes: [$routes] }
EOF
    launch "nats$i" "$d/nats.log" "$d/nats.log" "$NATS_BIN" -c "$d/nats.conf"
  done

  # etcd: one member
  local ETCD_URL=http://127.0.0.1:${P[etcd.client]} PEER_URL=http://127.0.0.1:${P[etcd.peer]}
  mkdir -p "$DIR/etcd"
  launch etcd "$DIR/etcd/etcd.log" "$DIR/etcd/etcd.log" "$ETCD_BIN" --name quiver-etcd \
    --data-dir "$DIR/etcd/data" \
    --listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
    --listen-peer-urls "$PEER_URL" --initial-advertise-peer-urls "$PEER_URL" \
    --initial-cluster "quiver-etcd=$PEER_URL"
  local etcd_pid=$LAUNCHED_PID

  local name pid comm st
  while read -r name pid comm st; do
    case "$name" in nats*)
      i=${name#nats}
      wait_until "$WAIT" "NATS server n$i (JetStream meta leader)" "$pid" nats_ready "${P[nats$i.http]}" ||
        { log_tail "$DIR/nats$i/nats.log"; exit 1; } ;;
    esac
  done <"$PIDS"
  wait_until "$WAIT" "etcd ($ETCD_URL/health)" "$etcd_pid" etcd_ready "$ETCD_URL" ||
    { log_tail "$DIR/etcd/etcd.log"; exit 1; }

  # quiverd nodes
  local nodes=""
  for i in $(seq 1 "$NODES"); do
    local d=$DIR/node$i addr=127.0.0.1:${P[node$i]}
    mkdir -p "$d"
    : >"$d/quiverd.out"
    launch "node$i" "$d/quiverd.log" "$d/quiverd.out" "$QUIVERD" --data "$d/data" \
      --listen "$addr" --node-id "node$i" --advertise "$addr" \
      --cluster-etcd "$ETCD_URL" --cluster-nats "$urls"
    nodes+="${nodes:+,}$addr"
  done
  while read -r name pid comm st; do
    case "$name" in node*)
      wait_until "$WAIT" "quiverd $name" "$pid" quiverd_ready "$DIR/$name/quiverd.out" ||
        { log_tail "$DIR/$name/quiverd.log"; exit 1; } ;;
    esac
  done <"$PIDS"

  local first=${nodes%%,*}
  {
    echo "# written by $PROG up; source it: . $ENVF"
    [ -z "$first" ] || echo "export QUIVER_ADDR=$first"
    echo "export QUIVER_CLUSTER_NODES=$nodes"
    echo "export QUIVER_CLUSTER_ETCD=$ETCD_URL"
    echo "export QUIVER_CLUSTER_NATS=$urls"
    echo "export QUIVER_SHARDS=$SHARDS"
    echo "export QUIVER_REPLICAS=$REPLICAS"
    echo "export QUIVER_CLUSTER_BUILD=${BUILD:-}"
  } >"$ENVF"
  UP_DONE=1
  trap - EXIT INT TERM

  echo "Quiver cluster up (data and logs under $DIR, pids in $PIDS)"
  print_addresses
  echo
  local rc=0 spec cname cdim cmetric
  if [ "$NODES" -gt 0 ]; then
    for spec in "${CREATE[@]+"${CREATE[@]}"}"; do
      IFS=: read -r cname cdim cmetric <<<"$spec"
      echo "+ quiver --addr $first collections create $cname --dim $cdim --metric $cmetric --shards $SHARDS --replicas $REPLICAS"
      local out
      if out=$("$QUIVER" --addr "$first" collections create "$cname" --dim "$cdim" --metric "$cmetric" \
                 --shards "$SHARDS" --replicas "$REPLICAS"); then
        echo "${out%%$'\n'*} ($SHARDS shards x $REPLICAS replicas)"  # its first line: "created collection ..."
      else
        rc=1; echo "$PROG: creating $cname failed (the cluster stays up)" >&2
      fi
    done
    [ ${#CREATE[@]} -gt 0 ] && echo
    echo "Create a collection ($SHARDS shards x $REPLICAS replicas):"
    echo "  $QUIVER --addr $first collections create NAME --dim 128 --metric cosine --shards $SHARDS --replicas $REPLICAS"
    echo
    cluster_status "$QUIVER" "$first"
  elif [ ${#CREATE[@]} -gt 0 ]; then
    echo "$PROG: --create needs quiverd nodes (--nodes 0 given)" >&2
    rc=1
  fi
  echo "Environment: . $ENVF    Stop: $PROG down$(dir_opt)"
  return $rc
}

print_addresses() {
  # shellcheck disable=SC1090
  ( . "$ENVF"
    local i=1 a
    echo "  NATS     $QUIVER_CLUSTER_NATS"
    for i in $(seq 1 $NATS_N); do
      local port
      port=$(sed -n "s/^http: 127.0.0.1:\([0-9]*\)$/\1/p" "$DIR/nats$i/nats.conf" 2>/dev/null)
      [ -z "$port" ] || echo "           n$i monitoring http://127.0.0.1:$port (/healthz, /jsz?streams=true)"
    done
    echo "  etcd     $QUIVER_CLUSTER_ETCD"
    i=1
    for a in ${QUIVER_CLUSTER_NODES//,/ }; do
      echo "  node$i    $a"
      i=$((i + 1))
    done
    echo "  shards $QUIVER_SHARDS, replicas $QUIVER_REPLICAS (QUIVER_SHARDS, QUIVER_REPLICAS)" )
}

cluster_status() { # QUIVER ADDR
  local out
  if out=$("$1" --addr "$2" cluster status 2>&1); then
    echo "quiver cluster status:"
    echo "$out"
  else
    echo "(quiver cluster status is not available: $(head -n 1 <<<"$out"))"
  fi
}

cmd_status() {
  if [ ! -f "$PIDS" ]; then
    echo "no cluster running from $DIR (no $PIDS)"
    return 3
  fi
  local name pid comm st n=0 up=0
  while read -r name pid comm st; do
    n=$((n + 1))
    if is_ours "$pid" "$comm" "$st"; then
      up=$((up + 1)); printf '  %-6s pid %-7s running\n' "$name" "$pid"
    else
      printf '  %-6s pid %-7s stopped\n' "$name" "$pid"
    fi
  done <"$PIDS"
  echo "$up of $n processes running (data under $DIR)"
  [ -f "$ENVF" ] || return 0
  print_addresses
  local i leader
  for i in $(seq 1 $NATS_N); do
    local port
    port=$(sed -n "s/^http: 127.0.0.1:\([0-9]*\)$/\1/p" "$DIR/nats$i/nats.conf" 2>/dev/null)
    [ -n "$port" ] || continue
    leader=$(json_get "http://127.0.0.1:$port/jsz" '(j.get("meta_cluster") or {}).get("leader")')
    [ -z "$leader" ] || { echo "  JetStream meta leader: $leader"; break; }
  done
  # shellcheck disable=SC1090
  ( . "$ENVF"
    if etcd_ready "$QUIVER_CLUSTER_ETCD"; then echo "  etcd healthy"; else echo "  etcd NOT healthy"; fi
    if [ -n "${QUIVER_ADDR:-}" ] && [ -x "${QUIVER_CLUSTER_BUILD:-}/quiver" ]; then
      echo
      cluster_status "$QUIVER_CLUSTER_BUILD/quiver" "$QUIVER_ADDR"
    fi )
  [ "$up" = "$n" ] || return 1
}

cmd_down() {
  if [ ! -f "$PIDS" ]; then
    echo "no cluster running from $DIR (no $PIDS)"
  else
    local run
    run=$(running_lines)
    stop_all "$TIMEOUT"
    if [ -n "$run" ]; then
      echo "stopped $(wc -l <<<"$run") processes: $(awk '{printf "%s%s", sep, $1; sep=" "}' <<<"$run")"
    else
      echo "nothing was running (stale $PIDS removed)"
    fi
  fi
  if [ "$PURGE" = 1 ]; then
    rm -rf -- "$DIR"
    echo "removed $DIR"
  fi
}

case "$CMD" in
  up) cmd_up ;;
  status) cmd_status ;;
  down) cmd_down ;;
esac
