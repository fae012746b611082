#!/usr/bin/env bash
# An emulated cluster on one machine: runs `strata launch ARGS` against P workers, each in its own
# network namespace with its own address (veth pairs on a bridge), each pinned to its own core with
# one thread, every link shaped in both directions with `tc tbf` to RATE (netem is not needed).
# The launcher stays in the host namespace; beyond loopback the workers require mutual TLS, so the
# script makes a throw-away CA (`strata cluster certs`) and a token. Namespaces, links and
# processes are removed at the end, on failure and on interrupt.
#
#   scripts/emulated-cluster.sh [--workers P] [--rate unlimited|100mbit|1gbit|…] [--cores 0,1,…]
#                               [--tag T] [--link-bytes FILE] -- LAUNCH-ARGS…
#
# --cores: the core of each worker (default 0 … P−1, wrapping around the machine's cores).
# --tag: a number (up to 6 digits) naming for this cluster's namespaces and links (default: from the PID); the
#   namespaces are st<T>w<i>, the links stv<T><i>, the bridge stb<T>.
# --link-bytes: write the bytes each worker's link carried in each direction (JSON) there.
# STRATA: the binary (default target/release/strata). Exit status: the launch's; 2 when the
# machine cannot build the cluster (not root, no `ip`, no `tc`, no tbf), saying why.
set -euo pipefail

P=2
RATE=unlimited
CORES=""
TAG=$(($$ % 100000))
LINK_BYTES=""
STRATA=${STRATA:-target/release/strata}
usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --workers) P=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --cores) CORES=$2; shift 2 ;;
    --tag) TAG=$2; shift 2 ;;
    --link-bytes) LINK_BYTES=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) usage ;;
    *) echo "emulated-cluster: unknown option '$1' (launch arguments go after --)" >&2; usage ;;
  esac
done
[[ "$P" =~ ^[1-9][0-9]*$ && "$P" -le 64 ]] || { echo "emulated-cluster: --workers must be 1..64, got '$P'" >&2; exit 2; }
[[ "$TAG" =~ ^[0-9]{1,6}$ ]] || { echo "emulated-cluster: --tag must be 1-6 digits, got '$TAG'" >&2; exit 2; }
[[ -x "$STRATA" ]] || { echo "emulated-cluster: $STRATA is not an executable (make build)" >&2; exit 2; }
if [[ -n "$LINK_BYTES" ]]; then
  for a in "$@"; do
    [[ "$(realpath -m -- "$a")" != "$(realpath -m -- "$LINK_BYTES")" ]] \
      || { echo "emulated-cluster: --link-bytes $LINK_BYTES is also a launch argument; it would overwrite that file" >&2; exit 2; }
  done
fi
NPROC=$(nproc)
if [[ -z "$CORES" ]]; then
  CORES=$(for ((i = 0; i < P; i++)); do echo $((i % NPROC)); done | paste -sd,)
fi
IFS=, read -r -a CORE <<<"$CORES"
[[ ${#CORE[@]} -eq $P ]] || { echo "emulated-cluster: --cores names ${#CORE[@]} cores for $P workers" >&2; exit 2; }

# The tbf token bucket: 10 ms of traffic, at least 64 KiB (one GSO super-packet), and a queue
# of 100 ms before packets drop (TCP then backs off as on a real link).
burst_bytes() {
  local r=${1,,} n unit
  [[ "$r" =~ ^([0-9]+)(kbit|mbit|gbit)$ ]] || { echo "emulated-cluster: --rate must be unlimited or N kbit|mbit|gbit, got '$1'" >&2; exit 2; }
  n=${BASH_REMATCH[1]}; unit=${BASH_REMATCH[2]}
  case "$unit" in kbit) n=$((n * 1000)) ;; mbit) n=$((n * 1000000)) ;; gbit) n=$((n * 1000000000)) ;; esac
  local b=$((n / 8 / 100))
  echo $((b > 65536 ? b : 65536))
}
[[ "$RATE" == unlimited ]] || BURST=$(burst_bytes "$RATE")

NET=10.$((200 + TAG % 50)).$((TAG / 50 % 250)).
BR=stb$TAG
ns() { echo "st${TAG}w$1"; }
veth() { echo "stv${TAG}$1"; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/strata-cluster.XXXXXX")
PIDS=()

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for ((i = 0; i < P; i++)); do
    # Whatever still runs in the namespace (a worker that ignored SIGTERM) goes with it.
    for pid in $(ip netns pids "$(ns "$i")" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip link del "$(veth "$i")" 2>/dev/null || true
    ip netns del "$(ns "$i")" 2>/dev/null || true
  done
  ip link del "$BR" 2>/dev/null || true
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() { echo "emulated-cluster: $*" >&2; exit 2; }
command -v ip >/dev/null || fail "no 'ip' command (iproute2) on this machine"
command -v tc >/dev/null || fail "no 'tc' command (iproute2) on this machine"
command -v taskset >/dev/null || fail "no 'taskset' command (util-linux) on this machine"
ip link add "$BR" type bridge 2>"$WORK/err" \
  || fail "cannot create a bridge ($(tr '\n' ' ' <"$WORK/err")): network namespaces need root and CAP_NET_ADMIN"
ip addr add "${NET}1/24" dev "$BR"
ip link set "$BR" up
shape() { # shape DEV [ip netns exec NS]
  local dev=$1; shift
  "$@" tc qdisc replace dev "$dev" root tbf rate "$RATE" burst "$BURST" latency 100ms 2>"$WORK/err" \
    || fail "cannot shape $dev with tc tbf: $(tr '\n' ' ' <"$WORK/err")"
}
for ((i = 0; i < P; i++)); do
  n=$(ns "$i"); v=$(veth "$i")
  ip netns add "$n" 2>"$WORK/err" || fail "cannot create network namespace $n: $(tr '\n' ' ' <"$WORK/err")"
  ip link add "$v" type veth peer name eth0 netns "$n"
  ip link set "$v" master "$BR" up
  ip netns exec "$n" ip addr add "${NET}$((i + 2))/24" dev eth0
  ip netns exec "$n" ip link set eth0 up
  ip netns exec "$n" ip link set lo up
  if [[ "$RATE" != unlimited ]]; then
    shape "$v"                              # toward the worker
    shape eth0 ip netns exec "$n"           # from the worker
  fi
done

"$STRATA" cluster certs --out "$WORK/tls" --workers "$P" >/dev/null
export STRATA_TOKEN="emulated-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
ADDRS=()
for ((i = 0; i < P; i++)); do
  addr="${NET}$((i + 2)):50051"
  ip netns exec "$(ns "$i")" taskset -c "${CORE[$i]}" "$STRATA" worker --listen "$addr" --rank "$i" --threads 1 \
    --tls-dir "$WORK/tls" >"$WORK/worker$i.out" 2>"$WORK/worker$i.err" &
  PIDS+=($!)
  ADDRS+=("$addr")
done
for ((i = 0; i < P; i++)); do
  for _ in $(seq 300); do
    grep -q "listening on" "$WORK/worker$i.out" 2>/dev/null && break
    kill -0 "${PIDS[$i]}" 2>/dev/null || fail "worker $i exited before listening: $(tail -3 "$WORK/worker$i.err")"
    sleep 0.1
  done
  grep -q "listening on" "$WORK/worker$i.out" || fail "worker $i did not listen within 30 s"
done
echo "emulated cluster $TAG: $P workers (${ADDRS[*]}) on cores $CORES, links $RATE each way" >&2

# In the background, so that a signal runs the cleanup at once (bash defers traps until a
# foreground command ends); the launcher goes first.
status=0
"$STRATA" launch "$@" --workers "$(IFS=,; echo "${ADDRS[*]}")" --tls-dir "$WORK/tls" &
PIDS=("$!" "${PIDS[@]}")
wait "${PIDS[0]}" || status=$?
if [[ -n "$LINK_BYTES" ]]; then
  {
    echo "{\"rate\": \"$RATE\", \"links\": ["
    for ((i = 0; i < P; i++)); do
      s=/sys/class/net/$(veth "$i")/statistics
      # The host end's rx is what the worker sent, its tx what the worker received.
      echo "  {\"worker\": $i, \"sent_bytes\": $(cat "$s/rx_bytes"), \"received_bytes\": $(cat "$s/tx_bytes")}$([[ $i -lt $((P - 1)) ]] && echo ,)"
    done
    echo "]}"
  } >"$LINK_BYTES.tmp" && mv "$LINK_BYTES.tmp" "$LINK_BYTES"
fi
exit "$status"
