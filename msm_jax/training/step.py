"""The train step: a pure function of (state, batch, rng), shared by pretraining and finetuning.

How it is compiled (jit over a mesh, or pmap) is decided in `parallel.py`, not here. A task only
supplies `loss_fn(params, batch, rng, sample_ids) -> (loss, aux_metrics)`.
"""
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import optax
from jax import lax

LossFn = Callable  # (params, batch, rng, sample_ids) -> (scalar loss, dict of scalar metrics)


def _split_micro_batches(tree, num_micro: int):
  """(B, ...) -> (num_micro, B / num_micro, ...), micro-batch j = rows j, j+A, j+2A, ...

  Striding (rather than cutting the batch into contiguous blocks) keeps every device's rows on
  that device when the batch axis is sharded, so accumulation needs no data movement.
  """
  def split(x):
    x = x.reshape((x.shape[0] // num_micro, num_micro) + x.shape[1:])
    return jnp.swapaxes(x, 0, 1)
  return jax.tree.map(split, tree)


# Metrics of the non-finite guard (training/loop.py reads them; they are not logged).
NONFINITE = "nonfinite"  # 0, or 1 (loss) + 2 (gradient norm): what was not finite
FIRST_NONFINITE = "first_nonfinite"  # several steps per call: the first such step's index
NONFINITE_STEPS = "nonfinite_steps"  # several steps per call: how many there were
GUARD_METRICS = (NONFINITE, FIRST_NONFINITE, NONFINITE_STEPS)


def _keep_if(ok, new, old):
  return jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)


def make_train_step(loss_fn: LossFn, schedule, *, grad_accum_steps: int = 1,
                    axis_name: Optional[str] = None, skip_nonfinite: bool = False):
  """Returns train_step(state, batch, rng) -> (state, metrics).

  `rng` is the run's base key; the step number is folded in here, and every sample gets its own
  key from its global index (see masking.batch_masks), so all compile paths draw the same noise.
  With `axis_name` (pmap), gradients and metrics are averaged over that axis. Every step checks
  its loss and gradient norm (metric NONFINITE); with `skip_nonfinite` a step where either is
  not finite keeps the parameters and optimizer state it started from (the step count moves on).
  """
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def train_step(state, batch, rng):
    rng = jax.random.fold_in(rng, state.step)
    local_batch = jax.tree.leaves(batch)[0].shape[0]
    first_id = 0 if axis_name is None else lax.axis_index(axis_name) * local_batch
    sample_ids = first_id + jnp.arange(local_batch, dtype=jnp.int32)

    if grad_accum_steps == 1:
      (loss, aux), grads = grad_fn(state.params, batch, rng, sample_ids)
    else:
      micro = _split_micro_batches((batch, sample_ids), grad_accum_steps)

      def accumulate(carry, xs):
        (loss, aux), grads = grad_fn(state.params, xs[0], rng, xs[1])
        return jax.tree.map(jnp.add, carry, (loss, aux, grads)), None

      first = jax.tree.map(lambda x: x[0], micro)
      (loss_shape, aux_shape), grads_shape = jax.eval_shape(
          grad_fn, state.params, first[0], rng, first[1])
      zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                           (loss_shape, aux_shape, grads_shape))
      summed, _ = lax.scan(accumulate, zeros, micro)
      loss, aux, grads = jax.tree.map(lambda x: x / grad_accum_steps, summed)

    if axis_name is not None:
      loss, aux, grads = lax.pmean((loss, aux, grads), axis_name)
    grad_norm = optax.tree.norm(grads)
    bad_loss, bad_grads = ~jnp.isfinite(loss), ~jnp.isfinite(grad_norm)
    metrics = dict(aux, loss=loss, grad_norm=grad_norm, lr=schedule(state.step),
                   **{NONFINITE: bad_loss.astype(jnp.int32) + 2 * bad_grads.astype(jnp.int32)})
    new_state = state.apply_gradients(grads=grads)
    if skip_nonfinite:
      finite = ~(bad_loss | bad_grads)
      new_state = new_state.replace(params=_keep_if(finite, new_state.params, state.params),
                                    opt_state=_keep_if(finite, new_state.opt_state,
                                                       state.opt_state))
    return new_state, metrics

  return train_step


def make_multi_step(train_step):
  """Several steps per compiled call: a lax.scan of `train_step` over stacked batches.

  The numerics are those of calling `train_step` once per batch. XLA then allocates the
  step's temporaries once per call instead of once per step (on CPU every fresh allocation is
  page-faulted in again, ~0.7 s of a 2.3 s ViT-S step), and the host dispatches once per call.
  Returns the metrics of the last step of the call, but the guard's of its first non-finite
  step (NONFINITE, its index FIRST_NONFINITE) and their count (NONFINITE_STEPS).
  """
  def multi_step(state, batches, rng):
    state, metrics = lax.scan(lambda s, batch: train_step(s, batch, rng), state, batches)
    codes = metrics[NONFINITE]
    first = jnp.argmax(codes > 0)  # 0 when every step was finite
    last = jax.tree.map(lambda m: m[-1], metrics)
    last.update({NONFINITE: codes[first], FIRST_NONFINITE: first,
                 NONFINITE_STEPS: jnp.sum(codes > 0)})
    return state, last
  return multi_step
