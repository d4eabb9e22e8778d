"""Finetuning on a labelled task from a pretraining checkpoint (or from scratch), then evaluation.

The same train loop as pretraining (msm_jax/training/loop.py) runs a FinetuneTask: activity
classification (config.task='classification') or spectrogram segmentation ('segmentation').
Frozen parameters are expressed in the optimiser (no update, no optimizer state) and wrapped in
stop_gradient inside the loss, so XLA never computes their gradients either.
"""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from msm_jax.checkpoint.manager import restore_params
from msm_jax.data.source import make_source, validation_batches
from msm_jax.finetune.evaluate import confusion, evaluate, task_metrics
from msm_jax.finetune.init import check_compatible, merge_pretrained
from msm_jax.models.build import build_encoder, compute_dtype, model_description
from msm_jax.models.heads import Classifier, Segmenter
from msm_jax.training.loop import Task, train
from msm_jax.training.optimizer import FROZEN, finetune_labels, make_optimizer

TASKS = ("classification", "segmentation")


def decoder_blocks(config) -> int:
  """Pretrained decoder blocks in a segmentation head: none for the strict linear probe."""
  return 0 if config.mode == "linear" else config.decoder_blocks


def reinitialises_patch_embed(config) -> bool:
  """The paper's activity probe trains a new patch embedding (CSI antennas are not the
  pretraining's channels) under the frozen pretrained blocks."""
  return config.mode == "paper_probe" and config.task == "classification"


def build_model(config, num_classes: int):
  """The finetuning network of `config` (config.model as in pretraining, plus the task fields)."""
  encoder = build_encoder(config.model, drop_path=config.model.drop_path)
  if config.task == "classification":
    return Classifier(encoder, num_classes, pool=config.pool)
  if config.task == "segmentation":
    dec = config.model.decoder
    return Segmenter(encoder, num_classes, width=dec.width, depth=decoder_blocks(config),
                     num_heads=dec.num_heads, mlp_dim=dec.mlp_dim,
                     dtype=compute_dtype(config.model.dtype))
  raise ValueError(f"config.task={config.task!r} must be one of {TASKS}.")


class FinetuneTask(Task):
  """Cross-entropy on class ids (B,) or per-pixel class maps (B, Nt, Nf).

  `frontend`: the audio front-end settings of the data (Source.frontend), None for radio and CSI;
  saved with the model so that launch.predict turns audio files into the same inputs.
  """

  def __init__(self, config, classes, stats, frontend: dict | None = None):
    self.config = config
    self.classes = tuple(classes)
    self.stats = dict(stats)
    self.frontend = frontend
    self.input_shape = tuple(config.input_shape)
    if len(self.classes) < 2:
      data = config.data.generator if config.data.source == "synthetic" else config.data.name
      raise ValueError(f"config.data ({config.data.source}: {data}) has class names "
                       f"{self.classes}; finetuning needs a labelled dataset.")
    self.model = build_model(config, len(self.classes))
    weights = tuple(config.class_weights)
    if weights and (len(weights) != len(self.classes) or min(weights) <= 0):
      raise ValueError(f"config.class_weights={weights} must be {len(self.classes)} positive "
                       f"numbers, one per class {self.classes}.")
    self.class_weights = np.asarray(weights or [1.0] * len(self.classes), np.float32)
    shapes = jax.eval_shape(self.init_params, jax.random.key(0))
    self.labels = finetune_labels(shapes, mode=config.mode, depth=config.model.encoder.depth,
                                  trainable_blocks=config.trainable_blocks,
                                  train_patch_embed=reinitialises_patch_embed(config))
    self.num_trainable = sum(int(np.prod(s.shape)) for s, l in zip(
        jax.tree.leaves(shapes), jax.tree.leaves(self.labels)) if l != FROZEN)
    self.num_params = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes))
    self.pretrained = None
    if config.init_from:
      step = None if config.init_step < 0 else config.init_step
      self.pretrained, pretrained_config = restore_params(config.init_from, step)
      decoder_depth = decoder_blocks(config) if config.task == "segmentation" else 0
      check_compatible(config.model, pretrained_config, config.init_from, decoder_depth)
    self._apply = jax.jit(lambda params, images: self.model.apply({"params": params}, images))
    # The metric validated during training (val_accuracy / val_mean_iou), and kept the best of.
    self.best_metric = "mean_iou" if config.task == "segmentation" else "accuracy"
    self._val_batches = None  # read on first use

  def init_params(self, rng):
    images = jnp.zeros((1,) + self.input_shape, jnp.float32)
    return self.model.init(rng, images)["params"]

  def pretrained_params(self, params):
    if self.pretrained is None:
      return None
    pretrained = self.pretrained
    if reinitialises_patch_embed(self.config):
      encoder = {k: v for k, v in pretrained["encoder"].items() if k != "patch_embed"}
      pretrained = dict(pretrained, encoder=encoder)
      logging.info("config.mode='paper_probe': the patch embedding starts afresh and trains.")
    params, loaded = merge_pretrained(params, pretrained, tuple(self.config.model.patch_size))
    logging.info("Loaded %d pretrained tensors from %s.", len(loaded), self.config.init_from)
    return params

  def make_optimizer(self, config, schedule):
    return make_optimizer(config, schedule, self.labels)

  def logits(self, params, images, rng=None):
    """Training (rng: drop path on) or inference logits, float32."""
    if rng is None:
      return self.model.apply({"params": params}, images)
    return self.model.apply({"params": params}, images, deterministic=False,
                            rngs={"dropout": rng})

  def loss_fn(self, params, batch, rng, sample_ids):
    params = jax.tree.map(lambda p, l: jax.lax.stop_gradient(p) if l == FROZEN else p,
                          params, self.labels)
    # Devices of a pmap hold different samples, so their drop-path draws must differ too.
    rng = jax.random.fold_in(rng, sample_ids[0])
    images, labels = batch["image"], batch["label"]
    targets = optax.smooth_labels(jax.nn.one_hot(labels, len(self.classes)),
                                  self.config.label_smoothing)
    if self.config.mixup_alpha > 0 and self.config.task == "classification":
      # Mixup with the neighbouring sample of the (per-device) batch: one weight per batch.
      mix = jax.random.beta(jax.random.fold_in(rng, 1), self.config.mixup_alpha,
                            self.config.mixup_alpha)
      images = mix * images + (1 - mix) * jnp.roll(images, 1, axis=0)
      targets = mix * targets + (1 - mix) * jnp.roll(targets, 1, axis=0)
    logits = self.logits(params, images, rng)
    per_item = optax.softmax_cross_entropy(logits, targets)
    weights = jnp.asarray(self.class_weights)[labels]
    loss = jnp.sum(per_item * weights) / jnp.sum(weights)
    accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == labels)
    return loss, {"accuracy": accuracy}

  def predict(self, params, images):
    """Class probabilities (B, K) or per-pixel probabilities (B, Nt, Nf, K)."""
    return jax.nn.softmax(self._apply(params, jnp.asarray(images)), axis=-1)

  def validate(self, params):
    if self._val_batches is None:
      self._val_batches = validation_batches(self.config)
    matrix, _ = confusion(self, params, self._val_batches)
    return {self.best_metric: task_metrics(self.config, matrix, self.classes)[self.best_metric]}

  def export(self, params):
    description = model_description(self.config.model, self.input_shape)
    description.update(task=self.config.task, classes=list(self.classes), stats=self.stats,
                       pool=self.config.pool, decoder_blocks=decoder_blocks(self.config),
                       frontend=self.frontend)
    return params["encoder"], description

  def save_figure(self, params, images, step, workdir):
    if self.config.task != "segmentation":
      return None
    from msm_jax.metrics.figures import save_segmentation_figure  # matplotlib only when drawn
    prediction = np.asarray(self.predict(params, images).argmax(-1))
    path = os.path.join(workdir, "figures", f"segmentation_{step:07d}.png")
    return save_segmentation_figure(path, np.asarray(images)[..., 0], None, prediction,
                                    self.classes, title=f"finetuning step {step}")


def finetune(config, workdir: str):
  """Finetunes (from config.init_from, or from scratch), then evaluates on config.data.eval_split.

  Returns (final train state, evaluation metrics dict). Callable from Colab; launch/finetune.py
  is a thin CLI over it. A rerun with the same workdir resumes training.
  """
  source = make_source(config.data, tuple(config.input_shape), config.seed)
  task = FinetuneTask(config, source.classes, source.stats, source.frontend)
  logging.info("Finetuning %s (%s): %d of %d parameters trainable.", config.task, config.mode,
               task.num_trainable, task.num_params)
  state = train(config, workdir, task, source)
  eval_source = make_source(config.data, tuple(config.input_shape), config.seed,
                            split=config.data.eval_split)
  metrics = evaluate(task, jax.device_get(state.params), eval_source, config, workdir)
  metrics.update(trainable_params=task.num_trainable, total_params=task.num_params)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "eval.json"), "w") as f:
      json.dump(metrics, f, indent=2)
  return state, metrics
