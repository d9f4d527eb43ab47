import random

import pytest
import torch

from models.space import ResNetSpec
from models.supernet import SuperNet

TINY = ResNetSpec(
    name="tiny", input_shape=(3, 16, 16), num_classes=5, stem_channels=8, stem_stride=1,
    stem_maxpool=True, stage_widths=(16, 32), stage_strides=(1, 2), base_depths=(1, 1),
    depth_list=(0, 1, 2), expand_list=(0.25, 0.5), width_list=(0.5, 1.0), divisor=4)


@pytest.fixture(autouse=True)
def _one_thread():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def make_tiny(seed: int = 0) -> SuperNet:
    """A random tiny supernet with non-trivial affine parameters and shared statistics."""
    torch.manual_seed(seed)
    net = SuperNet(TINY)
    with torch.no_grad():
        for _, m in net.norms():
            m.bn.weight.uniform_(0.5, 1.5)
            m.bn.bias.uniform_(-0.2, 0.2)
    net.train()
    rng = random.Random(seed)
    with torch.no_grad():
        for _ in range(3):       # shared running statistics from a few mixed subnets
            net.actuate(net.space.sample(rng))
            net(torch.randn(8, *TINY.input_shape))
    return net.eval()


@pytest.fixture
def tiny() -> SuperNet:
    return make_tiny()


@pytest.fixture(name="make_tiny")
def _make_tiny_fixture():
    return make_tiny


@pytest.fixture
def tiny_spec() -> ResNetSpec:
    return TINY


@pytest.fixture
def calib_batches() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    # Shifted and scaled so per-subnet statistics differ clearly from the shared ones.
    return [torch.randn(16, *TINY.input_shape, generator=g) * 2.0 + 0.5 for _ in range(2)]
