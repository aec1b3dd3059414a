#!/usr/bin/python3
"""Export a PyTorch VAE state_dict (and optionally its Adam state) for webgpu-vae to load.

Input: a file written by torch.save(), holding either
  - model.state_dict() of the reference VAE (fc1, fc21, fc22, fc3, fc4; deeper MLPs fc1..fcn,
    fc(n+1)1/fc(n+1)2, fc(n+2)..fc(2n+2)), or
  - a dict {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": N}
    (the optimizer and epoch are optional).
Output: safetensors in the engine's checkpoint format — the model tensors under their PyTorch
names and shapes as float32, Adam's moments as optimizer.exp_avg.<name> and
optimizer.exp_avg_sq.<name>, and metadata (format, sizes, step, epoch, seed) — which
`VAE.load(bytes)` or `npm run train -- --resume FILE` accept.

The model's kind is read from its tensors, as the engine reads it: a conditional VAE (fc1 reads
[x, onehot(y)], the first decoder layer [z, onehot(y)]) has C more inputs in its first decoder
layer than the latent size, and is written with input_dim = fc1's inputs - C and classes = C; a
Gaussian with a learned sigma has the parameter log_sigma (first in named_parameters(), with its
Adam state) and is written with likelihood "gaussian", sigma "learned". A Gaussian with a fixed
sigma has no tensor that says so: pass --likelihood gaussian --sigma S, or it is exported as
the Bernoulli model its tensors are indistinguishable from.

A spec model (scripts/vae_spec.py: encoder.*, fc_mu, fc_logvar, decoder.*) has to be named, as
its shapes do not say its image shape: --model SPEC.json, or a preset with the images' shape,
--model conv --input-shape 1,28,28. Its state_dict is loaded strictly into the spec's module, and
the checkpoint holds the spec, compact JSON, under metadata "model", with the module's parameters
(float32), buffers (BatchNorm2d's running_mean / running_var float32, num_batches_tracked int64)
and Adam's moments of the parameters. The mlp's layout stays the reference model's: no "model".

Usage:
    /usr/bin/python3 scripts/export_checkpoint.py model.pt model.safetensors [--seed 1] [--epoch 10]
    /usr/bin/python3 scripts/export_checkpoint.py gaussian.pt out.safetensors --likelihood gaussian --sigma 0.1
    /usr/bin/python3 scripts/export_checkpoint.py conv.pt conv.safetensors --model conv --input-shape 1,28,28

The engine's Adam has one step counter for all tensors and no weight decay or amsgrad;
an optimizer state that needs those is refused rather than silently changed.

Unpickling a .pt file can call anything the file names, so it is read with
torch.load(weights_only=True): only tensors and plain containers (dicts, lists, numbers, strings)
are built, and a file that names anything else is refused before anything it names is called.
"""

import argparse
import io
import json
import os
import pickle
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vae_spec  # noqa: E402
from load_checkpoint import MODEL_KEY, OPT_PREFIXES, param_names, sigma_reason, sizes_name, sizes_of  # noqa: E402

FORMAT = "webgpu-vae/1"  # src/model/checkpoint.ts CHECKPOINT_FORMAT


# I64: BatchNorm2d's num_batches_tracked, kept as PyTorch holds it (a 0-d int64).
SAFETENSORS_DTYPES = {np.dtype(np.float32): ("F32", "<f4"), np.dtype(np.uint8): ("U8", "u1"),
                      np.dtype(np.int64): ("I64", "<i8")}


def write_safetensors(path, tensors, metadata):
    """float32 (or uint8, int64) tensors, names sorted and packed back to back, header padded to 8 bytes."""
    header = {"__metadata__": {str(k): str(v) for k, v in metadata.items()}}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        tag, little_endian = SAFETENSORS_DTYPES[np.asarray(tensors[name]).dtype]
        array = np.asarray(tensors[name], dtype=little_endian)
        array = np.ascontiguousarray(array) if array.ndim else array  # ascontiguousarray makes a 0-d array 1-d
        raw = array.tobytes()
        header[name] = {"dtype": tag, "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)
    os.replace(tmp, path)


def model_sizes(model_state):
    """(input_dim, [hidden], latent, classes) from the tensors' shapes, as the engine reads them."""
    try:
        return sizes_of({n: t.detach().cpu().numpy() for n, t in model_state.items() if n != "log_sigma"})
    except ValueError as error:
        raise ValueError("not a VAE state_dict of the engine's family (fc1 ... fcn, the heads fc(n+1)1 / "
                         "fc(n+1)2, the decoder fc(n+2) ...): %s" % error)


def engine_tensors(model_state, optimizer_state=None, model=None):
    """({name: array}, step) in the engine's layout from PyTorch state dicts: the parameters as
    float32, a spec model's buffers as PyTorch holds them (BatchNorm2d's running statistics as
    float32, num_batches_tracked as int64). `model` is the spec model the state_dict was loaded
    into; without it the state_dict is the mlp preset's."""
    if model is None:
        names = param_names(len(model_sizes(model_state)[1]))
        if "log_sigma" in model_state:  # a learned sigma: the module's own parameter, listed before its layers'
            names = ["log_sigma"] + names
        missing = [n for n in names if n not in model_state]
        extra = [n for n in model_state if n not in names]
        if missing or extra:
            raise ValueError("not the reference VAE's state_dict: missing %s, unexpected %s" % (missing, extra))
        tensors = {n: model_state[n].detach().cpu().float().numpy() for n in names}
    else:
        names = [n for n, _ in model.named_parameters()]  # model.parameters() order, which Adam's state follows
        tensors = {n: t.detach().cpu().numpy() if t.dtype == torch.int64 else t.detach().cpu().float().numpy()
                   for n, t in model.state_dict().items()}
    step = 0
    if optimizer_state is not None:
        groups = optimizer_state["param_groups"]
        if len(groups) != 1 or groups[0].get("weight_decay", 0) != 0 or groups[0].get("amsgrad", False):
            raise ValueError("the engine's Adam has one parameter group, no weight decay and no amsgrad")
        order = groups[0]["params"]  # state keys, in model.parameters() order
        if len(order) != len(names):
            raise ValueError("optimizer has %d parameters, the VAE %d" % (len(order), len(names)))
        states = [optimizer_state["state"].get(key) for key in order]
        if all(s is None for s in states):
            return tensors, 0  # an optimizer that never stepped
        if any(s is None for s in states):
            raise ValueError("some parameters have Adam state and some do not")
        steps = {int(float(s["step"])) for s in states}
        if len(steps) != 1:
            raise ValueError("Adam step counts differ between tensors (%s); the engine keeps one" % sorted(steps))
        step = steps.pop()
        for name, s in zip(names, states):
            tensors[OPT_PREFIXES[0] + name] = s["exp_avg"].detach().cpu().float().numpy()
            tensors[OPT_PREFIXES[1] + name] = s["exp_avg_sq"].detach().cpu().float().numpy()
    return tensors, step


def likelihood_metadata(model_state, likelihood=None, sigma=None):
    """The metadata likelihood / sigma the engine reads (none for Bernoulli, as the engine writes it).
    log_sigma in the state_dict is a learned sigma; a fixed one has to be named (--likelihood gaussian
    --sigma S). Anything that contradicts the tensors is refused."""
    learned = "log_sigma" in model_state
    if learned:
        if likelihood == "bernoulli" or sigma not in (None, "learned"):
            raise ValueError("the state_dict has log_sigma, a Gaussian's learned sigma, so it is exported as likelihood "
                             "gaussian, sigma learned: drop --likelihood bernoulli and --sigma")
        return {"likelihood": "gaussian", "sigma": "learned"}
    if likelihood == "gaussian":
        if sigma is None or sigma == "learned":
            raise ValueError("a Gaussian without log_sigma has a fixed sigma: pass the one it was trained with, "
                             "--sigma S" + (" (\"learned\" needs the log_sigma tensor, which this state_dict lacks)"
                                            if sigma == "learned" else ""))
        reason = sigma_reason(sigma)
        if reason is not None:
            raise ValueError("--" + reason)
        return {"likelihood": "gaussian", "sigma": str(float(sigma))}
    if sigma is not None:
        raise ValueError("--sigma is the Gaussian's: pass --likelihood gaussian with it")
    return {}


def spec_model(model_state, model, input_shape=None, likelihood=None, sigma=None):
    """The spec model (scripts/vae_spec.py) `model_state` is the state_dict of, loaded into it strictly.
    `model` is a spec's JSON file, or a preset's name with `input_shape` (C, H, W): the preset's latent
    size and classes are read from fc_mu and the decoder's first Linear, its likelihood as for the mlp."""
    if model in vae_spec.PRESETS:
        if input_shape is None:
            raise ValueError("--model %s needs --input-shape C,H,W, the shape of the images it was trained on" % model)
        mu = model_state.get("fc_mu.weight")
        first = model_state.get("decoder.0.weight")
        if mu is None or first is None or mu.dim() != 2 or first.dim() != 2:
            raise ValueError("not the state_dict of a %s model: it has no fc_mu.weight or decoder.0.weight" % model)
        latent = mu.shape[0]
        said = likelihood_metadata(model_state, likelihood, sigma)
        kind, sigma = said.get("likelihood", "bernoulli"), said.get("sigma")
        spec = vae_spec.spec_of(model, input_shape, latent, first.shape[1] - latent, kind,
                                sigma if sigma in (None, "learned") else float(sigma))
    else:
        if likelihood is not None or sigma is not None or input_shape is not None:
            raise ValueError("a spec file says its own likelihood, sigma and input: drop --likelihood, --sigma and --input-shape")
        try:
            with open(model) as f:
                spec = json.load(f)
        except (OSError, ValueError) as error:
            raise ValueError("--model %s: not a preset (%s) nor a readable JSON spec: %s" % (
                model, ", ".join(vae_spec.PRESETS), error))
    module = vae_spec.build(spec)
    try:
        module.load_state_dict(model_state, strict=True)
    except RuntimeError as error:
        raise ValueError("the state_dict is not that of the model spec: %s" % " ".join(str(error).split()))
    return spec, module


def export(path, model_state, optimizer_state=None, epoch=0, seed=1, extra_metadata=None, likelihood=None, sigma=None,
           spec=None, module=None):
    """Writes the engine checkpoint; returns the metadata written. With `spec` and the `module` built from
    it (spec_model), a spec model: its spec under metadata `model` instead of the mlp's sizes."""
    metadata = dict(extra_metadata or {})
    if spec is not None:
        tensors, step = engine_tensors(model_state, optimizer_state, module)
        metadata.update({"format": FORMAT, MODEL_KEY: vae_spec.spec_json(spec), "step": step, "epoch": epoch,
                         "seed": seed, "exported_by": "torch %s" % torch.__version__})
        write_safetensors(path, tensors, metadata)
        return metadata
    tensors, step = engine_tensors(model_state, optimizer_state)
    input_dim, hidden, latent, classes = model_sizes(model_state)
    metadata.update({
        "format": FORMAT, "input_dim": input_dim, "hidden_dim": ",".join(str(h) for h in hidden), "latent_dim": latent,
        "step": step, "epoch": epoch, "seed": seed, "exported_by": "torch %s" % torch.__version__,
    })
    if classes:  # a conditional VAE: fc1 reads input_dim pixels and the classes' one-hot columns
        metadata["classes"] = classes
    metadata.update(likelihood_metadata(model_state, likelihood, sigma))
    write_safetensors(path, tensors, metadata)
    return metadata


def load_state_dicts(path):
    """torch.load(path, weights_only=True): builds only tensors and plain containers (dicts, lists,
    numbers, strings); a file that names anything else raises pickle.UnpicklingError unrun."""
    weights_only = torch._weights_only_unpickler
    try:
        weights_only.load(io.BytesIO(pickle.dumps(0.5, protocol=2)))
    except RuntimeError:
        # torch 1.13's (Debian 12's) weights-only unpickler cannot read a float (pickle opcode
        # BINFLOAT: "Unsupported operand 71"), so it refuses every optimizer state_dict (lr, betas).
        # For this load it is replaced by Python's own unpickler restricted to the same globals:
        # every way a pickle reaches code goes through find_class.
        allowed = weights_only._get_allowed_globals()

        class Unpickler(pickle.Unpickler):
            def find_class(self, module, name):
                if "%s.%s" % (module, name) not in allowed:
                    raise pickle.UnpicklingError("Unsupported global %s.%s" % (module, name))
                return allowed["%s.%s" % (module, name)]

        original = weights_only.Unpickler, weights_only.load
        weights_only.Unpickler, weights_only.load = Unpickler, lambda f, **kw: Unpickler(f, **kw).load()
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        finally:
            weights_only.Unpickler, weights_only.load = original
    return torch.load(path, map_location="cpu", weights_only=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("input", help="torch.save() file: a state_dict, or {'model', 'optimizer', 'epoch'}")
    parser.add_argument("output", help="the .safetensors file to write")
    parser.add_argument("--seed", type=int, default=1, help="seed the engine continues with (default 1)")
    parser.add_argument("--epoch", type=int, default=None, help="epochs done (default: the file's 'epoch', else 0)")
    parser.add_argument("--likelihood", choices=("bernoulli", "gaussian"), default=None,
                        help="the decoder's likelihood (default: gaussian if the state_dict has log_sigma, else bernoulli)")
    parser.add_argument("--sigma", default=None, help="a Gaussian's fixed sigma (with --likelihood gaussian; a learned "
                        "sigma is the state_dict's log_sigma)")
    parser.add_argument("--model", default=None, help="a spec model's spec: a JSON file, or a preset (%s) with "
                        "--input-shape; default: the mlp, read from its fcN names" % ", ".join(vae_spec.PRESETS))
    parser.add_argument("--input-shape", default=None, help="C,H,W of a preset's images (e.g. 1,28,28 or 3,32,32)")
    args = parser.parse_args()

    try:
        saved = load_state_dicts(args.input)
    except pickle.UnpicklingError as e:
        # torch's own text goes on to suggest weights_only=False, which would run the file's code.
        reason = str(e).split("WeightsUnpickler error:")[-1].strip().split(". ")[0].rstrip(".")
        print("export_checkpoint.py: refused %s: it holds more than tensors and plain containers (%s), and "
              "unpickling it could run code. Save only state dicts: torch.save({'model': model.state_dict(), "
              "'optimizer': optimizer.state_dict(), 'epoch': N}, path)." % (args.input, reason), file=sys.stderr)
        return 2
    if not isinstance(saved, dict):
        print("export_checkpoint.py: %s holds a %s, not a state_dict or {'model': state_dict, ...}"
              % (args.input, type(saved).__name__), file=sys.stderr)
        return 2
    if "model" in saved:
        model_state, optimizer_state, epoch = saved["model"], saved.get("optimizer"), saved.get("epoch", 0)
    else:
        model_state, optimizer_state, epoch = saved, None, 0
    if args.epoch is not None:
        epoch = args.epoch
    spec = module = None
    try:
        input_shape = parse_shape(args.input_shape) if args.input_shape is not None else None
        if args.model not in (None, "mlp"):
            spec, module = spec_model(model_state, args.model, input_shape, args.likelihood, args.sigma)
        elif "fc_mu.weight" in model_state:
            raise ValueError("a spec model's state_dict (encoder.*, fc_mu, fc_logvar, decoder.*): say which model, "
                             "--model SPEC.json or --model %s --input-shape C,H,W" % "|".join(vae_spec.PRESETS[1:]))
        metadata = export(args.output, model_state, optimizer_state, epoch=epoch, seed=args.seed,
                          likelihood=args.likelihood, sigma=args.sigma, spec=spec, module=module)
    except ValueError as error:  # vae_spec.SpecError is one
        print("export_checkpoint.py: %s: %s" % (args.input, error), file=sys.stderr)
        return 2
    if module is not None:
        name = module.name()
    else:
        input_dim, hidden, latent, classes = model_sizes(model_state)
        name = sizes_name(input_dim, hidden, latent, classes, metadata.get("likelihood", "bernoulli"), metadata.get("sigma"))
    print("wrote %s: %s, step %s, epoch %s, %s" % (
        args.output, name, metadata["step"], metadata["epoch"],
        "with Adam state" if optimizer_state is not None and metadata["step"] else "weights only"))
    return 0


def parse_shape(text):
    """(C, H, W) from "C,H,W"."""
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError("--input-shape %r is not C,H,W (three whole numbers from 1, e.g. 3,32,32)" % text)
    return shape


if __name__ == "__main__":
    sys.exit(main())
