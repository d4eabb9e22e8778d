"""Encoder and decoder sizes from the radio foundation model paper and MaskSpec."""

# width, depth (blocks), num_heads, mlp_dim
ENCODERS = {
    "tiny": dict(width=64, depth=2, num_heads=4, mlp_dim=128),  # tests and the CPU quick start
    "mid": dict(width=128, depth=4, num_heads=4, mlp_dim=512),  # the CPU study, ~0.8M params
    "vit_s": dict(width=512, depth=12, num_heads=8, mlp_dim=2048),  # paper ViT-S, ~38M params
    "vit_m": dict(width=768, depth=12, num_heads=12, mlp_dim=3072),  # paper ViT-M, ~85M
    "vit_l": dict(width=1024, depth=24, num_heads=16, mlp_dim=4096),  # paper ViT-L, ~303M
    "maskspec_tiny": dict(width=192, depth=12, num_heads=3, mlp_dim=768),
    "maskspec_small": dict(width=384, depth=12, num_heads=6, mlp_dim=1536),
    "maskspec_base": dict(width=768, depth=12, num_heads=12, mlp_dim=2048),
}

DECODERS = {
    "tiny": dict(width=32, depth=1, num_heads=2, mlp_dim=64),
    "mid": dict(width=64, depth=2, num_heads=4, mlp_dim=256),  # 2 blocks: the paper's seg probe
    "vit_s": dict(width=256, depth=8, num_heads=16, mlp_dim=1024),  # the paper's ViT-S decoder
    "standard": dict(width=512, depth=8, num_heads=16, mlp_dim=2048),  # MaskSpec; paper ViT-M/L
}


def lookup(table: dict, name: str, field: str) -> dict:
  if name not in table:
    raise ValueError(f"{field}={name!r} is not a preset; choose one of {sorted(table)}")
  return dict(table[name])
