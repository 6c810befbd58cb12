#!/usr/bin/env python3
"""Training-step throughput of PyTorch (CPU) on the models docs/BENCHMARKS.md compares ptrain with.

A step is what `ptrain bench train` times: zero the gradients, forward, softmax cross-entropy,
backward, one SGD step with momentum (and the config's weight decay). The data are synthetic batches
held in memory (4 batches, cycled), so no data loading is timed. After a warm-up, the number of
steps per window is fixed from the warm-up's step time; the median images/s of the timed windows
is reported, with min and max.

    python3 Benchmarks/peers/torch_bench.py --model lenet5 --batch-size 64 --threads 1
    python3 Benchmarks/peers/torch_bench.py --model resnet20 --batch-size 128 --threads 2 --json
    python3 Benchmarks/peers/torch_bench.py --model resnet20 --batch-size 128 --channels-last --bf16

PyTorch at its best on a CPU: --channels-last puts the model and the batches in channels_last
(NHWC, oneDNN's preferred layout; the default is NCHW) and --bf16 runs forward and loss under
torch.autocast("cpu", dtype=torch.bfloat16) (conv and linear in bf16, weights, gradients and the
optimizer in fp32, as autocast keeps them). The record names both: layout and precision.

Models (shapes as in the repository's configs):
  lenet5       configs/lenet5-mnist.yaml: 1x28x28, conv 6 5x5 pad 2, ReLU, maxpool 2, conv 16 5x5,
               ReLU, maxpool 2, dense 120, ReLU, dense 84, ReLU, dense 10 (61,706 parameters)
  cifar-small  configs/cifar-small.yaml: 3x32x32, conv 32, conv 32, maxpool 2, conv 64, conv 64,
               maxpool 2 (all 3x3 pad 1, each followed by ReLU), dense 256, ReLU, dense 10
  resnet20     ResNet-20 for CIFAR (He et al. 2016): conv 16 3x3, BN, ReLU; three stages of three
               basic blocks (3x3 conv, BN, ReLU, 3x3 conv, BN, add the shortcut, ReLU) with 16, 32
               and 64 channels; the first block of stages 2 and 3 has stride 2 and a 1x1 stride-2
               projection with BN as its shortcut; global average pool; dense 10. Convolutions
               before BN have no bias (272,474 parameters) unless --conv-bias gives them one, as
               ptrain's conv layers always have (273,258 parameters).
"""
import argparse
import json
import platform
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# The optimizer settings of each model's config (learning rate does not change the step's cost).
DEFAULTS = {
    "lenet5": {"shape": (1, 28, 28), "lr": 0.02, "weight_decay": 0.0},
    "cifar-small": {"shape": (3, 32, 32), "lr": 0.01, "weight_decay": 5e-4},
    "resnet20": {"shape": (3, 32, 32), "lr": 0.1, "weight_decay": 1e-4},
}


def lenet5():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10))


def cifar_small():
    def conv(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]
    return nn.Sequential(
        *conv(3, 32), *conv(32, 32), nn.MaxPool2d(2, 2),
        *conv(32, 64), *conv(64, 64), nn.MaxPool2d(2, 2),
        nn.Flatten(),
        nn.Linear(64 * 8 * 8, 256), nn.ReLU(),
        nn.Linear(256, 10))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride, bias):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=bias)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=bias)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=bias), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


def resnet20(bias=False):
    layers = [nn.Conv2d(3, 16, 3, padding=1, bias=bias), nn.BatchNorm2d(16), nn.ReLU()]
    cin = 16
    for stage, cout in enumerate((16, 32, 64)):
        for block in range(3):
            stride = 2 if stage > 0 and block == 0 else 1
            layers.append(BasicBlock(cin, cout, stride, bias))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)]
    return nn.Sequential(*layers)


MODELS = {"lenet5": lenet5, "cifar-small": cifar_small, "resnet20": resnet20}


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=sorted(MODELS), required=True)
    ap.add_argument("--batch-size", type=positive_int, required=True)
    ap.add_argument("--threads", type=positive_int, default=1, help="intra-op threads (torch.set_num_threads)")
    ap.add_argument("--windows", type=positive_int, default=7, help="timed windows; the median is reported")
    ap.add_argument("--window-s", type=float, default=1.0, help="approximate length of a window in seconds")
    ap.add_argument("--warmup-s", type=float, default=2.0, help="warm-up seconds before timing")
    ap.add_argument("--weight-decay", type=float, help="override the model's default weight decay")
    ap.add_argument("--conv-bias", action="store_true",
                    help="resnet20: give the convolutions before batch norm a bias, as ptrain's conv layers have")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a line")
    ap.add_argument("--channels-last", action="store_true",
                    help="model and batches in channels_last memory format (NHWC; oneDNN's preferred layout)")
    ap.add_argument("--bf16", action="store_true",
                    help="forward and loss under torch.autocast('cpu', dtype=torch.bfloat16)")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.manual_seed(1)
    spec = DEFAULTS[a.model]
    model = resnet20(bias=True) if a.model == "resnet20" and a.conv_bias else MODELS[a.model]()
    model.train()
    parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    opt = torch.optim.SGD(model.parameters(), lr=spec["lr"], momentum=0.9,
                          weight_decay=spec["weight_decay"] if a.weight_decay is None else a.weight_decay)
    batches = [(torch.randn(a.batch_size, *spec["shape"]), torch.randint(0, 10, (a.batch_size,)))
               for _ in range(4)]
    if a.channels_last:
        model = model.to(memory_format=torch.channels_last)
        batches = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in batches]
    counter = [0]

    def step():
        x, y = batches[counter[0] % len(batches)]
        counter[0] += 1
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    # Warm-up: at least three steps, then until the warm-up time has passed.
    start = time.perf_counter()
    warm = 0
    while warm < 3 or time.perf_counter() - start < a.warmup_s:
        step()
        warm += 1
    t0 = time.perf_counter()
    step()
    steps = max(1, round(a.window_s / (time.perf_counter() - t0)))

    rates = []
    cpu_start = time.process_time()
    for _ in range(a.windows):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(steps * a.batch_size / (time.perf_counter() - t0))
    # As ptrain's images_per_sec_cpu: images over the process's CPU seconds per thread (time the
    # scheduler gave to other processes does not count; threads spinning in OpenMP waits do).
    cpu_seconds = time.process_time() - cpu_start

    record = {
        "framework": "pytorch", "version": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(), "model": a.model, "batch_size": a.batch_size, "threads": a.threads,
        "conv_bias": a.conv_bias, "layout": "channels_last" if a.channels_last else "nchw",
        "precision": "bf16 autocast" if a.bf16 else "fp32",
        "parameters": parameters, "steps_per_window": steps, "windows": a.windows,
        "images_per_sec": statistics.median(rates), "images_per_sec_min": min(rates),
        "images_per_sec_max": max(rates),
        "images_per_sec_cpu": steps * a.windows * a.batch_size / (cpu_seconds / a.threads) if cpu_seconds > 0 else 0,
    }
    if a.json:
        print(json.dumps(record))
    else:
        print(f"pytorch {torch.__version__} ({record['cpu_capability']}) {a.model} batch {a.batch_size}, "
              f"{record['layout']}, {record['precision']}, "
              f"{a.threads} thread(s), {parameters} parameters: {record['images_per_sec']:.1f} images/s "
              f"(min {min(rates):.1f}, max {max(rates):.1f}; {a.windows} windows of {steps} steps)")


if __name__ == "__main__":
    sys.exit(main())
