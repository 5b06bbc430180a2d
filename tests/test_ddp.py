"""Several processes (docs/SEMANTICS.md, Shapes as state): DistributedDataParallel keeps every rank's
learnable shapes identical. Two CPU processes on the gloo backend train a few steps on
half a batch each; α and the sizes must agree across ranks and with one process
trained on the combined batch."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

import resizeops
from resizeops.nn import DynOPool2d, ShapeAdaptorMaxPool2d

STEPS = 4


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 6, 3, padding=1)
        self.pool = DynOPool2d((0.5, 0.6))
        self.sa = ShapeAdaptorMaxPool2d(alpha_init=0.3)
        self.fc = torch.nn.Linear(6, 4)

    def forward(self, x):
        x = self.sa(self.pool(torch.relu(self.conv(x))))
        return self.fc(x.mean(dim=(2, 3)))


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(STEPS, 8, 1, 20, 22, generator=g), torch.randint(0, 4, (STEPS, 8), generator=g)


def _train(model, xs, ys, step_fn=None):
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    sizes = []
    for x, y in zip(xs, ys):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        resizeops.refresh_shapes(model)  # one host read per step for the whole model
        inner = model.module if hasattr(model, "module") else model
        sizes.append((inner.pool.output_size((20, 22)), inner.sa.output_size((10, 13))))
    inner = model.module if hasattr(model, "module") else model
    return torch.cat([inner.pool.alpha.detach(), inner.sa.alpha.detach().reshape(1)]), sizes


def _worker(rank, world, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = torch.nn.parallel.DistributedDataParallel(_Net())
        xs, ys = _data()
        half = xs.shape[1] // world
        alphas, sizes = _train(model, xs[:, rank * half : (rank + 1) * half], ys[:, rank * half : (rank + 1) * half])
        torch.save({"alphas": alphas, "sizes": sizes}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_ddp_two_cpu_processes_keep_shapes_identical(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert torch.equal(r0["alphas"], r1["alphas"]) and r0["sizes"] == r1["sizes"]
    # One process on the combined batch: DDP averages the two halves' gradients,
    # which is the gradient of the mean loss over the whole batch.
    torch.manual_seed(0)
    xs, ys = _data()
    alphas, sizes = _train(_Net(), xs, ys)
    torch.testing.assert_close(r0["alphas"], alphas, rtol=1e-5, atol=1e-6)
    assert r0["sizes"] == sizes
    assert not torch.equal(alphas, torch.tensor([2.0, 1 / 0.6, 0.3]))  # the shapes did learn
