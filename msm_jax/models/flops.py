"""Analytic FLOP count of an MSM train step (matrix products only, as in the MAE literature)."""


def transformer_flops(tokens: int, width: int, depth: int, mlp_dim: int) -> int:
  """Forward FLOPs of `depth` blocks on one sequence: QKV/out projections, MLP, attention."""
  projections = 2 * tokens * (4 * width * width + 2 * width * mlp_dim)
  attention = 2 * 2 * tokens * tokens * width  # q.k^T and probs.v
  return depth * (projections + attention)


def msm_train_flops_per_sample(model_config, input_shape, num_visible: int) -> int:
  """Forward + backward (= 3 x forward) FLOPs of one sample's MSM train step."""
  (h, w, c), (ph, pw) = input_shape, model_config["patch_size"]
  n = (h // ph) * (w // pw)
  cls = 1 if model_config["use_cls"] else 0
  enc, dec = model_config["encoder"], model_config["decoder"]
  pixels = ph * pw * c
  forward = (2 * n * pixels * enc["width"]  # patch embedding (all patches, then gathered)
             + transformer_flops(num_visible + cls, enc["width"], enc["depth"], enc["mlp_dim"])
             + 2 * (num_visible + cls) * enc["width"] * dec["width"]  # decoder embedding
             + transformer_flops(n + cls, dec["width"], dec["depth"], dec["mlp_dim"])
             + 2 * n * dec["width"] * pixels)  # pixel prediction
  return 3 * forward
