#!/usr/bin/env bash
# Per-request cost of strand-proxy on the single-hop path, measured in ways
# that do not depend on how busy the machine is.
#
#   load pod ──veth──► server pod: iptables REDIRECT (strand-init) ─► strand-proxy :4143
#                                                          ─► strand-testapp http :8080
#
# Two network namespaces (cg-<pid>-load, cg-<pid>-server), strand-init's
# rules in the server pod, the proxy as uid 2102 and the backend as uid
# 2103, as in `strand-bench`'s strand-1hop. After a warm-up, oha sends
# exactly -n requests over -c kept-alive HTTP/1.1 connections, and the
# chosen mode reports the proxy's cost of those requests only:
#
#   callgrind  user-space instructions per request (valgrind's Ir; the
#              counters are zeroed after the warm-up and dumped after the
#              measured requests). Repeatable to a fraction of a percent.
#   strace     syscalls per request by name (strace -c -f on the running
#              proxy), e.g. futex and epoll_wait.
#   cpu        utime+stime per 10k requests from /proc/<pid>/stat (wall-clock
#              CPU: disturbed by other load on the machine).
#   perf       where that CPU goes, kernel included: perf cpu-clock samples
#              by DSO and by symbol (PERF_TOP=N lines; the profile is kept
#              in bench/results/perf-<target>-<time>.data).
#   packets    packets per request on each hop, from the interfaces'
#              counters: load <-> proxy (the veth) and proxy <-> backend
#              (loopback in the server pod). A pure ACK more per request
#              costs the proxy a packet's trip through the stack.
#
# Usage: sudo bench/callgrind.sh [--mode callgrind|strace|cpu|perf|packets] [-n N] [-c C]
#                                [-q RATE] [--http2] [--proxy PATH] [--target nginx]
#                                [-- ENV=VALUE...]
# --http2 sends HTTP/2 with prior knowledge instead of HTTP/1.1 (nginx then
# listens with `http2`, forwarding over HTTP/1.1 as in the bench's nginx-1hop).
# -q sends the measured requests at a fixed rate (requests per second; the
# bench's CPU figure is taken at 1000) instead of as fast as possible.
# ENV=VALUE pairs after `--` go to the proxy (e.g. STRAND_PROXY_CORES=1).
# `--target nginx` measures nginx instead (as uid 2102 on :4143 behind the
# same REDIRECT, forwarding to the same backend), in every mode (under
# callgrind as a single process, `master_process off`).
# Needs root, iproute2, iptables, valgrind (callgrind mode), strace (strace
# mode), perf (perf mode), oha. Binaries default to target/release (build them first:
# cargo build --release -p strand-proxy -p strand-init -p strand-testkit).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=callgrind
requests=20000
conns=50
warmup=2000
proxy=target/release/strand-proxy
target=strand
rate=""
http2=""
proxy_env=()
while [ $# -gt 0 ]; do
  case "$1" in
    --mode) mode=$2; shift 2 ;;
    -n) requests=$2; shift 2 ;;
    -c) conns=$2; shift 2 ;;
    -q|--rate) rate=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --http2) http2=--http2; shift ;;
    --proxy) proxy=$2; shift 2 ;;
    --target) target=$2; shift 2 ;;
    --) shift; proxy_env=("$@"); break ;;
    -h|--help) sed -n '2,/^set /{/^#/p}' "$0"; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 64 ;;
  esac
done
case "$mode" in
  callgrind|strace|cpu|perf|packets) ;;
  *) echo "unknown mode $mode (callgrind, strace, cpu, perf or packets)" >&2; exit 64 ;;
esac
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 77; }
oha=$(command -v oha || echo "${CARGO_HOME:-$HOME/.cargo}/bin/oha")

work=$(mktemp -d /tmp/strand-cg.XXXXXX)
# The proxy runs as uid 2102 and writes its callgrind output here.
chmod 777 "$work"
for b in "$proxy" target/release/strand-testapp; do cp "$b" "$work/"; done
proxy_bin="$work/$(basename "$proxy")"
load=cg-$$-load
server=cg-$$-server
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  ip netns del "$load" 2>/dev/null || true
  ip netns del "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$load"
ip netns add "$server"
ip link add cg$$a netns "$load" type veth peer name cg$$b netns "$server"
ip -n "$load" addr add 198.18.254.1/30 dev cg$$a
ip -n "$server" addr add 198.18.254.2/30 dev cg$$b
for ns in "$load" "$server"; do
  ip -n "$ns" link set lo up
done
ip -n "$load" link set cg$$a up
ip -n "$server" link set cg$$b up
ip netns exec "$server" target/release/strand-init >/dev/null

ip netns exec "$server" setpriv --reuid=2103 --regid=2103 --clear-groups \
  "$work/strand-testapp" http --listen 0.0.0.0:8080 >"$work/app.log" 2>&1 &
pids+=($!)

pid=""
# nginx in the proxy's place: as uid 2102 on :4143 behind the same REDIRECT.
# Under callgrind it runs as one process (master_process off), so that
# valgrind sees the process that serves the requests, with one worker's
# listener (with more, reuseport would hash connections to listeners that
# no process serves).
write_nginx_conf() {
  local procs="worker_processes auto;"
  [ -n "$1" ] && procs="worker_processes 1; master_process off;"
  mkdir -p "$work/nginx"
  cat >"$work/nginx/nginx.conf" <<EOF
$procs
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $work/nginx/cb;
    proxy_temp_path $work/nginx/p;
    fastcgi_temp_path $work/nginx/f;
    uwsgi_temp_path $work/nginx/u;
    scgi_temp_path $work/nginx/s;
    upstream backend { server 198.18.254.2:8080; keepalive 256; keepalive_requests 1000000; }
    server {
        listen 4143 ${http2:+http2 }reuseport;
        location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
EOF
  chown -R 2102:2102 "$work/nginx"
}

# Starts the proxy (strand-proxy, or nginx with --target nginx), under
# callgrind in callgrind mode with its profile in $work/callgrind.out.<$1>,
# and waits until a request passes through it.
start_proxy() {
  local wrap=()
  if [ "$mode" = callgrind ]; then
    wrap=(valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out.$1"
          --dump-instr=no --collect-jumps=no)
  fi
  if [ "$target" = strand ]; then
    ip netns exec "$server" env STRAND_PROXY_LOG=warn "${proxy_env[@]}" \
      setpriv --reuid=2102 --regid=2102 --clear-groups "${wrap[@]}" "$proxy_bin" \
      >>"$work/proxy.log" 2>&1 &
  else
    write_nginx_conf "${wrap[*]}"
    ip netns exec "$server" setpriv --reuid=2102 --regid=2102 --clear-groups "${wrap[@]}" \
      nginx -p "$work/nginx" -e "$work/nginx/error.log" -c "$work/nginx/nginx.conf" \
      -g 'daemon off;' >>"$work/proxy.log" 2>&1 &
  fi
  pids+=($!)
  pid=$!
  for _ in $(seq 1 600); do
    if ip netns exec "$load" curl -sf -o /dev/null --max-time 2 ${http2:+--http2-prior-knowledge} \
      http://198.18.254.2:8080/; then
      return
    fi
    sleep 0.2
  done
  echo "the proxy did not start; its log:" >&2; cat "$work/proxy.log" >&2; exit 1
}

stop_proxy() {
  kill -TERM "$pid"
  wait "$pid" || true
}

run_load() {
  ip netns exec "$load" setpriv --reuid=2103 --regid=2103 --clear-groups \
    "$oha" --no-tui -n "$1" -c "$conns" ${rate:+-q "$rate"} $http2 http://198.18.254.2:8080/ \
    >"$work/oha.txt" 2>&1 || { cat "$work/oha.txt" >&2; exit 1; }
  grep -qE '\[200\] '"$1"' responses' "$work/oha.txt" || {
    echo "not every request got a 200:" >&2; cat "$work/oha.txt" >&2; exit 1; }
}

proc_cpu() {
  # utime+stime of the process and its children that have exited, in ticks,
  # summed over the nginx master and workers when measuring nginx.
  local total=0 p
  for p in $pid $(pgrep -P "$pid" || true); do
    [ -r "/proc/$p/stat" ] || continue
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$total"
}

case "$mode" in
  callgrind)
    # vgdb (callgrind_control) cannot reach a proxy blocked in epoll_wait
    # here, so the measured requests are the difference of two runs: a
    # warm-up alone, and the same warm-up followed by -n requests; both end
    # with a graceful shutdown, so start-up and shutdown cancel out.
    start_proxy base; run_load "$warmup"; stop_proxy
    start_proxy full; run_load "$warmup"; run_load "$requests"; stop_proxy
    ir() { awk '/^(summary|totals):/ {print $2; exit}' "$work/callgrind.out.$1"; }
    base=$(ir base); full=$(ir full)
    echo "requests=$requests connections=$conns Ir(base)=$base Ir(full)=$full Ir/request=$(((full - base) / requests))"
    mkdir -p bench/results
    keep="bench/results/callgrind-$(date +%s).out"
    cp "$work/callgrind.out.full" "$keep"
    echo "profile (includes start-up and warm-up): $keep"
    ;;
  strace)
    start_proxy native
    run_load "$warmup"
    spids=()
    for p in $pid $(pgrep -P "$pid" || true); do spids+=(-p "$p"); done
    strace -c -f "${spids[@]}" -o "$work/strace.txt" &
    st=$!
    sleep 1
    run_load "$requests"
    kill -INT "$st"; wait "$st" || true
    awk -v n="$requests" '$4 ~ /^[0-9]+$/ {printf "%-16s %9d calls  %7.3f per request\n", $NF, $4, $4 / n}' "$work/strace.txt"
    ;;
  perf)
    # Where the proxy's CPU goes, kernel included: cpu-clock samples (no
    # hardware counters needed), summed by DSO and by symbol.
    start_proxy native
    run_load "$warmup"
    perf record -q -e cpu-clock -F 2000 -g -o "$work/perf.data" \
      -p "$(printf '%s,' $pid $(pgrep -P "$pid" || true) | sed 's/,$//')" &
    pr=$!
    sleep 1
    run_load "$requests"
    kill -INT "$pr"; wait "$pr" || true
    mkdir -p bench/results
    keep="bench/results/perf-$target-$(date +%s).data"
    cp "$work/perf.data" "$keep"
    perf report -i "$keep" --no-children --sort dso --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -8
    perf report -i "$keep" --no-children --sort sym --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -"${PERF_TOP:-40}"
    echo "profile: $keep (perf report -i $keep)"
    ;;
  cpu)
    start_proxy native
    run_load "$warmup"
    before=$(proc_cpu)
    run_load "$requests"
    after=$(proc_cpu)
    tck=$(getconf CLK_TCK)
    awk -v d=$((after - before)) -v t="$tck" -v n="$requests" \
      'BEGIN {printf "cpu_seconds=%.2f cpu_seconds_per_10k=%.3f\n", d / t, d / t / n * 10000}'
    grep -E 'Requests/sec|  (50|99|99.9)(\.00)?% in' "$work/oha.txt" || true
    ;;
  packets)
    # Loopback's tx counter alone: every packet between two of the server
    # pod's sockets crosses it once. The veth end's rx and tx: the load
    # pod's packets to the proxy and the proxy's back.
    counters() {
      ip netns exec "$server" cat /sys/class/net/lo/statistics/tx_packets \
        "/sys/class/net/cg$$b/statistics/rx_packets" "/sys/class/net/cg$$b/statistics/tx_packets"
    }
    start_proxy native
    run_load "$warmup"
    read -r -d '' lo0 rx0 tx0 < <(counters) || true
    run_load "$requests"
    read -r -d '' lo1 rx1 tx1 < <(counters) || true
    awk -v n="$requests" -v rx=$((rx1 - rx0)) -v tx=$((tx1 - tx0)) -v lo=$((lo1 - lo0)) 'BEGIN {
      printf "load -> proxy     %6.2f packets per request\n", rx / n
      printf "proxy -> load     %6.2f packets per request\n", tx / n
      printf "proxy <-> backend %6.2f packets per request (both ways)\n", lo / n }'
    ;;
esac
