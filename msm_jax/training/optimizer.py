"""AdamW with the MAE recipe: lr scaled by batch, linear warm-up then cosine, decay on kernels."""
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from msm_jax.kernels import adamw as adamw_kernel

EPS = 1e-8  # optax.adamw's default


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
  return optax.adamw(learning_rate, b1=config.b1, b2=config.b2, eps=EPS,
                     weight_decay=config.weight_decay, mask=decay_mask)


class FusedAdamw(NamedTuple):
  """The update of make_optimizer's AdamW (with its optional clipping), one C++ kernel call
  per parameter on CPU (msm_jax/kernels/adamw.py): the same values to within an ulp, and the
  same optax state, read and returned in optax's structure, so checkpoints do not depend on
  which path wrote them."""
  schedule: Callable
  b1: float
  b2: float
  weight_decay: float
  clip_norm: float

  def runs_on(self, params) -> bool:
    return adamw_kernel.supports(params)

  def apply(self, params, grads, opt_state):
    """(params, opt_state) after one step, as optax.apply_updates(params, tx.update(...))."""
    clip_state, inner = opt_state if self.clip_norm > 0 else (None, opt_state)
    adam, decay_state, lr_state = inner
    count = optax.safe_increment(adam.count)
    t = count.astype(jnp.float32)
    # optax.clip_by_global_norm's factor, 1 without clipping. Every update then waits for the
    # norm, so for every gradient, so for every product that reads a parameter: XLA sees that
    # nothing reads a parameter after its update and updates it in place, without a copy.
    limit = self.clip_norm if self.clip_norm > 0 else jnp.inf
    norm = optax.tree.norm(grads)
    scalars = jnp.stack([-self.schedule(lr_state.count), 1 / (1 - self.b1**t),
                         1 / (1 - self.b2**t), jnp.where(norm < limit, 1.0, limit / norm)])
    scalars = scalars.astype(jnp.float32)

    def one(p, g, mu, nu, decayed):
      return adamw_kernel.update(p, g, mu, nu, scalars, b1=self.b1, b2=self.b2, eps=EPS,
                                 weight_decay=self.weight_decay if decayed else 0.0)
    updated = jax.tree.map(one, params, grads, adam.mu, adam.nu, decay_mask(params))
    params, mu, nu = jax.tree.transpose(jax.tree.structure(params),
                                        jax.tree.structure((0, 0, 0)), updated)
    inner = (optax.ScaleByAdamState(count=count, mu=mu, nu=nu), decay_state,
             optax.ScaleByScheduleState(count=optax.safe_increment(lr_state.count)))
    return params, ((clip_state, inner) if self.clip_norm > 0 else inner)


class Adamw(NamedTuple):
  """An optax GradientTransformation (init, update) carrying its fused form, which
  training.loop.TrainState.apply_gradients uses where it runs."""
  init: Callable
  update: Callable
  fused: FusedAdamw


def _clipped(config, tx):
  if config.grad_clip_norm > 0:
    return optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), tx)
  return tx


def make_optimizer(config, schedule, labels=None):
  """AdamW on every parameter, or, with `labels` (see `finetune_labels`), per parameter group:
  'frozen' parameters get no update and no optimizer state, group 'layerI' of an encoder with
  `depth` blocks learns at schedule x config.layer_decay ** (depth + 1 - I)."""
  if labels is None:
    tx = _clipped(config, _adamw(config, schedule))
    return Adamw(tx.init, tx.update, FusedAdamw(schedule, config.b1, config.b2,
                                                config.weight_decay, config.grad_clip_norm))
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
