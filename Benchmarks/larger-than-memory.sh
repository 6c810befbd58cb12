#!/usr/bin/env bash
# Larger than memory: LeNet-5 (configs/lenet5-mnist.yaml) trained for one epoch from a packed file
# larger than the memory a cgroup v1 allows the process (page cache included), against the same
# file in page cache, interleaved. Prints images/s of each run, the medians, their ratio, and
# whether the weights of every run are the same.
#
# The file is MNIST's training set repeated COPIES times (IDX files written here, then `ptrain pack`).
# Before each limited run the file alone is evicted from the page cache (dd iflag=nocache, i.e.
# POSIX_FADV_DONTNEED on this file only), so the pages it reads are charged to the cgroup; before
# each page-cache run it is read whole. Nothing else is dropped, and nothing outside the cgroup
# it creates is limited.
#
# Needs root and the cgroup v1 memory controller (/sys/fs/cgroup/memory); ptrain built:
#   swift build -c release
#   sudo Benchmarks/larger-than-memory.sh --data DIR
#   sudo Benchmarks/larger-than-memory.sh --data DIR --copies 6 --limit-mb 150 --rounds 3 --threads 2
# Options (defaults): --binary .build/release/ptrain, --config configs/lenet5-mnist.yaml (its
# 'source: idx' becomes 'source: packed'), --copies 6, --limit-mb 150, --rounds 3, --threads 2,
# --tmp DIR for the scratch folder (default: mktemp's, i.e. $TMPDIR), on a disk, not tmpfs.
#
# The cgroup (/sys/fs/cgroup/memory/ptrain-ltm-PID) and the temporary folder are removed on exit
# (also on errors and Ctrl-C). A run that goes over the limit is killed by the kernel and ends the
# script with an error.
set -euo pipefail

binary=.build/release/ptrain
config=configs/lenet5-mnist.yaml
data=""
copies=6
limit_mb=150
rounds=3
threads=2
tmp_parent=""

usage() { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary=$2; shift 2 ;;
        --config) config=$2; shift 2 ;;
        --data) data=$2; shift 2 ;;
        --copies) copies=$2; shift 2 ;;
        --limit-mb) limit_mb=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --tmp) tmp_parent=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "larger-than-memory: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

fail() { echo "larger-than-memory: $*" >&2; exit 1; }
[ -n "$data" ] || fail "--data DIR (the four MNIST IDX files, uncompressed) is required"
[ "$(id -u)" -eq 0 ] || fail "needs root (it creates a memory cgroup)"
memory_root=/sys/fs/cgroup/memory
[ -f "$memory_root/memory.limit_in_bytes" ] || fail "$memory_root: no cgroup v1 memory controller"
[ -x "$binary" ] || fail "$binary: not built (swift build -c release)"
[ -f "$config" ] || fail "$config: config not found"
for n in "$copies" "$limit_mb" "$rounds" "$threads"; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || fail "'$n': copies, limit, rounds and threads must be positive integers"
done

# The MNIST files under either naming (raw only).
pick() {
    local f
    for f in "$data/$1" "$data/$2"; do
        if [ -f "$f" ]; then echo "$f"; return 0; fi
    done
    fail "$data: neither $1 nor $2 found (uncompressed IDX files are needed)"
}
train_images=$(pick train-images-idx3-ubyte train-images.idx3-ubyte)
train_labels=$(pick train-labels-idx1-ubyte train-labels.idx1-ubyte)
test_images=$(pick t10k-images-idx3-ubyte t10k-images.idx3-ubyte)
test_labels=$(pick t10k-labels-idx1-ubyte t10k-labels.idx1-ubyte)

cgroup="$memory_root/ptrain-ltm-$$"
if [ -n "$tmp_parent" ]; then work=$(mktemp -d -p "$tmp_parent" ptrain-ltm.XXXXXX); else work=$(mktemp -d -t ptrain-ltm.XXXXXX); fi
cleanup() {
    if [ -d "$cgroup" ]; then
        # Only processes this script started can be inside; they have ended by now.
        rmdir "$cgroup" 2> /dev/null || echo "larger-than-memory: could not remove $cgroup" >&2
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
[ "$(stat -f -c %T "$work")" != tmpfs ] || fail "$work is on tmpfs (its pages cannot be evicted): pass --tmp DIR on a disk"

# A big-endian 32-bit integer as 4 bytes.
be32() {
    local n=$1
    printf '%b' "$(printf '\\%03o\\%03o\\%03o\\%03o' $((n >> 24 & 255)) $((n >> 16 & 255)) $((n >> 8 & 255)) $((n & 255)))"
}

# MNIST's training set repeated: IDX headers for copies x 60,000 samples, the bodies appended.
mkdir -p "$work/idx"
count=$(( $(stat -c %s "$train_labels") - 8 ))
{
    printf '\0\0\10\3'; be32 $((count * copies)); be32 28; be32 28
    for _ in $(seq "$copies"); do tail -c +17 "$train_images"; done
} > "$work/idx/train-images-idx3-ubyte"
{
    printf '\0\0\10\1'; be32 $((count * copies))
    for _ in $(seq "$copies"); do tail -c +9 "$train_labels"; done
} > "$work/idx/train-labels-idx1-ubyte"
cp "$test_images" "$work/idx/t10k-images-idx3-ubyte"
cp "$test_labels" "$work/idx/t10k-labels-idx1-ubyte"
file="$work/big.ptpack"
"$binary" pack --config "$config" --data "$work/idx" --output "$file" --quiet
rm -rf "$work/idx"
sed 's/^\(  *source:\) idx/\1 packed/' "$config" > "$work/packed.yaml"
grep -q 'source: packed' "$work/packed.yaml" || fail "$config: no 'source: idx' line to turn into 'source: packed'"

file_mb=$(( $(stat -c %s "$file") / 1048576 ))
[ "$file_mb" -gt "$limit_mb" ] || fail "the packed file ($file_mb MB) is not larger than the limit ($limit_mb MB): raise --copies"
mkdir "$cgroup"
echo $((limit_mb * 1048576)) > "$cgroup/memory.limit_in_bytes"
echo "larger-than-memory: $file_mb MB packed file ($((count * copies)) training samples), cgroup $cgroup limited to $limit_mb MB," \
     "$rounds rounds, --threads $threads, $(nproc) CPUs, load average $(cut -d ' ' -f 1-3 /proc/loadavg)"

# images/s of the finished run in folder $1 (the "done" line of metrics.jsonl).
rate() { sed -n 's/.*"event":"done".*"images_per_sec":\([0-9.]*\).*/\1/p' "$1/metrics.jsonl"; }

limited=() cached=()
for round in $(seq "$rounds"); do
    # Limited: the file out of the page cache, the process (and the pages it reads) in the cgroup.
    dd if="$file" iflag=nocache count=0 status=none
    echo 0 > "$cgroup/memory.max_usage_in_bytes"
    echo 0 > "$cgroup/memory.failcnt"
    out="$work/limited-$round"
    # shellcheck disable=SC2016 # $$ is the inner shell's PID, expanded there on purpose
    if ! bash -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' _ "$cgroup" \
        "$binary" train --config "$work/packed.yaml" --data "$file" --epochs 1 --threads "$threads" --quiet --output "$out"; then
        fail "round $round: the limited run failed (killed over the limit? memory.failcnt $(cat "$cgroup/memory.failcnt"))"
    fi
    peak_mb=$(( $(cat "$cgroup/memory.max_usage_in_bytes") / 1048576 ))
    hits=$(cat "$cgroup/memory.failcnt")
    limited+=("$(rate "$out")")
    echo "round $round: limited    $(rate "$out") images/s (cgroup peak $peak_mb MB of $limit_mb, limit reached $hits times)"

    # Page cache: the whole file read first; no cgroup.
    cat "$file" > /dev/null
    out="$work/cached-$round"
    "$binary" train --config "$work/packed.yaml" --data "$file" --epochs 1 --threads "$threads" --quiet --output "$out"
    cached+=("$(rate "$out")")
    echo "round $round: page cache $(rate "$out") images/s"
done

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
m_limited=$(median "${limited[@]}")
m_cached=$(median "${cached[@]}")
same=yes
for out in "$work"/limited-* "$work"/cached-*; do
    cmp -s "$work/limited-1/model.safetensors" "$out/model.safetensors" || same=no
done
awk -v l="$m_limited" -v c="$m_cached" -v s="$same" 'BEGIN {
    printf "median images/s: limited %.0f, page cache %.0f, ratio %.3f (%s 0.90); weights identical in every run: %s\n", l, c, l / c, (l / c >= 0.90 ? ">=" : "<"), s
}'
