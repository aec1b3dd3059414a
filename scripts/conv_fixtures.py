#!/usr/bin/python3
"""Regenerate the PyTorch parity fixtures of the convolution kernels: test/fixtures/conv/*.json.

Each fixture is one layer (Conv2d or ConvTranspose2d) between two activations, as a conv VAE
chains them:  X = act(X0);  Y = act(layer(X));  loss = sum(layer(X) * dY)
and holds X0, X, the layer's weight and bias, dY, Y, and PyTorch's gradients dX0 (through the
activation before the layer), dW and db, all float32 as lists. test/conv.test.ts checks the
engine's kernels and its float64 reference against them without PyTorch.

Usage:  /usr/bin/python3 scripts/conv_fixtures.py
"""

import json
import os

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "test", "fixtures", "conv")

# name: (transpose, batch, in, out, kernel, stride, padding, output_padding, H, W, activation, slope)
CASES = {
    "conv2d-k4s2p1-leaky": (False, 2, 3, 4, 4, 2, 1, 0, 8, 6, "leakyRelu", 0.2),
    "conv2d-k3s1p1-relu": (False, 3, 2, 5, 3, 1, 1, 0, 5, 7, "relu", 0.0),
    "conv2d-k5s2p2": (False, 1, 4, 3, 5, 2, 2, 0, 9, 9, "none", 0.0),
    "convtranspose2d-k4s2p1-relu": (True, 2, 4, 3, 4, 2, 1, 0, 3, 4, "relu", 0.0),
    "convtranspose2d-k3s2p1op1-leaky": (True, 2, 3, 2, 3, 2, 1, 1, 3, 3, "leakyRelu", 0.1),
    "convtranspose2d-k1s1p0": (True, 1, 5, 1, 1, 1, 0, 0, 2, 3, "none", 0.0),
}


def activation(kind, slope):
    if kind == "relu":
        return torch.nn.ReLU()
    if kind == "leakyRelu":
        return torch.nn.LeakyReLU(slope)
    return torch.nn.Identity()


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def fixture(name, case, seed):
    transpose, batch, cin, cout, k, stride, padding, output_padding, H, W, act, slope = case
    torch.manual_seed(seed)
    if transpose:
        layer = torch.nn.ConvTranspose2d(cin, cout, k, stride, padding, output_padding)
    else:
        layer = torch.nn.Conv2d(cin, cout, k, stride, padding)
    f = activation(act, slope)
    X0 = torch.randn(batch, cin, H, W, requires_grad=True)
    X = f(X0)
    Z = layer(X)
    Y = f(Z)
    dY = torch.randn(Z.shape)
    (Z * dY).sum().backward()
    return {
        "layer": {
            "transpose": transpose,
            "inC": cin,
            "outC": cout,
            "kernel": k,
            "stride": stride,
            "padding": padding,
            "outputPadding": output_padding,
        },
        "input": {"batch": batch, "H": H, "W": W},
        "output": list(Z.shape[2:]),
        "activation": act,
        "slope": slope,
        "X0": flat(X0),
        "X": flat(X),
        "weight": flat(layer.weight),
        "bias": flat(layer.bias),
        "dY": flat(dY),
        "Y": flat(Y),
        "dX0": flat(X0.grad),
        "dW": flat(layer.weight.grad),
        "db": flat(layer.bias.grad),
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    for seed, (name, case) in enumerate(CASES.items()):
        with open(os.path.join(OUT, f"{name}.json"), "w") as f:
            json.dump(fixture(name, case, seed), f)
        print(f"wrote {name}.json")


if __name__ == "__main__":
    main()
