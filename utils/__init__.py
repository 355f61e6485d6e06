"""Small shared helpers with no domain knowledge: devices, processes, atomic files, images, videos, seeds, CLI."""
