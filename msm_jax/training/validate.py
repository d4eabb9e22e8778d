"""Start-up checks: an impossible config fails before any work, with the field named."""
import jax
from absl import logging

from msm_jax.models.build import resolve_dtype
from msm_jax.models.masking import num_visible
from msm_jax.models.patches import grid_shape


def _require(ok: bool, message: str):
  if not ok:
    raise ValueError(message)


def validate_config(config):
  """Checks that hold for every task; raises ValueError naming the offending field."""
  shape = tuple(config.input_shape)
  _require(len(shape) == 3 and all(int(s) > 0 for s in shape),
           f"config.input_shape={shape} must be (time frames, frequency bins, channels) > 0")
  grid = grid_shape(shape[:2], tuple(config.model.patch_size))
  if resolve_dtype(config.model.dtype) == "bfloat16" and jax.devices()[0].platform == "cpu":
    # Asked for explicitly ('auto' is float32 on CPU): allowed, but slower there.
    logging.warning(
        "config.model.dtype='bfloat16' on CPU: XLA:CPU's bfloat16 products are no faster than "
        "float32 ones and the C++ kernels are float32 only, so float32 is faster here (ViT-S: "
        "~6.7 against ~11 samples/s on 2 Xeon cores); the default 'auto' picks float32 on CPU")
  if "mask_ratio" in config:
    num_visible(grid[0] * grid[1], config.mask_ratio)
  _require(config.total_steps > 0, f"config.total_steps={config.total_steps} must be > 0")
  _require(0 <= config.warmup_steps < config.total_steps,
           f"config.warmup_steps={config.warmup_steps} must be below config.total_steps="
           f"{config.total_steps}")
  for field in ("log_every", "checkpoint_every", "grad_accum_steps", "keep_checkpoints"):
    _require(config[field] >= 1, f"config.{field}={config[field]} must be >= 1")
  _require(config.eval_every >= 0,
           f"config.eval_every={config.eval_every} must be >= 1, or 0 for no validation")
  _require(config.eval_every == 0 or config.data.val_examples >= 1,
           f"config.data.val_examples={config.data.val_examples} must be >= 1 to validate every "
           f"config.eval_every={config.eval_every} steps")
  _require(config.steps_per_call >= 0,
           f"config.steps_per_call={config.steps_per_call} must be >= 1, or 0 for automatic")
  # Logs, checkpoints and figures fall on the end of the call that reaches their cadence, but
  # the run must end on a whole call (a resumed run is checked again in `train`).
  _require(config.total_steps % max(config.steps_per_call, 1) == 0,
           f"config.total_steps={config.total_steps} must be a multiple of "
           f"config.steps_per_call={config.steps_per_call}")
  devices = jax.device_count()
  per_device, rest = divmod(config.batch_size, devices)
  _require(rest == 0 and per_device > 0,
           f"config.batch_size={config.batch_size} is not divisible by the {devices} devices")
  _require(config.batch_size % jax.process_count() == 0,
           f"config.batch_size={config.batch_size} is not divisible by the "
           f"{jax.process_count()} processes")
  _require(per_device % config.grad_accum_steps == 0,
           f"config.grad_accum_steps={config.grad_accum_steps} must divide the per-device batch "
           f"{per_device} (config.batch_size={config.batch_size} over {devices} devices)")
