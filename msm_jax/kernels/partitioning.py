"""How the SPMD partitioner splits a CPU kernel's call under jit over a device mesh.

A kernel's FFI call sees whole arrays; wrapped here, each device calls it on its own slices
along the axes the kernel allows (the batch, and for attention the heads), and the axes it needs
whole are never split, so nothing is gathered around the call.
"""
from jax.experimental.custom_partitioning import custom_partitioning
from jax.sharding import NamedSharding, PartitionSpec


def spec_of(sharding, rank: int) -> tuple:
  """The sharding's partition spec padded with None to `rank` axes."""
  return tuple(sharding.spec) + (None,) * (rank - len(sharding.spec))


def named(sharding, *axes) -> NamedSharding:
  return NamedSharding(sharding.mesh, PartitionSpec(*axes))


def partitioned(ffi_call, layouts, arg_layouts, result_layouts, rule: str, whole: tuple):
  """`ffi_call` (returning a tuple) wrapped with custom_partitioning.

  layouts(first_arg_sharding) -> tuple of the NamedShardings the kernel's arrays take; the
  arguments' and results' shardings are layouts[i] for i in arg_layouts / result_layouts.
  `rule` is the Shardy rule, `whole` its factors that must stay unsplit, in order of appearance.
  """
  fn = custom_partitioning(ffi_call)

  def infer(mesh, arg_shapes, result_shape):
    del mesh, result_shape
    shardings = layouts(arg_shapes[0].sharding)
    return tuple(shardings[i] for i in result_layouts)

  def partition(mesh, arg_shapes, result_shape):
    del result_shape
    shardings = layouts(arg_shapes[0].sharding)
    return (mesh, ffi_call, tuple(shardings[i] for i in result_layouts),
            tuple(shardings[i] for i in arg_layouts))

  fn.def_partition(partition, infer_sharding_from_operands=infer, sharding_rule=rule,
                   need_replication_factors=whole)
  return fn


# batch_layouts' roles: x (B, N, D); a (D,) vector; per-row values (B, N); per-sample (B, D) sums.
BATCH_LAYOUT_ROLES = range(4)


def batch_layouts(x_sharding) -> tuple:
  """Shardings of a row-wise kernel's arrays, by BATCH_LAYOUT_ROLES, for x (B, N, D) sharded as
  given: the batch axis as x has it, everything else whole."""
  batch = spec_of(x_sharding, 3)[0]
  return (named(x_sharding, batch, None, None), named(x_sharding, None),
          named(x_sharding, batch, None), named(x_sharding, batch, None))
