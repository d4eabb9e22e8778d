"""AdamW with the MAE recipe: lr scaled by batch, linear warm-up then cosine, decay on kernels."""
import jax
import optax


def learning_rate_schedule(config):
  """base_lr x global_batch / 256, linear warm-up from 0, half-cycle cosine to 0 at total_steps."""
  peak = config.base_lr * config.batch_size / 256
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=peak, warmup_steps=config.warmup_steps,
      decay_steps=max(config.total_steps, config.warmup_steps + 1), end_value=0.0)


def decay_mask(params):
  """Weight decay on Dense kernels only: never on biases, norms, cls or mask tokens.

  Position embeddings are fixed sin-cos constants, not parameters, so they are never decayed.
  """
  return jax.tree_util.tree_map_with_path(
      lambda path, _: getattr(path[-1], "key", None) == "kernel", params)


def make_optimizer(config, schedule):
  parts = []
  if config.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(config.grad_clip_norm))
  parts.append(optax.adamw(schedule, b1=config.b1, b2=config.b2,
                           weight_decay=config.weight_decay, mask=decay_mask))
  return optax.chain(*parts)
