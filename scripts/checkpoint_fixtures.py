#!/usr/bin/python3
"""Regenerate the PyTorch round-trip fixtures in test/fixtures/checkpoint/ (784-16-4 models).

  engine-784-16-4.safetensors            written by the engine (`npm run train`, 8 steps)
  engine-784-16-4.pytorch.safetensors    what PyTorch computed after load_checkpoint.py's
                                         load_state_dict(strict=True) of that file
  pytorch-784-16-4.safetensors           a PyTorch-trained model + Adam state, written by
                                         export_checkpoint.py
  pytorch-784-16-4.expected.safetensors  what PyTorch computes with that model

Each .pytorch / .expected file holds 8 MNIST test images (x_u8), their encoder outputs (mu,
logvar), 6 latent vectors (z) and their decodes (decoded), all from PyTorch in float32.
test/checkpoint.test.ts checks the engine against them without PyTorch.

Usage (needs node for step 1, torch for the rest):
    /usr/bin/python3 scripts/checkpoint_fixtures.py
"""

import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_checkpoint import export, write_safetensors  # noqa: E402
from load_checkpoint import MNIST_TEST, ROOT, VAE, load_checkpoint, loss_function, read_idx_images  # noqa: E402

OUT = os.path.join(ROOT, "test", "fixtures", "checkpoint")
SIZES = (784, 16, 4)


def write_outputs(path, model, x, z, metadata):
    """PyTorch's encode and decode of the fixture inputs (float32), and the inputs as bytes."""
    with torch.no_grad():
        mu, logvar = model.encode(x)
        decoded = model.mean(z)  # sigmoid of the logits, as the engine decodes
    write_safetensors(path, {
        "x_u8": np.round(x.numpy() * 255).astype(np.uint8),
        "mu": mu.numpy(), "logvar": logvar.numpy(), "z": z.numpy(), "decoded": decoded.numpy(),
    }, metadata)


def fixture_inputs():
    images = read_idx_images(MNIST_TEST, limit=512)
    x = images[:8].clone()
    z = torch.from_numpy(np.random.default_rng(4).standard_normal((6, SIZES[2])).astype(np.float32))
    return images, x, z


def engine_fixture(x, z):
    """Step 1-2: the engine trains 8 steps and writes a checkpoint; PyTorch loads it strictly."""
    out = tempfile.mkdtemp(prefix="webgpu-vae-fixture-")
    try:
        subprocess.run(
            ["npm", "run", "--silent", "train", "--", "--hidden", "16", "--latent", "4", "--epochs", "1",
             "--train-limit", "512", "--batch-size", "64", "--seed", "7", "--out", out],
            cwd=ROOT, check=True)
        target = os.path.join(OUT, "engine-784-16-4.safetensors")
        shutil.copyfile(os.path.join(out, "checkpoint.safetensors"), target)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    model, optimizer, metadata = load_checkpoint(target)  # load_state_dict(strict=True) inside
    with torch.no_grad():
        out, mu, logvar = model(x, sample=False)
        loss_mu = loss_function(model, out, x, mu, logvar).item() / x.shape[0]
    write_outputs(os.path.join(OUT, "engine-784-16-4.pytorch.safetensors"), model, x, z, {
        "torch": torch.__version__, "strict": "true", "adam_tensors_loaded": len(optimizer.state),
        "step": metadata.get("step"), "loss_with_z_mu": "%.6f" % loss_mu,
    })
    print("engine fixture: step %s, PyTorch loss with z = mu on 8 images %.4f" % (metadata.get("step"), loss_mu))


def pytorch_fixture(images, x, z):
    """Step 3: PyTorch trains 8 Adam steps, export_checkpoint writes the engine's format."""
    torch.manual_seed(0)
    model = VAE(*SIZES)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for step in range(8):
        batch = images[step * 64:(step + 1) * 64]
        optimizer.zero_grad()
        out, mu, logvar = model(batch)
        loss = loss_function(model, out, batch, mu, logvar)
        loss.backward()
        optimizer.step()
    model.eval()
    export(os.path.join(OUT, "pytorch-784-16-4.safetensors"), model.state_dict(), optimizer.state_dict(), epoch=1, seed=1)
    write_outputs(os.path.join(OUT, "pytorch-784-16-4.expected.safetensors"), model, x, z, {
        "torch": torch.__version__, "step": 8,
    })
    print("pytorch fixture: 8 steps, last batch loss %.4f" % (loss.item() / 64))


def main():
    os.makedirs(OUT, exist_ok=True)
    images, x, z = fixture_inputs()
    engine_fixture(x, z)
    pytorch_fixture(images, x, z)
    for name in sorted(os.listdir(OUT)):
        print("  %-40s %7d bytes" % (name, os.path.getsize(os.path.join(OUT, name))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
