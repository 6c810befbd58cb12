#!/usr/bin/env python3
"""Checks an ONNX file written by `ptrain export` against `ptrain predict`.

Usage:
  onnx-check.py MODEL.onnx [--samples FILE --predictions FILE] [--tolerance 1e-4] [--json]

1. onnx.checker.check_model(full_check=True), and the contract of docs/ONNX.md: opset 17 or newer,
   one float32 input `input` [N, C, H, W] (or [N, C, W]) with a symbolic batch dimension, one output
   `logits` [N, classes], and the metadata_props a user needs (config, version, classes,
   preprocessing).
2. With --samples (an IDX file or .npy of raw samples, as `ptrain predict --input` reads them) and
   --predictions (the JSON lines of `ptrain predict --format json` on those samples): preprocesses
   the samples from the file's metadata alone (unsigned bytes / 255, numbers as stored; then
   (x - mean) / std; then z-normalisation per channel of each sample), runs ONNX Runtime in batches
   of several sizes, and requires softmax(logits) within the tolerance of ptrain's probabilities
   (largest absolute difference) and the same predicted class (the first largest logit) on every
   sample.
3. Without samples: runs ONNX Runtime on random inputs of batch sizes 1 and 3 and requires finite
   logits of the right shape.

Prints one line (or one JSON object with --json); exits 0 when every check passes, 1 otherwise.
"""
import argparse
import gzip
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort

REQUIRED_METADATA = ["ptrain.version", "ptrain.config", "ptrain.classes", "ptrain.input_shape",
                     "ptrain.preprocessing", "ptrain.preprocessing.divisor", "ptrain.preprocessing.mean",
                     "ptrain.preprocessing.std", "ptrain.preprocessing.z_normalize"]


class CheckFailed(Exception):
    pass


def check_contract(path):
    """Validates the file; returns (metadata dict, input dims after N, classes)."""
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    opsets = {o.domain: o.version for o in model.opset_import}
    if opsets.get("", opsets.get("ai.onnx", 0)) < 17:
        raise CheckFailed(f"opset {opsets} is older than 17")
    if [i.name for i in model.graph.input] != ["input"]:
        raise CheckFailed(f"inputs {[i.name for i in model.graph.input]}, expected exactly ['input']")
    if [o.name for o in model.graph.output] != ["logits"]:
        raise CheckFailed(f"outputs {[o.name for o in model.graph.output]}, expected exactly ['logits']")
    initializers = {t.name for t in model.graph.initializer}
    if "input" in initializers:
        raise CheckFailed("the input is also an initializer")
    tin = model.graph.input[0].type.tensor_type
    tout = model.graph.output[0].type.tensor_type
    if tin.elem_type != onnx.TensorProto.FLOAT or tout.elem_type != onnx.TensorProto.FLOAT:
        raise CheckFailed("input and output must be float32")
    din, dout = tin.shape.dim, tout.shape.dim
    if len(din) not in (3, 4) or len(dout) != 2:
        raise CheckFailed(f"input rank {len(din)} (expected 3 or 4), output rank {len(dout)} (expected 2)")
    if not din[0].dim_param or din[0].HasField("dim_value") or not dout[0].dim_param:
        raise CheckFailed("the batch dimension is not symbolic")
    dims = [d.dim_value for d in din[1:]]
    classes = dout[1].dim_value
    meta = {p.key: p.value for p in model.metadata_props}
    missing = [k for k in REQUIRED_METADATA if k not in meta]
    if missing:
        raise CheckFailed(f"metadata_props lack {missing}")
    if meta["ptrain.input_shape"] != ",".join(map(str, dims)):
        raise CheckFailed(f"metadata input shape {meta['ptrain.input_shape']} differs from the input {dims}")
    if int(meta["ptrain.classes"]) != classes:
        raise CheckFailed(f"metadata classes {meta['ptrain.classes']} differ from the output's {classes}")
    return meta, dims, classes


def read_samples(path):
    """Raw samples as predict reads them: IDX (unsigned bytes; raw or gzip) or .npy."""
    if path.endswith(".npy"):
        return np.load(path)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise CheckFailed(f"{path}: not an unsigned-byte IDX file")
    rank = data[3]
    dims = [int.from_bytes(data[4 + 4 * k:8 + 4 * k], "big") for k in range(rank)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


def preprocess(raw, meta, dims):
    """The model input from raw samples and the file's metadata alone (docs/ONNX.md)."""
    n = raw.shape[0]
    if int(np.prod(raw.shape[1:])) != int(np.prod(dims)):
        raise CheckFailed(f"samples of shape {list(raw.shape[1:])} do not fit the input {dims}")
    if raw.dtype == np.uint8:
        x = raw.astype(np.float32) / np.float32(255)
    else:
        x = raw.astype(np.float32)
    mean = np.float32(float(meta["ptrain.preprocessing.mean"]))
    std = np.float32(float(meta["ptrain.preprocessing.std"]))
    if mean != 0 or std != 1:
        x = (x - mean) / std
    x = x.reshape([n] + dims)
    if meta["ptrain.preprocessing.z_normalize"] == "true":
        flat = x.reshape(n, dims[0], -1).astype(np.float64)
        m = flat.mean(axis=2, keepdims=True)
        s = np.sqrt(((flat - m) ** 2).mean(axis=2, keepdims=True))
        scale = np.where(s > 1e-12, 1 / np.where(s > 1e-12, s, 1), 0)
        x = ((flat - m) * scale).astype(np.float32).reshape([n] + dims)
    return np.ascontiguousarray(x, dtype=np.float32)


def run(session, x, batches):
    """Logits of x, computed in chunks whose sizes cycle through `batches` (the batch dimension varies)."""
    out, at, k = [], 0, 0
    while at < len(x):
        size = batches[k % len(batches)]
        out.append(session.run(["logits"], {"input": x[at:at + size]})[0])
        at += size
        k += 1
    return np.concatenate(out)


def softmax(logits):
    z = logits.astype(np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("--samples")
    parser.add_argument("--predictions")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if (args.samples is None) != (args.predictions is None):
        parser.error("--samples and --predictions go together")
    result = {"model": args.model, "ok": False}
    try:
        meta, dims, classes = check_contract(args.model)
        result.update(checker="ok", config=meta["ptrain.config"], classes=classes, input=dims,
                      opset=max(o.version for o in onnx.load(args.model).opset_import if o.domain in ("", "ai.onnx")))
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
        if args.samples is None:
            rng = np.random.default_rng(1)
            for n in (1, 3):
                logits = session.run(["logits"], {"input": rng.standard_normal([n] + dims).astype(np.float32)})[0]
                if logits.shape != (n, classes) or not np.isfinite(logits).all():
                    raise CheckFailed(f"batch {n}: logits of shape {logits.shape}, finite: {np.isfinite(logits).all()}")
            result.update(ok=True, samples=0)
        else:
            x = preprocess(read_samples(args.samples), meta, dims)
            with open(args.predictions) as f:
                rows = [json.loads(line) for line in f if line.strip()]
            if len(rows) != len(x):
                raise CheckFailed(f"{len(rows)} predictions for {len(x)} samples")
            if [r["index"] for r in rows] != list(range(len(rows))):
                raise CheckFailed("predictions are not indexed 0, 1, ... in order")
            expected = np.array([r["probabilities"] for r in rows], dtype=np.float64)
            ptrain_class = np.array([r["class"] for r in rows])
            logits = run(session, x, [256, 1, 7, 100])
            if logits.shape != (len(x), classes) or not np.isfinite(logits).all():
                raise CheckFailed(f"logits of shape {logits.shape}, finite: {np.isfinite(logits).all()}")
            probabilities = softmax(logits)
            diff = float(np.abs(probabilities - expected).max())
            onnx_class = logits.argmax(axis=1)   # the first largest, as ptrain counts it
            same = int((onnx_class == ptrain_class).sum())
            result.update(samples=len(x), max_abs_diff=diff, argmax_identical=same,
                          tolerance=args.tolerance)
            if diff > args.tolerance:
                raise CheckFailed(f"probabilities differ by up to {diff:.3g} (tolerance {args.tolerance:g})")
            if same != len(x):
                first = int(np.nonzero(onnx_class != ptrain_class)[0][0])
                raise CheckFailed(f"predicted class differs on {len(x) - same} samples (first: sample {first}, "
                                  f"ONNX {onnx_class[first]}, ptrain {ptrain_class[first]})")
            result["ok"] = True
    except (CheckFailed, onnx.checker.ValidationError, ort.capi.onnxruntime_pybind11_state.Fail,
            OSError, ValueError, KeyError) as error:
        result["error"] = str(error).replace("\n", " ")
    if args.json:
        print(json.dumps(result, sort_keys=True))
    elif result["ok"]:
        extra = ""
        if result.get("samples"):
            extra = (f", {result['samples']} samples: max |p_onnx - p_ptrain| = {result['max_abs_diff']:.3g}, "
                     f"argmax identical on {result['argmax_identical']}/{result['samples']}")
        print(f"onnx-check: {args.model}: checker ok, opset {result['opset']}, input [N, "
              f"{', '.join(map(str, result['input']))}], {result['classes']} classes{extra}")
    else:
        print(f"onnx-check: {args.model}: FAILED: {result['error']}", file=sys.stderr)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
