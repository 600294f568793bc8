"""What the job writes beside the views, framed by the input cameras: the orbit video's cameras, the splat viewer's
copy of the Gaussians, and the consistency report's heatmaps (one image per scored view, and one labelled sheet).

The export files themselves (.ply, .splat, .glb, .mp4, .gif, camera path) are ``reconstruction.export.export_all``.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

VIDEO_MAX_ELEVATION = 80.0  # degrees: an orbit video looking straight down would spin about its own axis
# Gradio's splat viewer (gsplat.js) opens at 5 units from the origin with a ~25-32° field of view, so it frames
# about ±0.8 units vertically at the app's 360 px height; the object is centred and scaled to this radius.
SPLAT_VIEWER_RADIUS = 0.6


def orbit_around(cameras, num_views: int, elevation: float = 20.0, azimuth_start: float = 0.0,
                 width: int | None = None, height: int | None = None):
    """An orbit framed like ``cameras`` (``mvgen.cameras.Cameras``): at their median distance from the origin,
    with their vertical field of view (``mvgen.cameras.vertical_fov_deg``); ``width`` defaults to theirs."""
    from mvgen.cameras import orbit, vertical_fov_deg

    radius = float(cameras.centers.norm(dim=-1).median())
    fov = vertical_fov_deg(cameras.K[0], cameras.height)
    return orbit(num_views, elevation, azimuth_start, radius, fov, width or cameras.width, height, cameras.c2w.device)


def video_cameras(cameras, frames: int, width: int):
    """The orbit video's cameras: around the input ``cameras`` at their median elevation, framed like them
    (``orbit_around``), ``width`` px square."""
    from mvgen.cameras import orbit_angles

    elevation = statistics.median(orbit_angles(cameras)[1])
    elevation = max(-VIDEO_MAX_ELEVATION, min(VIDEO_MAX_ELEVATION, elevation))
    return orbit_around(cameras, frames, elevation, width=width, height=width)


def splat_viewer_gaussians(gaussians, radius: float = SPLAT_VIEWER_RADIUS):
    """The Gaussians turned upright for Gradio's splat viewer (gsplat.js: world up is -Y, it looks from -Z):
    (x, y, z) -> (x, -z, y), a +90° turn about X, so mvgen's +Z up / front -Y shows standing, front first;
    then centred on the visible Gaussians and scaled so that they fit in ``radius`` (the viewer's fixed opening
    camera frames the whole object). Only the degree-0 colour is kept (the viewer ignores higher SH bands,
    which would need rotating too)."""
    import torch

    from reconstruction.gaussians import Gaussians

    g = gaussians.detach()
    R = g.means.new_tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    qr = g.means.new_tensor([math.cos(math.pi / 4), math.sin(math.pi / 4), 0.0, 0.0])  # the same turn, wxyz
    q = torch.nn.functional.normalize(g.quats, dim=-1)
    w1, x1, y1, z1 = qr
    w2, x2, y2, z2 = q.unbind(-1)
    quats = torch.stack([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                         w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2], dim=-1)
    means = g.means @ R.T
    seen = torch.sigmoid(g.opacities) > 0.2
    core = means[seen] if int(seen.sum()) >= 10 else means
    lo, hi = torch.quantile(core, 0.01, dim=0), torch.quantile(core, 0.99, dim=0)
    centre = (lo + hi) / 2
    extent = float((core - centre).norm(dim=-1).quantile(0.99)) if len(core) else 1.0
    scale = radius / max(extent, 1e-6)
    return Gaussians((means - centre) * scale, quats, g.scales + math.log(scale), g.opacities, g.sh0,
                     g.means.new_zeros(len(g), 0, 3), sh_degree=0)


def write_heatmaps(report, angles: list, folder: Path) -> list:
    """``folder``/view_XXX.png (target | render | error) for every view ``report`` (a ``HoldoutReport``) scored;
    returns [(path, caption)] with the view's azimuth (from ``angles``) and PSNR."""
    from PIL import Image

    from mvgen.fileio import atomic_path
    from reconstruction.protocols import error_heatmap

    folder.mkdir(exist_ok=True)
    heatmaps = []
    for k, i in enumerate(report.metrics["views"]):
        path = folder / f"view_{i:03d}.png"
        with atomic_path(path) as tmp:
            Image.fromarray(error_heatmap(report.renders[k], report.targets[k])).save(tmp, format="PNG")
        psnr = report.metrics["psnr_per_view"][k]
        heatmaps.append((path, f"view {i} · az {angles[i][0]:.0f}° · PSNR {psnr:.1f} dB"))
    return heatmaps


def heatmap_sheet(heatmaps: list, path: Path, min_height: int = 128) -> Path:
    """One labelled PNG of every scored view's heatmap strip (target | render | error), one row per view;
    small views are enlarged (nearest neighbour) to ``min_height`` so they stay readable."""
    from PIL import Image

    from mvgen.imageutil import grid, save_png

    strips = []
    for p, _ in heatmaps:
        with Image.open(p) as im:
            scale = max(1, -(-min_height // im.height))
            strips.append(im.convert("RGB").resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST))
    save_png(grid([[s] for s in strips], labels=[c for _, c in heatmaps]), path)
    return path
