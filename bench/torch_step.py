"""The reference model's training step timed on the CPU with PyTorch: an oracle for the speed table
in bench/README.md (never a runtime dependency). The model, loss and optimizer are the reference
model's (784-400-(20,20)-400-784, BCE summed + KL, Adam lr 1e-3), at batch 128, on MNIST-sized
bytes made here (a step's cost does not depend on the pixel values). It prints one JSON line: the
median ms per step over --samples spans of --steps steps each (after --warmup steps), the spread,
the threads, and each big product's GFLOP/s (torch.mm at the engine's shapes).

Usage: /usr/bin/python3 bench/torch_step.py [--threads 2] [--steps 8] [--samples 5] [--warmup 3]
(LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-pthread picks OpenBLAS, as the bench's peer does.)
"""
import argparse
import json
import os
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

parser = argparse.ArgumentParser()
parser.add_argument('--threads', type=int, default=2)
parser.add_argument('--steps', type=int, default=8)
parser.add_argument('--samples', type=int, default=5)
parser.add_argument('--warmup', type=int, default=3)
args = parser.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(1)


class VAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def forward(self, x):
        h1 = F.relu(self.fc1(x))
        mu, logvar = self.fc21(h1), self.fc22(h1)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar


def loss_function(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction='sum')
    return bce - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


model = VAE()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
batches = [torch.randint(0, 256, (128, 784), dtype=torch.uint8).float() / 255 for _ in range(4)]


def step(i):
    x = batches[i % len(batches)]
    optimizer.zero_grad()
    recon, mu, logvar = model(x)
    loss = loss_function(recon, x, mu, logvar)
    loss.backward()
    optimizer.step()
    return loss


for i in range(args.warmup):
    step(i)
spans = []
for s in range(args.samples):
    t0 = time.perf_counter()
    for i in range(args.steps):
        step(i)
    spans.append((time.perf_counter() - t0) * 1000 / args.steps)
spans.sort()


def gflops(M, K, N, transA, transB):
    a = torch.rand(K, M) if transA else torch.rand(M, K)
    b = torch.rand(N, K) if transB else torch.rand(K, N)
    op = lambda: torch.mm(a.t() if transA else a, b.t() if transB else b)
    op()
    reps, t = 1, 0.0
    while True:
        t0 = time.perf_counter()
        for _ in range(reps):
            op()
        t = time.perf_counter() - t0
        if t >= 0.05:
            break
        reps *= 2
    return 2 * M * N * K * reps / t / 1e9


products = {
    'fc1': (128, 784, 400, False, True),
    'fc4': (128, 400, 784, False, True),
    'fc4 dW': (784, 128, 400, True, False),
    'fc4 dX': (128, 784, 400, False, False),
    'fc1 dW': (400, 128, 784, True, False),
}
blas = sorted({os.path.basename(l.split()[-1]) for l in open('/proc/self/maps') if 'blas' in l})
print(json.dumps({
    'torch': torch.__version__,
    'threads': torch.get_num_threads(),
    'blas': blas,
    'msPerStep': statistics.median(spans),
    'p10': spans[0],
    'p90': spans[-1],
    'gflops': {name: gflops(*shape) for name, shape in products.items()},
}))
