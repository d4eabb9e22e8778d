r"""MSM pretraining configs: `--config=configs/pretrain.py:VARIANT`.

Variants: tiny (CPU quick start and tests), mid (the CPU study, 0.8M parameters), vit_s, vit_m,
vit_l (the radio foundation model paper), maskspec_tiny, maskspec_small, maskspec_base (MaskSpec
encoders, on log-mel audio; see launch.make_dataset --dataset=audio). Anything can be overridden on the command line, e.g.

  python -m launch.pretrain --config=configs/pretrain.py:vit_s --workdir=/tmp/msm \
      --config.total_steps=200 --config.batch_size=32 --config.parallel=pmap --config.log_every=10
"""
import ml_collections

from msm_jax.models.presets import DECODERS, ENCODERS, lookup

# The paper pairs ViT-S with a 256-wide decoder and everything else with the standard one.
DECODER_FOR = {"tiny": "tiny", "mid": "mid", "vit_s": "vit_s"}
# Sizes meant for CPUs: 64x64 spectrograms, 8x8 patches and short schedules.
CPU_SIZES = ("tiny", "mid")


def get_config(variant: str = "tiny"):
  variant = variant or "tiny"
  c = ml_collections.ConfigDict()
  c.variant = variant
  c.seed = 0

  # Spectrogram: time frames x frequency bins x channels; the patch must divide both sides.
  # MaskSpec's log-mel input is 1024 frames of 10 ms x 128 mel bins, the audio dataset's default.
  audio = variant.startswith("maskspec")
  cpu = variant in CPU_SIZES
  c.input_shape = (64, 64, 1) if cpu else (1024, 128, 1) if audio else (224, 224, 1)
  c.model = ml_collections.ConfigDict()
  c.model.encoder_name = variant
  c.model.encoder = lookup(ENCODERS, variant, "config variant")
  c.model.decoder_name = DECODER_FOR.get(variant, "standard")
  c.model.decoder = lookup(DECODERS, c.model.decoder_name, "config.model.decoder_name")
  c.model.patch_size = (8, 8) if cpu else (16, 16)
  c.model.use_cls = True
  # Compute dtype: 'auto' = bfloat16 on GPU/TPU, float32 on CPU (faster there); or either name.
  c.model.dtype = "auto"
  c.model.drop_path = 0.0

  c.mask_ratio = 0.75
  c.norm_pix_loss = False

  c.data = ml_collections.ConfigDict()
  c.data.source = "synthetic"  # built in, offline; or "tfds" (see launch/make_dataset.py)
  # Generator of the synthetic source: radio scenes, or sound events for MaskSpec.
  c.data.generator = "audio_events" if audio else "synthetic"
  c.data.name = "audio" if audio else "radio_pretrain"  # the tfds dataset (launch.make_dataset)
  c.data.data_dir = ""
  # 'dataset': log power standardised with the train split's statistics; 'paper': the radio
  # foundation model paper's fixed pipeline, for its imported weights (msm_jax/data/normalize.py).
  c.data.normalization = "dataset"
  c.data.split = "train"
  # Held-out examples validated during training (every eval_every steps), kept in memory.
  c.data.val_split = "validation"
  c.data.val_examples = 256 if cpu else 512
  # > 0: train on a fixed pool of this many generated examples (a new order every epoch),
  # generated once and cached under data.cache_dir ('' = $MSM_JAX_CACHE or ~/.cache/msm_jax)
  # with the validation and test examples, so reruns start at once; 0: a fresh example for every
  # step. Generated data only: a tfds split takes slices instead, e.g. data.split='train[:64]'.
  c.data.num_examples = 0
  c.data.cache_dir = ""
  c.data.shuffle_buffer = 10_000
  c.data.prefetch = 2
  # Processes generating synthetic examples: -1 = none on CPU, one per core (but one) on an
  # accelerator, where one numpy thread cannot keep up with the step. The tfds source ignores it.
  c.data.workers = -1

  # Optimisation (MAE recipe): lr = base_lr x batch_size / 256, warm-up then half-cycle cosine.
  c.batch_size = 64 if cpu else 256  # global, over all devices and hosts
  c.total_steps = 1000 if cpu else 100_000
  # 10% warm-up (the paper: 40 of 400 epochs); a reference, so --config.total_steps=N moves it.
  c.warmup_steps = c.get_ref("total_steps") // 10
  c.base_lr = 1e-3
  c.b1, c.b2 = 0.9, 0.95
  c.weight_decay = 0.05
  c.grad_clip_norm = 0.0  # 0 disables clipping
  # A step whose loss or gradient norm is NaN/inf stops the run (nothing non-finite is saved);
  # True skips such updates instead (counted in the log and status.json).
  c.skip_nonfinite = False
  c.grad_accum_steps = 1  # micro-batches per step (same global batch, less memory)

  c.parallel = "jit"  # or "pmap"
  # Train steps per compiled call (a lax.scan). >1 saves per-call overhead: on CPU the step's
  # temporaries are then allocated once per call (see docs/performance.md). 0 = automatic:
  # up to 4 on CPU, dividing the cadences below so that calls end on them; 1 on accelerators.
  c.steps_per_call = 0
  c.log_every = 50 if cpu else 100
  c.checkpoint_every = 250 if cpu else 2_000
  c.keep_checkpoints = 3
  c.figure_every = 250 if cpu else 5_000  # 0 disables figures
  c.figure_examples = 4
  # The masked-reconstruction loss of the data.val_examples, with the same masks every time, is
  # logged as val_loss every eval_every steps; a reference, so it follows checkpoint_every.
  # 0 disables it.
  c.eval_every = c.get_ref("checkpoint_every")
  c.eval_batch_size = 64
  return c
