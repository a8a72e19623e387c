"""Ray casting of the volume body in a textured room, per camera crop (vectorised numpy).

Each crop pixel is a pinhole ray of its camera (crop intrinsics K, world->camera R, centre
t), supersampled `ss` x `ss` times for the body. A ray takes the nearest body volume it
hits, so the body occludes itself correctly; rays that miss show the room. Each volume is
only tested against the rays inside its projected bounding box, which keeps a frame of
four 128 x 128 views at tens of milliseconds on one CPU core.

The room (floor, four walls, ceiling) depends on the ray alone, so rendering it without
the body gives the crop of a static per-camera background, as Human3.6M's background
images. Shading is Lambertian under a fixed world light plus ambient light; textures come
from each volume's texture coordinates (body.Volumes).
"""

from __future__ import annotations

import numpy as np
import PIL.Image

from data_prep.synthetic_multiview import body

# Room box (world mm): the Human3.6M cameras stand inside it.
ROOM_MIN = np.array([-4600.0, -6600.0, 0.0])
ROOM_MAX = np.array([4400.0, 6800.0, 3900.0])
_LIGHT = np.array([0.35, -0.45, 0.82]) / np.linalg.norm([0.35, -0.45, 0.82])
_FAR = np.inf


def _fract(x):
  return x - np.floor(x)


def _dot3(a, b):
  """Dot product over a last axis of size 3 (faster than a reduction over it)."""
  return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def pixel_rays(k_crop: np.ndarray, rotation: np.ndarray, size: int, ss: int) -> np.ndarray:
  """World unit ray directions of a crop's (sub)pixels.

  Args:
    k_crop: (V, 3, 3) crop intrinsics (integer coordinates at pixel centres).
    rotation: (V, 3, 3) world->camera rotations.
    size: crop side; ss: samples per pixel and axis.

  Returns:
    (V, size * ss, size * ss, 3); sub-sample (i, j) looks at crop pixel coordinates
    u = (j + 0.5) / ss - 0.5, v = (i + 0.5) / ss - 0.5.
  """
  coords = (np.arange(size * ss) + 0.5) / ss - 0.5
  return _grid_rays(k_crop, rotation, coords, coords)


def _grid_rays(k, rotation, us, vs):
  """(V, 3, 3) K and R, pixel coordinates us (W,), vs (H,) -> (V, H, W, 3) unit world rays."""
  # world ray = R^T K^-1 (u, v, 1): affine in u and v, so build it from three columns.
  m = np.swapaxes(rotation, -1, -2) @ np.linalg.inv(k)                # (V, 3, 3)
  us = np.asarray(us, np.float64)[None, None, :, None]
  vs = np.asarray(vs, np.float64)[None, :, None, None]
  world = (us * m[:, None, None, :, 0] + vs * m[:, None, None, :, 1]) + m[:, None, None, :, 2]
  world /= np.sqrt(_dot3(world, world))[..., None]
  return world


def _sphere_t(o, d, centre, radius):
  oc = o - centre
  b = d @ oc
  h = b * b - (oc @ oc - radius * radius)
  t = -b - np.sqrt(np.maximum(h, 0.0))
  return np.where((h >= 0) & (t > 0), t, _FAR)


def _capsule_t(o, d, a, b, r):
  """Rays (..., 3) from origin o against the capsule a-b of radius r -> (...,) distance."""
  ba, oa = b - a, o - a
  baba, baoa, oaoa = ba @ ba, ba @ oa, oa @ oa
  bard, rdoa = d @ ba, d @ oa
  qa = np.maximum(baba - bard * bard, 1e-9)
  qb = baba * rdoa - baoa * bard
  h = qb * qb - qa * (baba * oaoa - baoa * baoa - r * r * baba)
  t = (-qb - np.sqrt(np.maximum(h, 0.0))) / qa
  y = baoa + t * bard
  t = np.where((h >= 0) & (t > 0) & (y > 0) & (y < baba), t, _FAR)
  return np.minimum(t, np.minimum(_sphere_t(o, d, a, r), _sphere_t(o, d, b, r)))


def _ellipsoid_t(o, d, centre, inv):
  """Rays (..., 3) against the ellipsoid |inv (x - centre)| = 1 -> (...,) distance."""
  q0 = inv @ (o - centre)
  qd = d @ inv.T
  a = _dot3(qd, qd)
  b = qd @ q0
  h = b * b - a * (q0 @ q0 - 1.0)
  t = (-b - np.sqrt(np.maximum(h, 0.0))) / a
  return np.where((h >= 0) & (t > 0), t, _FAR)


def _pixel_bounds(points, radius, k_crop, rotation, centre, size, ss):
  """Sub-sample index box (i0, i1, j0, j1) holding the projection of spheres around points."""
  cam = (points - centre) @ rotation.T
  z = cam[:, 2]
  full = (0, size * ss, 0, size * ss)
  if np.any(z < radius + 50.0):
    return full
  uv = (cam[:, :2] / z[:, None]) * np.diag(k_crop)[:2] + k_crop[:2, 2]
  # Off-axis spheres project to ellipses a little wider than f r / (z - r).
  pad = 1.5 * k_crop[0, 0] * radius / (z - radius) + 1.5
  lo = ((uv - pad[:, None]).min(0) + 0.5) * ss - 0.5
  hi = ((uv + pad[:, None]).max(0) + 0.5) * ss - 0.5
  j0, i0 = np.clip(np.floor(lo).astype(int), 0, size * ss)
  j1, i1 = np.clip(np.ceil(hi).astype(int) + 1, 0, size * ss)
  return i0, i1, j0, j1


def _body_colour(part, q, palette):
  """Texture: (N,) part ids, (N, 3) texture coords, (C, 3) palette -> (N, 3) albedo."""
  slot = body.PART_PALETTE[part]
  side, front, along = q[:, 0], q[:, 1], q[:, 2]
  # Chest: emblem on the front, horizontal stripes on the back.
  emblem = (part == body.CHEST) & (front > 0.45) & (side ** 2 + (along - 0.15) ** 2 < 0.16)
  back_stripes = ((part == body.CHEST) | (part == body.BELLY)) & (front < -0.3) & (
      _fract(along * 2.5) < 0.35)
  # Left sleeve: bands; left trouser leg: a stripe down the outside; right shoe: toe cap.
  sleeve_bands = (part == body.L_UPPER_ARM) & (_fract(along * 3.0) < 0.3)
  leg_stripe = ((part == body.L_THIGH) | (part == body.L_SHIN)) & (side > 0.9)
  toe_cap = (part == body.R_FOOT) & (front > 0.55)
  # Head: face with eyes and mouth in front, hair on top and behind.
  is_head = part == body.HEAD
  hair = is_head & ((along > 0.45) | ((front < 0.1) & (along > -0.55)))
  eyes = is_head & (front > 0.75) & (np.abs(along - 0.18) < 0.12) & (
      np.abs(np.abs(side) - 0.36) < 0.13)
  mouth = is_head & (front > 0.75) & (np.abs(along + 0.38) < 0.06) & (np.abs(side) < 0.3)
  slot = np.where(emblem, body.EMBLEM, slot)
  slot = np.where(back_stripes | sleeve_bands | leg_stripe | toe_cap, body.STRIPE, slot)
  slot = np.where(hair, body.HAIR, slot)
  slot = np.where(eyes | mouth, body.EYES, slot)
  return palette[slot]


def _floor_colour(x, y):
  """Floor: 600 mm tiles in two tones, grout lines, a bluish capture mat in the middle."""
  tile = (np.floor(x / 600.0) + np.floor(y / 600.0)) % 2 > 0
  colour = np.where(tile[:, None], np.float32([0.55, 0.52, 0.47]),
                    np.float32([0.42, 0.40, 0.37]))
  mat = (np.abs(x) < 2200) & (y > -1700) & (y < 3100)
  grout = (_fract(x / 600.0) < 0.02) | (_fract(y / 600.0) < 0.02)
  factor = np.where(mat[:, None], np.float32([0.55, 0.62, 0.75]), np.float32(1.0))
  return colour * factor * np.where(grout, 0.6, 1.0).astype(np.float32)[:, None]


def _wall_colour(along, z, wall_id):
  """Walls: a colour per wall, vertical panels, a rail, a dark skirting board, posters."""
  base = np.float32([[0.62, 0.66, 0.72], [0.74, 0.68, 0.58],
                     [0.60, 0.70, 0.62], [0.72, 0.64, 0.68]])[wall_id]
  factor = np.where(_fract(along / 900.0) < 0.04, 0.75, 1.0)
  factor = np.where((z > 950) & (z < 1050), 0.55, factor)
  factor *= 0.9 - 0.08 * (wall_id % 2)
  colour = base * factor.astype(np.float32)[:, None]
  colour = np.where((z < 140)[:, None], np.float32([0.18, 0.16, 0.15]), colour)
  cell = np.floor(along / 1700.0)
  poster = (np.abs(_fract(along / 1700.0) - 0.5) < 0.25) & (z > 1350) & (z < 2250) & (
      (cell + wall_id) % 3 == 0)
  if poster.any():
    c, w = cell[poster], wall_id[poster]
    colour[poster] = 0.9 * np.stack([0.5 + 0.4 * np.sin(c * 1.7 + w),
                                     0.5 + 0.4 * np.sin(c * 2.3 + 2.0),
                                     0.5 + 0.4 * np.sin(c * 0.9 + 4.0 + w)], -1)
  return colour


def room_colour(origin: np.ndarray, direction: np.ndarray) -> np.ndarray:
  """Shaded albedo where rays (N, 3) from `origin` (3,) leave the room -> (N, 3) float32."""
  safe = np.where(np.abs(direction) > 1e-9, direction, 1e-9)
  bound = np.where(direction > 0, ROOM_MAX, ROOM_MIN)
  t_axes = (bound - origin) / safe
  axis = np.argmin(t_axes, axis=-1)
  t = np.min(t_axes, axis=-1)
  positive = np.take_along_axis(direction, axis[:, None], axis=-1)[:, 0] > 0
  colour = np.empty(direction.shape, np.float32)
  floor = (axis == 2) & ~positive
  ceiling = (axis == 2) & positive
  wall = axis < 2
  if floor.any():
    p = origin + t[floor, None] * direction[floor]
    colour[floor] = _floor_colour(p[:, 0], p[:, 1])
  if ceiling.any():
    p = origin + t[ceiling, None] * direction[ceiling]
    light = (_fract(p[:, 0] / 1200.0) < 0.5) & (_fract(p[:, 1] / 1200.0) < 0.5)
    colour[ceiling] = np.where(light[:, None], np.float32([0.74, 0.74, 0.70]),
                               np.float32([0.62, 0.62, 0.61]))
  if wall.any():
    p = origin + t[wall, None] * direction[wall]
    ax = axis[wall]
    along = np.where(ax == 0, p[:, 1], p[:, 0])
    colour[wall] = _wall_colour(along, p[:, 2], ax * 2 + positive[wall])
  return colour


def _shade_body(volumes: body.Volumes, palette, index, points, direction):
  """Colours of body hits: (N,) volume index, (N, 3) hit points and ray directions."""
  num_caps = len(volumes.cap_r)
  is_cap = index < num_caps
  ci = np.minimum(index, num_caps - 1)
  a, ba = volumes.cap_a[ci], volumes.cap_b[ci] - volumes.cap_a[ci]
  s = np.clip(_dot3(points - a, ba) / np.maximum(_dot3(ba, ba), 1e-9), 0, 1)
  n_cap = points - a - s[:, None] * ba
  ei = np.clip(index - num_caps, 0, len(volumes.ell_inv) - 1)
  inv = volumes.ell_inv[ei]
  q_ell = _dot3(inv, (points - volumes.ell_centre[ei])[:, None, :])
  n_ell = _dot3(np.swapaxes(inv, -1, -2), q_ell[:, None, :])
  normal = np.where(is_cap[:, None], n_cap, n_ell)
  normal /= np.maximum(np.sqrt(_dot3(normal, normal)), 1e-9)[:, None]
  q = _dot3(volumes.tex_inv[index], (points - volumes.tex_origin[index])[:, None, :])
  albedo = _body_colour(volumes.part[index], q, palette)
  lambert = np.maximum(normal @ _LIGHT, 0.0)
  facing = np.maximum(-_dot3(normal, direction), 0.0)
  return albedo * (0.38 + 0.47 * lambert + 0.2 * facing)[:, None]


# The room is rendered once per camera over the image plus this margin (pixels), at half
# the camera's resolution: crops are always downsampled at least that much.
ROOM_MARGIN_PX = 320
ROOM_SCALE = 0.5


def room_image(rotation: np.ndarray, centre: np.ndarray, f: np.ndarray, c: np.ndarray,
               res: np.ndarray, scale: float = ROOM_SCALE) -> np.ndarray:
  """The empty room as a camera sees it (pinhole), with a margin, at `scale`.

  Args:
    rotation: (3, 3) world->camera; centre: (3,) mm; f, c: (2,) pixels; res: (w, h).
    scale: resolution relative to the camera's.

  Returns:
    (H', W', 3) uint8; its pixel edge coordinate x is the full-image pixel-centre
    coordinate x / scale - ROOM_MARGIN_PX - 0.5 (see `room_box`).
  """
  w, h = (int(round(float(v))) for v in res)
  cols = int(np.ceil((w + 2 * ROOM_MARGIN_PX) * scale))
  rows = int(np.ceil((h + 2 * ROOM_MARGIN_PX) * scale))
  us = (np.arange(cols) + 0.5) / scale - ROOM_MARGIN_PX - 0.5
  vs = (np.arange(rows) + 0.5) / scale - ROOM_MARGIN_PX - 0.5
  k = np.array([[f[0], 0, c[0]], [0, f[1], c[1]], [0, 0, 1]], np.float64)
  rays = _grid_rays(k[None], np.asarray(rotation, np.float64)[None], us, vs)[0]
  colour = room_colour(np.asarray(centre, np.float64), rays.reshape(-1, 3))
  return _to_u8(colour.reshape(rows, cols, 3))


def room_box(box: np.ndarray, scale: float = ROOM_SCALE) -> tuple[float, float, float, float]:
  """A crop box (x0, y0, side) in full-image pixels -> PIL box in a `room_image`."""
  x0, y0, side = (float(v) for v in box)
  to_room = lambda u: (u + 0.5 + ROOM_MARGIN_PX) * scale  # noqa: E731
  return (to_room(x0), to_room(y0), to_room(x0 + side), to_room(y0 + side))


def box_in_room(room: np.ndarray, box: np.ndarray, scale: float = ROOM_SCALE) -> bool:
  """Whether a crop box lies inside a `room_image` (with its margin)."""
  x0, y0, x1, y1 = room_box(box, scale)
  rows, cols = room.shape[:2]
  return x0 >= 0 and y0 >= 0 and x1 <= cols and y1 <= rows


def background_crop(room: np.ndarray, box: np.ndarray, size: int,
                    scale: float = ROOM_SCALE) -> np.ndarray:
  """(size, size, 3) uint8 crop of a `room_image` rendered at `scale` (antialiased)."""
  if not box_in_room(room, box, scale):
    raise ValueError(f"crop box {tuple(np.round(box, 1))} reaches beyond the rendered room "
                     f"margin of {ROOM_MARGIN_PX} px; use room_crop")
  pil = PIL.Image.fromarray(room)
  return np.asarray(pil.resize((size, size), PIL.Image.BILINEAR, box=room_box(box, scale)))


def room_crop(k_crop: np.ndarray, rotation: np.ndarray, centre: np.ndarray,
              size: int) -> np.ndarray:
  """(size, size, 3) uint8 background of one crop rendered ray by ray (any box)."""
  rays = pixel_rays(np.asarray(k_crop, np.float64)[None], np.asarray(rotation, np.float64)[None],
                    size, 1)[0]
  return _to_u8(room_colour(np.asarray(centre, np.float64), rays.reshape(-1, 3))
                ).reshape(size, size, 3)


def _to_u8(x):
  return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def render_views(volumes: body.Volumes, palette: np.ndarray, k_crop: np.ndarray,
                 rotation: np.ndarray, centre: np.ndarray, backgrounds: np.ndarray,
                 ss: int = 2) -> tuple[np.ndarray, np.ndarray]:
  """Renders one body over background crops of several cameras.

  Args:
    volumes: body.Volumes of one pose (world mm).
    palette: (body.NUM_COLOURS, 3) clothing colours in [0, 1].
    k_crop: (V, 3, 3) crop intrinsics (pixel centres at integers).
    rotation: (V, 3, 3) world->camera rotations.
    centre: (V, 3) camera centres, world mm.
    backgrounds: (V, size, size, 3) uint8 crops of the empty room (`background_crop`).
    ss: body samples per pixel and axis (anti-aliasing).

  Returns:
    images (V, size, size, 3) uint8 and masks (V, size, size) uint8 in {0, 1} (pixels at
    least half covered by the body).
  """
  k_crop = np.asarray(k_crop, np.float64)
  rotation = np.asarray(rotation, np.float64)
  centre = np.asarray(centre, np.float64)
  num_views, size = backgrounds.shape[:2]
  rays = pixel_rays(k_crop, rotation, size, ss)                     # (V, S, S, 3)
  depth = np.full(rays.shape[:3], _FAR)
  index = np.zeros(rays.shape[:3], np.int32)
  num_caps = len(volumes.cap_r)
  cap_a = volumes.cap_a.astype(np.float64)
  cap_b = volumes.cap_b.astype(np.float64)
  ell_centre = volumes.ell_centre.astype(np.float64)
  ell_inv = volumes.ell_inv.astype(np.float64)
  ell_radius = 1.0 / np.linalg.svd(ell_inv, compute_uv=False).min(axis=-1)
  for v in range(num_views):
    o = centre[v]
    for i in range(num_caps + len(ell_inv)):
      if i < num_caps:
        r = float(volumes.cap_r[i])
        bounds = _pixel_bounds(np.stack([cap_a[i], cap_b[i]]), np.array([r, r]), k_crop[v],
                               rotation[v], o, size, ss)
      else:
        e = i - num_caps
        bounds = _pixel_bounds(ell_centre[e][None], ell_radius[e:e + 1], k_crop[v],
                               rotation[v], o, size, ss)
      i0, i1, j0, j1 = bounds
      if i1 <= i0 or j1 <= j0:
        continue
      block_rays = rays[v, i0:i1, j0:j1]
      if i < num_caps:
        t = _capsule_t(o, block_rays, cap_a[i], cap_b[i], r)
      else:
        t = _ellipsoid_t(o, block_rays, ell_centre[e], ell_inv[e])
      block = depth[v, i0:i1, j0:j1]
      closer = t < block
      np.copyto(block, t, where=closer)
      np.copyto(index[v, i0:i1, j0:j1], i, where=closer)
  hit = np.isfinite(depth)
  body_rgb = np.zeros(rays.shape, np.float64)
  if hit.any():
    d = rays[hit]
    view = np.nonzero(hit)[0]
    points = centre[view] + depth[hit][:, None] * d
    body_rgb[hit] = _shade_body(volumes, np.asarray(palette, np.float64), index[hit], points, d)
  coverage = np.zeros((num_views, size, size))
  body_sum = np.zeros((num_views, size, size, 3))
  for a in range(ss):
    for b in range(ss):
      coverage += hit[:, a::ss, b::ss]
      body_sum += body_rgb[:, a::ss, b::ss]
  body_mean = body_sum / np.maximum(coverage, 1)[..., None]
  coverage /= ss * ss
  room = backgrounds.astype(np.float64) / 255.0
  image = coverage[..., None] * body_mean + (1 - coverage[..., None]) * room
  return _to_u8(image), (coverage >= 0.5).astype(np.uint8)
