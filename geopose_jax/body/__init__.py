"""Human body models in SMPL's format, in pure jnp.

smpl.py        the model pytree (BodyModel), loading of SMPL .pkl (without chumpy) / .npz,
               linear blend skinning `smpl(model, theta, beta)`.
pkl_reader.py  the restricted unpickler for the official .pkl files.
procedural.py  a procedural SMPL-format body (NOT SMPL), the default when no model file is
               given.
raster.py      soft silhouettes (SoftRas) of meshes in pinhole cameras, differentiable.
"""
