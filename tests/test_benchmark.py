"""The benchmark's figures: FLOP count, the JSON fields, and the per-module profile."""
import jax
import pytest

from configs.pretrain import get_config
from msm_jax.models.flops import msm_train_flops_per_sample
from msm_jax.training.benchmark import benchmark


def test_vit_s_step_flops_match_the_reference_count():
  # ../shared/REFERENCE.md: ~19.9 GFLOP per sample for the paper's ViT-S MAE train step.
  config = get_config("vit_s")
  flops = msm_train_flops_per_sample(config.model, (224, 224, 1), num_visible=49)
  assert flops / 1e9 == pytest.approx(19.9, rel=0.03)


def test_benchmark_reports_throughput_and_where_time_goes():
  config = get_config("tiny")
  config.input_shape = (32, 32, 1)
  result = benchmark(config, batch_size=8, steps=2, peak_size=256, profile=True)
  assert result["samples_per_sec"] == pytest.approx(8 / result["seconds_per_step"])
  assert 0 < result["fraction_of_peak"] < 1.5
  assert result["encoder_params"] == 71296 and result["decoder_params"] > 0
  modules = result["time_by_module_ms"]
  assert {"encoder/attn", "encoder/mlp/backward", "decoder/attn", "decoder/mlp"} <= set(modules)
  assert all(ms >= 0 for ms in modules.values()) and sum(modules.values()) > 0


def test_peak_is_sampled_between_timed_stretches(monkeypatch):
  from msm_jax.training import benchmark as module
  events = []
  rates = iter(range(1, 100))

  def fake_rate(dtype, size):
    return lambda: events.append("peak") or next(rates) * 1e9
  real_setup = module.compiled_step

  def spied_setup(config, batch_size):
    setup = real_setup(config, batch_size)
    return setup._replace(step=lambda *a: events.append("call") or setup.step(*a))
  monkeypatch.setattr(module, "matmul_rate", fake_rate)
  monkeypatch.setattr(module, "compiled_step", spied_setup)
  config = get_config("tiny")
  config.input_shape, config.steps_per_call = (32, 32, 1), 2
  result = benchmark(config, batch_size=8, steps=16)
  # A compile call, then 8 timed calls in 4 stretches of 2, each followed by 4 peak samples.
  assert events == ["call"] + (["call"] * 2 + ["peak"] * 4) * 4
  assert result["peak_flops_per_sec"] == 8.5e9  # the median of 1..16 GFLOP/s
  assert result["peak_flops_per_sec_range"] == [1e9, 16e9]
  assert result["steps_per_call"] == 2
  # An explicit steps per call that does not divide the config's total_steps (1,000) still runs.
  config = get_config("tiny")
  config.input_shape, config.steps_per_call = (32, 32, 1), 3
  assert benchmark(config, batch_size=8, steps=3)["steps_per_call"] == 3


def test_profile_refuses_what_it_cannot_attribute(monkeypatch):
  config = get_config("tiny")
  config.parallel = "pmap"
  with pytest.raises(ValueError, match="--profile needs config.parallel='jit' on CPU"):
    benchmark(config, batch_size=8, steps=2, profile=True)
  config.parallel = "jit"
  monkeypatch.setattr(jax, "devices", lambda *args: [type("Gpu", (), {"platform": "gpu"})()])
  with pytest.raises(ValueError, match="on a GPU, open a jax.profiler trace"):
    benchmark(config, batch_size=8, steps=2, profile=True)
