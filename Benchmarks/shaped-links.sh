#!/usr/bin/env bash
# Multi-rank training steps over a rate-limited network, on one machine, with Open MPI forced onto
# TCP (--mca btl tcp,self) and links shaped with tc's token bucket filter (tbf). Two link models:
#   --links loopback  (default) the ranks run inside one network namespace of their own whose
#                     loopback is shaped: one medium that all ranks' sends share;
#   --links star      each rank runs in a namespace of its own, joined by a veth pair to a bridge
#                     in a hub namespace (where mpirun runs): a switch with one full-duplex link
#                     per rank, both directions shaped (the rank's veth and the hub's side).
# Prints one JSON line per (rate, exchange, overlap) from `ptrain bench train`, with "links",
# "rate_gbit" and "exchange" added. --overlap "on off" runs the reduce-scatter exchange with and
# without distributed.overlap_forward (default: on only).
#
# Needs root (ip netns, tc), iproute2 and Open MPI; ptrain built with the trait MPI:
#   swift build -c release --traits MPI --scratch-path .build-mpi
#   sudo Benchmarks/shaped-links.sh --binary .build-mpi/release/ptrain --config configs/cifar-small.yaml \
#        --ranks 2 --threads 1 --batch-size 128 --shards 2 --rates "1 10 25"
#
# It touches no interface outside the namespaces it creates, and deletes them on exit (also on
# errors and Ctrl-C). Latency is not emulated (the kernel may lack netem); it enters the cost model
# in docs/ARCHITECTURE.md instead, which is checked against these runs.
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
segment_kb=""
sends_in_flight=""
overlaps=on
links=loopback
extra=()

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; echo "options: --links loopback|star --binary --config --ranks --threads --batch-size --shards --rates --exchanges --bucket-kb --segment-kb --sends-in-flight --overlap [-- extra bench args]"; }
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
        --segment-kb) segment_kb=$2; shift 2 ;;
        --sends-in-flight) sends_in_flight=$2; shift 2 ;;
        --overlap) overlaps=$2; shift 2 ;;
        --links) links=$2; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) usage; exit 0 ;;
        *) echo "shaped-links.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

[[ $links == loopback || $links == star ]] || { echo "shaped-links.sh: --links must be loopback or star" >&2; exit 2; }
for o in $overlaps; do
    [[ $o == on || $o == off ]] || { echo "shaped-links.sh: --overlap takes on and/or off, got $o" >&2; exit 2; }
done
(( ranks >= 2 && ranks <= 200 )) || { echo "shaped-links.sh: --ranks must be in 2...200" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "shaped-links.sh: needs root (ip netns, tc)" >&2; exit 2; }
for tool in ip tc mpirun; do
    command -v "$tool" >/dev/null || { echo "shaped-links.sh: $tool not found (packages iproute2, openmpi-bin)" >&2; exit 2; }
done
[[ -x $binary ]] || { echo "shaped-links.sh: $binary is not an executable (build with --traits MPI)" >&2; exit 2; }
[[ -r $config ]] || { echo "shaped-links.sh: cannot read config $config" >&2; exit 2; }
if grep -q '^distributed:' "$config"; then
    echo "shaped-links.sh: $config has a distributed section; the script sets it per run" >&2; exit 2
fi

ns="ptrain-shaped-$$"          # the loopback namespace, or the hub of the star
work=$(mktemp -d)
created=()
cleanup() {
    for n in ${created[@]+"${created[@]}"}; do ip netns delete "$n" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

newns() { ip netns add "$1"; created+=("$1"); ip -n "$1" link set lo up; }
newns "$ns"
mpi_net=()
launcher=()
if [[ $links == star ]]; then
    # Hub: a bridge with 10.77.0.254; rank r: eth0 with 10.77.0.(r+1), its peer h<r> on the bridge.
    ip -n "$ns" link add br0 type bridge
    ip -n "$ns" addr add 10.77.0.254/24 dev br0
    ip -n "$ns" link set br0 up
    for (( r = 0; r < ranks; r++ )); do
        newns "$ns-r$r"
        ip -n "$ns" link add "h$r" type veth peer name eth0 netns "$ns-r$r"
        ip -n "$ns" link set "h$r" master br0
        ip -n "$ns" link set "h$r" up
        ip -n "$ns-r$r" addr add "10.77.0.$(( r + 1 ))/24" dev eth0
        ip -n "$ns-r$r" link set eth0 up
    done
    # Each rank enters its own namespace; PMIx (rank <-> mpirun) goes over the bridge too.
    # The rank variable must expand when the launcher runs, not here: hence single quotes.
    # shellcheck disable=SC2016
    printf '#!/bin/sh\nexec ip netns exec "%s-r${OMPI_COMM_WORLD_RANK}" "$@"\n' "$ns" > "$work/enter.sh"
    chmod +x "$work/enter.sh"
    launcher=("$work/enter.sh")
    export PMIX_MCA_ptl_tcp_remote_connections=1 PMIX_MCA_ptl_tcp_if_include=10.77.0.0/24
    mpi_net=(--mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24
             -x PMIX_MCA_ptl_tcp_remote_connections -x PMIX_MCA_ptl_tcp_if_include)
else
    mpi_net=(--mca btl_tcp_if_include lo --mca oob_tcp_if_include lo)
fi

shape() {   # namespace device rate
    # Token bucket: the rate, a bucket of 200 us at that rate but at least two 64 KiB frames, and
    # a queue of up to 100 ms.
    local burst=$(( $3 * 1000000000 / 8 / 5000 ))
    (( burst < 131072 )) && burst=131072
    tc -n "$1" qdisc replace dev "$2" root tbf rate "${3}gbit" burst "$burst" latency 100ms
}

for rate in $rates; do
    if [[ $links == star ]]; then
        for (( r = 0; r < ranks; r++ )); do shape "$ns-r$r" eth0 "$rate"; shape "$ns" "h$r" "$rate"; done
    else
        shape "$ns" lo "$rate"
    fi
    for exchange in $exchanges; do
        variants=$overlaps
        [[ $exchange == reduce_scatter ]] || variants=on   # (the all-gather has nothing to overlap)
        for overlap in $variants; do
            cfg="$work/$exchange-$overlap.yaml"
            {
                if [[ -n $shards ]]; then sed "s/^\(  shards:\).*/\1 $shards/" "$config"; else cat "$config"; fi
                echo "distributed:"
                echo "  exchange: $exchange"
                [[ -n $bucket_kb ]] && echo "  bucket_kb: $bucket_kb"
                [[ -n $segment_kb ]] && echo "  segment_kb: $segment_kb"
                [[ -n $sends_in_flight ]] && echo "  sends_in_flight: $sends_in_flight"
                [[ $overlap == off ]] && echo "  overlap_forward: false"
            } > "$cfg"
            line=$(ip netns exec "$ns" mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$ranks" \
                       --mca btl tcp,self "${mpi_net[@]}" ${launcher[@]+"${launcher[@]}"} \
                       "$(realpath "$binary")" bench train --config "$cfg" --batch-size "$batch" --threads "$threads" --format json \
                       ${extra[@]+"${extra[@]}"} | grep '^{' | head -1)
            echo "{\"links\":\"$links\",\"rate_gbit\":$rate,\"exchange\":\"$exchange\",${line#\{}"
        done
    done
done
