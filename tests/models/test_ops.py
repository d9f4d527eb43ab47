"""The three SubNetAct operators in isolation."""
import torch

from models.ops import SHARED, LayerSelect, SubnetNorm, WeightSliceConv2d, WeightSliceLinear


def test_weight_slice_is_a_view_of_the_leading_channels():
    conv = WeightSliceConv2d(8, 16, 3)
    w = conv.select(5, 12)
    assert w.shape == (12, 5, 3, 3)
    assert w.data_ptr() == conv.conv.weight.data_ptr()          # same storage: no copy
    assert torch.equal(w, conv.conv.weight[:12, :5])
    x = torch.randn(2, 5, 7, 7)
    ref = torch.nn.functional.conv2d(x, conv.conv.weight[:12, :5].clone(), None, 1, 1)
    torch.testing.assert_close(conv(x, w), ref)


def test_weight_slice_rejects_oversized_slices():
    conv = WeightSliceConv2d(8, 16, 1)
    try:
        conv.select(9, 4)
    except ValueError as e:
        assert "exceeds" in str(e)
    else:
        raise AssertionError("oversized slice accepted")


def test_weight_slice_linear_uses_leading_inputs():
    lin = WeightSliceLinear(10, 3)
    sel = lin.select(4)
    assert sel[0].data_ptr() == lin.linear.weight.data_ptr()
    x = torch.randn(2, 4)
    torch.testing.assert_close(lin(x, sel), x @ lin.linear.weight[:, :4].T + lin.linear.bias)


def test_subnet_norm_selects_the_slot_statistics():
    norm = SubnetNorm(6).eval()
    norm.ensure_slots(2)
    norm.slot_mean[1] = torch.arange(6.0)
    norm.slot_var[1] = torch.linspace(1, 2, 6)
    x = torch.randn(3, 4, 5, 5)
    out_slot = norm(x, norm.select(4, 1))
    expect = (x - torch.arange(4.0)[None, :, None, None]) / torch.sqrt(
        torch.linspace(1, 2, 6)[:4][None, :, None, None] + norm.bn.eps)
    torch.testing.assert_close(out_slot, expect)
    out_shared = norm(x, norm.select(4, SHARED))
    assert not torch.allclose(out_slot, out_shared)


def test_subnet_norm_calibration_gives_population_statistics():
    norm = SubnetNorm(4)
    xs = [torch.randn(8, 3, 4, 4) * 3 + 1 for _ in range(3)]
    norm.begin_calibration()
    for x in xs:
        norm(x, norm.select(3, SHARED))
    norm.end_calibration(0)
    allx = torch.cat(xs).transpose(0, 1).reshape(3, -1).double()
    torch.testing.assert_close(norm.slot_mean[0, :3], allx.mean(1).float())
    torch.testing.assert_close(norm.slot_var[0, :3], allx.var(1).float(), rtol=1e-4, atol=1e-5)
    assert torch.equal(norm.slot_mean[0, 3:], torch.zeros(1))       # unused channel: neutral


def test_layer_select_runs_the_first_d_blocks():
    calls = []

    class Block(torch.nn.Module):
        def __init__(self, i):
            super().__init__()
            self.i = i

        def forward(self, x, sel):
            calls.append((self.i, sel))
            return x + 1

    sel = LayerSelect([Block(i) for i in range(4)])
    assert list(sel.state_dict()) == []         # the supernet owns the blocks
    out = sel(torch.zeros(1), ["a", "b"])
    assert calls == [(0, "a"), (1, "b")] and out.item() == 2


def test_folded_norm_equals_batch_norm_with_the_slot_statistics():
    norm = SubnetNorm(6).eval()
    norm.ensure_slots(1)
    norm.slot_mean[0] = torch.randn(6)
    norm.slot_var[0] = torch.rand(6) + 0.5
    with torch.no_grad():
        norm.bn.weight.uniform_(0.5, 2)
        norm.bn.bias.uniform_(-1, 1)
    x = torch.randn(2, 5, 3, 3)
    folded = norm.select(5, 0, folded=True)
    assert len(folded) == 2 and folded[0].shape == (5, 1, 1)
    torch.testing.assert_close(norm(x, folded), norm(x, norm.select(5, 0)), rtol=1e-5, atol=1e-6)
