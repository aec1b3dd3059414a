#!/usr/bin/python3
"""Generate the BatchNorm2d parity fixture, test/fixtures/batchnorm.json.

Each case is torch.nn.BatchNorm2d(C) (eps 1e-5, momentum 0.1), alone or followed by ReLU or
LeakyReLU(0.2), trained for two steps on two batches (x, with an upstream gradient dy on the
output) and then evaluated on a third batch with the running statistics. Recorded per step: the
output y, the gradients dx, dgamma (weight.grad) and dbeta (bias.grad), and the buffers
running_mean, running_var and num_batches_tracked after the step.

The inputs are drawn in float32 and the module runs in float64 on them, so the fixture is the
exact answer for the float32 inputs the engine sees; `y_float32` is the same module's forward in
float32, PyTorch's own float32 error, for comparison. The cases cover one channel and odd channel
counts, odd H and W, a batch of 1, H = W = 1, and a channel whose mean is 1e4 with a spread of 0.01.

Run with the interpreter that has torch (1.13 CPU):
    /usr/bin/python3 scripts/batchnorm_fixtures.py
"""

import json
import os

import numpy as np
import torch
import torch.nn as nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "test", "fixtures", "batchnorm.json")


def module(C, activation, dtype):
    layers = [nn.BatchNorm2d(C)]
    if activation is not None and activation["kind"] == "relu":
        layers.append(nn.ReLU())
    elif activation is not None:
        layers.append(nn.LeakyReLU(activation["negativeSlope"]))
    return nn.Sequential(*layers).to(dtype)


def batch(rng, N, C, H, W, offsets, spreads):
    x = rng.standard_normal((N, C, H, W)) * np.asarray(spreads)[None, :, None, None]
    return (x + np.asarray(offsets)[None, :, None, None]).astype(np.float32)


def listed(t):
    return [float(v) for v in np.asarray(t, dtype=np.float64).ravel()]


def make_case(name, N, C, H, W, activation, offsets, spreads, seed):
    rng = np.random.default_rng(seed)
    gamma = rng.uniform(0.5, 1.5, C).astype(np.float32) * np.where(np.arange(C) % 3 == 2, -1, 1).astype(np.float32)
    beta = rng.uniform(-0.5, 0.5, C).astype(np.float32)
    m64 = module(C, activation, torch.float64)
    m32 = module(C, activation, torch.float32)
    with torch.no_grad():
        for m in (m64, m32):
            m[0].weight.copy_(torch.from_numpy(gamma))
            m[0].bias.copy_(torch.from_numpy(beta))
    m64.train()
    m32.train()
    steps = []
    for _ in range(2):
        x = batch(rng, N, C, H, W, offsets, spreads)
        dy = rng.uniform(-1, 1, (N, C, H, W)).astype(np.float32)
        xt = torch.from_numpy(x).double().requires_grad_(True)
        m64.zero_grad()
        y = m64(xt)
        y.backward(torch.from_numpy(dy).double())
        with torch.no_grad():
            y32 = m32(torch.from_numpy(x))
        bn = m64[0]
        steps.append({
            "x": listed(x), "dy": listed(dy), "y": listed(y.detach()), "y_float32": listed(y32),
            "dx": listed(xt.grad), "dgamma": listed(bn.weight.grad), "dbeta": listed(bn.bias.grad),
            "running_mean": listed(bn.running_mean), "running_var": listed(bn.running_var),
            "num_batches_tracked": int(bn.num_batches_tracked),
        })
    m64.eval()
    x = batch(rng, N, C, H, W, offsets, spreads)
    with torch.no_grad():
        y = m64(torch.from_numpy(x).double())
    return {
        "name": name, "N": N, "C": C, "H": H, "W": W, "activation": activation, "eps": m64[0].eps,
        "momentum": m64[0].momentum, "gamma": listed(gamma), "beta": listed(beta), "steps": steps,
        "eval": {"x": listed(x), "y": listed(y)},
    }


def main():
    torch.set_num_threads(1)
    cases = [
        make_case("plain 5x3x7x5", 5, 3, 7, 5, None, [0.5, -2.0, 3.0], [1.0, 0.3, 2.5], 1),
        make_case("one channel, ReLU, batch 1", 1, 1, 9, 7, {"kind": "relu"}, [0.2], [1.5], 2),
        make_case("LeakyReLU(0.2), mean 1e4 channel", 4, 5, 3, 3, {"kind": "leakyRelu", "negativeSlope": 0.2},
                  [0.0, 1e4, -1.0, 2.0, 0.0], [1.0, 0.01, 0.5, 0.1, 4.0], 3),
        make_case("H = W = 1", 6, 7, 1, 1, None, [0.0] * 7, [1.0] * 7, 4),
    ]
    with open(OUT, "w") as f:
        json.dump({"generator": "scripts/batchnorm_fixtures.py", "torch": torch.__version__, "cases": cases}, f)
        f.write("\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
