"""PyTorch MAE reference: throughput of one HF `ViTMAEForPreTraining` train step.

Measures the PyTorch baseline docs/performance.md compares msm-jax against: the radio foundation
model paper's ViT-S MAE (224x224 image, 1 channel, patch 16; encoder 512 wide, 12 layers,
8 heads, MLP 2048; decoder 256 wide, 8 layers, 16 heads, MLP 1024; mask ratio 0.75,
norm_pix_loss off, exact GELU; fp32, or bf16 autocast with --dtype=bfloat16). One train
step = forward (loss) + backward + AdamW(lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05)
step + zero_grad, on a fixed random batch. After 2 warm-up steps, `--steps` steps are timed
and one JSON line is printed, with the FLOP/s of a torch matmul in the same dtype on the same
device (2048^3 on the CPU, 8192^3 on a GPU; median of 15) as the attainable peak.

Run it in its own venv (torch 2.13.0 CPU comes from a local file; keep it out of the
project's environment):

  python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0 transformers numpy
  /tmp/torchvenv/bin/python benchmarks/pytorch_mae_reference.py --batch_size 16 --steps 5

On a GPU (any python with torch and transformers):

  python3 benchmarks/pytorch_mae_reference.py --device=cuda --dtype=bfloat16 --batch_size 256 \
      --steps 20
"""
import argparse
import json
import time

import torch
from transformers import ViTMAEConfig, ViTMAEForPreTraining


def synchronize(device: str):
  if device == "cuda":
    torch.cuda.synchronize()


def median_time(fn, device: str, repeats: int = 15) -> float:
  """Median, like msm_jax/training/benchmark.py: robust to bursts on shared machines."""
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    synchronize(device)
    times.append(time.perf_counter() - start)
  return sorted(times)[len(times) // 2]


def matmul_flops_per_sec(device: str, dtype) -> float:
  size = 2048 if device == "cpu" else 8192
  a = torch.ones(size, size, dtype=dtype, device=device)
  torch.matmul(a, a)  # warm-up
  synchronize(device)
  return 2 * size**3 / median_time(lambda: torch.matmul(a, a), device)


def build_train_step(batch_size: int, device: str = "cpu", dtype=torch.float32,
                     compile_model: bool = False):
  """The reference model and a function running one train step on a fixed random batch."""
  torch.manual_seed(0)
  config = ViTMAEConfig(
      image_size=224, num_channels=1, patch_size=16,
      hidden_size=512, num_hidden_layers=12, num_attention_heads=8, intermediate_size=2048,
      decoder_hidden_size=256, decoder_num_hidden_layers=8, decoder_num_attention_heads=16,
      decoder_intermediate_size=1024, mask_ratio=0.75, norm_pix_loss=False, hidden_act="gelu")
  model = ViTMAEForPreTraining(config).float().train().to(device)
  forward = torch.compile(model) if compile_model else model
  optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95),
                                weight_decay=0.05)
  images = torch.randn(batch_size, 1, 224, 224, device=device)

  def train_step():
    with torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
      loss = forward(pixel_values=images).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return loss

  return model, train_step


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch_size", type=int, default=16)
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--threads", type=int, default=None, help="default: torch's default")
  parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
  parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                      help="bfloat16: autocast (fp32 weights and optimizer), as MAE trains")
  parser.add_argument("--compile", action="store_true", help="torch.compile the model")
  args = parser.parse_args()
  dtype = getattr(torch, args.dtype)
  if args.threads:
    torch.set_num_threads(args.threads)
  model, train_step = build_train_step(args.batch_size, args.device, dtype, args.compile)

  for _ in range(2):  # warm-up
    train_step()
  start = time.perf_counter()
  for _ in range(args.steps):
    loss = train_step()
  synchronize(args.device)
  seconds = (time.perf_counter() - start) / args.steps

  count = lambda module: sum(p.numel() for p in module.parameters())
  print(json.dumps({
      "samples_per_sec": args.batch_size / seconds,
      "seconds_per_step": seconds,
      "batch_size": args.batch_size,
      "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
      "dtype": args.dtype,
      "attention": model.config._attn_implementation,
      "compiled": args.compile,
      "threads": torch.get_num_threads(),
      "torch_version": torch.__version__,
      "encoder_params": count(model.vit),
      "decoder_params": count(model.decoder),
      "torch_matmul_flops_per_sec": matmul_flops_per_sec(args.device, dtype),
      "final_loss": loss.item(),
  }))


if __name__ == "__main__":
  main()
