"""The fit's densification statistics (reconstruction/densify.py) equal gsplat's DefaultStrategy's."""

import torch
from gsplat.strategy import DefaultStrategy

from reconstruction.densify import Densification


def _info(C, N, seed):
    g = torch.Generator().manual_seed(seed)
    means2d = torch.zeros(C, N, 2, requires_grad=True)
    means2d.grad = torch.randn(C, N, 2, generator=g) * 1e-3
    radii = torch.randint(0, 4, (C, N, 2), generator=g, dtype=torch.int32)  # some 0 in either axis: not counted
    return {"means2d": means2d, "radii": radii, "width": 40, "height": 30, "n_cameras": C, "gaussian_ids": None}


def test_statistics_equal_gsplat():
    N = 300
    params = {"means": torch.zeros(N, 3)}
    ours, theirs = Densification(), DefaultStrategy()
    s_ours, s_theirs = ours.initialize_state(), theirs.initialize_state()
    for step, C in enumerate((1, 3, 2)):  # state created on the first call, then accumulated
        info = _info(C, N, step)
        ours._update_state(params, s_ours, info)
        theirs._update_state(params, s_theirs, info)
    assert torch.equal(s_ours["count"], s_theirs["count"])
    assert s_ours["count"].max() > 3 and (s_ours["count"] < 6).any()
    assert torch.allclose(s_ours["grad2d"], s_theirs["grad2d"], rtol=1e-6, atol=0)
    assert s_ours["grad2d"].dtype == torch.float32 and (s_ours["grad2d"] > 0).any()


def test_other_cases_take_gsplats_code():
    """absgrad and the 2D-scale statistics are gsplat's own path (same state keys filled)."""
    N = 50
    params = {"means": torch.zeros(N, 3)}
    info = _info(2, N, 1)
    info["means2d"].absgrad = info["means2d"].grad.abs()
    for kwargs in ({"absgrad": True}, {"refine_scale2d_stop_iter": 10}):
        ours, theirs = Densification(**kwargs), DefaultStrategy(**kwargs)
        s_ours, s_theirs = ours.initialize_state(), theirs.initialize_state()
        ours._update_state(params, s_ours, info)
        theirs._update_state(params, s_theirs, info)
        assert s_ours.keys() == s_theirs.keys()
        for key in s_theirs:
            a, b = s_ours[key], s_theirs[key]
            assert (a is None and b is None) or (torch.is_tensor(a) and torch.equal(a, b)) or a == b, key
