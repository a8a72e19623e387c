"""Similarity (Procrustes) alignment of point sets, batched and reflection-safe."""

from geopose_jax.geometry._array import as_float_array, namespace


def similarity_transform(source, target, scale: bool = True, eps: float = 1e-12):
  """Least-squares s, R, t with target ~= s * source @ R^T + t (Umeyama 1991).

  R is a proper rotation (det +1): when the best orthogonal fit is a reflection the sign of
  the smallest singular direction is flipped, as in Umeyama's correction.

  Args:
    source: (..., J, 3) points to move.
    target: (..., J, 3) points to move them onto.
    scale: fit s; if False s = 1 (rigid alignment).
    eps: floor for the source's variance, so a degenerate (single-point) source gives
      s = 0 rather than NaN.

  Returns:
    s (...,), R (..., 3, 3), t (..., 3).
  """
  xp = namespace(source, target)
  source, target = as_float_array(xp, source), as_float_array(xp, target)
  mu_source = xp.mean(source, axis=-2, keepdims=True)
  mu_target = xp.mean(target, axis=-2, keepdims=True)
  x0, y0 = source - mu_source, target - mu_target
  # Cross-covariance sum_j y_j x_j^T; its SVD U S V^T gives R = U D V^T.
  covariance = xp.swapaxes(y0, -1, -2) @ x0
  u, singular, vt = xp.linalg.svd(covariance)
  det_sign = xp.sign(xp.linalg.det(u @ vt))
  det_sign = xp.where(det_sign == 0, 1.0, det_sign)
  d = xp.concatenate([xp.ones_like(singular[..., :2]), det_sign[..., None]], axis=-1)
  rotation = (u * d[..., None, :]) @ vt
  if scale:
    variance = xp.sum(x0 * x0, axis=(-2, -1))
    s = xp.sum(singular * d, axis=-1) / xp.maximum(variance, eps)
  else:
    s = xp.ones_like(singular[..., 0])
  rotated_mean = xp.sum(rotation * mu_source, axis=-1)  # R mu_source, (..., 3)
  t = mu_target[..., 0, :] - s[..., None] * rotated_mean
  return s, rotation, t


def procrustes_align(pred, target, scale: bool = True):
  """`pred` moved by its best similarity (or rigid, scale=False) fit onto `target`.

  Args:
    pred: (..., J, 3).
    target: (..., J, 3).
    scale: also fit a scale factor.

  Returns:
    (..., J, 3) aligned prediction, s * pred @ R^T + t.
  """
  xp = namespace(pred, target)
  pred = as_float_array(xp, pred)
  s, rotation, t = similarity_transform(pred, target, scale=scale)
  return s[..., None, None] * (pred @ xp.swapaxes(rotation, -1, -2)) + t[..., None, :]
