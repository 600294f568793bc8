"""Parallel kernels: the rasterizer gives the same bits on 1 and 2 numba threads (forward and backward), the
threading layer is a thread-safe one that runs next to torch's OpenMP, and two Python threads can fit at once."""

import threading

import numba
import pytest
import torch

from mvgen.cameras import orbit
from reconstruction.fit import FitConfig, fit
from reconstruction.rasterize import rasterization
from tests.reconstruction.conftest import random_scene

W, H = 40, 32


def _render_grads(params, cams):
    params = [p.detach().clone().requires_grad_() for p in params]
    img, alpha, _ = rasterization(*params, cams.viewmats, cams.K, W, H, sh_degree=1, backend="cpu",
                                  backgrounds=torch.ones(len(cams), 3))
    g = torch.Generator().manual_seed(3)
    ((img * torch.rand(img.shape, generator=g)).sum() + (alpha * torch.rand(alpha.shape, generator=g)).sum()).backward()
    return [img.detach(), alpha.detach()] + [p.grad for p in params]


def test_rasterizer_parallel_equals_serial():
    params = random_scene(800, seed=12, spread=0.6, sh_degree=1)
    cams = orbit(3, 20.0, width=W, height=H)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        serial = _render_grads(params, cams)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        parallel = _render_grads(params, cams)
    finally:
        numba.set_num_threads(before)
    assert serial[0].std() > 0.05, "the scene must cover the image"
    for a, b in zip(serial, parallel):
        assert torch.equal(a, b)


def test_threading_layer_is_thread_safe_next_to_torch(blob_views):
    images, cams = blob_views
    torch.ones(256, 256) @ torch.ones(256, 256)  # torch's OpenMP pool is up
    cfg = FitConfig(steps=12, init_points=300, early_stop_tol=0.0)
    alone = fit(images, cams, cfg, backend="cpu")
    assert numba.threading_layer() in ("omp", "tbb")
    results, errors = [None, None], []

    def run(k):
        try:
            results[k] = fit(images, cams, cfg, backend="cpu")
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for r in results:  # the same run as alone: kernels of the two threads did not mix
        assert r.losses == alone.losses and torch.equal(r.gaussians.means, alone.gaussians.means)


def test_active_wait_policy_is_reported_once(blob_views, monkeypatch, capsys):
    import reconstruction

    images, cams = blob_views
    cfg = FitConfig(steps=2, init_points=50, early_stop_tol=0.0)
    monkeypatch.setattr(reconstruction, "_warned", [])
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    fit(images, cams, cfg, backend="cpu")
    assert "OMP_WAIT_POLICY" not in capsys.readouterr().err
    monkeypatch.setenv("OMP_WAIT_POLICY", "active")
    fit(images, cams, cfg, backend="cpu")
    fit(images, cams, cfg, backend="cpu")
    err = capsys.readouterr().err
    assert err.count("OMP_WAIT_POLICY=ACTIVE is set") == 1 and "PASSIVE" in err


def test_one_thread_runs_the_block_on_one_numba_thread_and_restores_the_count():
    import numba

    from reconstruction.jit import one_thread

    outer = numba.get_num_threads()
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))  # 2 where the machine has them: not vacuous
    before = numba.get_num_threads()
    with one_thread():
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before
    with pytest.raises(RuntimeError, match="inside"):
        with one_thread():
            raise RuntimeError("inside")
    assert numba.get_num_threads() == before  # restored after an error too
    numba.set_num_threads(outer)
