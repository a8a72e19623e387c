"""Pictures without a display (matplotlib Agg, Pillow): skeletons, image grids, GIFs, sweeps.

  image_grid     grids of images, atomic PNG/GIF writing, figure -> array
  skeleton_plot  Human3.6M-17 skeletons in 3D (camera frame) and 2D (pixels)
  nvs_sweep      novel-view yaw sweeps as PNG grids and GIFs, and the interactive slider
"""
