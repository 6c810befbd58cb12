#!/usr/bin/env python3
"""ptrain against PyTorch (CPU): training steps per second, interleaved, with the ratio of medians.

For each round, each case and each thread count it runs `ptrain bench train` and torch_bench.py
one after the other (alternating which goes first), so both see the same load on the machine.
It prints one row per case and thread count: the per-round images/s of both, the ratio of the
medians, and the per-round ratios. Both sides train on synthetic in-memory batches with SGD and
momentum; before measuring it checks that both models have the same number of trainable
parameters and stops with exit status 1 if they differ.

Run from anywhere, after `swift build -c release`, with a Python that has torch:

    python3 Benchmarks/peers/compare.py                              # the cases of docs/BENCHMARKS.md
    python3 Benchmarks/peers/compare.py --rounds 3 --threads 1,2 lenet5:64 cifar-small:128
    python3 Benchmarks/peers/compare.py resnet20:128:configs/resnet20-cifar.yaml
    python3 Benchmarks/peers/compare.py --precision fp32,bf16 resnet20:128    # PyTorch at its best for each
    python3 Benchmarks/peers/compare.py --peers nchw,channels_last,channels_last+bf16 resnet20:128

A case is MODEL:BATCH[:CONFIG]; MODEL is one of torch_bench.py's models, CONFIG (relative to the
repository root) defaults to the model's config in configs/.

PyTorch's settings: a peer is a layout (nchw, PyTorch's default, or channels_last) with fp32 or
`+bf16` (torch.autocast("cpu", bfloat16)). By default (`--peers best`) each ptrain precision meets
PyTorch at its best for it: ptrain fp32 against channels_last, ptrain bf16 against
channels_last+bf16. A list of peers compares every ptrain precision with each of them. Every row
names ptrain's precision and the peer's layout and precision. ptrain's precision goes to
`ptrain bench train --precision`; a binary without that option runs fp32 only, and bf16 rows are
skipped with a message.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CONFIGS = {"lenet5": "configs/lenet5-mnist.yaml", "cifar-small": "configs/cifar-small.yaml",
           "resnet20": "configs/resnet20-cifar.yaml"}
DEFAULT_CASES = ["lenet5:64", "cifar-small:128"]


def fail(message):
    print(f"compare.py: {message}", file=sys.stderr)
    sys.exit(1)


def run(command):
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"{' '.join(command)} exited with status {result.returncode}: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def last_json(output, command):
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    fail(f"no JSON line in the output of {' '.join(command)}")


def parse_case(text):
    parts = text.split(":")
    if len(parts) not in (2, 3) or parts[0] not in CONFIGS or not parts[1].isdigit() or int(parts[1]) < 1:
        fail(f"case '{text}': expected MODEL:BATCH[:CONFIG] with MODEL one of {', '.join(CONFIGS)} and BATCH a positive number")
    config = parts[2] if len(parts) == 3 else CONFIGS[parts[0]]
    if not os.path.isfile(os.path.join(ROOT, config)):
        fail(f"case '{text}': config file '{config}' not found (paths are relative to the repository root)")
    return parts[0], int(parts[1]), config


def ptrain_parameters(ptrain, config):
    """Trainable parameters from `ptrain summary` (its last line: 'total ... PARAMETERS FLOPS')."""
    command = [ptrain, "summary", "--config", config]
    lines = run(command).strip().splitlines()
    fields = lines[-1].split() if lines else []
    if len(fields) < 3 or fields[0] != "total" or not fields[-2].isdigit():
        fail(f"could not read the parameter count from {' '.join(command)}")
    return int(fields[-2])


def cpu_name():
    """The CPU's model name, family and model, and its widest x86 vector extensions, from /proc/cpuinfo (Linux)."""
    name, flags, ids = "unknown CPU", [], {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key = line.split(":", 1)[0].strip()
                if key == "model name" and name == "unknown CPU":
                    name = line.split(":", 1)[1].strip()
                elif key in ("cpu family", "model") and key not in ids:
                    ids[key] = line.split(":", 1)[1].strip()
                elif key == "flags" and not flags:
                    present = set(line.split(":", 1)[1].split())
                    flags = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16") if f in present]
    except OSError:
        pass
    family = f"family {ids['cpu family']} model {ids['model']}; " if len(ids) == 2 else ""
    return f"{name} ({family}{', '.join(flags) or 'no AVX2'})"


def median(values):
    return statistics.median(values)


PEERS = {"nchw": [], "channels_last": ["--channels-last"], "nchw+bf16": ["--bf16"],
         "channels_last+bf16": ["--channels-last", "--bf16"]}
BEST_PEER = {"fp32": "channels_last", "bf16": "channels_last+bf16"}


def peer_label(peer):
    layout, _, precision = peer.partition("+")
    return f"{layout}, {'bf16 autocast' if precision else 'fp32'}"


def ptrain_has_precision(ptrain):
    """Whether `ptrain bench train` takes --precision (the bf16 work adds it)."""
    result = subprocess.run([ptrain, "bench", "train", "--help"], cwd=ROOT, capture_output=True, text=True)
    return "--precision" in result.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cases", nargs="*", default=DEFAULT_CASES, help="MODEL:BATCH[:CONFIG] (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", default="1", help="comma-separated thread counts (default: 1)")
    ap.add_argument("--windows", type=int, default=7, help="timed windows per measurement (median reported)")
    ap.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per measurement")
    ap.add_argument("--ptrain", default=os.path.join(ROOT, ".build", "release", "ptrain"),
                    help="the ptrain binary (default: .build/release/ptrain)")
    ap.add_argument("--python", default=sys.executable, help="the Python with torch (default: this one)")
    ap.add_argument("--json", action="store_true", help="also print every measurement as one JSON line")
    ap.add_argument("--precision", default="fp32",
                    help="comma-separated ptrain precisions: fp32, bf16 (default: fp32)")
    ap.add_argument("--peers", default="best",
                    help="PyTorch settings: best (channels_last for fp32, channels_last+bf16 for bf16) or a "
                         f"comma-separated list of {', '.join(PEERS)} (default: best)")
    a = ap.parse_args()

    try:
        threads = [int(t) for t in a.threads.split(",")]
    except ValueError:
        threads = []
    if not threads or min(threads) < 1:
        fail(f"--threads takes a comma-separated list of positive numbers, got '{a.threads}'")
    if a.rounds < 1 or a.windows < 1:
        fail("--rounds and --windows must be at least 1")
    if not os.access(a.ptrain, os.X_OK):
        fail(f"no ptrain binary at '{a.ptrain}'; build it with `swift build -c release` or pass --ptrain")
    cases = [parse_case(c) for c in a.cases]
    torch_script = os.path.join(HERE, "torch_bench.py")
    precisions = [p.strip() for p in a.precision.split(",") if p.strip()]
    if not precisions or any(p not in BEST_PEER for p in precisions):
        fail(f"--precision takes a comma-separated list of fp32 and bf16, got '{a.precision}'")
    has_precision = ptrain_has_precision(a.ptrain)
    if not has_precision and "bf16" in precisions:
        print(f"compare.py: skipping the bf16 rows: {a.ptrain} has no --precision (built without bf16 training)",
              file=sys.stderr)
        precisions = [p for p in precisions if p != "bf16"]
        if not precisions:
            fail("nothing left to measure")
    if a.peers == "best":
        pairs = [(p, BEST_PEER[p]) for p in precisions]
    else:
        listed = [p.strip() for p in a.peers.split(",") if p.strip()]
        if not listed or any(p not in PEERS for p in listed):
            fail(f"--peers takes best or a comma-separated list of {', '.join(PEERS)}, got '{a.peers}'")
        pairs = [(p, peer) for p in precisions for peer in listed]
    peers = list(dict.fromkeys(peer for _, peer in pairs))

    # Same model on both sides: compare trainable parameter counts first. ptrain's conv layers
    # always have a bias; for ResNet-20 the PyTorch model takes the variant (with or without conv
    # biases) whose count matches the config.
    mismatches = []
    torch_flags = {}
    for model, _, config in cases:
        ours = ptrain_parameters(a.ptrain, config)
        counts = {}
        for flags in ([], ["--conv-bias"]) if model == "resnet20" else ([],):
            probe = [a.python, torch_script, "--model", model, "--batch-size", "1", "--windows", "1",
                     "--window-s", "0", "--warmup-s", "0", "--json"] + flags
            counts[tuple(flags)] = last_json(run(probe), probe)["parameters"]
        matching = [flags for flags, theirs in counts.items() if theirs == ours]
        torch_flags[config] = list(matching[0]) if matching else []
        if not matching:
            mismatches.append(f"{model}: {config} has {ours} trainable parameters, the PyTorch model "
                              + " or ".join(str(c) for c in counts.values()))

    if mismatches:
        for m in mismatches:
            print(f"compare.py: the models differ: {m}", file=sys.stderr)
        sys.exit(1)

    # (model, batch, threads) -> {("ptrain", precision) or ("pytorch", peer): [images/s per round]}
    results = {}
    by_cpu = {}   # the same, by CPU time (images per CPU second per thread)
    torch_version = "?"
    for r in range(a.rounds):
        for model, batch, config in cases:
            for t in threads:
                commands = []
                for precision in precisions:
                    command = [a.ptrain, "bench", "train", "--config", config, "--batch-size", str(batch),
                               "--threads", str(t), "--windows", str(a.windows), "--warmup", str(a.warmup),
                               "--format", "json"] + (["--precision", precision] if has_precision else [])
                    commands.append((("ptrain", precision), command))
                for peer in peers:
                    command = [a.python, torch_script, "--model", model, "--batch-size", str(batch),
                               "--threads", str(t), "--windows", str(a.windows), "--warmup-s", str(a.warmup),
                               "--json"] + torch_flags[config] + PEERS[peer]
                    commands.append((("pytorch", peer), command))
                if r % 2 == 1:
                    commands.reverse()
                for key, command in commands:
                    record = last_json(run(command), command)
                    if key[0] == "pytorch":
                        torch_version = f"{record['version']} ({record['cpu_capability']})"
                    results.setdefault((model, batch, t), {}).setdefault(key, []).append(record["images_per_sec"])
                    by_cpu.setdefault((model, batch, t), {}).setdefault(key, []).append(record.get("images_per_sec_cpu", 0))
                    if a.json:
                        line = {"round": r + 1, "framework": key[0], "model": model, "config": config,
                                "batch_size": batch, "threads": t, "images_per_sec": record["images_per_sec"],
                                "images_per_sec_cpu": record.get("images_per_sec_cpu")}
                        if key[0] == "ptrain":
                            line.update(precision=key[1], percent_of_peak=record.get("percent_of_peak"),
                                        percent_of_peak_cpu=record.get("percent_of_peak_cpu"))
                        else:
                            line.update(layout=record.get("layout"), precision=record.get("precision"))
                        print(json.dumps(line), flush=True)
                    label = f"ptrain {key[1]}" if key[0] == "ptrain" else f"pytorch {peer_label(key[1])}"
                    print(f"round {r + 1}/{a.rounds}: {label} {model} batch {batch}, {t} thread(s): "
                          f"{record['images_per_sec']:.1f} images/s", file=sys.stderr, flush=True)

    print(f"CPU: {cpu_name()}; PyTorch {torch_version}; {a.rounds} interleaved rounds, "
          f"median of {a.windows} windows each")
    print("| model | threads | ptrain | ptrain images/s (per round) | PyTorch | PyTorch images/s (per round) "
          "| ratio of medians (per round) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (model, batch, t), sides in results.items():
        for precision, peer in pairs:
            ours, theirs = sides[("ptrain", precision)], sides[("pytorch", peer)]
            per_round = ", ".join(f"{o / p:.2f}" for o, p in zip(ours, theirs))
            print(f"| {model}, batch {batch} | {t} | {precision} | {' / '.join(f'{x:,.1f}' for x in ours)} | "
                  f"{peer_label(peer)} | {' / '.join(f'{x:,.1f}' for x in theirs)} | "
                  f"{median(ours) / median(theirs):.2f}x ({per_round}) |")
    # On a shared machine: the same by CPU time (each side's images per CPU second of its process,
    # per thread); closest to an idle machine at one thread, where no thread spins at a barrier.
    print()
    print("By CPU time (images per CPU second per thread; time given to other processes not counted):")
    print("| model | threads | ptrain | ptrain (per round) | PyTorch | PyTorch (per round) | ratio of medians |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (model, batch, t), sides in by_cpu.items():
        for precision, peer in pairs:
            ours, theirs = sides[("ptrain", precision)], sides[("pytorch", peer)]
            if min(ours + theirs) <= 0:
                continue
            print(f"| {model}, batch {batch} | {t} | {precision} | {' / '.join(f'{x:,.1f}' for x in ours)} | "
                  f"{peer_label(peer)} | {' / '.join(f'{x:,.1f}' for x in theirs)} | {median(ours) / median(theirs):.2f}x |")


if __name__ == "__main__":
    main()
