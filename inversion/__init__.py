"""GAN inversion for GRAM: recover FiLM parameters and a camera for an image (invert.py).

- inversion.optimize: pose search, latent + camera fit, pivotal tuning (`invert`).
- inversion.rendering: rendering from FiLM parameters, differentiable in the camera, with depth.
- inversion.losses: SSIM and PSNR on [-1, 1] images.
- inversion.images: reading, compositing and aligning the input image.
- inversion.storage: the inversion.pt format and `load_inversion` for the rendering scripts.
"""
