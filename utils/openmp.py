"""OpenMP start-up setting of every command: idle worker threads sleep instead of spinning.

The scripts and tools import this module before torch, since the OpenMP runtime reads OMP_WAIT_POLICY once,
when torch loads it. PASSIVE is the default unless the environment sets the variable (set
OMP_WAIT_POLICY=ACTIVE on a dedicated machine for a few percent more speed). With spinning
threads, torch's two threads on a 2-core machine stall whenever another process holds a core:
one demo sweep (`render_multiview_images.py`, 30 frames at 128 px) took 21.7 s beside a busy
process with the runtime's default policy and 11.3 s with PASSIVE (7.2-7.8 s vs 6.5-7.5 s
with ACTIVE on a quiet machine).
"""
import os

os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
