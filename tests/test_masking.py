"""Masking invariants: exact counts, distinct masks, restore inverts the shuffle."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msm_jax.models.masking import batch_masks, num_visible


@pytest.mark.parametrize("n,ratio,keep", [(196, 0.75, 49), (100, 0.9, 10), (100, 0.7, 30),
                                          (196, 0.8, 39), (64, 0.05, 60), (20, 0.95, 1)])
def test_num_visible_is_exact(n, ratio, keep):
  assert num_visible(n, ratio) == keep


@pytest.mark.parametrize("ratio", [0.0, 0.04, 0.96, 1.0])
def test_ratio_outside_range_names_the_field(ratio):
  with pytest.raises(ValueError, match="config.mask_ratio"):
    num_visible(196, ratio)


def test_mask_counts_and_restore_inverts_shuffle():
  n, keep = 196, 49
  visible, restore, mask = batch_masks(jax.random.key(0), jnp.arange(32), n, keep)
  assert visible.shape == (32, keep) and restore.shape == (32, n)
  np.testing.assert_array_equal(mask.sum(axis=1), np.full(32, n - keep))
  for v, r, m in zip(np.asarray(visible), np.asarray(restore), np.asarray(mask)):
    shuffle = np.argsort(r)  # restore is the inverse of the shuffle
    np.testing.assert_array_equal(shuffle[:keep], v)
    np.testing.assert_array_equal(shuffle[r], np.arange(n))
    assert len(set(v.tolist())) == keep
    np.testing.assert_array_equal(m[v], 0)  # visible patches are exactly the unmasked ones
    np.testing.assert_array_equal(m, (r >= keep).astype(m.dtype))


def test_masks_differ_across_samples_and_steps_and_depend_only_on_sample_id():
  n, keep = 64, 16
  _, _, m1 = batch_masks(jax.random.key(0), jnp.arange(8), n, keep)
  _, _, m2 = batch_masks(jax.random.key(0), jnp.arange(8), n, keep)
  _, _, m3 = batch_masks(jax.random.fold_in(jax.random.key(0), 1), jnp.arange(8), n, keep)
  _, _, tail = batch_masks(jax.random.key(0), jnp.arange(4, 8), n, keep)
  np.testing.assert_array_equal(m1, m2)
  assert len({tuple(r) for r in np.asarray(m1)}) == 8
  assert not np.array_equal(m1, m3)
  np.testing.assert_array_equal(m1[4:], tail)  # same global id -> same mask on any device
