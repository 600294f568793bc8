"""RGBA renders of coloured meshes by ray casting with Embree (``embreex``, the binding trimesh's ray_pyembree uses).

Rays through sub-pixel centres (``supersample`` x ``supersample`` per pixel; cameras as in mvgen/cameras.py) find
the first triangle hit; hits are shaded and the sub-pixels averaged, so edges are anti-aliased and alpha is the
fraction of the pixel the object covers. Rays are cast only inside the image box covered by the projected mesh,
and by default only pixels on silhouettes and colour boundaries get all sub-pixel rays (see ``render_rgba``).

Shading: Lambert with lights fixed in *world* space (a key light from the front-left above, a fill light from
the back-right, and a hemispherical ambient term brighter on upward-facing surfaces). Lighting is evaluated at
each face corner with a smooth normal (faces meeting at less than ``crease_deg`` are smoothed, sharper edges
stay sharp) and interpolated across the face with the hit's barycentric coordinates (Gouraud). Back faces (the
inside of a mug or bowl) are lit as seen from their side. No specular term: a surface point has the same colour
in every view, so ground-truth views are exactly photo-consistent, which the reconstruction and
multiview-consistency metrics assume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import trimesh

from mvgen.cameras import Cameras


@dataclass(frozen=True)
class Lighting:
    """World-space lights. ``lights``: (direction towards the light, intensity) pairs; a surface with unit
    normal n gets albedo * (ambient + sky * (n_z + 1) / 2 + sum_i intensity_i * max(0, n . l_i)), clipped to 1."""

    ambient: float = 0.30  # light reaching every surface
    sky: float = 0.18  # extra ambient for surfaces facing up (+Z), none for surfaces facing down
    lights: tuple = (((-0.45, -0.75, 0.85), 0.58), ((0.65, 0.55, 0.35), 0.28))  # key (front-left-up), fill

    def intensity(self, normals: np.ndarray) -> np.ndarray:
        """[...,3] unit normals -> [...] light intensity."""
        light = self.ambient + self.sky * (normals[..., 2] + 1.0) / 2.0
        for direction, strength in self.lights:
            d = np.asarray(direction, dtype=np.float64) / np.linalg.norm(direction)
            light = light + strength * np.clip(normals @ d, 0.0, None)
        return light


DEFAULT_LIGHTING = Lighting()


def render_rgba(mesh: trimesh.Trimesh, cameras: Cameras, supersample: int = 2, lighting: Lighting = DEFAULT_LIGHTING,
                crease_deg: float = 35.0, adaptive: bool = True) -> np.ndarray:
    """Render ``mesh`` (with ``visual.face_colors``) from every camera.

    Returns uint8 [V,H,W,4]: straight (non-premultiplied) RGB and alpha = pixel coverage; RGB is white (255)
    where alpha is 0.

    ``adaptive``: first cast one ray per pixel (at its first sub-pixel); a pixel whose sample and the samples
    of its right, lower and lower-right neighbours all hit the same colour (or all miss) takes that sample's
    colour; only the other pixels (silhouettes and colour boundaries, ~10 % of the object's box) cast all
    s x s rays. About 3x fewer rays than ``adaptive=False`` (every pixel supersampled) at s = 2, the same image
    except for shading inside uniform pixels and features narrower than a pixel that fall between samples.
    """
    if not (isinstance(supersample, int) and 1 <= supersample <= 8):
        raise ValueError(f"supersample must be an integer in [1, 8], got {supersample!r}")
    if len(mesh.faces) == 0:
        raise ValueError("mesh has no faces")
    shader = _Shader(mesh, lighting, crease_deg)
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    s, H, W = supersample, cameras.height, cameras.width
    out = np.zeros((len(cameras), H, W, 4), dtype=np.uint8)
    out[..., :3] = 255
    c2ws, Ks = cameras.c2w_cv.double().numpy(), cameras.K.double().numpy()  # OpenCV camera axes
    sub = (np.arange(s) + 0.5) / s  # sub-pixel centre offsets inside a pixel
    for v in range(len(cameras)):
        x0, x1, y0, y1 = _pixel_box(vertices, c2ws[v], Ks[v], W, H)
        if x1 <= x0 or y1 <= y0:
            continue  # the object is outside this view
        h, w = y1 - y0, x1 - x0
        if not adaptive or s == 1:
            py = (np.arange(y0, y1)[:, None] + sub[None, :]).reshape(-1)  # (h*s,) rows of sub-pixel centres
            px = (np.arange(x0, x1)[:, None] + sub[None, :]).reshape(-1)
            rgb, hit = shader(*_rays(c2ws[v], Ks[v], *np.meshgrid(px, py)))
            out[v, y0:y1, x0:x1] = _downsample(rgb.reshape(h, s, w, s, 3), hit.reshape(h, s, w, s))
            continue
        # Pass 1: the first sub-pixel of every pixel of the box plus one extra row and column.
        gx, gy = np.meshgrid(np.arange(x0, x1 + 1) + sub[0], np.arange(y0, y1 + 1) + sub[0])
        rgb1, hit1, key1 = shader(*_rays(c2ws[v], Ks[v], gx, gy), with_key=True)
        key = key1.reshape(h + 1, w + 1)
        uniform = ((key[:-1, :-1] == key[:-1, 1:]) & (key[:-1, :-1] == key[1:, :-1])
                   & (key[:-1, :-1] == key[1:, 1:]))  # (h, w)
        first = rgb1.reshape(h + 1, w + 1, 3)[:-1, :-1]
        covered = hit1.reshape(h + 1, w + 1)[:-1, :-1]
        color = np.where(covered[..., None], first, 1.0).astype(np.float32)
        alpha = covered.astype(np.float32)
        # Pass 2: all s x s sub-pixels of the non-uniform pixels.
        iy, ix = np.nonzero(~uniform)
        if len(iy):
            sy, sx = np.meshgrid(sub, sub, indexing="ij")  # (s, s) offsets, row-major
            py = (y0 + iy)[:, None, None] + sy[None]  # (n, s, s)
            px = (x0 + ix)[:, None, None] + sx[None]
            rgb2, hit2 = shader(*_rays(c2ws[v], Ks[v], px, py))
            n = len(iy)
            rgba2 = _downsample(rgb2.reshape(n, 1, 1, s * s, 3), hit2.reshape(n, 1, 1, s * s))[:, 0]  # (n, 4)
            color[iy, ix] = rgba2[:, :3] / 255.0
            alpha[iy, ix] = rgba2[:, 3] / 255.0
        out[v, y0:y1, x0:x1] = (np.concatenate([color, alpha[..., None]], axis=-1) * 255.0 + 0.5).astype(np.uint8)
    return out


class _Shader:
    """Casts rays at one mesh and shades the hits (Gouraud-interpolated world-space Lambert, see module doc)."""

    def __init__(self, mesh: trimesh.Trimesh, lighting: Lighting, crease_deg: float):
        self.scene = _embree_scene(mesh)
        self.face_normals = _face_normals(mesh)  # (F, 3)
        corners = corner_normals(mesh, crease_deg)  # (F, 3, 3)
        self.light_front = lighting.intensity(corners).astype(np.float32)  # (F, 3) per corner
        self.light_back = lighting.intensity(-corners).astype(np.float32)
        colors = np.asarray(mesh.visual.face_colors)[:, :3]
        self.albedo = colors.astype(np.float32) / 255.0  # (F, 3)
        self.color_key = np.unique(colors, axis=0, return_inverse=True)[1].reshape(-1)  # (F,) same colour, same key

    def __call__(self, origins: np.ndarray, dirs: np.ndarray, with_key: bool = False):
        """origins, dirs (R, 3) float32 -> premultiplied rgb (R, 3) float32 (0 where missed), hit (R,) bool,
        and with ``with_key`` the hit face's colour key (R,) (-1 where missed)."""
        hits = self.scene.run(origins, dirs, output=1)
        tri = hits["primID"]  # (R,) triangle index or -1
        hit = tri >= 0
        rgb = np.zeros((len(tri), 3), dtype=np.float32)
        idx = np.flatnonzero(hit)
        if len(idx):
            t = tri[idx]
            corner_light = self.light_front[t]  # (R', 3)
            back = np.einsum("ij,ij->i", dirs[idx], self.face_normals[t]) > 0  # hit seen from behind
            corner_light[back] = self.light_back[t[back]]
            u, w = hits["u"][idx], hits["v"][idx]
            light = (1.0 - u - w) * corner_light[:, 0] + u * corner_light[:, 1] + w * corner_light[:, 2]
            rgb[idx] = np.minimum(self.albedo[t] * light[:, None], 1.0)
        if not with_key:
            return rgb, hit
        key = np.full(len(tri), -1, dtype=np.int64)
        key[idx] = self.color_key[tri[idx]]
        return rgb, hit, key


def composite_white(rgba: np.ndarray) -> np.ndarray:
    """RGBA [...,4] -> RGB [...,3] over a white background; uint8 in -> uint8 out, float in [0,1] -> float."""
    rgba = np.asarray(rgba)
    if rgba.shape[-1] != 4:
        raise ValueError(f"expected RGBA with 4 channels in the last axis, got shape {rgba.shape}")
    if rgba.dtype == np.uint8:
        x = rgba.astype(np.float32) / 255.0
        return np.round(255.0 * (x[..., :3] * x[..., 3:] + (1.0 - x[..., 3:]))).astype(np.uint8)
    return rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])


def camera_rays(cameras: Cameras, supersample: int = 1):
    """Yield (origins, directions), float32 [H*s*W*s, 3] in world space, for every camera: rays through the
    sub-pixel centres in row-major order, unit directions (the same rays as ``cameras.plucker`` for s = 1)."""
    s = supersample
    for c2w, K in zip(cameras.c2w_cv.double().numpy(), cameras.K.double().numpy()):
        px, py = np.meshgrid((np.arange(cameras.width * s) + 0.5) / s, (np.arange(cameras.height * s) + 0.5) / s)
        origins, d = _rays(c2w, K, px, py)
        yield origins, d / np.linalg.norm(d, axis=1, keepdims=True)


def _rays(c2w: np.ndarray, K: np.ndarray, px: np.ndarray, py: np.ndarray):
    """Rays of one camera (``c2w``: ``Cameras.c2w_cv``, OpenCV axes) through image points (px, py) in pixels
    (any equal shapes, flattened row-major). Returns contiguous float32 origins and directions (R, 3);
    directions are not unit length (Embree needs none)."""
    R = c2w[:3, :3].astype(np.float32)  # OpenCV camera axes in world
    x = ((px - K[0, 2]) / K[0, 0]).astype(np.float32).reshape(-1, 1)
    y = ((py - K[1, 2]) / K[1, 1]).astype(np.float32).reshape(-1, 1)
    d = x * R[:, 0] + y * R[:, 1] + R[:, 2]  # R @ (x, y, 1)
    origins = np.empty_like(d)
    origins[:] = c2w[:3, 3]
    return origins, d


def _pixel_box(vertices: np.ndarray, c2w: np.ndarray, K: np.ndarray, W: int, H: int) -> tuple[int, int, int, int]:
    """Pixel box (x0, x1, y0, y1), end-exclusive and clipped to the image, that contains the projection of
    every vertex plus one pixel; the whole image when some vertex is not in front of the camera (``c2w``:
    ``Cameras.c2w_cv``)."""
    R = c2w[:3, :3]
    cam = (vertices - c2w[:3, 3]) @ R  # (N, 3) OpenCV camera coordinates
    if (cam[:, 2] <= 1e-6).any():
        return 0, W, 0, H
    u = K[0, 0] * cam[:, 0] / cam[:, 2] + K[0, 2]
    v = K[1, 1] * cam[:, 1] / cam[:, 2] + K[1, 2]
    x0, x1 = int(np.floor(u.min())) - 1, int(np.ceil(u.max())) + 1
    y0, y1 = int(np.floor(v.min())) - 1, int(np.ceil(v.max())) + 1
    return max(x0, 0), min(x1, W), max(y0, 0), min(y1, H)


def corner_normals(mesh: trimesh.Trimesh, crease_deg: float = 35.0) -> np.ndarray:
    """[F,3,3] smooth normal at each face corner: area-weighted mean of the normals of the faces sharing that
    vertex whose normal is within ``crease_deg`` of this face's (so box edges stay sharp, spheres are smooth)."""
    faces = np.asarray(mesh.faces)
    F, nv = len(faces), len(mesh.vertices)
    fn, area = _face_normals(mesh), np.asarray(mesh.area_faces)
    corner_vertex = faces.ravel()  # (3F,)
    corner_face = np.repeat(np.arange(F), 3)
    order = np.argsort(corner_vertex, kind="stable")
    incident = corner_face[order]  # faces grouped by vertex
    count = np.bincount(corner_vertex, minlength=nv)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    reps = count[corner_vertex]  # neighbours per corner
    pair_corner = np.repeat(np.arange(3 * F), reps)
    offset = np.arange(len(pair_corner)) - np.repeat(np.cumsum(reps) - reps, reps)
    pair_face = incident[np.repeat(start[corner_vertex], reps) + offset]
    own = corner_face[pair_corner]
    keep = np.einsum("ij,ij->i", fn[pair_face], fn[own]) > math.cos(math.radians(crease_deg))
    weighted = fn[pair_face[keep]] * area[pair_face[keep], None]
    acc = np.stack([np.bincount(pair_corner[keep], weights=weighted[:, k], minlength=3 * F) for k in range(3)], 1)
    norm = np.linalg.norm(acc, axis=1, keepdims=True)
    acc = np.where(norm > 1e-12, acc / np.maximum(norm, 1e-12), fn[corner_face])
    return acc.reshape(F, 3, 3)


def _face_normals(mesh: trimesh.Trimesh) -> np.ndarray:
    """Unit face normals from the winding, zero for degenerate faces. (F, 3) float32"""
    tri = np.asarray(mesh.triangles, dtype=np.float64)
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    return np.where(norm > 1e-15, n / np.maximum(norm, 1e-15), 0.0).astype(np.float32)


def _embree_scene(mesh: trimesh.Trimesh):
    """An Embree scene of the mesh triangles. embreex is called directly (not through trimesh's wrapper)
    because its hits carry the barycentric coordinates u, v the shading needs."""
    if not trimesh.ray.has_embree:
        raise RuntimeError("the renderer needs Embree ray casting: install the pinned 'embreex' package "
                           "(pip install -r requirements.txt)")
    from embreex import rtcore_scene
    from embreex.mesh_construction import TriangleMesh

    scene = rtcore_scene.EmbreeScene()
    TriangleMesh(scene=scene, vertices=np.asarray(mesh.vertices, dtype=np.float32),
                 indices=np.asarray(mesh.faces, dtype=np.int32))
    return scene


def _downsample(rgb: np.ndarray, hit: np.ndarray) -> np.ndarray:
    """Average sub-pixels: premultiplied rgb (h,s,w,s,3) (0 where missed), hit (h,s,w,s) -> uint8 (h,w,4) with
    coverage alpha and straight colour (white where nothing was hit)."""
    s1, s2 = hit.shape[1], hit.shape[3]
    total = np.zeros((hit.shape[0], hit.shape[2], 3), dtype=np.float32)
    count = np.zeros(total.shape[:2], dtype=np.float32)
    for i in range(s1):  # s*s strided adds are much faster than a reduction over the strided axes
        for j in range(s2):
            total += rgb[:, i, :, j]
            count += hit[:, i, :, j]
    color = np.where(count[..., None] > 0, total / np.maximum(count, 1.0)[..., None], 1.0)
    rgba = np.concatenate([color, (count / (s1 * s2))[..., None]], axis=-1)
    return (np.clip(rgba, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
