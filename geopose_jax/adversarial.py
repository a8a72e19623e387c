"""Adversarial objectives shared by the GAN-trained tasks (the lifter, its domain adapter).

`kind` 'standard': binary cross-entropy on logits (the discriminator maximises log D(real)
+ log(1 - D(fake)); the generator the non-saturating log D(fake)). 'wgan_gp': the
Wasserstein critic loss, with `gradient_penalty` added by the caller.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

GAN_KINDS = ("standard", "wgan_gp")


def _check(kind: str) -> None:
  if kind not in GAN_KINDS:
    raise ValueError(f"gan kind must be one of {GAN_KINDS}, got {kind!r}")


def discriminator_loss(real: jax.Array, fake: jax.Array, kind: str) -> jax.Array:
  """(N,) real and fake scores -> the discriminator's loss."""
  _check(kind)
  if kind == "standard":
    return jnp.mean(jax.nn.softplus(-real)) + jnp.mean(jax.nn.softplus(fake))
  return jnp.mean(fake) - jnp.mean(real)


def generator_loss(fake: jax.Array, kind: str) -> jax.Array:
  """(N,) fake scores -> the generator's loss (non-saturating BCE, or -E[D(fake)])."""
  _check(kind)
  if kind == "standard":
    return jnp.mean(jax.nn.softplus(-fake))
  return -jnp.mean(fake)


def gradient_penalty(score: Callable[[jax.Array], jax.Array], real: jax.Array,
                     fake: jax.Array, key: jax.Array) -> jax.Array:
  """WGAN-GP: E[(||grad_x D(x_hat)|| - 1)^2] at x_hat uniformly between real and fake.

  Args:
    score: (N, ...) -> (N,) per-sample scores.
    real, fake: (N, ...) samples.
    key: PRNG key for the interpolation weights.
  """
  alpha = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
  mixed = alpha * real + (1.0 - alpha) * fake
  grads = jax.grad(lambda m: jnp.sum(score(m)))(mixed)
  norms = jnp.sqrt(jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1)), axis=-1) + 1e-12)
  return jnp.mean(jnp.square(norms - 1.0))
