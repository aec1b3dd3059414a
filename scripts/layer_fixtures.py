#!/usr/bin/python3
"""Regenerate the PyTorch parity fixtures of the layer kinds, test/fixtures/layers/KIND.json.

For each layer kind a spec may name (src/model/layers), a few cases: PyTorch's module built from
the spec's positional arguments, run forward and backward in float32 (as the engine runs) on a
batch whose values include the edges (0, -0, the smallest normal float32, large values). Each
case holds the arguments, one sample's input shape, the batch, the parameters, the output and
its shape, an upstream gradient and PyTorch's gradients of the input and of each parameter.
test/layer-parity.test.ts checks each layer's shape rule and float64 twin against them.

Usage: /usr/bin/python3 scripts/layer_fixtures.py
"""

import json
import os

import torch
import torch.nn as nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "test", "fixtures", "layers")

EDGES = [0.0, -0.0, 2.0 ** -126, -(2.0 ** -126), 1e30, -1e30, 3.0, -3.0]


def module(kind, args):
    if kind == "Unflatten":
        return nn.Unflatten(args[0], tuple(args[1]))
    return getattr(nn, kind)(*args)


def case(kind, args, shape, rows, seed, edges=False):
    torch.manual_seed(seed)
    m = module(kind, args).float()
    x = torch.randn(rows, *shape, dtype=torch.float32)
    if edges:
        flat = x.view(-1)
        flat[: len(EDGES)] = torch.tensor(EDGES[: flat.numel()], dtype=torch.float32)
    x.requires_grad_(True)
    y = m(x)
    dy = torch.randn_like(y)
    y.backward(dy)
    values = lambda t: [float(v) for v in t.detach().reshape(-1).tolist()]
    return {
        "args": args,
        "input": list(shape),
        "rows": rows,
        "x": values(x),
        "params": {name: values(p) for name, p in m.named_parameters()},
        "y": values(y),
        "output": list(y.shape[1:]),
        "dy": values(dy),
        "dx": values(x.grad),
        "grads": {name: values(p.grad) for name, p in m.named_parameters()},
    }


def batchnorm_case(channels, shape, rows, seed, train=True, edges=False, offset=0.0, scale=1.0):
    """BatchNorm2d with random γ, β and running statistics (not the starting 1, 0, 0, 1, so each
    shows), in training (batch statistics; the buffers after the step) or evaluation (the running
    statistics, forward only: the engine runs no evaluation backward). `offset` shifts the batch
    far from zero against its spread; `scale` makes the spread huge, or tiny against eps."""
    torch.manual_seed(seed)
    m = nn.BatchNorm2d(channels).float()
    with torch.no_grad():
        m.weight.uniform_(-1.5, 2.0)
        m.bias.uniform_(-1.0, 1.0)
        m.running_mean.uniform_(-1.0, 1.0)
        m.running_var.uniform_(0.5, 2.0)
        m.num_batches_tracked.fill_(seed)
    values = lambda t: [float(v) for v in t.detach().reshape(-1).tolist()]
    buffers = lambda: {name: values(b) for name, b in m.named_buffers()}
    before = buffers()
    x = torch.randn(rows, channels, *shape, dtype=torch.float32) * scale + offset
    if edges:
        flat = x.view(-1)
        flat[: len(EDGES)] = torch.tensor(EDGES[: flat.numel()], dtype=torch.float32)
    x.requires_grad_(True)
    m.train(train)
    y = m(x)
    dy = torch.randn_like(y)
    y.backward(dy)
    out = {
        "args": [channels],
        "input": [channels, *shape],
        "rows": rows,
        "training": train,
        "buffers": before,
        "buffers_after": buffers(),
        "x": values(x),
        "params": {name: values(p) for name, p in m.named_parameters()},
        "y": values(y),
        "output": [channels, *shape],
    }
    if train:
        out.update({"dy": values(dy), "dx": values(x.grad),
                    "grads": {name: values(p.grad) for name, p in m.named_parameters()}})
    return out


CASES = {
    "Linear": [case("Linear", [5, 4], [5], 3, 1), case("Linear", [1, 1], [1], 1, 2), case("Linear", [13, 7], [13], 6, 3)],
    "ReLU": [case("ReLU", [], [9], 2, 4, edges=True)],
    "LeakyReLU": [
        case("LeakyReLU", [], [9], 2, 5, edges=True),
        case("LeakyReLU", [0.2], [9], 2, 6, edges=True),
        case("LeakyReLU", [0.0], [9], 2, 7, edges=True),
        case("LeakyReLU", [7.5], [9], 2, 8, edges=True),
    ],
    "Flatten": [
        case("Flatten", [], [2, 3, 4], 2, 9),
        case("Flatten", [2, 3], [2, 3, 4], 2, 10),
        case("Flatten", [1, 2], [2, 3, 4], 2, 11),
        case("Flatten", [-2, -1], [2, 3, 4], 2, 12),
    ],
    "Unflatten": [
        case("Unflatten", [1, [3, 4]], [12], 2, 13),
        case("Unflatten", [2, [2, 3]], [2, 6], 2, 14),
        case("Unflatten", [-1, [3, 2]], [2, 6], 2, 15),
        case("Unflatten", [1, [1, 28, 28]], [784], 1, 16),
    ],
    # Odd sizes, 1 and odd channel counts, kernels 1/3/4/5, strides 1 and 2, padding 0-2, a batch of 1.
    "Conv2d": [
        case("Conv2d", [3, 5, 3], [3, 7, 5], 2, 17),
        case("Conv2d", [1, 4, 4, 2, 1], [1, 9, 8], 3, 18),
        case("Conv2d", [2, 3, 5, 2, 2], [2, 11, 9], 1, 19),
        case("Conv2d", [5, 1, 1], [5, 3, 2], 2, 20),
    ],
    "ConvTranspose2d": [
        case("ConvTranspose2d", [3, 2, 3], [3, 4, 5], 2, 21),
        case("ConvTranspose2d", [4, 3, 4, 2, 1], [4, 3, 3], 2, 22),
        case("ConvTranspose2d", [2, 1, 3, 2, 1, 1], [2, 4, 3], 3, 23),
        case("ConvTranspose2d", [1, 3, 5, 1, 2], [1, 3, 3], 1, 24),
    ],
    # Training and evaluation; 1, 3 and odd channel counts; a batch of 1; a 1x1 image; a batch
    # far from zero against its spread; a huge spread, and one so small that eps dominates.
    "BatchNorm2d": [
        batchnorm_case(3, [5, 7], 2, 25),
        batchnorm_case(3, [5, 7], 2, 26, train=False),
        batchnorm_case(1, [4, 3], 1, 27),
        batchnorm_case(5, [1, 1], 3, 28),
        batchnorm_case(5, [3, 3], 2, 29, train=False),
        batchnorm_case(2, [3, 2], 4, 30, offset=1e3),
        batchnorm_case(3, [2, 3], 2, 31, scale=1e6),
        batchnorm_case(3, [2, 3], 2, 32, scale=1e-4),
    ],
}

if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for kind, cases in CASES.items():
        path = os.path.join(OUT, kind + ".json")
        with open(path, "w") as f:
            json.dump({"torch": torch.__version__, "kind": kind, "cases": cases}, f, separators=(",", ":"))
            f.write("\n")
        print("wrote", os.path.relpath(path, ROOT))
