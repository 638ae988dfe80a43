"""Hello world: a small model of your own, trained on synthetic data, factorised at a few ranks by truncated SVD and
benchmarked with the `lowrank` fixture. `pytest examples/test_hello.py --benchmark-json=hello.json`, then
`pytest-benchmark compare hello.json` and `lowrank-bench collect hello.json`."""
import functools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lowrank_bench import factorize


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.head = nn.Linear(128, 256), nn.Linear(256, 256), nn.Linear(256, 10)

    def forward(self, x):
        return self.head(F.relu(self.fc2(F.relu(self.fc1(x)))))


@functools.cache
def trained():
    """The dense model, trained for 100 full-batch steps to tell 10 classes of a random linear teacher apart, and
    1,024 held-out examples."""
    torch.manual_seed(0)
    x = torch.randn(3072, 128)
    y = (x @ torch.randn(128, 10)).argmax(1)
    net = Net()
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(100):
        optimizer.zero_grad()
        F.cross_entropy(net(x[:2048]), y[:2048]).backward()
        optimizer.step()
    return net.eval(), x[2048:], y[2048:]


@pytest.mark.parametrize("rank", [None, 8, 32, 128])
def test_net(lowrank, rank):
    net, x, y = trained()
    model = net if rank is None else factorize(net, rank, ["fc1", "fc2"])
    lowrank(model, x[:256], reference=net, study="hello", method="svd" if rank else "dense", rank=rank,
            accuracy=lambda m: (m(x).argmax(1) == y).float().mean().item())
