"""AdamW with the MAE recipe: lr scaled by batch, linear warm-up then cosine, decay on kernels.

The AdamW here is the project's own optax GradientTransformation with a state of its own
(`AdamwState`), not optax.adamw: its fused CPU form (the C++ kernel of msm_jax/kernels/adamw.py,
one pass per parameter, ~3.5 % of the ViT-S CPU step) reads and writes that state, so neither form
depends on how optax lays out its internal states. The update is optax.adamw's (eps_root 0, decay
masked to kernels), with optax.clip_by_global_norm's clipping folded in, to within an ulp
(tests/test_adamw.py).
"""
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from msm_jax import cpu_kernels

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


class AdamwState(NamedTuple):
  count: jax.Array  # int32: updates applied so far (the schedule is read at this count)
  mu: Any  # first moments, shaped like the parameters
  nu: Any  # second moments


class Hyper(NamedTuple):
  """One AdamW's settings; clip_norm 0 = no clipping."""
  schedule: Callable
  b1: float
  b2: float
  weight_decay: float
  clip_norm: float

  def scalars(self, state: AdamwState, grads):
    """(-lr, 1 / (1 - b1^t), 1 / (1 - b2^t), gradient scale) of this update, float32; t counts
    updates including this one, the scale is clip_by_global_norm's factor (1 without clipping)."""
    t = optax.safe_increment(state.count).astype(jnp.float32)
    limit = self.clip_norm if self.clip_norm > 0 else jnp.inf
    norm = optax.tree.norm(grads)
    scale = jnp.where(norm < limit, 1.0, limit / norm)
    return jnp.stack([-self.schedule(state.count), 1 / (1 - self.b1**t), 1 / (1 - self.b2**t),
                      scale]).astype(jnp.float32)

  def init(self, params) -> AdamwState:
    # Two trees of their own: the fused update writes each moment in place, so mu and nu must
    # never share a buffer.
    zeros = lambda: jax.tree.map(jnp.zeros_like, params)
    return AdamwState(count=jnp.zeros([], jnp.int32), mu=zeros(), nu=zeros())

  def update(self, grads, state: AdamwState, params):
    """(updates, state) as optax.adamw's, in XLA: the form that runs everywhere."""
    neg_lr, inv_bc1, inv_bc2, scale = self.scalars(state, grads)
    grads = jax.tree.map(lambda g: g * scale, grads)
    mu = jax.tree.map(lambda g, m: (1 - self.b1) * g + self.b1 * m, grads, state.mu)
    nu = jax.tree.map(lambda g, v: (1 - self.b2) * (g * g) + self.b2 * v, grads, state.nu)

    def one(m, v, p, decayed):
      u = m * inv_bc1 / (jnp.sqrt(v * inv_bc2) + EPS)
      return neg_lr * (u + self.weight_decay * p if decayed else u)
    updates = jax.tree.map(one, mu, nu, params, decay_mask(params))
    return updates, AdamwState(optax.safe_increment(state.count), mu, nu)

  def runs_fused(self, params) -> bool:
    return cpu_kernels.supports("adamw", params)

  def apply_fused(self, params, grads, state: AdamwState):
    """(params, state) after one update, as params + update(...)[0], one C++ kernel call per
    parameter (only where `runs_fused`). Every call waits for the gradients' norm, so for every
    gradient, so for every product that reads a parameter: XLA sees that nothing reads a
    parameter after its update and updates it in place, without a copy."""
    kernel = cpu_kernels.kernel("adamw")
    scalars = self.scalars(state, grads)

    def one(p, g, mu, nu, decayed):
      return kernel.update(p, g, mu, nu, scalars, b1=self.b1, b2=self.b2, eps=EPS,
                           weight_decay=self.weight_decay if decayed else 0.0)
    updated = jax.tree.map(one, params, grads, state.mu, state.nu, decay_mask(params))
    params, mu, nu = jax.tree.transpose(jax.tree.structure(params),
                                        jax.tree.structure((0, 0, 0)), updated)
    return params, AdamwState(optax.safe_increment(state.count), mu, nu)


class Adamw(NamedTuple):
  """An optax GradientTransformation (init, update) that also has a fused form, which
  training.loop.TrainState.apply_gradients uses where it runs."""
  init: Callable
  update: Callable
  hyper: Hyper


def adamw(config, schedule, clip: bool = True) -> Adamw:
  hyper = Hyper(schedule, config.b1, config.b2, config.weight_decay,
                config.grad_clip_norm if clip else 0.0)
  return Adamw(hyper.init, hyper.update, hyper)


def make_optimizer(config, schedule, labels=None):
  """AdamW on every parameter, or, with `labels` (see `finetune_labels`), per parameter group:
  'frozen' parameters get no update and no optimizer state, group 'layerI' of an encoder with
  `depth` blocks learns at schedule x config.layer_decay ** (depth + 1 - I), all clipped by one
  global norm."""
  if labels is None:
    return adamw(config, schedule)
  groups = sorted(set(jax.tree.leaves(labels)) - {FROZEN})
  top = max(int(g[len(LAYER):]) for g in groups)
  transforms = {FROZEN: optax.set_to_zero()}
  for group in groups:
    scale = config.layer_decay ** (top - int(group[len(LAYER):]))
    transforms[group] = adamw(config, lambda step, scale=scale: schedule(step) * scale, clip=False)
  tx = optax.multi_transform(transforms, labels)
  if config.grad_clip_norm > 0:
    return optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), tx)
  return tx


FROZEN, LAYER = "frozen", "layer"
MODES = ("linear", "paper_probe", "partial", "full")


def finetune_labels(params, *, mode: str, depth: int, trainable_blocks: int = 0,
                    train_patch_embed: bool = False):
  """Parameter groups for finetuning an encoder of `depth` blocks under a task head.

  Layer ids as in the BEiT/MAE layer-wise decay: patch embedding and CLS 0, encoder block i i+1,
  the encoder's final norm and everything outside the encoder (the head) depth+1.
  mode 'linear' and 'paper_probe': only what lies outside the encoder trains (the head; with
  `train_patch_embed`, the re-initialised patch embedding too, at the head's rate: it is new);
  'partial': the head, the encoder's final norm and its last `trainable_blocks` blocks; 'full':
  everything.
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
    elif keys[1] == "patch_embed" and train_patch_embed:
      return f"{LAYER}{depth + 1}"
    else:  # patch embedding, CLS
      layer = 0
    trainable = (keys[0] != "encoder" or mode == "full"
                 or (mode == "partial" and layer > depth - trainable_blocks))
    return f"{LAYER}{layer}" if trainable else FROZEN
  return jax.tree_util.tree_map_with_path(label, params)
