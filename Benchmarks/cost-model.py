#!/usr/bin/env python3
"""Alpha-beta cost model of one data-parallel training step of ptrain across R ranks
(docs/ARCHITECTURE.md, "Cost model"). Two uses:

  Benchmarks/cost-model.py --check runs.jsonl   # predictions next to shaped-link measurements
  Benchmarks/cost-model.py --predict            # efficiency at 16/64/256 nodes

runs.jsonl holds lines written by Benchmarks/shaped-links.sh (cifar-small). The model:

  compute C: forward + backward of a rank's shards (measured, or FLOPs / rate).
  sharded exchange (reduce_scatter), per bucket b of n_b floats, in backward order:
      ready_b  = when the last local shard has finished backward through the bucket's layers
      x_b      = 2 * ((R-1)/R * 4 n_b * beta + (R-1) * alpha)     (reduce-scatter + all-gather)
      start_b  = max(ready_b, end_{b-1});  end_b = start_b + x_b  (one link, buckets in order)
      exposed  = end_last - end of backward
      bytes sent per rank 2 (R-1)/R 4P, messages 2 K (R-1)
  all-gather of partials (allgather), after backward:
      exposed  = (R-1) * (4P * beta + alpha) + R P adds (reduce) + optimizer
      bytes sent per rank (R-1) 4P, messages R-1 (ring)
  both: + 4 small collectives per step (loss and accuracy totals, stop agreement, non-finite
      agreement), 2 log2(R) alpha each.
  beta = 1 / bandwidth of a rank's link; on a shaped loopback all R ranks share one medium, so
  beta = R / rate there.

--check --calibration tiny.jsonl fits the link's effective alpha and beta from runs of the same
links and exchanges with almost no compute (--batch-size 2), where the whole exchange is exposed:
per link model and exchange, the exchange time x at each rate is fitted as x = a + b / rate
(least squares); a gives alpha (a / messages per step), b / rate gives beta. The model then
predicts the overlapped runs from their measured compute alone.
"""
import argparse
import json
import math
import sys

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
    """(floats, backward multiply-adds up to and including the bucket's lowest layer), backward order."""
    result, floats, done = [], 0, 0
    for i, (_, params, macs) in enumerate(reversed(layers)):
        floats += params
        done += 2 * macs
        if floats >= bucket_floats or i == len(layers) - 1:
            result.append((floats, done))
            floats = 0
    if result and result[-1][0] == 0 and len(result) > 1:
        result.pop()
        result[-1] = (result[-1][0], done)
    return result


def sharded_exposed(layers, ranks, compute, beta, alpha, bucket_floats=262144, rounds=1):
    """Exposed exchange (s) after the last backward: compute (s) is the rank's forward + backward of
    `rounds` shards per worker; only the last round's backward overlaps."""
    total = sum(m for _, _, m in layers)
    per_mac = compute / rounds / (3 * total)          # seconds per multiply-add of one shard round
    backward_end = compute
    backward_start = compute - 2 * total * per_mac
    link = 0.0
    for floats, done in buckets(layers, bucket_floats):
        ready = backward_start + done * per_mac
        x = 2 * ((ranks - 1) / ranks * 4 * floats * beta + (ranks - 1) * alpha)
        link = max(ready, link) + x
    return max(0.0, link - backward_end)


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
    bucket_count = len(buckets(layers, 262144))
    print("links     Gbit/s  exchange        compute  measured step  predicted step  error   measured exposed  predicted exposed")
    for line in open(path):
        run = json.loads(line)
        ranks, rate = run["processes"], run["rate_gbit"] * 1e9 / 8
        beta = (ranks if run["links"] == "loopback" else 1) / rate
        compute = (run["compute_ms"] + run["data_ms"]) / 1e3
        fit = fits.get((run["links"], run["exchange"]))
        if run["exchange"] == "reduce_scatter":
            a, b = fit if fit else (None, None)
            run_alpha = a / (2 * bucket_count * (ranks - 1)) if fit else alpha
            run_beta = b / run["rate_gbit"] / (2 * (ranks - 1) / ranks * 4 * params) if fit else beta
            exposed = sharded_exposed(layers, ranks, compute, run_beta, run_alpha)
            measured_exposed = run["exposed_ms"]
        else:
            link = fit[0] + fit[1] / run["rate_gbit"] if fit else (ranks - 1) * (4 * params * beta + alpha)
            exposed = link + (run["reduce_ms"] + run["optimizer_ms"]) / 1e3
            measured_exposed = run["communicate_ms"] + run["reduce_ms"] + run["optimizer_ms"]
        step = compute + exposed
        error = (step * 1e3 - run["step_ms"]) / run["step_ms"]
        print(f"{run['links']:9} {run['rate_gbit']:6}  {run['exchange']:14} {compute * 1e3:8.1f}  {run['step_ms']:13.1f}"
              f"  {step * 1e3:14.1f}  {error * 100:+5.1f}%  {measured_exposed:16.1f}  {exposed * 1e3:17.1f}")


def predict(core_gflops, cores, batch, gbit, alpha, memory_bandwidth, bucket_floats):
    beta = 8 / (gbit * 1e9)
    print(f"per node: batch {batch}, {cores} cores at {core_gflops} GFLOP/s each; links {gbit} Gbit/s, alpha {alpha * 1e6:.0f} us;"
          f" buckets of {bucket_floats // 256} KiB")
    print("model                  params  compute ms  nodes  bytes/rank MB (allgather / sharded)  exposed ms (allgather / sharded)  efficiency (allgather / sharded)")
    for name, build in MODELS.items():
        layers = build()
        params = sum(p for _, p, _ in layers)
        macs = sum(m for _, _, m in layers)
        compute = batch * 6 * macs / (cores * core_gflops * 1e9)
        for nodes in [16, 64, 256]:
            ag = allgather_exposed(params, nodes, beta, alpha, memory_bandwidth)
            sh = sharded_exposed(layers, nodes, compute, beta, alpha, bucket_floats) + small_collectives(nodes, alpha)
            print(f"{name:21} {params / 1e6:6.2f}M  {compute * 1e3:10.2f}  {nodes:5}  {(nodes - 1) * 4 * params / 1e6:12.1f} / {2 * (nodes - 1) / nodes * 4 * params / 1e6:6.2f}"
                  f"  {ag * 1e3:21.2f} / {sh * 1e3:7.2f}  {compute / (compute + ag) * 100:21.1f}% / {compute / (compute + sh) * 100:5.1f}%")


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
