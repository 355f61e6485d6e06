"""The CUDA paths: run automatically when a CUDA device is visible (marker `cuda`), skipped elsewhere.

fp16 training with loss scaling, patch split, a 256 px render, and a checkpoint written on the GPU
loaded on the CPU.
"""
import pytest
import torch
from helpers import write_tiny_dataset

import configs
from checkpoints.loading import load_generator
from discriminators import build_discriminator
from generators import build_generator
from training import GramLoss, training_loop

pytestmark = pytest.mark.cuda
CUDA = torch.device('cuda')


def test_fp16_training_step_on_cuda(tmp_path):
    run = tmp_path / 'run'
    training_loop(configs.get_config('TINY_test'), str(run), CUDA, data_dir=write_tiny_dataset(str(tmp_path / 'data')),
                  max_steps=3, sample_interval=3, model_save_interval=3, log_interval=1, num_workers=0,
                  precision='fp16')
    state = torch.load(run / 'checkpoints' / 'step_0000003.pt', map_location='cpu', weights_only=True)
    assert state['scaler']['scale'] > 0
    assert all(torch.isfinite(value).all() for value in state['generator'].values())


def test_patch_split_gradients_match_on_cuda(monkeypatch):
    # Same arithmetic either way: without TF32 convolutions (cuDNN's default rounds their inputs to
    # 10 mantissa bits) the two gradients differ only by summation order.
    monkeypatch.setattr(torch.backends.cudnn, 'allow_tf32', False)
    config = configs.get_config('TINY_test')
    gradients = []
    for patch_split in (None, 4):
        torch.manual_seed(0)
        generator, discriminator = build_generator(config).to(CUDA), build_discriminator(config).to(CUDA)
        loss = GramLoss(generator, discriminator, config, torch.amp.GradScaler('cuda', enabled=False),
                        lambda: torch.autocast('cuda', enabled=False), patch_split)
        torch.manual_seed(1)
        loss.accumulate_generator(2, CUDA)
        gradients.append(torch.cat([p.grad.reshape(-1) for p in generator.parameters() if p.grad is not None]))
    torch.testing.assert_close(gradients[1], gradients[0], rtol=1e-3, atol=1e-6)


def test_256px_render_on_cuda_matches_the_cpu():
    config = configs.get_config('CATS_default')
    torch.manual_seed(0)
    generator = build_generator(config).eval()
    z = torch.randn(1, generator.z_dim)
    with torch.no_grad():
        gpu, _ = generator.to(CUDA)(z.to(CUDA), **config['camera'], img_size=256, camera_origin=(0.0, 0.0, 1.0))
        cpu, _ = generator.cpu()(z, **config['camera'], img_size=64, camera_origin=(0.0, 0.0, 1.0))
    assert gpu.shape == (1, 3, 256, 256) and torch.isfinite(gpu).all()
    small = torch.nn.functional.avg_pool2d(gpu.cpu(), 4)
    assert (small - cpu).abs().mean() < 0.1  # same image at another resolution


def test_checkpoint_written_on_cuda_loads_on_the_cpu(tmp_path):
    torch.manual_seed(0)
    generator = build_generator(configs.get_config('TINY_test')).to(CUDA)
    torch.save(generator.state_dict(), tmp_path / 'generator_ema.pth')
    loaded, _ = load_generator(str(tmp_path / 'generator_ema.pth'), 'TINY_test', device='cpu')
    for key, value in generator.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value.cpu()), key
