"""Tests for msm_jax.checkpoint.manager (8 simulated CPU devices, see conftest.py)."""
import os
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.training import train_state
from jax.sharding import Mesh, NamedSharding, PartitionSpec, SingleDeviceSharding

from msm_jax.checkpoint.manager import (
    CheckpointNotFoundError,
    Checkpointer,
    checkpoint_dir,
    restore_encoder,
)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = {"preset": "tiny", "width": 8, "patch_size": [4, 4], "input_shape": [16, 16, 1]}


class TinyModel(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.Dense(8, name="encoder")(x)
    return nn.Dense(2, name="head")(nn.relu(h))


def make_state(seed=0, train_steps=1):
  """TrainState after `train_steps` AdamW updates, so step, mu and nu are all non-trivial."""
  model = TinyModel()
  x = jax.random.normal(jax.random.key(seed + 100), (4, 3))
  params = model.init(jax.random.key(seed), x)["params"]
  state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=optax.adamw(1e-2))
  loss = lambda p: jnp.mean(model.apply({"params": p}, x) ** 2)
  for _ in range(train_steps):
    state = state.apply_gradients(grads=jax.grad(loss)(state.params))
  return state


def assert_trees_identical(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    x, y = np.asarray(x), np.asarray(y)
    assert x.dtype == y.dtype and x.shape == y.shape
    np.testing.assert_array_equal(x, y)  # exact, not approximate


def test_a_state_of_another_structure_is_refused_with_the_way_out(tmp_path):
  """E.g. a workdir written before msm-jax had its own AdamW state (optax's layout)."""
  state = make_state()
  with Checkpointer(str(tmp_path)) as ckpt:
    assert ckpt.save(1, state, state.params["encoder"], CONFIG)
    ckpt.wait()
    other = state.replace(opt_state={"mu": state.params})
    with pytest.raises(ValueError, match=r"step 1 .* does not fit .*--config.init_from="):
      ckpt.restore_state(other)


def test_round_trip_bit_identical(tmp_path):
  state = make_state(train_steps=3)
  with Checkpointer(str(tmp_path)) as ckpt:
    assert ckpt.save(3, state, state.params["encoder"], CONFIG)
    ckpt.wait()
    # Abstract target from eval_shape (no shardings: defaults to replicated).
    restored = ckpt.restore_state(jax.eval_shape(lambda: make_state(seed=1)))
    # Concrete target with different values: values must come from the checkpoint.
    restored_concrete = ckpt.restore_state(make_state(seed=7, train_steps=1))
  assert isinstance(restored, train_state.TrainState)
  assert int(restored.step) == 3
  assert_trees_identical(restored.params, state.params)
  assert_trees_identical(restored.opt_state, state.opt_state)
  assert_trees_identical(restored_concrete.params, state.params)
  assert_trees_identical(restored_concrete.opt_state, state.opt_state)
  assert int(restored_concrete.step) == 3
  # Static fields come from the target, so the restored state is immediately usable.
  assert restored.apply_fn is not None and restored.tx is not None
  restored.apply_gradients(grads=jax.tree.map(jnp.zeros_like, restored.params))


def test_max_to_keep_and_latest_step(tmp_path):
  state = make_state()
  with Checkpointer(str(tmp_path), max_to_keep=2) as ckpt:
    assert ckpt.latest_step() is None
    for step in (10, 20, 30, 40):
      assert ckpt.save(step, state.replace(step=step), state.params["encoder"], CONFIG)
    ckpt.wait()
    assert ckpt.latest_step() == 40
    assert ckpt.all_steps() == [30, 40]
    # Re-saving an existing step is skipped (no overwrite, no exception), even with force.
    assert ckpt.save(40, state, state.params["encoder"], CONFIG, force=True) is False
  on_disk = sorted(int(p) for p in os.listdir(checkpoint_dir(str(tmp_path))) if p.isdigit())
  assert on_disk == [30, 40]
  # A fresh Checkpointer (e.g. a resumed run) sees the same steps and restores the latest.
  with Checkpointer(str(tmp_path), max_to_keep=2) as ckpt:
    assert ckpt.latest_step() == 40
    assert int(ckpt.restore_state(state).step) == 40
    assert int(ckpt.restore_state(state, step=30).step) == 30


def test_restore_encoder_returns_saved_subtree_and_config(tmp_path):
  old, new = make_state(seed=0), make_state(seed=1)
  with Checkpointer(str(tmp_path)) as ckpt:
    ckpt.save(1, old, old.params["encoder"], {**CONFIG, "width": 1})
    ckpt.save(2, new, new.params["encoder"], CONFIG)
  encoder, config = restore_encoder(str(tmp_path))
  assert config == CONFIG
  assert set(encoder) == {"kernel", "bias"}
  assert all(isinstance(x, np.ndarray) for x in jax.tree.leaves(encoder))
  assert_trees_identical(encoder, new.params["encoder"])
  encoder1, config1 = restore_encoder(str(tmp_path), step=1)
  assert config1["width"] == 1
  assert_trees_identical(encoder1, old.params["encoder"])


def test_save_replicated_on_8_devices_restore_on_one_device(tmp_path):
  assert jax.device_count() == 8
  replicated = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), PartitionSpec())
  state = jax.device_put(make_state(train_steps=2), replicated)
  assert len(jax.tree.leaves(state.params)[0].sharding.device_set) == 8
  one = SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=one),
      jax.eval_shape(lambda: make_state(seed=3)),
  )
  with Checkpointer(str(tmp_path)) as ckpt:
    ckpt.save(2, state, state.params["encoder"], CONFIG)
    restored = ckpt.restore_state(abstract)
  for leaf in jax.tree.leaves(restored):
    assert leaf.sharding == one
  assert int(restored.step) == 2
  assert_trees_identical(restored.params, state.params)
  assert_trees_identical(restored.opt_state, state.opt_state)


def _run_python(code, *, devices, timeout=60):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO_ROOT,
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=timeout)


def test_restore_in_process_with_different_device_count(tmp_path):
  """Saved by this 8-device process, restored by a real 1-device process (what orbax's stored
  sharding metadata would break without a target sharding)."""
  replicated = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), PartitionSpec())
  state = jax.device_put(make_state(train_steps=2), replicated)
  with Checkpointer(str(tmp_path)) as ckpt:
    ckpt.save(2, state, state.params["encoder"], CONFIG)
  expected = {f"l{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(state))}
  np.savez(tmp_path / "expected.npz", **expected)
  proc = _run_python(f"""
      import jax, numpy as np, sys
      sys.path.insert(0, {os.path.dirname(__file__)!r})
      from test_checkpoint import make_state
      from msm_jax.checkpoint.manager import Checkpointer, restore_encoder
      assert jax.device_count() == 1
      exp = np.load({str(tmp_path / "expected.npz")!r})
      with Checkpointer({str(tmp_path)!r}) as ckpt:
          st = ckpt.restore_state(jax.eval_shape(make_state))   # shardings default to replicated
      leaves = jax.tree.leaves(st)
      assert len(leaves) == len(exp.files)
      for i, x in enumerate(leaves):
          np.testing.assert_array_equal(np.asarray(x), exp[f"l{{i}}"])
      enc, cfg = restore_encoder({str(tmp_path)!r})
      np.testing.assert_array_equal(enc["kernel"], np.asarray(st.params["encoder"]["kernel"]))
      print("RESTORED_OK", int(st.step), cfg["preset"])
  """, devices=1)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "RESTORED_OK 2 tiny" in proc.stdout


def test_async_save_complete_after_wait(tmp_path):
  # Big enough (~16 MB of float32 across params + adam moments) that the write takes a moment.
  state = make_state()
  big = {"kernel": jnp.ones((1024, 1024)), "bias": jnp.zeros((1024,))}
  state = state.replace(params={**state.params, "big": big},
                        opt_state=(state.opt_state, {"extra": big}))
  ckpt = Checkpointer(str(tmp_path), async_save=True)
  assert ckpt.save(5, state, state.params["encoder"], CONFIG)
  ckpt.wait()
  step_dir = checkpoint_dir(str(tmp_path)) / "5"
  assert step_dir.exists()
  assert {"state", "encoder", "model_config"} <= set(os.listdir(step_dir))
  assert not [p for p in os.listdir(checkpoint_dir(str(tmp_path))) if "tmp" in p]
  ckpt.close()
  ckpt.close()  # idempotent
  np.testing.assert_array_equal(restore_encoder(str(tmp_path))[0]["kernel"],
                                np.asarray(state.params["encoder"]["kernel"]))


def test_exit_without_close_does_not_hang_and_finishes_save(tmp_path):
  """A script that forgets wait()/close() must neither hang at exit nor lose its last save."""
  proc = _run_python(f"""
      import jax.numpy as jnp
      from msm_jax.checkpoint.manager import Checkpointer
      ckpt = Checkpointer({str(tmp_path)!r})
      tree = {{"w": jnp.ones((512, 512))}}
      ckpt.save(1, tree, tree, {{"a": 1}})
      ckpt.save(2, tree, tree, {{"a": 2}})
      print("EXITING")
  """, devices=8, timeout=60)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "EXITING" in proc.stdout
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert sorted(os.listdir(checkpoint_dir(str(tmp_path)))) == ["1", "2"]
  assert restore_encoder(str(tmp_path))[1] == {"a": 2}


def test_missing_checkpoint_errors_name_the_path(tmp_path):
  missing = tmp_path / "no_such_workdir"
  with pytest.raises(ValueError, match="no_such_workdir"):
    restore_encoder(str(missing))
  with pytest.raises(FileNotFoundError):  # same error class serves both kinds of callers
    restore_encoder(str(missing))
  assert not missing.exists()  # the reader must not create directories

  with Checkpointer(str(tmp_path)) as ckpt:  # exists but holds no step yet
    with pytest.raises(CheckpointNotFoundError, match=str(checkpoint_dir(str(tmp_path)))):
      ckpt.restore_state(make_state())
    with pytest.raises(CheckpointNotFoundError, match=str(tmp_path)):
      restore_encoder(str(tmp_path))
    state = make_state()
    ckpt.save(1, state, state.params["encoder"], CONFIG)
    with pytest.raises(CheckpointNotFoundError, match="step 7"):
      ckpt.restore_state(state, step=7)
  with pytest.raises(CheckpointNotFoundError, match="step 7"):
    restore_encoder(str(tmp_path), step=7)


def test_non_json_model_config_is_rejected_before_saving(tmp_path):
  state = make_state()
  with Checkpointer(str(tmp_path)) as ckpt:
    with pytest.raises(TypeError, match="JSON"):
      ckpt.save(1, state, state.params["encoder"], {"dtype": jnp.float32})
    assert ckpt.latest_step() is None
