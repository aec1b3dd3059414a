#!/usr/bin/python3
"""The PyTorch module of a webgpu-vae model, built from its spec (the model as data).

A spec is JSON in PyTorch's vocabulary:

    {"input": [C, H, W], "latent": L,
     "encoder": [["Flatten"], ["Linear", 784, 512], ["LeakyReLU", 0.2], ...],
     "decoder": [["Linear", L, 256], ["ReLU"], ["Linear", 256, 784]],
     "likelihood": "bernoulli" | "gaussian", "sigma": 0.1 | "learned", "classes": N}

A layer is [Kind, *PyTorch's positional arguments]; trailing optional ones may be left out. The
heads are implied: fc_mu and fc_logvar = Linear(last encoder width, L). The module is

    encoder = nn.Sequential(*encoder layers), fc_mu, fc_logvar, decoder = nn.Sequential(*decoder layers)

plus log_sigma (one per pixel, C·H·W) when sigma is "learned", so its state_dict names are
encoder.i.weight, fc_mu.bias, decoder.i.running_mean, ... with i the index in its list. The
decoder's last output is the logits (Bernoulli) or the mean (Gaussian), flat (C·H·W) or (C, H, W).

A conditional VAE (classes N) appends onehot(y) along dim 1, as the engine does for its MLP: the
encoder's first Linear (the heads, when it has none) reads [its input ‖ onehot(y)] and the
decoder's first layer with weights, which must be a Linear, reads [z ‖ onehot(y)]. The
spec's arguments are the layers' own, so those two Linears say the N extra inputs themselves
(["Linear", 784 + N, 400], ["Linear", L + N, 400]). For the MLP this is exactly today's fc1 and
first decoder layer; for a conv model the labels join after Flatten rather than as N constant
image planes, which would multiply the first conv's inputs by H·W per class.

The `mlp` preset is today's model with today's names (fc1, fc21, fc22, fc3, fc4; for hidden widths
h1..hn: fc1..fcn, fc(n+1)1 / fc(n+1)2, fc(n+2)..fc(2n+2)); `conv` is the convolutional VAE for
(C, H, W) with H and W divisible by 4; `conv-bn` the same with BatchNorm2d and LeakyReLU(0.2)
after each hidden conv. A checkpoint stores a spec model's spec as compact JSON under the
safetensors metadata key `model`; a file without it is the `mlp` preset, its sizes read from its
fcN names.

A spec that does not build raises SpecError naming the part, the layer's index and kind, and the
shapes that disagree. Run `/usr/bin/python3 scripts/vae_spec.py SPEC.json|PRESET` to print a
spec's layers and state_dict.
"""

import json
import math
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# The engine's bounds (src/model/settings.ts SETTING_RANGES.latent, CLASSES_MIN/CLASSES_MAX,
# SIGMA_RANGE, DEFAULT_SIGMA); test/vae-spec.test.ts checks these copies against the TypeScript.
LATENT_RANGE = (1, 1024)
CLASSES_RANGE = (2, 1024)
SIGMA_RANGE = (1e-3, 1e3)
DEFAULT_SIGMA = 0.1
# More layers than this in one part and a spec is not a model anyone means.
MAX_LAYERS = 64
SPEC_KEYS = ("input", "latent", "encoder", "decoder", "likelihood", "sigma", "classes")
PRESETS = ("mlp", "conv", "conv-bn")


class SpecError(ValueError):
    """A spec that does not describe a model; the message names the layer and the shapes."""


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _shape(shape):
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _conv_out(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


def _transpose_out(size, kernel, stride, padding, output_padding):
    return (size - 1) * stride - 2 * padding + kernel + output_padding


# Each kind: (argument names, how many are required, defaults of the rest, the nn.Module class).
LAYERS = {
    "Linear": (("in_features", "out_features"), 2, (), nn.Linear),
    "ReLU": ((), 0, (), nn.ReLU),
    "LeakyReLU": (("negative_slope",), 0, (0.01,), nn.LeakyReLU),
    "Flatten": (("start_dim", "end_dim"), 0, (1, -1), nn.Flatten),
    "Unflatten": (("dim", "unflattened_size"), 2, (), nn.Unflatten),
    "Conv2d": (("in_channels", "out_channels", "kernel_size", "stride", "padding"), 3, (1, 0), nn.Conv2d),
    "ConvTranspose2d": (("in_channels", "out_channels", "kernel_size", "stride", "padding", "output_padding"), 3,
                        (1, 0, 0), nn.ConvTranspose2d),
    "BatchNorm2d": (("num_features",), 1, (), nn.BatchNorm2d),
}
# The layers the engine runs as matrix products (a BatchNorm2d has weights too, but follows one).
PRODUCTS = ("Linear", "Conv2d", "ConvTranspose2d")


def _full_args(kind, args):
    names, required, defaults, _ = LAYERS[kind]
    return list(args) + list(defaults[len(args) - required:])


def _layer_out(kind, args, shape, extra):
    """The output shape (without the batch) of layer `kind` with its full args on input `shape`;
    `extra` one-hot columns join its input (a conditioned Linear). Returns the shape or a reason."""
    def need_int(lo, *values):
        for name, v in values:
            if not _is_int(v) or v < lo:
                return "%s %r is not a whole number from %d" % (name, v, lo)
        return None

    if kind == "Linear":
        bad = need_int(1, ("in_features", args[0]), ("out_features", args[1]))
        if bad:
            return bad
        if len(shape) != 1:
            return "reads flat features, but its input is %s: put a Flatten before it" % _shape(shape)
        width = shape[0] + extra
        if args[0] != width:
            if extra:
                return ("in_features is %d, but its input %s and the %d classes' one-hot columns make %d"
                        % (args[0], _shape(shape), extra, width))
            return "in_features is %d, but its input is %s" % (args[0], _shape(shape))
        return (args[1],)
    if kind == "ReLU":
        return tuple(shape)
    if kind == "LeakyReLU":
        if not _is_number(args[0]):
            return "negative_slope %r is not a number" % (args[0],)
        return tuple(shape)
    if kind == "Flatten":
        rank = len(shape) + 1  # with the batch dimension
        start, end = args
        if not _is_int(start) or not _is_int(end):
            return "start_dim and end_dim must be whole numbers, got %r, %r" % (start, end)
        s, e = start % rank if -rank <= start < rank else None, end % rank if -rank <= end < rank else None
        if s is None or e is None or s < 1 or e < s:
            return ("start_dim %d, end_dim %d do not name dimensions 1 <= start <= end of its input %s "
                    "(dimension 0 is the batch)" % (start, end, _shape(shape)))
        dims = list(shape)
        return tuple(dims[:s - 1] + [int(np.prod(dims[s - 1:e]))] + dims[e:])
    if kind == "Unflatten":
        dim, sizes = args
        rank = len(shape) + 1
        if not _is_int(dim) or not (-rank <= dim < rank) or dim % rank < 1:
            return "dim %r is not a dimension of its input %s (dimension 0 is the batch)" % (dim, _shape(shape))
        if not isinstance(sizes, list) or not sizes or need_int(1, *(("a size", s) for s in sizes)):
            return "unflattened_size %r is not a list of whole numbers from 1" % (sizes,)
        d = dim % rank - 1
        if int(np.prod(sizes)) != shape[d]:
            return "unflattened_size %s has %d elements, but dimension %d of its input %s has %d" % (
                _shape(sizes), int(np.prod(sizes)), d + 1, _shape(shape), shape[d])
        return tuple(shape[:d]) + tuple(sizes) + tuple(shape[d + 1:])
    if kind in ("Conv2d", "ConvTranspose2d"):
        bad = need_int(1, ("in_channels", args[0]), ("out_channels", args[1]), ("kernel_size", args[2]),
                       ("stride", args[3])) or need_int(0, *zip(LAYERS[kind][0][4:], args[4:]))
        if bad:
            return bad + " (one number for both height and width)"
        if len(shape) != 3:
            return "reads (channels, height, width), but its input is %s" % _shape(shape)
        if args[0] != shape[0]:
            return "in_channels is %d, but its input %s has %d channels" % (args[0], _shape(shape), shape[0])
        k, s, p = args[2], args[3], args[4]
        if kind == "Conv2d":
            h, w = _conv_out(shape[1], k, s, p), _conv_out(shape[2], k, s, p)
        else:
            if args[5] >= s:
                return "output_padding %d must be smaller than stride %d" % (args[5], s)
            h, w = _transpose_out(shape[1], k, s, p, args[5]), _transpose_out(shape[2], k, s, p, args[5])
        if h < 1 or w < 1:
            return "kernel %d, stride %d, padding %d leave no output of its input %s" % (k, s, p, _shape(shape))
        return (args[1], h, w)
    if kind == "BatchNorm2d":
        bad = need_int(1, ("num_features", args[0]))
        if bad:
            return bad
        if len(shape) != 3 or shape[0] != args[0]:
            return "num_features is %d, but its input is %s (it normalises (channels, height, width))" % (
                args[0], _shape(shape))
        return tuple(shape)
    raise AssertionError(kind)


def output_shape(layer, shape, classes=0):
    """The output shape (batch left out) of `layer` ([Kind, ...args]) on an input of `shape`, with
    `classes` one-hot columns joining a Linear's input; raises SpecError saying why not."""
    kind, args = layer[0], layer[1:]
    if kind not in LAYERS:
        raise SpecError("unknown layer %r (the kinds are %s)" % (kind, ", ".join(LAYERS)))
    out = _layer_out(kind, _full_args(kind, args), tuple(shape), classes)
    if isinstance(out, str):
        raise SpecError("%s: %s" % (kind, out))
    return out


def check_spec(spec):
    """Checks `spec` (a dict, or its JSON text) and returns what the module needs: a dict with the
    spec's fields, the layers with all their arguments, and each layer's output shape. Raises
    SpecError naming what is wrong."""
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except ValueError as error:
            raise SpecError("model spec: not JSON (%s)" % error)
    if not isinstance(spec, dict):
        raise SpecError("model spec: a JSON object with %s, got %s" % (", ".join(SPEC_KEYS), type(spec).__name__))
    unknown = [k for k in spec if k not in SPEC_KEYS]
    if unknown:
        raise SpecError("model spec: unknown key %s (the keys are %s)" % (", ".join(map(repr, unknown)), ", ".join(SPEC_KEYS)))
    for key in ("input", "latent", "encoder", "decoder"):
        if key not in spec:
            raise SpecError("model spec: no %r" % key)
    shape = spec["input"]
    if not isinstance(shape, list) or len(shape) != 3 or not all(_is_int(s) and s >= 1 for s in shape):
        raise SpecError("model spec: input %r is not [channels, height, width] of whole numbers from 1" % (shape,))
    latent = spec["latent"]
    if not _is_int(latent) or not LATENT_RANGE[0] <= latent <= LATENT_RANGE[1]:
        raise SpecError("model spec: latent %r is not a whole number from %d to %d" % ((latent,) + LATENT_RANGE))
    classes = spec.get("classes", 0)
    if not _is_int(classes) or (classes != 0 and not CLASSES_RANGE[0] <= classes <= CLASSES_RANGE[1]):
        raise SpecError("model spec: classes %r is not a whole number from %d to %d (or absent: an unconditional VAE)"
                        % ((classes,) + CLASSES_RANGE))
    likelihood = spec.get("likelihood", "bernoulli")
    if likelihood not in ("bernoulli", "gaussian"):
        raise SpecError("model spec: likelihood %r is not \"bernoulli\" or \"gaussian\"" % (likelihood,))
    sigma = spec.get("sigma")
    if likelihood == "bernoulli" and sigma is not None:
        raise SpecError("model spec: sigma is the Gaussian likelihood's: drop it, or say \"likelihood\": \"gaussian\"")
    if likelihood == "gaussian":
        sigma = DEFAULT_SIGMA if sigma is None else sigma
        if sigma != "learned" and not (_is_number(sigma) and SIGMA_RANGE[0] <= sigma <= SIGMA_RANGE[1]):
            raise SpecError("model spec: sigma %r is not a Gaussian sigma (a number from %g to %g, or \"learned\")"
                            % ((sigma,) + SIGMA_RANGE))

    checked = {"input": tuple(shape), "latent": latent, "classes": classes, "likelihood": likelihood, "sigma": sigma}
    start = {"encoder": tuple(shape), "decoder": (latent + classes,)}
    for part in ("encoder", "decoder"):
        layers = spec[part]
        if not isinstance(layers, list) or not layers or len(layers) > MAX_LAYERS:
            raise SpecError("model spec: %s is not a list of 1 to %d layers" % (part, MAX_LAYERS))
        current = start[part]
        # The encoder's first Linear reads [its input ‖ onehot(y)]; the decoder's input is [z ‖ onehot(y)] already.
        conditioned = part == "encoder" and classes > 0
        out = []
        for i, layer in enumerate(layers):
            where = "model spec: %s layer %d" % (part, i)
            if not isinstance(layer, list) or not layer or not isinstance(layer[0], str):
                raise SpecError("%s: %r is not [Kind, ...arguments]" % (where, layer))
            kind, args = layer[0], layer[1:]
            if kind not in LAYERS:
                raise SpecError("%s: unknown layer %r (the kinds are %s)" % (where, kind, ", ".join(LAYERS)))
            names, required, defaults, _ = LAYERS[kind]
            where += " (%s)" % kind
            if not required <= len(args) <= len(names):
                takes = ("%d" % required if required == len(names) else "%d to %d" % (required, len(names)))
                raise SpecError("%s: takes %s arguments (%s), got %d: %s" % (
                    where, takes, ", ".join(names) or "none", len(args), json.dumps(layer)))
            full = _full_args(kind, args)
            extra = classes if conditioned and kind == "Linear" else 0
            shape_or_reason = _layer_out(kind, full, current, extra)
            if isinstance(shape_or_reason, str):
                raise SpecError("%s: %s" % (where, shape_or_reason))
            conditioned = conditioned and kind != "Linear"
            if part == "decoder" and classes and kind in PRODUCTS and not any(k in PRODUCTS for k, _, _ in out):
                if kind != "Linear":
                    raise SpecError("%s is a conditional decoder's first layer with weights, but [z ‖ onehot(y)] is "
                                    "read by a Linear in the engine: start the decoder with a Linear (or drop "
                                    "\"classes\")" % where)
            current = shape_or_reason
            out.append((kind, full, current))
        # With no Linear in the encoder the heads read [h ‖ onehot(y)], as the engine's do; after a
        # convolution that would leave the conv's output unconditioned, so it needs a Linear.
        if conditioned and any(kind in PRODUCTS for kind, _, _ in out):
            raise SpecError("model spec: a conditional model's encoder needs a Linear layer after its convolutions "
                            "to read onehot(y) (the encoder's first Linear reads [its input ‖ onehot(y)])")
        if part == "encoder":
            heads_join = conditioned
        if part == "encoder" and len(current) != 1:
            raise SpecError("model spec: encoder layer %d (%s) gives %s, but the heads fc_mu and fc_logvar read flat "
                            "features: end the encoder with Flatten or a Linear" % (len(layers) - 1, out[-1][0], _shape(current)))
        if part == "decoder":
            pixels = int(np.prod(shape))
            if tuple(current) != tuple(shape) and tuple(current) != (pixels,):
                raise SpecError("model spec: decoder layer %d (%s) gives %s, but the input is %s: the decoder must give "
                                "the input's shape or its %d values flat" % (
                                    len(layers) - 1, out[-1][0], _shape(current), _shape(shape), pixels))
        checked[part] = out
    checked["width"] = checked["encoder"][-1][2][0] + (classes if heads_join else 0)
    return checked


def spec_of(name, input_shape, latent=20, classes=0, likelihood="bernoulli", sigma=None, hidden=(400,)):
    """The spec of preset `name` ("mlp", "conv" or "conv-bn") for `input_shape` (C, H, W) or a
    pixel count D, latent size, classes (0: unconditional) and likelihood; `hidden` are the
    mlp's encoder widths, input side first (the decoder mirrors them)."""
    if _is_int(input_shape):
        input_shape = (1, 1, input_shape)
    c, h, w = input_shape
    d = c * h * w
    k = classes
    if name == "mlp":
        widths = [hidden] if _is_int(hidden) else list(hidden)
        encoder, fan_in = [["Flatten"]], d + k
        for width in widths:
            encoder += [["Linear", fan_in, width], ["ReLU"]]
            fan_in = width
        decoder, fan_in = [], latent + k
        for width in widths[::-1]:
            decoder += [["Linear", fan_in, width], ["ReLU"]]
            fan_in = width
        decoder.append(["Linear", fan_in, d])
    elif name in ("conv", "conv-bn"):
        if h % 4 or w % 4:
            raise SpecError("preset %s: the input's height and width must be divisible by 4 (two stride-2 convs), "
                            "got %s" % (name, _shape(input_shape)))
        flat = 64 * (h // 4) * (w // 4)
        if name == "conv":
            act, enc_norm, dec_norm = ["ReLU"], lambda n: [], lambda n: []
        else:
            act, enc_norm, dec_norm = ["LeakyReLU", 0.2], lambda n: [["BatchNorm2d", n]], lambda n: [["BatchNorm2d", n]]
        encoder = ([["Conv2d", c, 32, 4, 2, 1]] + enc_norm(32) + [act, ["Conv2d", 32, 64, 4, 2, 1]] + enc_norm(64) +
                   [act, ["Flatten"], ["Linear", flat + k, 256], act])
        decoder = ([["Linear", latent + k, 256], act, ["Linear", 256, flat], act, ["Unflatten", 1, [64, h // 4, w // 4]],
                    ["ConvTranspose2d", 64, 32, 4, 2, 1]] + dec_norm(32) + [act, ["ConvTranspose2d", 32, c, 4, 2, 1]])
    else:
        raise SpecError("no preset %r (the presets are %s)" % (name, ", ".join(PRESETS)))
    spec = {"input": list(input_shape), "latent": latent, "encoder": encoder, "decoder": decoder, "likelihood": likelihood}
    if likelihood == "gaussian":
        spec["sigma"] = DEFAULT_SIGMA if sigma is None else sigma
    if classes:
        spec["classes"] = classes
    return spec


def mlp_names(depth):
    """named_parameters() order of the mlp preset with `depth` hidden widths, log_sigma aside: for
    one width the reference model's fc1, fc21, fc22, fc3, fc4."""
    n = depth
    layers = ["fc%d" % (i + 1) for i in range(n)] + ["fc%d1" % (n + 1), "fc%d2" % (n + 1)]
    layers += ["fc%d" % (n + 2 + i) for i in range(n + 1)]
    return [layer + "." + kind for layer in layers for kind in ("weight", "bias")]


def _make(kind, args):
    if kind == "Unflatten":
        return nn.Unflatten(args[0], tuple(args[1]))
    return LAYERS[kind][3](*args)


class SpecVAE(nn.Module):
    """The VAE of a spec: encoder, fc_mu, fc_logvar, decoder (and log_sigma for a learned sigma).

    Layers are created in the order encoder, heads, decoder, so torch.manual_seed gives the same
    initial weights as a hand-built module of the same layers. With fc_names (the mlp preset
    only) the Linears are registered as the reference model's fc1, fc21, fc22, fc3, fc4 instead,
    in that order, and nothing else holds state.
    """

    def __init__(self, spec, fc_names=False):
        super().__init__()
        checked = check_spec(spec)
        self.spec = spec if isinstance(spec, dict) else json.loads(spec)
        self.input_shape = checked["input"]
        self.input_dim = int(np.prod(self.input_shape))
        self.latent_dim = checked["latent"]
        self.classes = checked["classes"]
        self.likelihood = checked["likelihood"]
        self.sigma = checked["sigma"]
        self.fc_names = fc_names
        if self.sigma == "learned":  # a parameter of the module itself: named_parameters() lists it first
            self.log_sigma = nn.Parameter(torch.zeros(self.input_dim))
        encoder = [_make(kind, args) for kind, args, _ in checked["encoder"]]
        heads = (nn.Linear(checked["width"], self.latent_dim), nn.Linear(checked["width"], self.latent_dim))
        decoder = [_make(kind, args) for kind, args, _ in checked["decoder"]]
        # Plain tuples (not registered twice): forward walks these, the names below hold the state.
        self.encoder_layers, self.heads, self.decoder_layers = tuple(encoder), heads, tuple(decoder)
        kinds = [kind for kind, _, _ in checked["encoder"]]
        # Where [h ‖ onehot(y)] is made: before the encoder's first Linear, else before the heads.
        self.condition_at = (kinds.index("Linear") if "Linear" in kinds else len(kinds)) if self.classes else None
        if not fc_names:
            self.encoder = nn.Sequential(*encoder)
            self.fc_mu, self.fc_logvar = heads
            self.decoder = nn.Sequential(*decoder)
            return
        enc = [m for m in encoder if isinstance(m, nn.Linear)]
        dec = [m for m in decoder if isinstance(m, nn.Linear)]
        stateless = (nn.Linear, nn.ReLU, nn.Flatten)
        if len(dec) != len(enc) + 1 or not all(isinstance(m, stateless) for m in encoder + decoder):
            raise SpecError("fc names are the mlp preset's: Flatten, Linear and ReLU, n encoder Linears and n + 1 decoder ones")
        n = len(enc)
        named = [("fc%d" % (i + 1), m) for i, m in enumerate(enc)]
        named += [("fc%d1" % (n + 1), heads[0]), ("fc%d2" % (n + 1), heads[1])]
        named += [("fc%d" % (n + 2 + i), m) for i, m in enumerate(dec)]
        for name, module in named:
            setattr(self, name, module)

    def onehot(self, y, like):
        return F.one_hot(y, self.classes).to(like.dtype)

    def encode(self, x, y=None):
        """(mu, logvar) of x, (N, C, H, W) or flat (N, C·H·W); y the labels of a conditional model."""
        h = x.reshape(-1, *self.input_shape)
        for i, layer in enumerate(self.encoder_layers):
            if i == self.condition_at:
                h = torch.cat([h, self.onehot(y, h)], 1)
            h = layer(h)
        if self.condition_at == len(self.encoder_layers):
            h = torch.cat([h, self.onehot(y, h)], 1)
        return self.heads[0](h), self.heads[1](h)

    def decode(self, z, y=None):
        """The decoder's output for z: the logits (Bernoulli) or the mean (Gaussian)."""
        h = torch.cat([z, self.onehot(y, z)], 1) if self.classes else z
        for layer in self.decoder_layers:
            h = layer(h)
        return h

    def mean(self, z, y=None):
        """The image z decodes to: sigmoid of the logits (Bernoulli), or the Gaussian's mean."""
        out = self.decode(z, y)
        return out if self.likelihood == "gaussian" else torch.sigmoid(out)

    def forward(self, x, y=None, eps=None, sample=True):
        """(decoder output, mu, logvar); z = mu + eps·exp(½·logvar), eps drawn by randn_like unless given,
        z = mu with sample=False."""
        mu, logvar = self.encode(x, y)
        z = mu
        if sample:
            std = torch.exp(0.5 * logvar)
            z = mu + (torch.randn_like(std) if eps is None else eps) * std
        return self.decode(z, y), mu, logvar

    def log_sigma_of(self):
        """log sigma: the learned per-pixel vector, or the fixed sigma's log (in float32, as the engine's uniform)."""
        if self.sigma == "learned":
            return self.log_sigma
        return torch.tensor(np.float32(np.log(float(self.sigma))))

    def loss_terms(self, out, x, mu, logvar):
        """(reconstruction, KL), each summed over pixels and the batch, in nats. Bernoulli: the reference
        model's BCE of sigmoid(logits); it is the engine's BCE on the logits except where float32's
        sigmoid rounds to 0 or 1 (PyTorch then clamps the log at -100). Gaussian: the sum of
        ½·log(2π) + log σ + (x − mean)² / (2σ²)."""
        out = out.reshape(out.shape[0], -1)
        x = x.reshape(-1, out.shape[1])
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        if self.likelihood != "gaussian":
            return F.binary_cross_entropy(torch.sigmoid(out), x, reduction="sum"), kld
        log_sigma = self.log_sigma_of()
        rec = torch.sum(0.5 * math.log(2 * math.pi) + log_sigma + (x - out).pow(2) / (2 * torch.exp(2 * log_sigma)))
        return rec, kld

    def name(self):
        """How the engine names the model: "784-400-20", "784-400-20 (10 classes)", "784-400-20 gaussian
        learned sigma"; a spec model by its input shape and latent size, "spec 1x28x28-20"."""
        if self.fc_names:
            hidden = [m.out_features for m in self.encoder_layers if isinstance(m, nn.Linear)]
            return sizes_name(self.input_dim, hidden, self.latent_dim, self.classes, self.likelihood, self.sigma)
        return sizes_name("spec " + "x".join(map(str, self.input_shape)), [], self.latent_dim, self.classes,
                          self.likelihood, self.sigma)


def sizes_name(input_dim, hidden, latent, classes=0, likelihood="bernoulli", sigma=None):
    """The sizes as the engine names them: "784-400-20", "784-512-256-20", "784-400-20 (10 classes)",
    "784-400-20 gaussian learned sigma"."""
    name = "-".join(str(s) for s in [input_dim] + list(hidden) + [latent])
    name += " (%d classes)" % classes if classes else ""
    if likelihood == "gaussian":
        name += " gaussian " + ("learned sigma" if sigma == "learned" else "sigma %s" % sigma)
    return name


def build(spec):
    """The module of a spec (a dict or its JSON text), with nn.Sequential names."""
    return SpecVAE(spec)


def mlp(input_dim=784, hidden=(400,), latent=20, classes=0, likelihood="bernoulli", sigma=None):
    """The mlp preset's module with today's names: for one hidden width the PyTorch examples' VAE,
    the same layers created in the same order, so torch.manual_seed gives the same weights."""
    return SpecVAE(spec_of("mlp", input_dim, latent, classes, likelihood, sigma, hidden), fc_names=True)


def preset(name, input_shape, latent=20, classes=0, likelihood="bernoulli", sigma=None):
    """The module of preset `name`: mlp with today's names, the others with nn.Sequential names."""
    if name == "mlp":
        return mlp(int(np.prod(input_shape)), (400,), latent, classes, likelihood, sigma)
    return build(spec_of(name, input_shape, latent, classes, likelihood, sigma))


def spec_json(spec):
    """The spec as a checkpoint stores it under metadata `model`: compact JSON."""
    return json.dumps(spec, separators=(",", ":"))


def main(argv):
    if len(argv) != 2:
        print("usage: vae_spec.py SPEC.json | %s   (prints the layers and the state_dict)" % " | ".join(PRESETS),
              file=sys.stderr)
        return 2
    try:
        if argv[1] in PRESETS:
            model = preset(argv[1], (1, 28, 28))
        else:
            with open(argv[1]) as f:
                model = build(f.read())
    except (OSError, SpecError) as error:
        print("vae_spec.py: %s" % error, file=sys.stderr)
        return 2
    print(model)
    for name, tensor in model.state_dict().items():
        print("%-28s %s" % (name, list(tensor.shape)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
