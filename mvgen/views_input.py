"""Any generator's views as RGBA images in view order: a transforms.json folder (ours, NeRF-synthetic), a folder or
zip of images, one grid image of rows x cols tiles, or a video (every frame or every k-th).

Images without alpha get a mask from their background (``background_mask``): the colour of the image borders
(median of every view's border pixels) is the background when most border pixels are within ``tolerance`` of it;
a pixel's alpha ramps from 0 at ``tolerance`` to 1 at twice that distance (max over RGB), and its colour is
un-mixed from the background, so composited on any colour it stays what the generator drew. The background and
the tolerance are reported with the views; ``write_object`` saves the mask sheet next to them.

Every image is checked from its header before it is decoded (``mvgen.cameras.image_header``: PNG or JPEG, at most
``max_pixels``), a video from its metadata before its frames; views are shrunk to ``max_side`` while decoding.
Bad input is a ``ViewsError`` naming the field (``grid``, ``video``, ``background``, ``views``, ``mask``) and the
file; nothing is written by the readers.
"""

from __future__ import annotations

import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mvgen.cameras import CameraError, MAX_IMAGE_PIXELS, image_header, read_rgba
from mvgen.limits import UPLOAD_FILES, UPLOAD_UNZIPPED_MB, UPLOAD_VIEWS

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif")
MASK_MODES = ("auto", "background", "none")
DEFAULT_TOLERANCE = 0.1  # max |RGB - background| (in [0,1]) still counted as background: JPEG and video noise
BORDER_AGREEMENT = 0.9  # share of border pixels that must match the background colour for it to count as one
MIN_OBJECT_SHARE = 0.002  # a view whose mask covers less than this has no object at this tolerance


class ViewsError(ValueError):
    """Views that cannot be read or masked; the message names the field and the file."""


@dataclass
class InputViews:
    """Views read from one input.

    Attributes:
        images: [V,4,H,W] float RGBA in [0,1].
        names: a display name per view ("grid.png[2]", "orbit.mp4#frame 40", "views/003.png").
        kind: "transforms", "images", "zip", "grid" or "video".
        source: the input's name.
        cameras: the cameras of a transforms.json input (``mvgen.cameras.Cameras``), else None.
        mask: how alpha was obtained: {"mode": "alpha" | "background" | "none", "background": [r, g, b] (0-255)
            or None, "tolerance": float or None, "coverage": mean share of pixels inside the masks}.
    """

    images: torch.Tensor
    names: list
    kind: str
    source: str
    cameras: object = None
    mask: dict = field(default_factory=dict)


def parse_grid(text) -> tuple[int, int] | None:
    """"3x2" -> (3 rows, 2 columns); None / "" -> None; ViewsError naming ``grid`` otherwise."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if isinstance(text, (tuple, list)) and len(text) == 2:
        rows, cols = text
    else:
        m = re.fullmatch(r"\s*(\d+)\s*[x×*]\s*(\d+)\s*", str(text))
        if not m:
            raise ViewsError(f"grid must look like ROWSxCOLS (e.g. 3x2), got {str(text)[:40]!r}")
        rows, cols = int(m.group(1)), int(m.group(2))
    if not (1 <= rows <= 64 and 1 <= cols <= 64) or rows * cols < 2:
        raise ViewsError(f"grid must have 1..64 rows and columns and at least 2 tiles, got {rows}x{cols}")
    return int(rows), int(cols)


def kind_of(path: Path) -> str:
    """What ``path`` holds: "transforms", "images" (a folder), "zip", "grid" (one image) or "video"."""
    if path.is_dir():
        if (path / "transforms.json").is_file() or (path / "transforms_train.json").is_file():
            return "transforms"
        return "images"
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return "zip"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in IMAGE_SUFFIXES:
        return "grid"
    raise ViewsError(f"views: {path.name} is not a folder, zip, image ({', '.join(IMAGE_SUFFIXES)}) or video "
                     f"({', '.join(VIDEO_SUFFIXES)})")


def read_views(path, grid=None, frame_step: int = 1, mask: str = "auto", tolerance: float = DEFAULT_TOLERANCE,
               max_views: int = UPLOAD_VIEWS, max_side: int | None = None, max_pixels: int = MAX_IMAGE_PIXELS,
               use_transforms: bool = True, max_zip_files: int = UPLOAD_FILES,
               max_zip_bytes: int = int(UPLOAD_UNZIPPED_MB * 2**20)) -> InputViews:
    """The views of one input (see the module docstring), masked by ``mask``: "auto" (the files' alpha when they
    have any, else from the background), "background" (always from the background) or "none" (opaque).

    ``grid``: (rows, cols) or "RxC" for a grid image; ``frame_step``: every k-th frame of a video; ``max_views``:
    most views; ``max_side``: views are shrunk so that their longer side is at most this; ``use_transforms``:
    read the cameras of a transforms.json folder (False: only its images, in frame order); ``max_zip_files`` /
    ``max_zip_bytes``: most members of a zip and bytes of its images.
    """
    path = Path(path)
    grid = parse_grid(grid)
    if mask not in MASK_MODES:
        raise ViewsError(f"mask must be one of {', '.join(MASK_MODES)}, got {str(mask)[:40]!r}")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0.0 < tolerance < 0.5:
        raise ViewsError(f"tolerance must be a number in (0, 0.5) (a share of the 0-255 range), got {tolerance!r}")
    if isinstance(frame_step, bool) or not isinstance(frame_step, int) or frame_step < 1:
        raise ViewsError(f"frame_step must be a whole number >= 1, got {frame_step!r}")
    if not path.exists():
        raise ViewsError(f"views: {path} not found")
    kind = kind_of(path)
    cameras = None
    try:
        if kind == "transforms":
            images, names, cameras = _read_transforms(path, max_views, max_side, max_pixels)
            if not use_transforms:
                cameras = None
        elif kind == "images":
            images, names = _read_files(_image_files(path), path, max_views, max_side, max_pixels)
        elif kind == "zip":
            images, names = _read_zip(path, max_views, max_side, max_pixels, max_zip_files, max_zip_bytes)
        elif kind == "video":
            images, names = _read_video(path, frame_step, max_views, max_side, max_pixels)
        else:
            if grid is None:
                raise ViewsError(f"grid: {path.name} is one image; say how its views are tiled (a grid ROWSxCOLS "
                                 f"such as 3x2, or a preset with a grid)")
            if grid[0] * grid[1] > max_views:
                raise ViewsError(f"grid: {grid[0]}x{grid[1]} is {grid[0] * grid[1]} views; the limit is {max_views}")
            images, names = _read_grid(path, grid, max_side, max_pixels)
    except CameraError as e:  # a header or decoding problem, named by the file
        raise ViewsError(f"views: {e}") from None
    if len(images) < 2:
        raise ViewsError(f"views: {path.name} holds {len(images)} view(s); at least 2 are needed")
    images, mask_info = apply_mask(images, mask, tolerance, names)
    return InputViews(images, names, kind, path.name, cameras, mask_info)


# --------------------------------------------------------------------------------------------- readers

def _image_files(folder: Path) -> list[Path]:
    """The folder's images in view order (``views/`` when it has one), natural sort: 2.png before 10.png."""
    root = folder / "views" if (folder / "views").is_dir() else folder
    files = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
             and not p.name.startswith(".")]
    if not files:
        raise ViewsError(f"views: no {'/'.join(IMAGE_SUFFIXES)} images in {folder.name}")
    return sorted(files, key=lambda p: [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)])


def _read_files(files: list[Path], root: Path, max_views: int, max_side, max_pixels: int):
    if len(files) > max_views:
        raise ViewsError(f"views: {root.name} has {len(files)} images; the limit is {max_views}")
    sizes = {f: image_header(f, max_pixels)[:2] for f in files}  # every header before anything is decoded
    first = files[0]
    for f in files[1:]:
        if sizes[f] != sizes[first]:
            raise ViewsError(f"views: {f.name} is {sizes[f][0]}x{sizes[f][1]}, {first.name} is "
                             f"{sizes[first][0]}x{sizes[first][1]}; every view must have one size")
    images = torch.stack([read_rgba(f, max_pixels, max_side) for f in files])
    return images, [f.relative_to(root).as_posix() for f in files]


def _read_transforms(folder: Path, max_views: int, max_side, max_pixels: int):
    from mvgen.cameras import find_transforms, load_views, read_transforms

    cams, _ = read_transforms(find_transforms(folder))
    if len(cams) > max_views:
        raise ViewsError(f"views: transforms.json has {len(cams)} views; the limit is {max_views}")
    downscale = 1.0 if max_side is None else max(1.0, max(cams.width, cams.height) / max_side)
    posed = load_views(folder, downscale, max_pixels)
    return posed.images, [f.relative_to(folder).as_posix() for f in posed.files], posed.cameras


def _read_zip(path: Path, max_views: int, max_side, max_pixels: int, max_members: int = UPLOAD_FILES,
              max_bytes: int = int(UPLOAD_UNZIPPED_MB * 2**20)):
    """The zip's images (members with an image suffix, in natural order of their names), copied into a temporary
    folder under names we choose (never the member paths), checked and decoded from there."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise ViewsError(f"views: {path.name} is not a readable zip ({e})") from None
    with zf, tempfile.TemporaryDirectory(prefix="mvgen-views-") as tmp:
        infos = zf.infolist()
        if len(infos) > max_members:
            raise ViewsError(f"views: {path.name} has {len(infos)} entries; the limit is {max_members}")
        members = [i for i in infos if not i.is_dir() and Path(i.filename).suffix.lower() in IMAGE_SUFFIXES
                   and not Path(i.filename).name.startswith(".") and not i.filename.startswith("__MACOSX")]
        if any(n.lower().endswith(("transforms.json", "transforms_train.json")) for n in zf.namelist()):
            raise ViewsError(f"views: {path.name} holds a transforms.json; unzip it and give the folder")
        if not members:
            raise ViewsError(f"views: no {'/'.join(IMAGE_SUFFIXES)} images in {path.name}")
        if len(members) > max_views:
            raise ViewsError(f"views: {path.name} has {len(members)} images; the limit is {max_views}")
        members.sort(key=lambda i: [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", i.filename)])
        files, total = [], 0
        for n, info in enumerate(members):
            if info.flag_bits & 0x1:
                raise ViewsError(f"views: {info.filename} in {path.name} is encrypted")
            target = Path(tmp) / f"{n:04d}{Path(info.filename).suffix.lower()}"
            try:
                with zf.open(info) as src, open(target, "wb") as dst:
                    while chunk := src.read(1 << 16):
                        total += len(chunk)
                        if total > max_bytes:
                            raise ViewsError(f"views: {path.name} holds more than {max_bytes >> 20} MB of images")
                        dst.write(chunk)
            except (zipfile.BadZipFile, EOFError, NotImplementedError, OSError) as e:
                raise ViewsError(f"views: {info.filename} is corrupt in {path.name} ({e})") from None
            files.append(target)
        try:
            images, _ = _read_files(files, Path(tmp), max_views, max_side, max_pixels)
        except CameraError as e:  # name the member, not our temporary file
            message = str(e)
            for f, info in zip(files, members):
                message = message.replace(str(f), f"{path.name}:{info.filename}")
            raise ViewsError(f"views: {message}") from None
    return images, [i.filename for i in members]


def _read_grid(path: Path, grid: tuple[int, int], max_side, max_pixels: int):
    """The tiles of one image, row by row; ViewsError naming ``grid`` when they do not divide it."""
    import numpy as np
    from PIL import Image

    rows, cols = grid
    w, h, _ = image_header(path, max_pixels)
    if w % cols or h % rows:
        bad = [f"width {w} is not a multiple of {cols} columns"] * bool(w % cols) + \
              [f"height {h} is not a multiple of {rows} rows"] * bool(h % rows)
        raise ViewsError(f"grid: {rows}x{cols} tiles do not divide {path.name} ({w}x{h}): {'; '.join(bad)}")
    tile_w, tile_h = w // cols, h // rows
    scale = 1.0 if max_side is None else max(1.0, max(tile_w, tile_h) / max_side)
    size = (max(1, round(tile_w / scale)), max(1, round(tile_h / scale)))
    try:
        with Image.open(path) as im:
            im = im.convert("RGBA")
            tiles = []
            for r in range(rows):
                for c in range(cols):
                    tile = im.crop((c * tile_w, r * tile_h, (c + 1) * tile_w, (r + 1) * tile_h))
                    if tile.size != size:
                        tile = tile.resize(size, Image.Resampling.BOX)
                    tiles.append(torch.from_numpy(np.asarray(tile, dtype=np.float32) / 255.0).permute(2, 0, 1))
    except (OSError, ValueError, SyntaxError) as e:
        raise ViewsError(f"views: {path.name}: cannot read image ({e})") from None
    return torch.stack(tiles), [f"{path.name}[{i}]" for i in range(rows * cols)]


def _read_video(path: Path, frame_step: int, max_views: int, max_side, max_pixels: int):
    """Every ``frame_step``-th frame (from the first) of a video read with imageio-ffmpeg; its frame size is read
    from the metadata before any frame is decoded."""
    import imageio.v2 as imageio
    import numpy as np
    from PIL import Image

    try:
        reader = imageio.get_reader(path, format="FFMPEG")
    except (OSError, RuntimeError, ValueError, IndexError) as e:
        raise ViewsError(f"video: cannot read {path.name} ({type(e).__name__}: {str(e).splitlines()[0][:120]})") \
            from None
    frames, names = [], []
    try:
        w, h = reader.get_meta_data().get("size", (0, 0))
        if w * h > max_pixels or w * h == 0:
            raise ViewsError(f"video: {path.name} frames are {w}x{h}; the limit is {max_pixels / 1e6:.1f} MP")
        scale = 1.0 if max_side is None else max(1.0, max(w, h) / max_side)
        size = (max(1, round(w / scale)), max(1, round(h / scale)))
        for i, frame in enumerate(reader):
            if i % frame_step:
                continue
            if len(frames) == max_views:
                raise ViewsError(f"video: {path.name} has more than {max_views} frames at frame_step {frame_step}; "
                                 f"the limit is {max_views} views (take every k-th frame)")
            im = Image.fromarray(np.asarray(frame)[..., :3]).convert("RGBA")
            if im.size != size:
                im = im.resize(size, Image.Resampling.BOX)
            frames.append(torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1))
            names.append(f"{path.name}#frame {i}")
    except (OSError, RuntimeError, ValueError, IndexError) as e:
        if isinstance(e, ViewsError):
            raise
        raise ViewsError(f"video: cannot read {path.name} ({type(e).__name__}: {str(e).splitlines()[0][:120]})") \
            from None
    finally:
        reader.close()
    if not frames:
        raise ViewsError(f"video: {path.name} has no frames")
    return torch.stack(frames), names


# ---------------------------------------------------------------------------------------------- masks

def apply_mask(images: torch.Tensor, mode: str, tolerance: float, names: list) -> tuple[torch.Tensor, dict]:
    """``images`` with alpha from ``mode`` (see ``read_views``) and the report of how it was obtained."""
    has_alpha = bool((images[:, 3] < 1.0).any())
    if mode == "none":
        out = images.clone()
        out[:, 3] = 1.0
        return out, {"mode": "none", "background": None, "tolerance": None, "coverage": 1.0}
    if mode == "auto" and has_alpha:
        return images, {"mode": "alpha", "background": None, "tolerance": None,
                        "coverage": round(float((images[:, 3] > 0.5).float().mean()), 4)}
    a = images[:, 3:4]
    out, bg = background_mask(images[:, :3] * a + (1 - a), tolerance, names)  # as seen on white
    return out, {"mode": "background", "background": [round(float(c) * 255) for c in bg],
                 "tolerance": tolerance, "coverage": round(float((out[:, 3] > 0.5).float().mean()), 4)}


def estimate_background(rgb: torch.Tensor, tolerance: float) -> tuple[torch.Tensor, float]:
    """(colour [3], share of border pixels within ``tolerance`` of it) from every view's border (2% of the
    shorter side, at least one pixel) of ``rgb`` [V,3,H,W]."""
    V, _, H, W = rgb.shape
    b = max(1, round(0.02 * min(H, W)))
    border = torch.cat([rgb[..., :b, :].flatten(2), rgb[..., -b:, :].flatten(2),
                        rgb[..., b:-b, :b].flatten(2), rgb[..., b:-b, -b:].flatten(2)], dim=2)  # (V, 3, P)
    pixels = border.permute(0, 2, 1).reshape(-1, 3)
    colour = pixels.median(dim=0).values
    agree = float(((pixels - colour).abs().amax(dim=1) <= tolerance).float().mean())
    return colour, agree


def background_mask(rgb: torch.Tensor, tolerance: float, names: list) -> tuple[torch.Tensor, torch.Tensor]:
    """([V,4,H,W] RGBA, background colour [3]) of opaque views ``rgb`` [V,3,H,W] on a plain background;
    ViewsError naming ``background`` when the borders are not one colour or a view holds no object."""
    colour, agree = estimate_background(rgb, tolerance)
    hex_colour = "#" + "".join(f"{round(float(c) * 255):02x}" for c in colour)
    if agree < BORDER_AGREEMENT:
        raise ViewsError(f"background: cannot be estimated: only {100 * agree:.0f}% of the image borders are within "
                         f"tolerance {tolerance:g} of their median colour {hex_colour} (need "
                         f"{100 * BORDER_AGREEMENT:.0f}%); give views with alpha, a plain background, a larger "
                         f"tolerance, or mask 'none'")
    bg = colour[None, :, None, None]
    dist = (rgb - bg).abs().amax(dim=1, keepdim=True)  # (V, 1, H, W)
    alpha = ((dist - tolerance) / tolerance).clamp(0.0, 1.0)
    empty = [names[i] for i in range(len(rgb)) if float((alpha[i] > 0.5).float().mean()) < MIN_OBJECT_SHARE]
    if empty:
        raise ViewsError(f"background: {', '.join(empty[:3])}{' ...' if len(empty) > 3 else ''} show nothing but the "
                         f"background {hex_colour} at tolerance {tolerance:g}; lower the tolerance or use mask 'none'")
    straight = torch.where(alpha > 0, (rgb - (1 - alpha) * bg) / alpha.clamp(min=1e-6), bg.expand_as(rgb))
    return torch.cat([straight.clamp(0.0, 1.0), alpha], dim=1), colour


# ---------------------------------------------------------------------------------------------- writing

def write_object(folder: Path, views: InputViews, cameras) -> dict:
    """``folder``/views/NNN.png (RGBA), transforms.json (``cameras``), masks.png (the alpha of every view in a
    row, white = object); returns the file names. ``folder`` is an output folder being built."""
    from mvgen.cameras import write_transforms
    from mvgen.imageutil import grid, save_png

    folder = Path(folder)
    (folder / "views").mkdir(parents=True, exist_ok=True)
    names = [f"views/{i:03d}.png" for i in range(len(views.images))]
    rgba = (views.images.permute(0, 2, 3, 1).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    from PIL import Image

    for name, im in zip(names, rgba):
        Image.fromarray(im, "RGBA").save(folder / name)
    write_transforms(folder / "transforms.json", cameras, names, extra={"source": views.source, "mask": views.mask})
    alpha = views.images[:, 3:4].expand(-1, 3, -1, -1).permute(0, 2, 3, 1)
    save_png(grid([list(alpha)], col_labels=[str(i) for i in range(len(names))]), folder / "masks.png")
    return {"views": names, "transforms": "transforms.json", "masks": "masks.png"}
