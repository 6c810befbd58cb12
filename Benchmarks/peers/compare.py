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

A case is MODEL:BATCH[:CONFIG]; MODEL is one of torch_bench.py's models, CONFIG (relative to the
repository root) defaults to the model's config in configs/.
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
    """The CPU's model name and its widest x86 vector extensions, from /proc/cpuinfo (Linux)."""
    name, flags = "unknown CPU", []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and name == "unknown CPU":
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    present = set(line.split(":", 1)[1].split())
                    flags = [f for f in ("avx2", "fma", "avx512f") if f in present]
    except OSError:
        pass
    return f"{name} ({', '.join(flags) or 'no AVX2'})"


def median(values):
    return statistics.median(values)


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

    results = {}   # (model, batch, threads) -> {"ptrain": [...], "pytorch": [...]}
    torch_version = "?"
    for r in range(a.rounds):
        for model, batch, config in cases:
            for t in threads:
                ours_cmd = [a.ptrain, "bench", "train", "--config", config, "--batch-size", str(batch),
                            "--threads", str(t), "--windows", str(a.windows), "--warmup", str(a.warmup),
                            "--format", "json"]
                theirs_cmd = [a.python, torch_script, "--model", model, "--batch-size", str(batch),
                              "--threads", str(t), "--windows", str(a.windows), "--warmup-s", str(a.warmup),
                              "--json"] + torch_flags[config]
                order = [("ptrain", ours_cmd), ("pytorch", theirs_cmd)]
                if r % 2 == 1:
                    order.reverse()
                for name, command in order:
                    record = last_json(run(command), command)
                    if name == "pytorch":
                        torch_version = f"{record['version']} ({record['cpu_capability']})"
                    results.setdefault((model, batch, t), {}).setdefault(name, []).append(record["images_per_sec"])
                    if a.json:
                        print(json.dumps({"round": r + 1, "framework": name, "model": model, "config": config,
                                          "batch_size": batch, "threads": t, "images_per_sec": record["images_per_sec"]}))
                    print(f"round {r + 1}/{a.rounds}: {name} {model} batch {batch}, {t} thread(s): "
                          f"{record['images_per_sec']:.1f} images/s", file=sys.stderr, flush=True)

    print(f"CPU: {cpu_name()}; PyTorch {torch_version}; {a.rounds} interleaved rounds, "
          f"median of {a.windows} windows each")
    print("| model | threads | ptrain images/s (per round) | PyTorch images/s (per round) | ratio of medians (per round) |")
    print("| --- | --- | --- | --- | --- |")
    for (model, batch, t), sides in results.items():
        ours, theirs = sides["ptrain"], sides["pytorch"]
        per_round = ", ".join(f"{o / p:.2f}" for o, p in zip(ours, theirs))
        print(f"| {model}, batch {batch} | {t} | {' / '.join(f'{x:,.1f}' for x in ours)} | "
              f"{' / '.join(f'{x:,.1f}' for x in theirs)} | {median(ours) / median(theirs):.2f}x ({per_round}) |")


if __name__ == "__main__":
    main()
