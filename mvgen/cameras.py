"""Camera conventions for every stage of mvgen: the single source of truth.

World: right-handed, +Z up (Blender / NeRF-synthetic). Objects stand upright on +Z and face -Y ("front").
Cameras are stored as c2w [V,4,4] in the OpenGL/NeRF convention used by transforms.json (camera looks along
its -Z axis, +Y is up, +X right) and pinhole intrinsics K [V,3,3] in pixels (OpenCV layout, principal point
in pixel units with pixel centres at +0.5). gsplat wants world-to-camera ``viewmats`` in the OpenCV convention
(+Z forward, +Y down); ``c2w_to_viewmat`` / ``viewmat_to_c2w`` convert.

Orbit angles: azimuth 0 puts the camera in front of the object (on -Y), azimuth grows counter-clockwise seen
from above (azimuth 90 is on +X); elevation is degrees above the horizon (camera looks down when positive).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from mvgen.checks import check_int
from mvgen.checks import short_repr as _short
from mvgen.fileio import atomic_write_text
from mvgen.limits import CAMERA_ELEVATION, MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE

# OpenGL camera axes -> OpenCV camera axes (flip Y and Z): the one place this flip is written.
GL_TO_CV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))

DEFAULT_RADIUS = 3.2  # objects are normalised to the unit sphere; this keeps them inside a 40 deg view
DEFAULT_FOV_DEG = 40.0
IMAGE_FORMATS = ("PNG", "JPEG")


class CameraError(ValueError):
    """A camera (pose, intrinsics or transforms.json) is invalid; the message names the field."""


@dataclass
class Cameras:
    """A set of V pinhole cameras of one image size.

    Attributes:
        c2w: [V,4,4] camera-to-world, OpenGL convention (as in transforms.json).
        K: [V,3,3] intrinsics in pixels.
        width, height: image size in pixels the intrinsics refer to.
    """

    c2w: torch.Tensor
    K: torch.Tensor
    width: int
    height: int

    def __post_init__(self):
        self.c2w = torch.as_tensor(self.c2w, dtype=torch.float32)
        self.K = torch.as_tensor(self.K, dtype=torch.float32)
        validate(self.c2w, self.K, self.width, self.height)

    def __len__(self) -> int:
        return self.c2w.shape[0]

    def __getitem__(self, idx) -> "Cameras":
        if isinstance(idx, int):
            idx = [idx]
        return Cameras(self.c2w[idx], self.K[idx], self.width, self.height)

    @property
    def viewmats(self) -> torch.Tensor:
        """[V,4,4] world-to-camera, OpenCV convention (gsplat's ``viewmats``)."""
        return c2w_to_viewmat(self.c2w)

    @property
    def c2w_cv(self) -> torch.Tensor:
        """[V,4,4] camera-to-world with OpenCV camera axes (+Z forward, +Y down): the columns are those axes."""
        return self.c2w @ GL_TO_CV.to(self.c2w)

    @property
    def centers(self) -> torch.Tensor:
        """[V,3] camera positions in world space."""
        return self.c2w[:, :3, 3]

    def resized(self, width: int, height: int) -> "Cameras":
        """Same poses, intrinsics rescaled to another image size."""
        K = scale_intrinsics(self.K, width / self.width, height / self.height)
        return Cameras(self.c2w.clone(), K, width, height)

    def plucker(self, height: int | None = None, width: int | None = None) -> torch.Tensor:
        """[V,6,h,w] Plücker ray map at (h, w) (defaults to the image size); see ``plucker_rays``."""
        h = height or self.height
        w = width or self.width
        K = scale_intrinsics(self.K, w / self.width, h / self.height)
        return plucker_rays(self.c2w, K, h, w)

    def to(self, device) -> "Cameras":
        out = Cameras.__new__(Cameras)
        out.c2w, out.K, out.width, out.height = self.c2w.to(device), self.K.to(device), self.width, self.height
        return out


def intrinsics_from_fov(fov_deg: float, width: int, height: int, device=None) -> torch.Tensor:
    """[3,3] K for a vertical field of view ``fov_deg`` (square pixels, centred principal point) on ``device``."""
    if not (0.0 < fov_deg < 180.0):
        raise CameraError(f"fov must be in (0, 180) degrees, got {fov_deg}")
    f = 0.5 * height / math.tan(math.radians(fov_deg) / 2)
    return torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]], device=device)


def scale_intrinsics(K: torch.Tensor, sx: float, sy: float) -> torch.Tensor:
    """Intrinsics for an image resized by (sx, sy); pixel-centre convention is kept."""
    K = K.clone()
    K[..., 0, :] *= sx
    K[..., 1, :] *= sy
    return K


def look_at(eye: torch.Tensor, target: torch.Tensor | None = None, up: Sequence[float] = (0, 0, 1)) -> torch.Tensor:
    """[V,4,4] OpenGL c2w for cameras at ``eye`` [V,3] looking at ``target`` (origin by default)."""
    eye = torch.as_tensor(eye, dtype=torch.float32).reshape(-1, 3)
    target = torch.zeros_like(eye) if target is None else torch.as_tensor(target, dtype=torch.float32).expand_as(eye)
    up_v = torch.tensor(up, dtype=torch.float32, device=eye.device).expand_as(eye)
    back = torch.nn.functional.normalize(eye - target, dim=-1)  # camera +Z (it looks along -Z)
    right = torch.cross(up_v, back, dim=-1)
    # Looking straight up or down: the up vector is parallel to the view axis; use +Y as the fallback up.
    degenerate = right.norm(dim=-1) < 1e-6
    if degenerate.any():
        right[degenerate] = torch.cross(eye.new_tensor([0.0, 1.0, 0.0]).expand(int(degenerate.sum()), 3), back[degenerate], dim=-1)
    right = torch.nn.functional.normalize(right, dim=-1)
    cam_up = torch.cross(back, right, dim=-1)
    c2w = torch.eye(4, device=eye.device).repeat(eye.shape[0], 1, 1)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, cam_up, back, eye
    return c2w


def orbit_positions(azimuths_deg: torch.Tensor, elevations_deg: torch.Tensor, radius: float) -> torch.Tensor:
    """[V,3] positions on a sphere: azimuth 0 on -Y (front), 90 on +X; elevation above the XY plane."""
    a = torch.deg2rad(torch.as_tensor(azimuths_deg, dtype=torch.float32))
    e = torch.deg2rad(torch.as_tensor(elevations_deg, dtype=torch.float32))
    return radius * torch.stack([torch.cos(e) * torch.sin(a), -torch.cos(e) * torch.cos(a), torch.sin(e)], dim=-1)


def orbit(
    num_views: int,
    elevation: float | Sequence[float] = 20.0,
    azimuth_start: float = 0.0,
    radius: float = DEFAULT_RADIUS,
    fov_deg: float = DEFAULT_FOV_DEG,
    width: int = 128,
    height: int | None = None,
    device=None,
    azimuth_step: float | None = None,
) -> Cameras:
    """An orbit rig of ``num_views`` cameras evenly spaced in azimuth, all looking at the origin, built on
    ``device`` (None: torch's default device).

    ``elevation`` is one angle for all views or one per view (degrees, in ``limits.CAMERA_ELEVATION``);
    ``azimuth_step`` is the azimuth between consecutive views (default ``360 / num_views``: a full turn; negative:
    clockwise seen from above).
    """
    height = width if height is None else height
    if not isinstance(num_views, int) or num_views < 1:
        raise CameraError(f"num_views must be a positive integer, got {num_views!r}")
    if not (radius > 0 and math.isfinite(radius)):
        raise CameraError(f"radius must be positive and finite, got {radius}")
    elev = torch.as_tensor(elevation, dtype=torch.float32, device=device).flatten()
    if elev.numel() == 1:
        elev = elev.expand(num_views)
    if elev.numel() != num_views:
        raise CameraError(f"elevation: got {elev.numel()} angles for {num_views} views")
    lo, hi = CAMERA_ELEVATION.low, CAMERA_ELEVATION.high
    if not torch.isfinite(elev).all() or elev.min() < lo or elev.max() > hi:
        raise CameraError(f"elevation must be finite and within [{lo:g}, {hi:g}] degrees, got {elev.tolist()}")
    step = 360.0 / num_views if azimuth_step is None else float(azimuth_step)
    if not math.isfinite(step) or not math.isfinite(azimuth_start):
        raise CameraError(f"azimuth start and step must be finite, got {azimuth_start} and {step}")
    az = azimuth_start + torch.arange(num_views, dtype=torch.float32, device=elev.device) * step
    c2w = look_at(orbit_positions(az, elev, radius))
    K = intrinsics_from_fov(fov_deg, width, height, elev.device).expand(num_views, 3, 3).clone()
    return Cameras(c2w, K, width, height)


def orbit_angles(cameras: Cameras) -> tuple[list[float], list[float]]:
    """(azimuths, elevations) in degrees of each camera centre, the inverse of ``orbit_positions``: azimuth 0
    on -Y (front), 90 on +X, in [0, 360); elevation above the XY plane."""
    c = cameras.centers
    r = c.norm(dim=-1).clamp_min(1e-12)
    az = torch.rad2deg(torch.atan2(c[:, 0], -c[:, 1])) % 360.0
    el = torch.rad2deg(torch.asin((c[:, 2] / r).clamp(-1.0, 1.0)))
    return az.tolist(), el.tolist()


def vertical_fov_deg(K: torch.Tensor, height: int) -> float:
    """The vertical field of view in degrees of intrinsics ``K`` [3,3] for ``height`` px tall images (the
    inverse of ``intrinsics_from_fov``)."""
    return math.degrees(2 * math.atan(0.5 * height / float(K[1, 1])))


def project_points(points: torch.Tensor, cameras: Cameras) -> tuple[torch.Tensor, torch.Tensor]:
    """points [P,3] -> pixel coordinates [V,P,2] (x right, y down, pixel centres at +0.5) and depth [V,P]."""
    vm = cameras.viewmats  # (V, 4, 4)
    cam = torch.einsum("vij,pj->vpi", vm[:, :3, :3], points) + vm[:, None, :3, 3]  # (V, P, 3)
    z = cam[..., 2]
    uv = torch.einsum("vij,vpj->vpi", cameras.K[:, :2, :], cam) / z.clamp(min=1e-6)[..., None]
    return uv, z


def c2w_to_viewmat(c2w: torch.Tensor) -> torch.Tensor:
    """OpenGL camera-to-world [...,4,4] -> OpenCV world-to-camera [...,4,4] (gsplat ``viewmats``)."""
    return torch.linalg.inv(c2w @ GL_TO_CV.to(c2w))


def viewmat_to_c2w(viewmats: torch.Tensor) -> torch.Tensor:
    """Inverse of ``c2w_to_viewmat``."""
    return torch.linalg.inv(viewmats) @ GL_TO_CV.to(viewmats)


def plucker_rays(c2w: torch.Tensor, K: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[V,6,H,W] Plücker coordinates (d, o x d) of the ray through each pixel centre, d unit length in world."""
    V = c2w.shape[0]
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32, device=c2w.device) + 0.5,
                            torch.arange(width, dtype=torch.float32, device=c2w.device) + 0.5, indexing="ij")
    fx, fy, cx, cy = K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2]
    x = (xs[None] - cx[:, None, None]) / fx[:, None, None]  # (V, H, W) OpenCV camera coords
    y = (ys[None] - cy[:, None, None]) / fy[:, None, None]
    dirs_cv = torch.stack([x, y, torch.ones_like(x)], dim=-1)  # (V, H, W, 3)
    R = (c2w @ GL_TO_CV.to(c2w))[:, :3, :3]  # OpenCV camera axes in world (``Cameras.c2w_cv``)
    d = torch.nn.functional.normalize(torch.einsum("vij,vhwj->vhwi", R, dirs_cv), dim=-1)
    o = c2w[:, None, None, :3, 3].expand_as(d)
    m = torch.cross(o, d, dim=-1)
    return torch.cat([d, m], dim=-1).permute(0, 3, 1, 2).reshape(V, 6, height, width)


def validate(c2w: torch.Tensor, K: torch.Tensor, width: int, height: int) -> None:
    """Raise ``CameraError`` naming the problem for wrong shapes, non-finite values, non-rigid rotations,
    non-positive focal lengths or image sizes."""
    if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        raise CameraError(f"image size must be positive integers, got width={width!r} height={height!r}")
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4):
        raise CameraError(f"c2w must have shape [V,4,4], got {list(c2w.shape)}")
    if K.ndim != 3 or K.shape[1:] != (3, 3):
        raise CameraError(f"K must have shape [V,3,3], got {list(K.shape)}")
    if c2w.shape[0] != K.shape[0]:
        raise CameraError(f"c2w has {c2w.shape[0]} cameras but K has {K.shape[0]}")
    if c2w.shape[0] == 0:
        raise CameraError("no cameras given")
    if not torch.isfinite(c2w).all():
        bad = torch.nonzero(~torch.isfinite(c2w).flatten(1).all(1)).flatten().tolist()
        raise CameraError(f"c2w: non-finite values in camera(s) {bad}")
    if not torch.isfinite(K).all():
        raise CameraError("K: non-finite intrinsics")
    R = c2w[:, :3, :3].double()
    eye = torch.eye(3, dtype=torch.float64, device=c2w.device)
    err = (R.transpose(1, 2) @ R - eye).abs().flatten(1).amax(1)
    det = torch.linalg.det(R)
    bad = torch.nonzero((err > 1e-3) | ((det - 1).abs() > 1e-3)).flatten().tolist()
    if bad:
        raise CameraError(f"c2w: rotation of camera(s) {bad} is not a rigid rotation (orthonormal, det +1)")
    bottom = c2w.new_tensor([0.0, 0.0, 0.0, 1.0])
    if not torch.allclose(c2w[:, 3, :], bottom.expand(c2w.shape[0], 4), atol=1e-5):
        raise CameraError("c2w: last row must be [0, 0, 0, 1]")
    if (K[:, 0, 0] <= 0).any() or (K[:, 1, 1] <= 0).any():
        raise CameraError("K: focal length must be positive")


# ----------------------------------------------------------------------------------------- transforms.json

def read_transforms(path: str | os.PathLike) -> tuple[Cameras, list[Path]]:
    """Read a NeRF/nerfstudio ``transforms.json``: cameras and absolute image paths.

    Accepts ``camera_angle_x`` (horizontal fov, square pixels) or ``fl_x``/``fl_y``/``cx``/``cy`` (global or per
    frame), ``w``/``h`` (else read from the first image), and ``file_path`` with or without extension.
    """
    path = Path(path)
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise CameraError(f"{path}: file not found") from None
    except OSError as e:  # a folder, no permission, a failing disk: name the file (e.strerror drops it)
        raise CameraError(f"{path}: cannot read ({e.strerror or e})") from None
    except RecursionError:
        raise CameraError(f"{path}: not valid JSON (nested too deeply)") from None
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError, or an integer of > 4300 digits
        raise CameraError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list) or not meta["frames"]:
        raise CameraError(f"{path}: needs a non-empty 'frames' list")
    root = path.parent
    files, c2ws, Ks = [], [], []
    width = _size_field(meta, "w", path)
    height = _size_field(meta, "h", path)
    for i, frame in enumerate(meta["frames"]):
        if not isinstance(frame, dict) or "file_path" not in frame or "transform_matrix" not in frame:
            raise CameraError(f"{path}: frames[{i}] needs 'file_path' and 'transform_matrix'")
        files.append(_resolve_image(root, frame["file_path"], path, i))
        try:
            m = torch.tensor(frame["transform_matrix"], dtype=torch.float32, device="cpu")  # read to host memory
        except (TypeError, ValueError, OverflowError, RuntimeError):
            raise CameraError(f"{path}: frames[{i}].transform_matrix is not a 4x4 matrix of numbers") from None
        if m.shape != (4, 4):
            raise CameraError(f"{path}: frames[{i}].transform_matrix must be 4x4, got {list(m.shape)}")
        c2ws.append(m)
    if width is None or height is None:
        width, height = image_header(files[0])[:2]
    for i, frame in enumerate(meta["frames"]):
        Ks.append(_frame_intrinsics({**meta, **frame}, width, height, path, i))
    try:
        cams = Cameras(torch.stack(c2ws), torch.stack(Ks), width, height)
    except CameraError as e:  # name the file and the field as transforms.json spells them
        raise CameraError(f"{path}: " + str(e).replace("c2w", "transform_matrix").replace("camera(s)", "frames")) \
            from None
    return cams, files


def _frame_intrinsics(d: dict, width: int, height: int, path: Path, i: int) -> torch.Tensor:
    try:
        if "fl_x" in d:
            fx = float(d["fl_x"])
            fy = float(d.get("fl_y", fx))
            cx = float(d.get("cx", width / 2))
            cy = float(d.get("cy", height / 2))
        elif "camera_angle_x" in d:
            fx = 0.5 * width / math.tan(_angle_field(d, "camera_angle_x", path, i) / 2)
            fy = 0.5 * height / math.tan(_angle_field(d, "camera_angle_y", path, i) / 2) \
                if "camera_angle_y" in d else fx
            cx, cy = float(d.get("cx", width / 2)), float(d.get("cy", height / 2))
        else:
            raise CameraError(f"{path}: frames[{i}] has no intrinsics (camera_angle_x or fl_x)")
    except (TypeError, ValueError, OverflowError) as e:
        if isinstance(e, CameraError):
            raise
        raise CameraError(f"{path}: intrinsics of frames[{i}] are not numbers") from None
    if not all(math.isfinite(v) for v in (fx, fy, cx, cy)) or fx <= 0 or fy <= 0:
        raise CameraError(f"{path}: frames[{i}] focal length must be positive and finite (fx={fx}, fy={fy})")
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], device="cpu")  # like the poses


def _size_field(meta: dict, key: str, path: Path) -> int | None:
    """transforms.json ``w`` / ``h``: None when absent, else a whole number in 1..MAX_IMAGE_SIDE."""
    value = meta.get(key)
    if value is None:
        return None
    try:
        return check_int(key, value, 1, MAX_IMAGE_SIDE)
    except ValueError as e:
        raise CameraError(f"{path}: {e} (image {'width' if key == 'w' else 'height'} in pixels)") from None


def _angle_field(d: dict, key: str, path: Path, i: int) -> float:
    """A field of view in radians, in (0, pi) (0 would divide by zero, pi looks at infinity)."""
    angle = float(d[key])
    if not (0 < angle < math.pi):
        raise CameraError(f"{path}: frames[{i}] {key} must be in (0, pi) radians, got {angle}")
    return angle


def _resolve_image(root: Path, file_path, path: Path, i: int) -> Path:
    if not isinstance(file_path, str) or not file_path.strip():
        raise CameraError(f"{path}: frames[{i}].file_path must be a relative image path (text), "
                          f"got {_short(file_path)}")
    if "\0" in file_path:
        raise CameraError(f"{path}: frames[{i}].file_path contains a NUL character")
    p = root / file_path
    try:
        if p.suffix.lower() in (".png", ".jpg", ".jpeg") and p.is_file():
            return p
        for ext in (".png", ".jpg", ".jpeg", ".PNG", ".JPG"):
            q = p.with_name(p.name + ext)
            if q.is_file():
                return q
        if p.is_file():
            return p
    except (OSError, ValueError) as e:  # a name too long for the file system, ...
        raise CameraError(f"{path}: frames[{i}].file_path {_short(file_path)} cannot be used "
                          f"({getattr(e, 'strerror', None) or e})") from None
    raise CameraError(f"{path}: frames[{i}] image {_short(file_path)} not found")


@dataclass
class PosedViews:
    """Images with their cameras, as read from a transforms.json folder.

    Attributes:
        images: [V,4,H,W] float32 RGBA in [0,1] (alpha 1 where the file has no alpha channel).
        cameras: the V cameras, intrinsics matching the (possibly downscaled) image size.
        files: the image paths, in frame order.
    """

    images: torch.Tensor
    cameras: Cameras
    files: list[Path]


def find_transforms(folder: str | os.PathLike) -> Path:
    """``transforms.json`` in ``folder`` (or ``transforms_train.json`` as NeRF-synthetic names it), or the file
    itself when ``folder`` is one."""
    folder = Path(folder)
    if folder.is_file():
        return folder
    for name in ("transforms.json", "transforms_train.json"):
        if (folder / name).is_file():
            return folder / name
    raise CameraError(f"{folder}: no transforms.json or transforms_train.json found")


def image_header(path: str | os.PathLike, max_pixels: int | None = MAX_IMAGE_PIXELS) -> tuple[int, int, str]:
    """(width, height, format) of a PNG or JPEG from its header only: nothing is decoded. CameraError naming the
    file when it cannot be read, is another format, or has more than ``max_pixels`` pixels (None: no limit)."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below decides
            with Image.open(path) as im:
                (w, h), fmt = im.size, im.format
    except Image.DecompressionBombError:  # PIL refuses > 2 x Image.MAX_IMAGE_PIXELS before we see the size
        raise CameraError(f"{path}: image has more than {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} MP; the limit is "
                          f"{(max_pixels or Image.MAX_IMAGE_PIXELS) / 1e6:.1f} MP per image") from None
    except UnidentifiedImageError:
        raise CameraError(f"{path}: not an image (views must be PNG or JPEG)") from None
    except (OSError, ValueError, SyntaxError) as e:  # SyntaxError: PIL's word for a broken header
        raise CameraError(f"{path}: cannot read image ({getattr(e, 'strerror', None) or e})") from None
    if fmt not in IMAGE_FORMATS:
        raise CameraError(f"{path}: image is {fmt}; views must be PNG or JPEG")
    if max_pixels is not None and w * h > max_pixels:
        raise CameraError(f"{path}: image is {w}x{h} ({w * h / 1e6:.1f} MP); the limit is "
                          f"{max_pixels / 1e6:.1f} MP per image")
    return w, h, fmt


def check_images(files: Sequence[Path], width: int | None = None, height: int | None = None,
                 max_pixels: int | None = MAX_IMAGE_PIXELS, max_total_pixels: int | None = None) -> int:
    """Check view files from their headers before anything is decoded: PNG or JPEG, ``width`` x ``height``
    (when given), at most ``max_pixels`` each and ``max_total_pixels`` together (None: no limit). Raises
    CameraError naming the file and the limit; returns the total number of pixels."""
    total = 0
    for f in files:
        w, h, _ = image_header(f, max_pixels)
        if width is not None and height is not None and (w, h) != (width, height):
            raise CameraError(f"{f}: image is {w}x{h}, transforms.json says {width}x{height}")
        total += w * h
        if max_total_pixels is not None and total > max_total_pixels:
            raise CameraError(f"{f}: the views add up to more than {max_total_pixels / 1e6:.1f} MP (the limit for "
                              f"all views together) at this file")
    return total


def _read_rgba(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """[4,H,W] float RGBA in [0,1] of an image checked by ``image_header``, shrunk to ``size`` (area filter).
    JPEGs decode reduced (``draft``: DCT scaling to the smallest power-of-2 size >= ``size``); the full-size
    image is never converted or copied, only the shrunk one."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.size != size:
                im.draft(None, size)  # JPEG only; a no-op for PNG
            if im.mode not in ("RGB", "RGBA", "L", "LA"):
                im = im.convert("RGBA")
            if im.size != size:
                im = im.resize(size, Image.Resampling.BOX)
            rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:  # truncated or corrupt data
        raise CameraError(f"{path}: cannot read image ({getattr(e, 'strerror', None) or e})") from None
    return torch.from_numpy(rgba).permute(2, 0, 1)


def read_rgba(path: str | os.PathLike, max_pixels: int | None = MAX_IMAGE_PIXELS,
              max_side: int | None = None) -> torch.Tensor:
    """[4,H,W] float RGBA in [0,1] of one PNG or JPEG: its header checked first (``image_header``: format, at most
    ``max_pixels``), then decoded shrunk (area filter, ``_read_rgba``) so that its longer side is at most
    ``max_side`` (None: full size). Alpha is 1 where the file has none."""
    w, h, _ = image_header(path, max_pixels)
    scale = 1.0 if max_side is None else max(1.0, max(w, h) / max_side)
    return _read_rgba(Path(path), (max(1, round(w / scale)), max(1, round(h / scale))))


def load_views(folder: str | os.PathLike, downscale: float = 1.0, max_pixels: int | None = MAX_IMAGE_PIXELS,
               max_total_pixels: int | None = None) -> PosedViews:
    """Read a posed-image folder (ours or NeRF-synthetic style): RGBA images and cameras.

    The one loader used by training data, reconstruction and evaluation. ``downscale`` > 1 shrinks images
    (area filter) and intrinsics together. All images must have the size transforms.json states; every header is
    checked (``check_images``: format, size, ``max_pixels`` each, ``max_total_pixels`` together) before the first
    image is decoded, and large views are decoded reduced where the format allows (``_read_rgba``).
    """
    if isinstance(downscale, bool) or not isinstance(downscale, (int, float)) or not math.isfinite(downscale) \
            or downscale < 1.0:
        raise CameraError(f"downscale must be a finite number >= 1, got {downscale!r}")
    cams, files = read_transforms(find_transforms(folder))
    W, H = max(1, round(cams.width / downscale)), max(1, round(cams.height / downscale))
    check_images(files, cams.width, cams.height, max_pixels, max_total_pixels)
    images = [_read_rgba(f, (W, H)) for f in files]
    if (W, H) != (cams.width, cams.height):
        cams = cams.resized(W, H)
    return PosedViews(torch.stack(images), cams, files)


def write_transforms(
    path: str | os.PathLike,
    cameras: Cameras,
    file_paths: Sequence[str],
    extra: dict | None = None,
) -> None:
    """Write ``transforms.json`` (fl_x/fl_y/cx/cy form plus ``camera_angle_x``) atomically.

    ``file_paths`` are relative to the file's folder. Per-frame intrinsics are written only when they differ.
    """
    if len(file_paths) != len(cameras):
        raise CameraError(f"{len(file_paths)} file paths for {len(cameras)} cameras")
    K0 = cameras.K[0]
    shared = bool(torch.allclose(cameras.K, K0.expand_as(cameras.K)))
    meta: dict = {"w": cameras.width, "h": cameras.height}
    if shared:
        meta.update(_intrinsics_dict(K0, cameras.width))
    frames = []
    for i, fp in enumerate(file_paths):
        frame = {"file_path": str(fp), "transform_matrix": cameras.c2w[i].tolist()}
        if not shared:
            frame.update(_intrinsics_dict(cameras.K[i], cameras.width))
        frames.append(frame)
    meta.update(extra or {})
    meta["frames"] = frames
    atomic_write_text(path, json.dumps(meta, indent=2))


def _intrinsics_dict(K: torch.Tensor, width: int) -> dict:
    fx, fy, cx, cy = (float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]))
    return {"camera_angle_x": 2 * math.atan(0.5 * width / fx), "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy}

