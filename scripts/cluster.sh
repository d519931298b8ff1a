#!/usr/bin/env bash
# A local three-node RabbitMQ cluster and a Redis primary/replica with three Sentinels,
# on this one host, from the installed packages (rabbitmq-server, redis-server). For
# cluster and failover tests; see docs/SCALING.md.
#
#   scripts/cluster.sh start               bring everything up (no-op when already up)
#   scripts/cluster.sh start-redis         only the Redis primary, replica and Sentinels
#   scripts/cluster.sh status              what runs, the cluster's members, Redis roles
#                                          (exit 1 unless everything is up)
#   scripts/cluster.sh env                 the URLs to use (export lines)
#   scripts/cluster.sh stop                stop everything this script started, delete its state
#   scripts/cluster.sh kill-rabbit N       kill -9 RabbitMQ node N (1-3)
#   scripts/cluster.sh stop-rabbit N       stop RabbitMQ node N gracefully, once every quorum
#                                          queue has a majority without it (a rolling restart)
#   scripts/cluster.sh restart-rabbit N    start node N again (it rejoins with its data)
#   scripts/cluster.sh leader QUEUE        the number (1-3) of the node leading quorum queue
#                                          QUEUE (vhost /), asked of the first node that runs
#   scripts/cluster.sh queues              queues (leader, depth, consumers), consumers,
#                                          channels and connections, as a running node sees them
#   scripts/cluster.sh kill-redis-primary  kill -9 the Redis instance the Sentinels call primary
#   scripts/cluster.sh restart-redis       start the Redis instances that are down again
#
# Ports (all on 127.0.0.1): AMQP 5681-5683, Erlang distribution 25681-25683, Prometheus
# 15781-15783 (management UI 15681-15683 with SENDFLEET_CLUSTER_MANAGEMENT=1), Redis
# 6391 (primary at start) and 6392 (replica), Sentinels 26391-26393 (master name
# "sendfleet", quorum 2). State, logs and the nodes' Erlang cookie live in
# ${SENDFLEET_CLUSTER_DIR:-/tmp/sendfleet-cluster}.
#
# It never touches the machine's default RabbitMQ node (rabbit@localhost, 5672) or Redis
# (6379): its nodes have their own names, ports, data and cookie (HOME points at the state
# dir for the server and for rabbitmqctl, so neither reads ~/.erlang.cookie nor
# /var/lib/rabbitmq/.erlang.cookie), and /etc/rabbitmq/rabbitmq-env.conf and
# rabbitmq.conf are not read. It only signals processes found through its pid files (or
# listening on its ports) that belong to its state dir (a node's RABBITMQ_MNESIA_BASE, a
# Redis instance's working dir). epmd (4369) is shared with the default node and left
# running.
set -euo pipefail

DIR=${SENDFLEET_CLUSTER_DIR:-/tmp/sendfleet-cluster}
TIMEOUT=${SENDFLEET_CLUSTER_TIMEOUT:-120} # seconds, for each wait
MANAGEMENT=${SENDFLEET_CLUSTER_MANAGEMENT:-0}
RABBIT_BIN=${SENDFLEET_RABBITMQ_BIN:-/usr/lib/rabbitmq/bin}
NODES=(1 2 3)
REDIS_PORTS=(6391 6392)
SENTINEL_PORTS=(26391 26392 26393)
MASTER_NAME=sendfleet
MARKER="$DIR/.sendfleet-cluster"

node_name() { echo "sf$1@localhost"; }
amqp_port() { echo $((5680 + $1)); }
dist_port() { echo $((25680 + $1)); }
mgmt_port() { echo $((15680 + $1)); }
prom_port() { echo $((15780 + $1)); }
node_dir() { echo "$DIR/rabbit/sf$1"; }

die() {
  echo "cluster.sh: $*" >&2
  exit 1
}
log() { echo "cluster.sh [+${SECONDS}s]: $*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# True when process PID is one of this state dir's: its command line or environment
# contains PATTERN (a RabbitMQ node's data dir is only in its environment,
# RABBITMQ_MNESIA_BASE), and, if CWD is given, its working directory is CWD (Redis
# works in its own dir under the state dir).
pid_matches() {
  local pid=$1 pattern=$2 cwd=${3:-}
  [[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
  [[ -z $cwd || $(readlink "/proc/$pid/cwd" 2>/dev/null) == "$cwd" ]] || return 1
  cat "/proc/$pid/cmdline" "/proc/$pid/environ" 2>/dev/null | tr '\0' '\n' | grep -qF -- "$pattern"
}

# The pid in FILE if that process is alive and matches PATTERN.
live_pid() {
  local file=$1 pattern=$2 cwd=${3:-} pid
  [[ -s $file ]] || return 1
  pid=$(tr -dc '0-9' <"$file")
  pid_matches "$pid" "$pattern" "$cwd" || return 1
  echo "$pid"
}

# The pid listening on 127.0.0.1:PORT if it matches PATTERN (for a process whose pid
# file is gone).
listening_pid() {
  local port=$1 pattern=$2 cwd=${3:-} pid
  pid=$(ss -Hltnp "sport = :$port" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2) || true
  pid_matches "$pid" "$pattern" "$cwd" || return 1
  echo "$pid"
}

# Runs a command with node N's environment. HOME holds the shared cookie.
with_node() {
  local n=$1
  shift
  local d
  d=$(node_dir "$n")
  env HOME="$DIR" \
    RABBITMQ_CONF_ENV_FILE="$DIR/rabbitmq-env.conf" \
    RABBITMQ_NODENAME="$(node_name "$n")" \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT="$(amqp_port "$n")" \
    RABBITMQ_DIST_PORT="$(dist_port "$n")" \
    RABBITMQ_MNESIA_BASE="$d/mnesia" \
    RABBITMQ_LOG_BASE="$d/log" \
    RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf" \
    RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins" \
    RABBITMQ_PID_FILE="$d/pid" \
    ERL_EPMD_ADDRESS=127.0.0.1 \
    ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    "$@"
}

ctl() {
  local n=$1
  shift
  with_node "$n" "$RABBIT_BIN/rabbitmqctl" -q -n "$(node_name "$n")" "$@"
}

rabbit_pid() {
  local n=$1
  local pattern
  pattern="RABBITMQ_MNESIA_BASE=$(node_dir "$n")/mnesia"
  live_pid "$(node_dir "$n")/pid" "$pattern" || listening_pid "$(dist_port "$n")" "$pattern"
}

redis_pid() {
  local port=$1
  live_pid "$DIR/redis/$port.pid" "127.0.0.1:$port" "$DIR/redis/$port" ||
    listening_pid "$port" "127.0.0.1:$port" "$DIR/redis/$port"
}

# Fails when PORT is taken by something that is not ours.
check_port_free() {
  local port=$1 what=$2
  if port_open "$port"; then
    die "port $port ($what) is in use by another process: $(ss -Hltnp "sport = :$port" | grep -o 'users:.*' || echo unknown). Stop it first (the ports are fixed: see the top of scripts/cluster.sh)."
  fi
}

prepare_dir() {
  mkdir -p "$DIR"
  if [[ ! -e $MARKER ]]; then
    if [[ -n $(ls -A "$DIR") ]]; then
      die "$DIR is not empty and was not made by cluster.sh; choose another SENDFLEET_CLUSTER_DIR"
    fi
    touch "$MARKER"
  fi
  chmod 700 "$DIR"
  if [[ ! -s $DIR/.erlang.cookie ]]; then
    # Random capital letters, shared by the three nodes and by rabbitmqctl (HOME=$DIR).
    (umask 077 && head -c 48 /dev/urandom | base64 -w0 | LC_ALL=C tr -dc '[:upper:]' >"$DIR/.erlang.cookie")
    chmod 400 "$DIR/.erlang.cookie"
  fi
  # Read by rabbitmq-env instead of /etc/rabbitmq/rabbitmq-env.conf (which names the
  # default node); everything is set through the environment in with_node.
  : >"$DIR/rabbitmq-env.conf"
  local plugins="rabbitmq_prometheus"
  [[ $MANAGEMENT == 1 ]] && plugins="rabbitmq_management,rabbitmq_prometheus"
  for n in "${NODES[@]}"; do
    local d
    d=$(node_dir "$n")
    mkdir -p "$d/mnesia" "$d/log"
    echo "[$plugins]." >"$d/enabled_plugins"
    cat >"$d/rabbitmq.conf" <<EOF
cluster_name = sendfleet-local
prometheus.tcp.ip = 127.0.0.1
prometheus.tcp.port = $(prom_port "$n")
management.tcp.ip = 127.0.0.1
management.tcp.port = $(mgmt_port "$n")
log.console = false
log.file.level = info
EOF
    # Without its own (empty) file the node would read /etc/rabbitmq/advanced.config.
    [[ -e $d/advanced.config ]] || echo "[]." >"$d/advanced.config"
  done
  mkdir -p "$DIR/redis"
}

check_rabbit_ports() {
  local n=$1
  check_port_free "$(amqp_port "$n")" "AMQP of $(node_name "$n")"
  check_port_free "$(dist_port "$n")" "Erlang distribution of $(node_name "$n")"
  check_port_free "$(prom_port "$n")" "Prometheus of $(node_name "$n")"
  if [[ $MANAGEMENT == 1 ]]; then check_port_free "$(mgmt_port "$n")" "management of $(node_name "$n")"; fi
}

# Before anything starts: every port of what is not running yet must be free.
check_all_ports() {
  local n p
  for n in "${NODES[@]}"; do rabbit_pid "$n" >/dev/null || check_rabbit_ports "$n"; done
  for p in "${REDIS_PORTS[@]}" "${SENTINEL_PORTS[@]}"; do redis_pid "$p" >/dev/null || check_port_free "$p" "Redis"; done
}

start_rabbit_node() {
  local n=$1 d
  d=$(node_dir "$n")
  check_rabbit_ports "$n"
  rm -f "$d/pid"
  log "starting RabbitMQ $(node_name "$n") (AMQP $(amqp_port "$n"))"
  # setsid -f: the node runs in a session of its own and nothing of this script waits
  # for it or holds its output (a caller piping `start` into another command gets EOF).
  (cd "$DIR" && with_node "$n" setsid -f "$RABBIT_BIN/rabbitmq-server") </dev/null >>"$d/log/server.out" 2>&1
}

# Waits until node N's rabbit app runs; fails naming the node and its log.
await_rabbit_node() {
  local n=$1 d
  d=$(node_dir "$n")
  if ! ctl "$n" wait "$d/pid" --timeout "$TIMEOUT" >/dev/null 2>"$d/log/wait.err"; then
    die "RabbitMQ $(node_name "$n") did not come up within ${TIMEOUT}s ($(head -c 300 "$d/log/wait.err" | tr '\n' ' ')); see $d/log/"
  fi
}

# The running members of node 1's cluster, as an Erlang list.
running_nodes() { ctl 1 eval 'lists:sort(rabbit_nodes:all_running()).' 2>/dev/null | tr -d '\n '; }

# True when node 1 sees the three nodes running in its cluster (one rabbitmqctl call,
# which takes about a second).
cluster_complete() {
  [[ $(running_nodes) == "[$(node_name 1),$(node_name 2),$(node_name 3)]" ]]
}

# rabbitmqctl STEP on node N, its output in the node's log dir.
join_step() {
  local n=$1 step=$2 out
  out="$(node_dir "$n")/log/join.out"
  # shellcheck disable=SC2086 # step is a command and its argument
  ctl "$n" $step >>"$out" 2>&1 || die "$(node_name "$n"): rabbitmqctl $step failed; see $out"
}

# Nodes ARGS join node 1: stop_app and reset on all of them at once, join_cluster one
# after the other, start_app at once (each rabbitmqctl call takes a second or two).
join_nodes() {
  local n jobs step
  local names=()
  for n in "$@"; do names+=("$(node_name "$n")"); done
  log "${names[*]} join $(node_name 1)"
  for step in stop_app reset; do
    jobs=()
    for n in "$@"; do
      join_step "$n" "$step" &
      jobs+=($!)
    done
    for j in "${jobs[@]}"; do wait "$j" || exit 1; done
  done
  for n in "$@"; do join_step "$n" "join_cluster $(node_name 1)"; done
  jobs=()
  for n in "$@"; do
    join_step "$n" start_app &
    jobs+=($!)
  done
  for j in "${jobs[@]}"; do wait "$j" || exit 1; done
}

redis_conf() {
  local port=$1 role=$2
  local f="$DIR/redis/$port.conf"
  [[ -e $f ]] && return 0 # Sentinel rewrites its own and the instances' files: keep them.
  mkdir -p "$DIR/redis/$port"
  cat >"$f" <<EOF
bind 127.0.0.1
port $port
daemonize yes
pidfile $DIR/redis/$port.pid
logfile $DIR/redis/$port.log
dir $DIR/redis/$port
EOF
  case $role in
    primary | replica)
      # As docker-compose.yml: no persistence.
      printf 'save ""\nappendonly no\n' >>"$f"
      [[ $role == replica ]] && echo "replicaof 127.0.0.1 ${REDIS_PORTS[0]}" >>"$f"
      ;;
    sentinel)
      cat >>"$f" <<EOF
sentinel monitor $MASTER_NAME 127.0.0.1 ${REDIS_PORTS[0]} 2
sentinel down-after-milliseconds $MASTER_NAME 1000
sentinel failover-timeout $MASTER_NAME 5000
sentinel parallel-syncs $MASTER_NAME 1
EOF
      ;;
  esac
  return 0
}

start_redis() {
  local port=$1 role=$2
  redis_pid "$port" >/dev/null && return 0
  check_port_free "$port" "Redis $role"
  redis_conf "$port" "$role"
  log "starting Redis $role on $port"
  if [[ $role == sentinel ]]; then
    redis-server "$DIR/redis/$port.conf" --sentinel >/dev/null
  else
    redis-server "$DIR/redis/$port.conf" >/dev/null
  fi
}

# Waits up to TIMEOUT seconds for CHECK (a command) to succeed; fails naming WHAT.
await() {
  local what=$1
  shift
  local deadline=$((SECONDS + TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "$what did not happen within ${TIMEOUT}s"
    sleep 0.2
  done
}

redis_cli() { redis-cli -h 127.0.0.1 -p "$@"; }
answers_ping() { [[ $(redis_cli "$1" ping 2>/dev/null) == PONG ]]; }
replica_linked() { redis_cli "$1" info replication 2>/dev/null | grep -q '^master_link_status:up'; }
sentinel_quorum_ok() { redis_cli "$1" sentinel ckquorum "$MASTER_NAME" 2>/dev/null | grep -q '^OK 3 usable'; }
current_primary() {
  local s
  for s in "${SENTINEL_PORTS[@]}"; do
    if redis_cli "$s" sentinel get-master-addr-by-name "$MASTER_NAME" 2>/dev/null | sed -n 2p | grep -q .; then
      redis_cli "$s" sentinel get-master-addr-by-name "$MASTER_NAME" | paste -sd: -
      return 0
    fi
  done
  return 1
}

all_rabbit_up() {
  local n
  for n in "${NODES[@]}"; do rabbit_pid "$n" >/dev/null || return 1; done
}
all_redis_up() {
  local p
  for p in "${REDIS_PORTS[@]}" "${SENTINEL_PORTS[@]}"; do redis_pid "$p" >/dev/null || return 1; done
}

# Every instance answers, the one that is not the primary replicates from it (a former
# primary that was restarted is turned into a replica by the Sentinels about 10 s after
# it comes back), and each Sentinel sees the other two.
await_redis() {
  local p primary
  for p in "${REDIS_PORTS[@]}" "${SENTINEL_PORTS[@]}"; do await "Redis on $p answering PING" answers_ping "$p"; done
  await "a Sentinel naming the primary of '$MASTER_NAME'" current_primary
  primary=$(current_primary)
  for p in "${REDIS_PORTS[@]}"; do
    [[ 127.0.0.1:$p == "$primary" ]] || await "Redis on $p replicating from the primary $primary" replica_linked "$p"
  done
  for p in "${SENTINEL_PORTS[@]}"; do
    await "Sentinel $p seeing 3 Sentinels for '$MASTER_NAME' (ckquorum)" sentinel_quorum_ok "$p"
  done
}

cmd_start() {
  local t0=$SECONDS n
  if [[ -e $MARKER ]] && all_rabbit_up && all_redis_up && cluster_complete; then
    echo "cluster already up ($DIR)"
    return 0
  fi
  command -v redis-server >/dev/null || die "redis-server not found (apt-get install redis-server)"
  [[ -x $RABBIT_BIN/rabbitmq-server ]] || die "$RABBIT_BIN/rabbitmq-server not found (apt-get install rabbitmq-server)"
  check_all_ports
  prepare_dir

  # Redis first (instant), then the three RabbitMQ nodes boot in parallel.
  start_redis "${REDIS_PORTS[0]}" primary
  start_redis "${REDIS_PORTS[1]}" replica
  for p in "${SENTINEL_PORTS[@]}"; do start_redis "$p" sentinel; done

  local started=()
  for n in "${NODES[@]}"; do
    if ! rabbit_pid "$n" >/dev/null; then
      start_rabbit_node "$n"
      started+=("$n")
    fi
  done
  local waits=()
  for n in "${started[@]}"; do
    await_rabbit_node "$n" &
    waits+=($!)
  done
  for w in "${waits[@]}"; do wait "$w" || exit 1; done
  ((${#started[@]} == 0)) || log "RabbitMQ node(s) ${started[*]} booted"

  local running joining=()
  running=$(running_nodes)
  for n in 2 3; do
    [[ $running == *"$(node_name "$n")"* ]] || joining+=("$n")
  done
  ((${#joining[@]} == 0)) || join_nodes "${joining[@]}"
  cluster_complete || die "RabbitMQ cluster: $(node_name 1) sees $(running_nodes) running, not the 3 nodes; see $DIR/rabbit/*/log/"

  await_redis
  echo "cluster up in $((SECONDS - t0))s ($DIR); scripts/cluster.sh env prints the URLs"
}

# Stops pid with TERM, then KILL after LIMIT seconds.
stop_pid() {
  local pid=$1 what=$2 limit=$3 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < limit * 5; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.2
  done
  log "$what (pid $pid) did not stop within ${limit}s: kill -9"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 25; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.2
  done
  die "$what (pid $pid) still runs after kill -9"
}

cmd_stop() {
  local t0=$SECONDS pids=() whats=() pid n p
  for n in "${NODES[@]}"; do
    if pid=$(rabbit_pid "$n"); then
      pids+=("$pid")
      whats+=("RabbitMQ $(node_name "$n")")
    fi
  done
  for p in "${SENTINEL_PORTS[@]}" "${REDIS_PORTS[@]}"; do
    if pid=$(redis_pid "$p"); then
      pids+=("$pid")
      whats+=("Redis $p")
    fi
  done
  # All at once (the data is deleted anyway): SIGTERM, a graceful stop for both.
  local jobs=()
  for i in "${!pids[@]}"; do
    stop_pid "${pids[$i]}" "${whats[$i]}" 30 &
    jobs+=($!)
  done
  for j in "${jobs[@]}"; do wait "$j" || exit 1; done
  if [[ -e $MARKER ]]; then
    rm -rf "$DIR"
  elif [[ -d $DIR ]]; then
    log "$DIR has no $MARKER: not deleted"
  fi
  echo "cluster stopped (${#pids[@]} processes) in $((SECONDS - t0))s"
}

cmd_status() {
  local ok=0 n p pid
  [[ -e $MARKER ]] || {
    echo "not started ($DIR does not exist)"
    return 1
  }
  for n in "${NODES[@]}"; do
    if pid=$(rabbit_pid "$n"); then
      echo "rabbitmq $(node_name "$n")  up   pid $pid  amqp 127.0.0.1:$(amqp_port "$n")  prometheus :$(prom_port "$n")"
    else
      echo "rabbitmq $(node_name "$n")  DOWN"
      ok=1
    fi
  done
  for n in "${NODES[@]}"; do
    if rabbit_pid "$n" >/dev/null; then
      echo "cluster as $(node_name "$n") sees it: $(ctl "$n" eval '{running, lists:sort(rabbit_nodes:all_running()), members, lists:sort(rabbit_nodes:all())}.' 2>/dev/null | tr -d '\n ' || echo '?')"
      break
    fi
  done
  for p in "${REDIS_PORTS[@]}"; do
    if pid=$(redis_pid "$p"); then
      echo "redis 127.0.0.1:$p  up   pid $pid  role $(redis_cli "$p" role 2>/dev/null | head -1)"
    else
      echo "redis 127.0.0.1:$p  DOWN"
      ok=1
    fi
  done
  for p in "${SENTINEL_PORTS[@]}"; do
    if pid=$(redis_pid "$p"); then
      echo "sentinel 127.0.0.1:$p  up   pid $pid  primary $(redis_cli "$p" sentinel get-master-addr-by-name "$MASTER_NAME" 2>/dev/null | paste -sd: -)  $(redis_cli "$p" sentinel ckquorum "$MASTER_NAME" 2>&1 | head -1)"
    else
      echo "sentinel 127.0.0.1:$p  DOWN"
      ok=1
    fi
  done
  return $ok
}

cmd_env() {
  local urls="" n primary
  for n in "${NODES[@]}"; do
    urls+="${urls:+, }\"amqp://guest:guest@127.0.0.1:$(amqp_port "$n")/%2f\""
  done
  echo "export SENDFLEET_BROKER__URL='[$urls]'"
  echo "export SENDFLEET_BROKER__QUEUE_TYPE=quorum"
  local sentinels=""
  for n in "${SENTINEL_PORTS[@]}"; do
    sentinels+="${sentinels:+, }\"redis://127.0.0.1:$n\""
  done
  # The services follow the primary through the Sentinels; redis.url gives only the
  # nodes' password and database.
  echo "export SENDFLEET_REDIS__SENTINELS='[$sentinels]'"
  echo "export SENDFLEET_REDIS__MASTER_NAME=$MASTER_NAME"
  if primary=$(current_primary 2>/dev/null); then
    echo "export SENDFLEET_REDIS__URL=redis://$primary"
  else
    echo "# no Sentinel answers: is the cluster up?"
  fi
  echo "# RabbitMQ Prometheus: $(for n in "${NODES[@]}"; do printf 'http://127.0.0.1:%s/metrics ' "$(prom_port "$n")"; done)"
  echo "# rabbitmqctl for node N: HOME=$DIR rabbitmqctl -n sfN@localhost ... (run $RABBIT_BIN/rabbitmqctl, not /usr/sbin's wrapper, which switches to the rabbitmq user and its cookie)"
}

node_arg() {
  [[ ${1:-} =~ ^[123]$ ]] || die "expected a node number 1-3, got '${1:-}'"
}

cmd_kill_rabbit() {
  node_arg "${1:-}"
  local pid
  pid=$(rabbit_pid "$1") || die "$(node_name "$1") is not running"
  kill -KILL "$pid"
  echo "killed $(node_name "$1") (pid $pid)"
}

cmd_stop_rabbit() {
  node_arg "${1:-}"
  local pid t0=$SECONDS
  pid=$(rabbit_pid "$1") || die "$(node_name "$1") is not running"
  # What rolling upgrades use: wait until no quorum queue would lose its majority (a
  # node restarted just before may still be catching up).
  with_node "$1" "$RABBIT_BIN/rabbitmq-upgrade" -q -n "$(node_name "$1")" await_online_quorum_plus_one -t "$TIMEOUT" >/dev/null ||
    die "quorum queues would lose their majority without $(node_name "$1")"
  stop_pid "$pid" "RabbitMQ $(node_name "$1")" 60
  echo "stopped $(node_name "$1") in $((SECONDS - t0))s"
}

cmd_leader() {
  local queue=${1:-} n leader
  [[ -n $queue ]] || die "expected a queue name"
  for n in "${NODES[@]}"; do
    rabbit_pid "$n" >/dev/null || continue
    leader=$(ctl "$n" list_queues name leader --no-table-headers 2>/dev/null | awk -F'\t' -v q="$queue" '$1 == q { print $2 }') || continue
    [[ $leader =~ ^sf([123])@localhost$ ]] || die "no leader for '$queue' (got '$leader' from $(node_name "$n"))"
    echo "${BASH_REMATCH[1]}"
    return 0
  done
  die "no RabbitMQ node of the cluster runs"
}

# What a stalled test needs to see: each queue's leader, depth and consumers, the
# consumers and their channels, and the clients' connections, as one running node sees them.
cmd_queues() {
  local n
  for n in "${NODES[@]}"; do
    rabbit_pid "$n" >/dev/null || continue
    echo "# as $(node_name "$n") sees it"
    # A diagnostic: a listing that fails says so and the others still print.
    ctl "$n" list_queues name leader members online messages_ready messages_unacknowledged consumers 2>&1 || true
    ctl "$n" list_consumers queue_name channel_pid consumer_tag prefetch_count active 2>&1 || true
    ctl "$n" list_channels pid connection number consumer_count messages_unacknowledged prefetch_count 2>&1 || true
    ctl "$n" list_connections name peer_port state 2>&1 || true
    return 0
  done
  die "no RabbitMQ node of the cluster runs"
}

cmd_restart_rabbit() {
  node_arg "${1:-}"
  local t0=$SECONDS
  if rabbit_pid "$1" >/dev/null; then
    echo "$(node_name "$1") already runs"
    return 0
  fi
  [[ -e $MARKER ]] || die "no cluster state in $DIR: run start"
  start_rabbit_node "$1"
  await_rabbit_node "$1"
  echo "$(node_name "$1") up in $((SECONDS - t0))s"
}

# Only the Redis part (primary, replica, three Sentinels): what the Redis failover test
# needs, in about a second instead of the RabbitMQ nodes' 20 s.
cmd_start_redis() {
  local t0=$SECONDS p
  if [[ -e $MARKER ]] && all_redis_up; then
    echo "redis already up ($DIR)"
    return 0
  fi
  command -v redis-server >/dev/null || die "redis-server not found (apt-get install redis-server)"
  for p in "${REDIS_PORTS[@]}" "${SENTINEL_PORTS[@]}"; do redis_pid "$p" >/dev/null || check_port_free "$p" "Redis"; done
  prepare_dir
  start_redis "${REDIS_PORTS[0]}" primary
  start_redis "${REDIS_PORTS[1]}" replica
  for p in "${SENTINEL_PORTS[@]}"; do start_redis "$p" sentinel; done
  await_redis
  echo "redis up in $((SECONDS - t0))s ($DIR); primary $(current_primary)"
}

cmd_kill_redis_primary() {
  local primary port pid
  primary=$(current_primary) || die "no Sentinel answers"
  port=${primary##*:}
  pid=$(redis_pid "$port") || die "the primary $primary named by the Sentinels is not running"
  kill -KILL "$pid"
  echo "killed the Redis primary $primary (pid $pid)"
}

cmd_restart_redis() {
  [[ -e $MARKER ]] || die "no cluster state in $DIR: run start"
  local p
  # A restarted former primary comes up as a primary; the Sentinels turn it into a
  # replica of the current one.
  start_redis "${REDIS_PORTS[0]}" primary
  start_redis "${REDIS_PORTS[1]}" replica
  for p in "${SENTINEL_PORTS[@]}"; do start_redis "$p" sentinel; done
  await_redis
  echo "redis up; primary $(current_primary)"
}

case ${1:-} in
  start) cmd_start ;;
  start-redis) cmd_start_redis ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) cmd_env ;;
  kill-rabbit) cmd_kill_rabbit "${2:-}" ;;
  stop-rabbit) cmd_stop_rabbit "${2:-}" ;;
  restart-rabbit) cmd_restart_rabbit "${2:-}" ;;
  leader) cmd_leader "${2:-}" ;;
  queues) cmd_queues ;;
  kill-redis-primary) cmd_kill_redis_primary ;;
  restart-redis) cmd_restart_redis ;;
  *)
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 64
    ;;
esac
