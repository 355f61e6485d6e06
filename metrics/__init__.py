"""Image-quality metrics (FID/KID/IS), Inception weight sources, multi-view consistency, training diagnostics."""
