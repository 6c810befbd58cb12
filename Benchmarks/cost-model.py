#!/usr/bin/env python3
"""Alpha-beta cost model of one data-parallel training step of ptrain across R ranks
(docs/ARCHITECTURE.md, "Cost model"). Two uses:

  Benchmarks/cost-model.py --check runs.jsonl   # predictions next to shaped-link measurements
  Benchmarks/cost-model.py --predict            # efficiency at 16/64/256 nodes

runs.jsonl holds lines written by Benchmarks/shaped-links.sh (cifar-small). The model:

  compute C: forward + backward of a rank's shards (measured, or FLOPs / rate); a layer's forward
      time is taken proportional to its multiply-adds, its backward to twice that.
  sharded exchange (reduce_scatter), per bucket b of n_b floats, in backward order:
      ready_b  = when the last local shard has finished backward through the bucket's layers
      units    = reduce-scatter of b (from ready_b), all-gather of b (when its reduce-scatter is
                 done), each (R-1)/R 4 n_b beta of link time in segments of at most 64 KiB to one
                 peer, alpha per segment
      the link serves one segment at a time; the segment chosen next (the most urgent unit
      available then: the highest bucket, its reduce-scatter before its all-gather) waits behind
      2 more: a synchronous send completes once the receiver has matched it, so when one of the 2
      sends in flight completes and the next is posted, the rest of the matched one and the other
      one are still ahead
      arrive_b = end of b's all-gather
      overlap_forward (default): the next step's forward of bucket b's layers (first layers, the
      last bucket, first) starts at max(end of the layers before, arrive_b); exposed = the waits;
      without it: exposed = arrive_last - end of backward
      the model runs steps until the step time settles
      bytes sent per rank 2 (R-1)/R 4P; messages 2 (R-1) sum_b ceil(4 n_b / (R 64 KiB))
  all-gather of partials (allgather), after backward:
      exposed  = (R-1) * (4P * beta + alpha) + R P adds (reduce) + optimizer
      bytes sent per rank (R-1) 4P, messages R-1 (ring)
  both (--predict): + 4 small collectives per step (loss and accuracy totals, stop agreement,
      non-finite agreement), 2 log2(R) alpha each (`ptrain bench` runs none).
  beta = 1 / bandwidth of a rank's link; on a shaped loopback all R ranks share one medium, so
  beta = R / rate there.

--check --calibration tiny.jsonl fits the link's effective alpha and beta from runs of the same
links and exchanges with almost no compute (--batch-size 2), where the whole exchange is exposed:
per link model and exchange, the exchange time x at each rate is fitted as x = a + b / rate
(least squares); a gives alpha (a / messages per step), b / rate gives beta. The model then
predicts the overlapped runs from their measured compute alone.
"""
import argparse
import collections
import json
import math
import statistics
import sys

SEGMENT_BYTES = 65536        # ShardedExchange.defaultSegmentFloats * 4
SENDS_IN_FLIGHT = 2          # ShardedExchange.defaultSendsInFlight

# Layers as (kind, parameters, forward multiply-adds per sample), forward order.


def conv(cin, cout, k, hw, bn=False):
    layers = [("conv", cout * cin * k * k + cout, hw * hw * cout * cin * k * k)]
    if bn:
        layers.append(("bn", 2 * cout, 4 * hw * hw * cout))
    return layers


def cifar_small():
    return (conv(3, 32, 3, 32) + conv(32, 32, 3, 32) + conv(32, 64, 3, 16) + conv(64, 64, 3, 16)
            + [("dense", 4096 * 256 + 256, 4096 * 256), ("dense", 256 * 10 + 10, 2560)])


def resnet20():
    layers = conv(3, 16, 3, 32, bn=True)
    cin = 16
    for cout, hw in [(16, 32), (32, 16), (64, 8)]:
        for block in range(3):
            layers += conv(cin, cout, 3, hw, bn=True) + conv(cout, cout, 3, hw, bn=True)
            cin = cout
    return layers + [("dense", 64 * 10 + 10, 640)]


def resnet18_cifar():
    layers = conv(3, 64, 3, 32, bn=True)
    cin = 64
    for cout, hw in [(64, 32), (128, 16), (256, 8), (512, 4)]:
        for block in range(2):
            layers += conv(cin, cout, 3, hw, bn=True) + conv(cout, cout, 3, hw, bn=True)
            if cin != cout:
                layers += conv(cin, cout, 1, hw, bn=True)
            cin = cout
    return layers + [("dense", 512 * 10 + 10, 5120)]


MODELS = {"cifar-small": cifar_small, "resnet20": resnet20, "resnet18-cifar (11M)": resnet18_cifar}


def buckets(layers, bucket_floats):
    """(floats, forward multiply-adds of the bucket's layers) per bucket, backward order (bucket 0
    holds the last layers), closed at a layer boundary once it holds bucket_floats."""
    result, floats, macs = [], 0, 0
    for i, (_, params, m) in enumerate(reversed(layers)):
        floats += params
        macs += m
        if floats >= bucket_floats or i == len(layers) - 1:
            result.append((floats, macs))
            floats, macs = 0, 0
    if len(result) > 1 and result[-1][0] == 0:
        floats, macs = result.pop()
        result[-1] = (result[-1][0], result[-1][1] + macs)
    return result


def link_schedule(units, seg_time, alpha, in_flight=SENDS_IN_FLIGHT + 1):
    """Serves units on one link, segment by segment. units: dicts with prio (higher first), avail
    (None: after `after` is done), after (index or None), work (s of link time), segments.
    Returns each unit's end time. `in_flight` segments are committed at a time (the one being
    served and the ones queued behind it)."""
    n = len(units)
    left = [u["work"] + u["segments"] * alpha for u in units]
    per_segment = [(u["work"] / max(1, u["segments"])) + alpha for u in units]
    avail = [u["avail"] for u in units]
    done = [None] * n
    committed = collections.deque()   # (unit, seconds)
    uncommitted = list(left)
    t = min(a for a in avail if a is not None)
    while any(d is None for d in done):
        while len(committed) < in_flight:
            ready = [i for i in range(n) if uncommitted[i] > 1e-15 and avail[i] is not None and avail[i] <= t]
            if not ready:
                break
            i = max(ready, key=lambda k: units[k]["prio"])
            d = min(per_segment[i], uncommitted[i])
            uncommitted[i] -= d
            committed.append((i, d))
        if not committed:
            t = min(a for i, a in enumerate(avail) if a is not None and done[i] is None and uncommitted[i] > 1e-15)
            continue
        i, d = committed.popleft()
        t += d
        left[i] -= d
        if left[i] <= 1e-12 and done[i] is None and uncommitted[i] <= 1e-15:
            done[i] = t
            for k in range(n):
                if units[k]["after"] == i:
                    avail[k] = t
    return done


def sharded_run(layers, ranks, compute, beta, alpha, bucket_floats=262144, rounds=1, overlap_forward=True,
                collectives=0.0, steps=8):
    """Steady-state (step seconds, exposed seconds) of the sharded exchange: compute (s) is the
    rank's forward + backward of `rounds` shards per worker; only the last round's backward
    overlaps the exchange, only the first round's forward waits for it."""
    total = sum(m for _, _, m in layers)
    per_mac = compute / rounds / (3 * total)          # seconds per forward multiply-add of one shard round
    bl = buckets(layers, bucket_floats)
    k = len(bl)
    forward = [m * per_mac for _, m in bl]
    backward = [2 * m * per_mac for _, m in bl]
    seg_floats = SEGMENT_BYTES // 4
    arrive = [-math.inf] * k
    t, history = 0.0, []
    for _ in range(steps):
        start, exposed = t, 0.0
        for b in reversed(range(k)):                  # forward: the first layers (last bucket) first
            if overlap_forward and arrive[b] > t:
                exposed += arrive[b] - t
                t = arrive[b]
            t += forward[b]
        t += (rounds - 1) * (sum(forward) + sum(backward))
        units = []
        for b in range(k):
            t += backward[b]
            floats = bl[b][0]
            piece = math.ceil(floats / ranks)
            segments = (ranks - 1) * math.ceil(piece / seg_floats)
            work = (ranks - 1) / ranks * 4 * floats * beta
            units.append({"prio": 2 * b + 1, "avail": t, "after": None, "work": work, "segments": segments})
            units.append({"prio": 2 * b, "avail": None, "after": 2 * b, "work": work, "segments": segments})
        end_backward = t
        ends = link_schedule(units, SEGMENT_BYTES * beta, alpha)
        arrive = [ends[2 * b + 1] for b in range(k)]
        if not overlap_forward:
            wait = max(0.0, max(arrive) - end_backward)
            exposed += wait
            t += wait
        t += collectives
        history.append((t - start, exposed))
    step = statistics.mean(h[0] for h in history[steps // 2:])
    exposed = statistics.mean(h[1] for h in history[steps // 2:])
    return step, exposed


def messages_per_step(layers, ranks, bucket_floats=262144):
    seg_floats = SEGMENT_BYTES // 4
    return sum(2 * (ranks - 1) * math.ceil(math.ceil(f / ranks) / seg_floats) for f, _ in buckets(layers, bucket_floats))


def small_collectives(ranks, alpha):
    return 4 * 2 * math.log2(ranks) * alpha


def allgather_exposed(params, ranks, beta, alpha, memory_bandwidth):
    return (ranks - 1) * (4 * params * beta + alpha) + ranks * 4 * params / memory_bandwidth + small_collectives(ranks, alpha)


def check(path, alpha, calibration):
    layers = cifar_small()
    params = sum(p for _, p, _ in layers)
    # Fits x = a + b / rate per (links, exchange) from the calibration runs.
    points = {}
    for line in open(calibration) if calibration else []:
        run = json.loads(line)
        x = (run["exchange_ms"] if run["exchange"] == "reduce_scatter" else run["communicate_ms"]) / 1e3
        points.setdefault((run["links"], run["exchange"]), []).append((1 / run["rate_gbit"], x))
    fits = {}
    for key, xy in points.items():
        n = len(xy)
        mx, my = sum(u for u, _ in xy) / n, sum(v for _, v in xy) / n
        b = sum((u - mx) * (v - my) for u, v in xy) / max(1e-30, sum((u - mx) ** 2 for u, _ in xy))
        fits[key] = (my - b * mx, b)
    if fits:
        print("calibration (x = a + b / rate in Gbit/s):", ", ".join(f"{k[0]} {k[1]}: a {a * 1e3:.2f} ms, b {b * 1e3:.1f} ms"
                                                                   for k, (a, b) in sorted(fits.items())))
    groups = {}
    for line in open(path):
        run = json.loads(line)
        overlap = run["exchange"] == "reduce_scatter" and run.get("overlap_forward", False)
        groups.setdefault((run["links"], run["rate_gbit"], run["exchange"], overlap), []).append(run)
    print("| links | Gbit/s | exchange | overlap into forward | compute ms | step ms, measured / predicted (medians) | error of each run | exposed ms, measured / predicted | exposed / whole exchange, measured |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    worst, within, count = 0.0, 0, 0
    for (links, rate_gbit, exchange, overlap), runs in sorted(groups.items()):
        predicted, errors, exposed_p, ratio = [], [], [], []
        for run in runs:
            ranks, rate = run["processes"], rate_gbit * 1e9 / 8
            beta = (ranks if links == "loopback" else 1) / rate
            compute = (run["compute_ms"] + run["data_ms"]) / 1e3
            fit = fits.get((links, exchange))
            if exchange == "reduce_scatter":
                a, b = fit if fit else (None, None)
                run_alpha = a / messages_per_step(layers, ranks) if fit else alpha
                run_beta = b / rate_gbit / (2 * (ranks - 1) / ranks * 4 * params) if fit else beta
                step, exposed = sharded_run(layers, ranks, compute, run_beta, run_alpha, overlap_forward=overlap)
                measured_exposed = run["exposed_ms"]
                ratio.append(run["exposed_ms"] / max(1e-9, run["exchange_ms"]))
            else:
                link = fit[0] + fit[1] / rate_gbit if fit else (ranks - 1) * (4 * params * beta + alpha)
                exposed = link + (run["reduce_ms"] + run["optimizer_ms"]) / 1e3
                step = compute + exposed
                measured_exposed = run["communicate_ms"] + run["reduce_ms"] + run["optimizer_ms"]
            predicted.append((step, exposed, measured_exposed))
            error = (step * 1e3 - run["step_ms"]) / run["step_ms"]
            errors.append(error)
            worst = max(worst, abs(error))
            within += abs(error) <= 0.2
            count += 1
        med = statistics.median
        compute_ms = med(r["compute_ms"] + r["data_ms"] for r in runs)
        ratio_text = f"{med(ratio) * 100:.0f}% ({', '.join(f'{x * 100:.0f}' for x in ratio)})" if ratio else "-"
        print(f"| {links} | {rate_gbit} | {exchange} | {'yes' if overlap else 'no'} | {compute_ms:.1f} | "
              f"{med(r['step_ms'] for r in runs):.1f} / {med(p[0] for p in predicted) * 1e3:.1f} | "
              f"{', '.join(f'{e * 100:+.1f}%' for e in errors)} | {med(p[2] for p in predicted):.1f} / {med(p[1] for p in predicted) * 1e3:.1f} | {ratio_text} |")
    print(f"\n{within} of {count} step predictions within 20% (worst {worst * 100:.1f}%)")


def predict(core_gflops, cores, batch, gbit, alpha, memory_bandwidth, bucket_floats):
    beta = 8 / (gbit * 1e9)
    print(f"per node: batch {batch}, {cores} cores at {core_gflops} GFLOP/s each; links {gbit} Gbit/s, alpha {alpha * 1e6:.0f} us;"
          f" buckets of {bucket_floats // 256} KiB")
    print("| model | params | compute ms | nodes | bytes sent per rank, MB (all-gather / sharded) | messages per rank (sharded) | exposed ms (all-gather / sharded, backward only / sharded, into forward) | efficiency (all-gather / backward only / into forward) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, build in MODELS.items():
        layers = build()
        params = sum(p for _, p, _ in layers)
        macs = sum(m for _, _, m in layers)
        compute = batch * 6 * macs / (cores * core_gflops * 1e9)
        for nodes in [16, 64, 256]:
            small = small_collectives(nodes, alpha)
            ag = allgather_exposed(params, nodes, beta, alpha, memory_bandwidth)
            _, off = sharded_run(layers, nodes, compute, beta, alpha, bucket_floats, overlap_forward=False)
            _, on = sharded_run(layers, nodes, compute, beta, alpha, bucket_floats, overlap_forward=True)
            off, on = off + small, on + small
            eff = [compute / (compute + x) * 100 for x in (ag, off, on)]
            print(f"| {name} | {params / 1e6:.2f} M | {compute * 1e3:.2f} | {nodes} | {(nodes - 1) * 4 * params / 1e6:.1f} / {2 * (nodes - 1) / nodes * 4 * params / 1e6:.2f}"
                  f" | {messages_per_step(layers, nodes, bucket_floats)} | {ag * 1e3:.2f} / {off * 1e3:.2f} / {on * 1e3:.2f} | {eff[0]:.1f}% / {eff[1]:.1f}% / {eff[2]:.1f}% |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", metavar="FILE", help="shaped-link runs (JSON lines from shaped-links.sh)")
    parser.add_argument("--calibration", metavar="FILE", help="runs of the same links with almost no compute (see above)")
    parser.add_argument("--predict", action="store_true", help="efficiency at 16, 64 and 256 nodes")
    parser.add_argument("--alpha-us", type=float, default=2.0, help="latency per message in microseconds")
    parser.add_argument("--gbit", type=float, default=25.0, help="link rate for --predict")
    parser.add_argument("--core-gflops", type=float, default=None, help="training GFLOP/s per core for --predict (required)")
    parser.add_argument("--cores", type=int, default=32, help="cores per node for --predict")
    parser.add_argument("--batch", type=int, default=128, help="samples per node per step for --predict")
    parser.add_argument("--bucket-kb", type=int, default=1024, help="bucket size for --predict (distributed.bucket_kb)")
    parser.add_argument("--memory-gbs", type=float, default=100.0, help="node memory bandwidth (GB/s) for the all-gather's reduction")
    args = parser.parse_args()
    if not args.check and not args.predict:
        parser.print_help()
        sys.exit(2)
    if args.check:
        check(args.check, args.alpha_us * 1e-6, args.calibration)
    if args.predict:
        if args.core_gflops is None:
            sys.exit("cost-model.py: --predict needs --core-gflops (measure: 6 * MACs per sample * images/s of ptrain bench train --threads 1)")
        args.check and print()
        predict(args.core_gflops, args.cores, args.batch, args.gbit, args.alpha_us * 1e-6, args.memory_gbs * 1e9,
                args.bucket_kb * 256)
