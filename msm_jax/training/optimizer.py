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


def _adamw(config, learning_rate):
  return optax.adamw(learning_rate, b1=config.b1, b2=config.b2,
                     weight_decay=config.weight_decay, mask=decay_mask)


def _clipped(config, tx):
  if config.grad_clip_norm > 0:
    return optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), tx)
  return tx


def make_optimizer(config, schedule, labels=None):
  """AdamW on every parameter, or, with `labels` (see `finetune_labels`), per parameter group:
  'frozen' parameters get no update and no optimizer state, group 'layerI' of an encoder with
  `depth` blocks learns at schedule x config.layer_decay ** (depth + 1 - I)."""
  if labels is None:
    return _clipped(config, _adamw(config, schedule))
  groups = sorted(set(jax.tree.leaves(labels)) - {FROZEN})
  top = max(int(g[len(LAYER):]) for g in groups)
  transforms = {FROZEN: optax.set_to_zero()}
  for group in groups:
    scale = config.layer_decay ** (top - int(group[len(LAYER):]))
    transforms[group] = _adamw(config, lambda step, scale=scale: schedule(step) * scale)
  return _clipped(config, optax.multi_transform(transforms, labels))


FROZEN, LAYER = "frozen", "layer"
MODES = ("linear", "partial", "full")


def finetune_labels(params, *, mode: str, depth: int, trainable_blocks: int = 0):
  """Parameter groups for finetuning an encoder of `depth` blocks under a task head.

  Layer ids as in the BEiT/MAE layer-wise decay: patch embedding and CLS 0, encoder block i i+1,
  the encoder's final norm and everything outside the encoder (the head) depth+1.
  mode 'linear': only the head trains; 'partial': the head, the encoder's final norm and its last
  `trainable_blocks` blocks; 'full': everything.
  """
  if mode not in MODES:
    raise ValueError(f"config.mode={mode!r} must be one of {MODES}.")
  if mode == "partial" and not 1 <= trainable_blocks <= depth:
    raise ValueError(f"config.trainable_blocks={trainable_blocks} must lie in [1, {depth}] "
                     "(encoder blocks) for config.mode='partial'.")

  def label(path, _):
    keys = [getattr(k, "key", None) for k in path]
    if keys[0] != "encoder":
      layer = depth + 1
    elif keys[1] == "transformer" and str(keys[2]).startswith("block"):
      layer = int(keys[2][len("block"):]) + 1
    elif keys[1] == "transformer":  # the final norm
      layer = depth + 1
    else:  # patch embedding, CLS
      layer = 0
    trainable = (keys[0] != "encoder" or mode == "full"
                 or (mode == "partial" and layer > depth - trainable_blocks))
    return f"{LAYER}{layer}" if trainable else FROZEN
  return jax.tree_util.tree_map_with_path(label, params)
