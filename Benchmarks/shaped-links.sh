#!/usr/bin/env bash
# Multi-rank training steps over a rate-limited network, on one machine: the ranks run inside a
# network namespace of their own whose loopback is shaped with tc's token bucket filter (tbf), and
# Open MPI is forced onto TCP over that loopback. Prints one JSON line per (rate, exchange) from
# `ptrain bench train`, with "rate_gbit" and "exchange" added.
#
# Needs root (ip netns, tc), iproute2 and Open MPI; ptrain built with the trait MPI:
#   swift build -c release --traits MPI --scratch-path .build-mpi
#   sudo Benchmarks/shaped-links.sh --binary .build-mpi/release/ptrain --config configs/cifar-small.yaml \
#        --ranks 2 --threads 1 --batch-size 128 --shards 2 --rates "1 10 25"
#
# It touches no interface outside the namespace it creates, and deletes the namespace on exit
# (also on errors and Ctrl-C). The loopback carries every rank's traffic, so the rate is shared by
# all ranks' sends (one shared medium, not one link per rank); docs/ARCHITECTURE.md's cost model
# accounts for that when it checks itself against these runs. Latency is not emulated (the
# kernel may lack netem); it enters the cost model instead.
set -euo pipefail

binary=.build-mpi/release/ptrain
config=configs/cifar-small.yaml
ranks=2
threads=1
batch=128
shards=""
rates="1 10 25"
exchanges="allgather reduce_scatter"
bucket_kb=""
extra=()

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; echo "options: --binary --config --ranks --threads --batch-size --shards --rates --exchanges --bucket-kb [-- extra bench args]"; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --binary) binary=$2; shift 2 ;;
        --config) config=$2; shift 2 ;;
        --ranks) ranks=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --batch-size) batch=$2; shift 2 ;;
        --shards) shards=$2; shift 2 ;;
        --rates) rates=$2; shift 2 ;;
        --exchanges) exchanges=$2; shift 2 ;;
        --bucket-kb) bucket_kb=$2; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) usage; exit 0 ;;
        *) echo "shaped-links.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

[[ $(id -u) == 0 ]] || { echo "shaped-links.sh: needs root (ip netns, tc)" >&2; exit 2; }
for tool in ip tc mpirun; do
    command -v "$tool" >/dev/null || { echo "shaped-links.sh: $tool not found (packages iproute2, openmpi-bin)" >&2; exit 2; }
done
[[ -x $binary ]] || { echo "shaped-links.sh: $binary is not an executable (build with --traits MPI)" >&2; exit 2; }
[[ -r $config ]] || { echo "shaped-links.sh: cannot read config $config" >&2; exit 2; }
if grep -q '^distributed:' "$config"; then
    echo "shaped-links.sh: $config has a distributed section; the script sets it per run" >&2; exit 2
fi

ns="ptrain-shaped-$$"
work=$(mktemp -d)
cleanup() {
    ip netns delete "$ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

ip netns add "$ns"
ip -n "$ns" link set lo up

for rate in $rates; do
    # Token bucket: the rate, a bucket of 200 us at that rate but at least two 64 KiB loopback
    # frames, and a queue of up to 100 ms.
    burst=$(( rate * 1000000000 / 8 / 5000 ))
    (( burst < 131072 )) && burst=131072
    tc -n "$ns" qdisc replace dev lo root tbf rate "${rate}gbit" burst "$burst" latency 100ms
    for exchange in $exchanges; do
        cfg="$work/$exchange.yaml"
        {
            if [[ -n $shards ]]; then sed "s/^\(  shards:\).*/\1 $shards/" "$config"; else cat "$config"; fi
            echo "distributed:"
            echo "  exchange: $exchange"
            [[ -n $bucket_kb ]] && echo "  bucket_kb: $bucket_kb"
        } > "$cfg"
        line=$(ip netns exec "$ns" mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$ranks" \
                   --mca btl tcp,self --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo \
                   "$binary" bench train --config "$cfg" --batch-size "$batch" --threads "$threads" --format json \
                   ${extra[@]+"${extra[@]}"} | grep '^{' | head -1)
        echo "{\"rate_gbit\":$rate,\"exchange\":\"$exchange\",${line#\{}"
    done
done
