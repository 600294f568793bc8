"""Fixtures of the job's tests (and the app's and the reliability tests'): a tiny pipeline saved to disk, fast job
settings, posed views of a procedural object, and the reconstruction tests' blob scene."""

import pytest
import torch

from mvgen.settings import AppConfig
from tests.reconstruction.conftest import blob_views, blob_views_dir  # noqa: F401  (shared fixtures)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """These tests run models on one thread (the machine is shared); other test folders keep their setting."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A tiny random pipeline (32x32 views: LPIPS needs >= 32 px) saved like the shipped model."""
    from mvgen.text import load_text_encoder
    from tests.generation.conftest import make_tiny_pipeline

    path = tmp_path_factory.mktemp("model") / "tiny"
    make_tiny_pipeline(load_text_encoder(), latent=16).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def model_2x(tmp_path_factory):
    """The tiny random pipeline (32x32 views) with a 2x decoder (64x64 views: ``output_size=64``), saved."""
    from mvgen.models.updecoder import UpDecoder2x
    from mvgen.text import load_text_encoder
    from tests.generation.conftest import make_tiny_pipeline

    pipe = make_tiny_pipeline(load_text_encoder(), latent=16)
    pipe.register_modules(decoder_2x=UpDecoder2x.from_vae(pipe.vae))
    path = tmp_path_factory.mktemp("model2x") / "tiny2x"
    pipe.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def fast_config(tmp_path_factory):
    """Settings that run every stage in seconds: 2 views on one ring, 2 denoising steps, 20 fitting steps of 800
    Gaussians."""
    import yaml

    from mvgen.settings import REPO

    preset = yaml.safe_load((REPO / "configs" / "reconstruction.yaml").read_text())
    preset["fit"].update(init_points=800, max_gaussians=2000, early_stop_tol=0.0)
    path = tmp_path_factory.mktemp("cfg") / "fit_fast.yaml"
    path.write_text(yaml.safe_dump(preset))
    return AppConfig.from_yaml(views=2, views_min=2, rings="", steps=2, recon_steps=20, recon_config=str(path),
                               video_frames=8, video_width=64, mesh_resolution=32, max_image_size=64)


@pytest.fixture(scope="session")
def posed_views(tmp_path_factory):
    """A procedural red mug: 4 RGBA views at 32 px with transforms.json (the dataset's object layout)."""
    from mvgen.data.captions import parse_caption
    from mvgen.data.generate import DatasetConfig, make_object

    out = tmp_path_factory.mktemp("views")
    make_object(out, "mug", parse_caption("a red mug"), DatasetConfig(views=4, resolution=32, supersample=1))
    return out / "mug"
