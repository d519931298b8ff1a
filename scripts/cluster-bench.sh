#!/usr/bin/env bash
# Runs the broker_throughput example against the local cluster (scripts/cluster.sh start)
# in the configurations of docs/SCALING.md, each REPS times (interleaved, so background
# load spreads over all of them), and prints the median of each. Raw JSON lines go to
# $OUT, each with the 1-minute load average before the run and the CPU used during it:
# by the three RabbitMQ nodes, by the load generator, and by everything else on the
# machine (another build, say), in cores.
#
#   scripts/cluster-bench.sh [REPS] [DURATION_S]
#
# Build first: cargo build --release --locked --example broker_throughput -p sendfleet-bench
set -euo pipefail

REPS=${1:-3}
DURATION=${2:-15}
TARGET=${CARGO_TARGET_DIR:-target}
export BIN=${BROKER_THROUGHPUT:-$TARGET/release/examples/broker_throughput}
export OUT=${OUT:-/tmp/broker-throughput-$(date +%Y%m%d-%H%M%S).jsonl}
export CLUSTER_DIR=${SENDFLEET_CLUSTER_DIR:-/tmp/sendfleet-cluster}
export REPS DURATION
[[ -x $BIN ]] || {
  echo "$BIN not found; build it: cargo build --release --locked --example broker_throughput -p sendfleet-bench" >&2
  exit 1
}

python3 - <<'EOF'
import json, os, resource, statistics, subprocess, time

BIN, OUT, DIR = os.environ["BIN"], os.environ["OUT"], os.environ["CLUSTER_DIR"]
REPS, DURATION = int(os.environ["REPS"]), os.environ["DURATION"]
NODE1 = "amqp://guest:guest@127.0.0.1:5681/%2f"
CONFIGS = [
    ("quorum-1q", "--queues 1"),
    ("quorum-1q-1-replica", "--queues 1 --group-size 1"),
    ("classic-1q-node1", f"--queues 1 --queue-type classic --url {NODE1}"),
    ("quorum-2q", "--queues 2"),
    ("quorum-3q", "--queues 3"),
    ("quorum-4q", "--queues 4"),
    ("quorum-1q-at-4600/s", "--queues 1 --rate 4600"),
]
TICK = os.sysconf("SC_CLK_TCK")

def busy_ticks():
    fields = open("/proc/stat").readline().split()[1:]
    user, nice, system, idle, iowait, irq, softirq = map(int, fields[:7])
    return user + nice + system + irq + softirq

def beam_ticks():
    total = 0
    for n in (1, 2, 3):
        pid = open(f"{DIR}/rabbit/sf{n}/pid").read().strip()
        stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        total += int(stat[11]) + int(stat[12])  # utime, stime
    return total

def children_seconds():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime

runs = []
with open(OUT, "a") as out:
    for rep in range(1, REPS + 1):
        for label, options in CONFIGS:
            load = float(open("/proc/loadavg").read().split()[0])
            busy0, beam0, child0, t0 = busy_ticks(), beam_ticks(), children_seconds(), time.monotonic()
            result = subprocess.run([BIN, "--duration", DURATION, *options.split()], check=True,
                                    capture_output=True, text=True).stdout.strip().splitlines()[-1]
            elapsed = time.monotonic() - t0
            busy = (busy_ticks() - busy0) / TICK
            beams = (beam_ticks() - beam0) / TICK
            generator = children_seconds() - child0
            run = {"label": label, "rep": rep, "load_before": load,
                   "cpu_cores": {"rabbitmq": round(beams / elapsed, 2), "generator": round(generator / elapsed, 2),
                                 "other": round(max(busy - beams - generator, 0) / elapsed, 2)},
                   "result": json.loads(result)}
            runs.append(run)
            print(json.dumps(run), flush=True)
            out.write(json.dumps(run) + "\n")

print(f"\n{'configuration':<20} {'published/s':>11} {'consumed/s':>10} {'confirm p50/p99 ms':>18} "
      f"{'delivery p50/p99 ms':>19}  cores: rabbitmq/generator/other (median)  load before runs")
for label, _ in CONFIGS:
    rs = [r for r in runs if r["label"] == label]
    med = lambda key: statistics.median(r["result"][key] for r in rs)
    cpu = lambda key: statistics.median(r["cpu_cores"][key] for r in rs)
    print(f"{label:<20} {med('published_per_s'):>11.0f} {med('consumed_per_s'):>10.0f} "
          f"{med('confirm_p50_ms'):>8.1f}/{med('confirm_p99_ms'):<9.1f} {med('delivery_p50_ms'):>8.1f}/{med('delivery_p99_ms'):<10.1f}"
          f"  {cpu('rabbitmq'):.2f}/{cpu('generator'):.2f}/{cpu('other'):.2f}"
          f"  {', '.join(str(r['load_before']) for r in rs)}")
print(f"(median of {REPS} runs of {DURATION} s each; raw: {OUT})")
EOF
