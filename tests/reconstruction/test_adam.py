"""The fit's compiled Adam equals torch.optim.Adam and survives gsplat's densification ops."""

import pytest
import torch

from reconstruction.adam import CPUAdam, make_adam


@pytest.mark.parametrize("shape", [(5000, 3), (7,), (300, 3, 3)])
def test_cpu_adam_equals_torch_adam(shape):
    g = torch.Generator().manual_seed(0)
    start = torch.randn(shape, generator=g)
    ours, ref = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    opt, ref_opt = CPUAdam([ours], lr=3e-3, eps=1e-15), torch.optim.Adam([ref], lr=3e-3, eps=1e-15)
    for step in range(30):
        grad = torch.randn(shape, generator=g) * (10.0 ** (step % 3 - 1))
        ours.grad, ref.grad = grad.clone(), grad.clone()
        opt.step()
        ref_opt.step()
        opt.zero_grad()
        ref_opt.zero_grad()
        opt.param_groups[0]["lr"] *= 0.97  # the fit decays the means' learning rate this way
        ref_opt.param_groups[0]["lr"] *= 0.97
    assert ours.grad is None
    assert torch.allclose(ours, ref, rtol=1e-5, atol=1e-6)
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.allclose(opt.state[ours][key], ref_opt.state[ref][key], rtol=1e-5, atol=1e-6)
    assert float(opt.state[ours]["step"]) == 30


def test_cpu_adam_with_gsplat_densification_and_bad_input():
    from gsplat.strategy.ops import duplicate, remove

    params = torch.nn.ParameterDict({"means": torch.nn.Parameter(torch.randn(10, 3))})
    opts = {"means": make_adam(params["means"], 1e-2, 1e-15)}
    assert isinstance(opts["means"], CPUAdam)
    params["means"].grad = torch.ones(10, 3)
    opts["means"].step()
    state = {}
    duplicate(params=params, optimizers=opts, state=state, mask=torch.arange(10) < 4)  # 4 copies appended
    remove(params=params, optimizers=opts, state=state, mask=torch.arange(14) == 0)
    p = params["means"]
    assert p.shape == (13, 3) and opts["means"].param_groups[0]["params"][0] is p
    st = opts["means"].state[p]
    assert st["exp_avg"].shape == (13, 3) and float(st["exp_avg"][-1].abs().sum()) == 0.0  # copies start fresh
    before = p.detach().clone()
    p.grad = torch.ones(13, 3)
    opts["means"].step()
    assert not torch.equal(p.detach(), before)
    with pytest.raises(ValueError, match="one parameter"):
        CPUAdam([p, p], lr=1e-3)
    half = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    half.grad = torch.ones(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="float32 CPU"):
        CPUAdam([half], lr=1e-3).step()
