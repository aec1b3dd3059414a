#!/usr/bin/python3
"""Checks scripts/vae_spec.py from outside, against modules written here by hand.

Each check prints "ok <name>" or "FAIL <name>: why"; the exit status is the number of failures.
test/vae-spec.test.ts runs it and wants every check's "ok".

  conv, conv-bn     the presets' state_dict names and shapes equal those of the modules issue 20
                    spells out, written here layer by layer; with the preset's weights loaded
                    strictly into them, both give the same mu, logvar and decoder output (train
                    and eval mode, conditional too)
  mlp               today's names (fc1, fc21, fc22, fc3, fc4; deeper fc1, fc2, fc31, fc32, fc4..fc6),
                    the PyTorch example's initial weights under torch.manual_seed, and its outputs
  leaky             issue 19's LeakyReLU spec loads strictly into hand-built nn.Sequentials
  shapes            each layer kind's output shape, on awkward sizes and arguments, is PyTorch's
  errors            bad specs raise SpecError naming the part, the layer's index and kind, and shapes
  control           the comparison itself fails on a hand-built module with two layers swapped
  export            a conv-bn model exported by export_checkpoint.py and loaded by load_checkpoint.py
                    gives the same outputs, its spec under metadata "model"

`--constants` prints the Python copies of the engine's bounds as JSON instead.
"""

import io
import json
import os
import re
import sys
import tempfile
from contextlib import redirect_stdout

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vae_spec  # noqa: E402

FAILURES = []


def check(name, fn):
    try:
        fn()
    except Exception as error:  # a check's failure, whatever raised it, is reported and counted
        FAILURES.append(name)
        print("FAIL %s: %s: %s" % (name, type(error).__name__, " ".join(str(error).split())[:600]))
        return
    print("ok %s" % name)


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


class Hand(nn.Module):
    """encoder, fc_mu, fc_logvar, decoder as given; the conditional one-hot joins the input of the
    encoder layer `condition_at` and z."""

    def __init__(self, encoder, latent, width, decoder, classes=0, condition_at=None):
        super().__init__()
        self.encoder = nn.Sequential(*encoder)
        self.fc_mu = nn.Linear(width, latent)
        self.fc_logvar = nn.Linear(width, latent)
        self.decoder = nn.Sequential(*decoder)
        self.classes, self.condition_at = classes, condition_at

    def run(self, x, y, eps):
        h = x
        for i, layer in enumerate(self.encoder):
            if self.classes and i == self.condition_at:
                h = torch.cat([h, F.one_hot(y, self.classes).float()], 1)
            h = layer(h)
        mu, logvar = self.fc_mu(h), self.fc_logvar(h)
        z = mu + eps * torch.exp(0.5 * logvar)
        if self.classes:
            z = torch.cat([z, F.one_hot(y, self.classes).float()], 1)
        return self.decoder(z), mu, logvar


def hand_conv(c, h, w, latent, classes=0, batchnorm=False):
    """Issue 20's conv module, and with batchnorm its BatchNorm2d + LeakyReLU(0.2) variant."""
    f = 64 * (h // 4) * (w // 4)
    act = (lambda: nn.LeakyReLU(0.2)) if batchnorm else nn.ReLU
    bn = (lambda n: [nn.BatchNorm2d(n)]) if batchnorm else (lambda n: [])
    encoder = ([nn.Conv2d(c, 32, 4, 2, 1)] + bn(32) + [act(), nn.Conv2d(32, 64, 4, 2, 1)] + bn(64) +
               [act(), nn.Flatten(), nn.Linear(f + classes, 256), act()])
    decoder = ([nn.Linear(latent + classes, 256), act(), nn.Linear(256, f), act(), nn.Unflatten(1, (64, h // 4, w // 4)),
                nn.ConvTranspose2d(64, 32, 4, 2, 1)] + bn(32) + [act(), nn.ConvTranspose2d(32, c, 4, 2, 1)])
    flatten_at = [i for i, m in enumerate(encoder) if isinstance(m, nn.Flatten)][0]
    return Hand(encoder, latent, 256, decoder, classes, flatten_at + 1)


def compare(spec_model, hand, shape, classes, train=False, steps=1):
    """Names, shapes and outputs of the spec model and the hand-built one holding its weights."""
    ours = spec_model.state_dict()
    theirs = hand.state_dict()
    expect(list(ours) == list(theirs), "state_dict names differ:\n  spec %s\n  hand %s" % (list(ours), list(theirs)))
    for name in ours:
        expect(ours[name].shape == theirs[name].shape, "%s: spec %s, hand %s" % (
            name, list(ours[name].shape), list(theirs[name].shape)))
    hand.load_state_dict(ours, strict=True)
    gen = torch.Generator().manual_seed(5)
    for _ in range(steps):
        x = torch.rand((3,) + tuple(shape), generator=gen)
        y = torch.tensor([0, classes - 1, 1]) if classes else None
        eps = torch.randn(3, spec_model.latent_dim, generator=gen)
        spec_model.train(train)
        hand.train(train)
        out, mu, logvar = spec_model(x, y=y, eps=eps)
        hout, hmu, hlogvar = hand.run(x, y, eps)
        for what, a, b in (("mu", mu, hmu), ("logvar", logvar, hlogvar), ("decoder output", out, hout)):
            expect(a.shape == b.shape and torch.equal(a, b), "%s differs: max |diff| %s" % (
                what, (a - b).abs().max().item() if a.shape == b.shape else "shapes %s vs %s" % (a.shape, b.shape)))
    for name, tensor in hand.state_dict().items():  # BatchNorm2d's running statistics moved alike
        expect(torch.equal(tensor, spec_model.state_dict()[name]), "%s differs after the forward passes" % name)


def check_conv(name, batchnorm):
    def run():
        for shape, latent, classes in (((1, 28, 28), 20, 0), ((3, 32, 32), 7, 0), ((3, 12, 8), 5, 4), ((1, 4, 4), 1, 2)):
            model = vae_spec.preset(name, shape, latent, classes)
            for train in (True, False):
                compare(model, hand_conv(*shape, latent, classes, batchnorm), shape, classes, train=train, steps=2)
        names = list(vae_spec.preset(name, (1, 28, 28), 20).state_dict())
        if not batchnorm:  # issue 20's own examples
            for n in ("encoder.0.weight", "encoder.5.weight", "fc_mu.weight", "decoder.7.weight"):
                expect(n in names, "no %s in %s" % (n, names))
        learned = vae_spec.preset(name, (3, 8, 8), 4, likelihood="gaussian", sigma="learned")
        expect(list(learned.state_dict())[0] == "log_sigma" and learned.log_sigma.shape == (3 * 8 * 8,),
               "a learned sigma is log_sigma, one per value of the image (C·H·W), first")
    return run


class Example(nn.Module):
    """The PyTorch examples' MNIST VAE (784-400-20), as written there."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def decode(self, z):
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))


def check_mlp():
    torch.manual_seed(3)
    example = Example()
    torch.manual_seed(3)
    model = vae_spec.preset("mlp", (1, 28, 28), 20)
    ours, theirs = model.state_dict(), example.state_dict()
    expect(list(ours) == list(theirs), "names %s, the example's %s" % (list(ours), list(theirs)))
    for name in ours:
        expect(torch.equal(ours[name], theirs[name]), "%s: not the example's initial weights under the same seed" % name)
    x = torch.rand(5, 784)
    z = torch.randn(5, 20)
    mu, logvar = model.encode(x)
    emu, elogvar = example.encode(x)
    expect(torch.equal(mu, emu) and torch.equal(logvar, elogvar), "encode differs from the example's")
    expect(torch.equal(model.mean(z), example.decode(z)), "decode differs from the example's")
    deep = vae_spec.mlp(784, [512, 256], 20)
    want = ["fc1", "fc2", "fc31", "fc32", "fc4", "fc5", "fc6"]
    expect([n for n, _ in deep.named_parameters()] == [p + k for p in want for k in (".weight", ".bias")],
           "--hidden 512,256 names: %s" % [n for n, _ in deep.named_parameters()])
    conditional = vae_spec.mlp(784, [400], 20, classes=10, likelihood="gaussian", sigma="learned")
    shapes = {n: list(p.shape) for n, p in conditional.named_parameters()}
    expect(list(shapes)[0] == "log_sigma" and shapes["log_sigma"] == [784], "log_sigma [784] first: %s" % shapes)
    expect(shapes["fc1.weight"] == [400, 794] and shapes["fc3.weight"] == [400, 30],
           "conditional fc1 reads [x ‖ onehot(y)], fc3 [z ‖ onehot(y)]: %s" % shapes)
    # With no Linear in the encoder, the heads read [x ‖ onehot(y)] (as the engine's heads do).
    bare = vae_spec.build({"input": [1, 2, 2], "latent": 3, "encoder": [["Flatten"]],
                           "decoder": [["Linear", 5, 4]], "likelihood": "bernoulli", "classes": 2})
    x, y = torch.rand(4, 4), torch.tensor([1, 0, 0, 1])
    joined = torch.cat([x, torch.nn.functional.one_hot(y, 2).float()], 1)
    expect(torch.equal(bare.encode(x, y)[0], bare.fc_mu(joined)), "a Linear-less conditional encoder's heads read [x ‖ onehot(y)]")


def check_leaky():
    spec = {"input": [1, 28, 28], "latent": 20,
            "encoder": [["Flatten"], ["Linear", 784, 512], ["LeakyReLU", 0.2], ["Linear", 512, 256], ["LeakyReLU", 0.2]],
            "decoder": [["Linear", 20, 256], ["LeakyReLU", 0.2], ["Linear", 256, 784]],
            "likelihood": "bernoulli"}
    model = vae_spec.build(json.dumps(spec))
    hand = Hand([nn.Flatten(), nn.Linear(784, 512), nn.LeakyReLU(0.2), nn.Linear(512, 256), nn.LeakyReLU(0.2)], 20, 256,
                [nn.Linear(20, 256), nn.LeakyReLU(0.2), nn.Linear(256, 784)])
    expect(list(model.state_dict()) == ["encoder.1.weight", "encoder.1.bias", "encoder.3.weight", "encoder.3.bias",
                                        "fc_mu.weight", "fc_mu.bias", "fc_logvar.weight", "fc_logvar.bias",
                                        "decoder.0.weight", "decoder.0.bias", "decoder.2.weight", "decoder.2.bias"],
           "names: %s" % list(model.state_dict()))
    compare(model, hand, (1, 28, 28), 0)
    # The slope reaches PyTorch: with ReLU in its place the outputs differ.
    relu = Hand([nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU()], 20, 256,
                [nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 784)])
    relu.load_state_dict(model.state_dict(), strict=True)
    x, eps = torch.rand(2, 1, 28, 28), torch.randn(2, 20)
    expect(not torch.equal(relu.run(x, None, eps)[0], model(x, eps=eps)[0]), "LeakyReLU(0.2) gave ReLU's output")


def good():
    return {"input": [1, 8, 8], "latent": 3,
            "encoder": [["Conv2d", 1, 4, 3, 2, 1], ["BatchNorm2d", 4], ["LeakyReLU"], ["Flatten"], ["Linear", 64, 10], ["ReLU"]],
            "decoder": [["Linear", 3, 64], ["ReLU"], ["Unflatten", 1, [4, 4, 4]], ["ConvTranspose2d", 4, 1, 4, 2, 1]]}


def bad(path, value):
    """good() with the item at `path` (keys and indices) replaced by `value` (None deletes it)."""
    spec = good()
    target = spec
    for key in path[:-1]:
        target = target[key]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return spec


ERRORS = [
    (bad(["encoder", 1], ["BatchNorm1d", 4]), r"encoder layer 1: unknown layer 'BatchNorm1d'"),
    (bad(["encoder", 4], ["Linear", 64]), r"encoder layer 4 \(Linear\): takes 2 arguments \(in_features, out_features\), got 1"),
    (bad(["encoder", 2], ["LeakyReLU", 0.1, 2]), r"encoder layer 2 \(LeakyReLU\): takes 0 to 1 arguments"),
    (bad(["encoder", 4], ["Linear", 60, 10]), r"encoder layer 4 \(Linear\): in_features is 60, but its input is \[64\]"),
    (bad(["encoder", 3], ["ReLU"]), r"encoder layer 4 \(Linear\): reads flat features, but its input is \[4, 4, 4\]"),
    (bad(["encoder", 1], ["BatchNorm2d", 5]), r"encoder layer 1 \(BatchNorm2d\): num_features is 5, but its input is \[4, 4, 4\]"),
    (bad(["input"], [2, 8, 8]), r"encoder layer 0 \(Conv2d\): in_channels is 1, but its input \[2, 8, 8\] has 2 channels"),
    (bad(["encoder", 0], ["Conv2d", 1, 4, 9]), r"encoder layer 0 \(Conv2d\): kernel 9, stride 1, padding 0 leave no output of its input \[1, 8, 8\]"),
    (bad(["input"], [1, 10, 10]), r"encoder layer 4 \(Linear\): in_features is 64, but its input is \[100\]"),
    (bad(["decoder", 3], ["ConvTranspose2d", 4, 1, 3, 2, 1]), r"decoder layer 3 \(ConvTranspose2d\) gives \[1, 7, 7\], but the input is \[1, 8, 8\]"),
    (bad(["decoder", 3], ["ConvTranspose2d", 4, 1, 4, 2, 1, 2]), r"decoder layer 3 \(ConvTranspose2d\): output_padding 2 must be smaller than stride 2"),
    (bad(["decoder", 2], ["Unflatten", 1, [4, 4, 5]]), r"decoder layer 2 \(Unflatten\): unflattened_size \[4, 4, 5\] has 80 elements, but dimension 1 of its input \[64\] has 64"),
    (bad(["decoder", 0], ["Linear", 4, 64]), r"decoder layer 0 \(Linear\): in_features is 4, but its input is \[3\]"),
    (bad(["encoder", 0], ["Conv2d", 1, 4, 0]), r"encoder layer 0 \(Conv2d\): kernel_size 0 is not a whole number from 1"),
    (bad(["encoder", 0], ["Conv2d", 1, 4, [3, 3], 2, 1]), r"encoder layer 0 \(Conv2d\): kernel_size \[3, 3\] is not a whole number"),
    (bad(["encoder"], [["Flatten"]] + good()["encoder"]), r"encoder layer 1 \(Conv2d\): reads \(channels, height, width\), but its input is \[64\]"),
    (bad(["encoder"], good()["encoder"][:3]), r"encoder layer 2 \(LeakyReLU\) gives \[4, 4, 4\], but the heads fc_mu and fc_logvar read flat features"),
    (dict(bad(["classes"], 3), encoder=good()["encoder"][:4] + [["Linear", 67, 10], ["ReLU"]]), r"decoder layer 0 \(Linear\): in_features is 3, but its input is \[6\]"),
    (dict(bad(["classes"], 3), decoder=[["Linear", 6, 64]] + good()["decoder"][1:]),
     r"encoder layer 4 \(Linear\): in_features is 64, but its input \[64\] and the 3 classes' one-hot columns make 67"),
    (dict(bad(["classes"], 2), encoder=good()["encoder"][:4] + [["Linear", 66, 10], ["ReLU"]],
          decoder=[["Unflatten", 1, [5, 1, 1]], ["ConvTranspose2d", 5, 1, 8]]),
     r"decoder layer 1 \(ConvTranspose2d\) is a conditional decoder's first layer with weights"),
    (bad(["latent"], 0), r"latent 0 is not a whole number from 1 to 1024"),
    (bad(["classes"], 1), r"classes 1 is not a whole number from 2 to 1024"),
    (bad(["likelihood"], "poisson"), r"likelihood 'poisson' is not"),
    (bad(["sigma"], 0.1), r"sigma is the Gaussian likelihood's"),
    (dict(good(), likelihood="gaussian", sigma=0), r"sigma 0 is not a Gaussian sigma \(a number from 0.001 to 1000"),
    (bad(["hidden"], [400]), r"unknown key 'hidden'"),
    (bad(["decoder"], None), r"no 'decoder'"),
]


def check_errors():
    vae_spec.build(good())  # the base of every bad spec builds
    for spec, pattern in ERRORS:
        try:
            vae_spec.build(spec)
        except vae_spec.SpecError as error:
            expect(re.search(pattern, str(error)), "%s\n  said: %s\n  want: %s" % (json.dumps(spec), error, pattern))
            continue
        raise AssertionError("built without an error: %s (want %s)" % (json.dumps(spec), pattern))
    try:
        vae_spec.spec_of("conv", (3, 30, 30))
    except vae_spec.SpecError as error:
        expect("divisible by 4" in str(error) and "[3, 30, 30]" in str(error), str(error))
    else:
        raise AssertionError("the conv preset took a 30x30 input")


SHAPES = [
    (["Linear", 7, 3], (7,)), (["ReLU"], (2, 3, 5)), (["LeakyReLU", 0.3], (5,)), (["Flatten"], (3, 5, 7)),
    (["Flatten", 2], (3, 5, 7)), (["Flatten", 1, 2], (3, 5, 7)), (["Flatten", -2, -1], (3, 5, 7)),
    (["Unflatten", 1, [3, 5]], (15,)), (["Unflatten", -1, [1, 7]], (3, 5, 7)), (["Unflatten", 2, [5, 1]], (3, 5, 7)),
    (["Conv2d", 3, 4, 1], (3, 5, 7)), (["Conv2d", 3, 4, 3, 2], (3, 9, 8)), (["Conv2d", 1, 2, 5, 2, 2], (1, 11, 13)),
    (["Conv2d", 3, 1, 4, 2, 1], (3, 7, 6)), (["Conv2d", 2, 2, 3, 1, 2], (2, 1, 1)),
    (["ConvTranspose2d", 4, 3, 4, 2, 1], (4, 7, 5)), (["ConvTranspose2d", 1, 2, 3, 2, 1, 1], (1, 5, 6)),
    (["ConvTranspose2d", 2, 1, 5, 1, 2], (2, 3, 3)), (["ConvTranspose2d", 3, 3, 1], (3, 2, 9)),
    (["BatchNorm2d", 3], (3, 4, 5)),
]


def check_shapes():
    """vae_spec's output shapes are those of PyTorch's own layers, run on a batch of 2."""
    for layer, shape in SHAPES:
        module = getattr(nn, layer[0])(*[tuple(a) if isinstance(a, list) else a for a in layer[1:]])
        want = tuple(module(torch.zeros((2,) + shape)).shape[1:])
        got = vae_spec.output_shape(layer, shape)
        expect(tuple(got) == want, "%s on %s: vae_spec %s, PyTorch %s" % (json.dumps(layer), list(shape), list(got), list(want)))


def check_control():
    """compare() must notice a module with two layers swapped (ReLU before the conv it follows)."""
    model = vae_spec.preset("conv", (1, 8, 8), 3)
    hand = hand_conv(1, 8, 8, 3)
    layers = list(hand.encoder)
    layers[2], layers[3] = layers[3], layers[2]
    hand.encoder = nn.Sequential(*layers)
    try:
        compare(model, hand, (1, 8, 8), 0)
    except AssertionError:
        return
    raise AssertionError("compare() passed a module whose encoder.2 and encoder.3 are swapped")


def check_export():
    import export_checkpoint
    import load_checkpoint
    torch.manual_seed(4)
    model = vae_spec.preset("conv-bn", (3, 8, 8), 4, classes=3, likelihood="gaussian", sigma="learned")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.rand(5, 3, 8, 8), torch.tensor([0, 1, 2, 2, 1])
    model.train()
    for _ in range(2):
        opt.zero_grad()
        out, mu, logvar = model(x, y=y)
        rec, kl = model.loss_terms(out, x, mu, logvar)
        (rec + kl).backward()
        opt.step()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "conv-bn.safetensors")
        spec, module = export_checkpoint.spec_model(model.state_dict(), "conv-bn", (3, 8, 8))
        with redirect_stdout(io.StringIO()):
            export_checkpoint.export(path, model.state_dict(), opt.state_dict(), epoch=2, spec=spec, module=module)
        loaded, optimizer, metadata = load_checkpoint.load_checkpoint(path)
    expect(json.loads(metadata["model"]) == vae_spec.spec_of("conv-bn", (3, 8, 8), 4, 3, "gaussian", "learned"),
           "metadata model is not the spec: %s" % metadata.get("model"))
    expect(metadata["step"] == "2" and metadata["epoch"] == "2", "step/epoch: %s" % metadata)
    for name, tensor in model.state_dict().items():
        expect(torch.equal(tensor, loaded.state_dict()[name]), "%s changed on the way" % name)
    for p, q in zip(model.parameters(), loaded.parameters()):
        expect(torch.equal(opt.state[p]["exp_avg_sq"], optimizer.state[q]["exp_avg_sq"]), "Adam's moments changed")
    model.eval()
    loaded.eval()
    eps = torch.randn(5, 4)
    a, b = model(x, y=y, eps=eps), loaded(x, y=y, eps=eps)
    expect(all(torch.equal(u, v) for u, v in zip(a, b)), "the loaded model computes something else")


def main(argv):
    if argv[1:] == ["--constants"]:
        print(json.dumps({"LATENT_RANGE": vae_spec.LATENT_RANGE, "CLASSES_RANGE": vae_spec.CLASSES_RANGE,
                          "SIGMA_RANGE": vae_spec.SIGMA_RANGE, "DEFAULT_SIGMA": vae_spec.DEFAULT_SIGMA}))
        return 0
    torch.set_num_threads(1)
    check("conv", check_conv("conv", False))
    check("conv-bn", check_conv("conv-bn", True))
    check("mlp", check_mlp)
    check("leaky", check_leaky)
    check("shapes", check_shapes)
    check("errors", check_errors)
    check("control", check_control)
    check("export", check_export)
    return len(FAILURES)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
