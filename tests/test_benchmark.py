"""The benchmark's figures: FLOP count, the JSON fields, and the per-module profile."""
import jax
import pytest

from configs.pretrain import get_config
from msm_jax.models.flops import msm_train_flops_per_sample
from msm_jax.training.benchmark import benchmark


def test_vit_s_step_flops_match_the_reference_count():
  # ~19.9 GFLOP per sample: the count for the paper's ViT-S MAE train step (224x224, 75 % masked).
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
  # A compile call, 3 peak samples, then 8 timed calls in 4 stretches of 2, each followed by 3.
  assert events == ["call"] + ["peak"] * 3 + (["call"] * 2 + ["peak"] * 3) * 4
  assert result["peak_flops_per_sec"] == 8e9  # the median of 1..15 GFLOP/s
  assert result["peak_flops_per_sec_range"] == [1e9, 15e9]
  assert result["steps_per_call"] == 2
  # Each stretch against the 6 samples around it: medians 3.5, 6.5, 9.5 and 12.5 GFLOP/s.
  stretch_seconds = result["seconds_per_step_by_stretch"]
  assert sum(stretch_seconds) / 4 == pytest.approx(result["seconds_per_step"])
  expected = [result["step_flops"] / t / (p * 1e9)
              for t, p in zip(stretch_seconds, [3.5, 6.5, 9.5, 12.5])]
  assert result["fraction_of_peak_by_stretch"] == pytest.approx(expected)
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
