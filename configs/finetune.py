r"""Finetuning configs: `--config=configs/finetune.py:VARIANT`.

Variants TASK_SIZE with TASK in {har, seg, audio} (activity classification from WiFi CSI, LTE/NR
spectrogram segmentation, sound clip classification from log-mel spectrograms) and SIZE in
{tiny, mid (CPU), vit_s, vit_m, vit_l (the paper), maskspec_tiny, maskspec_small, maskspec_base}. The
model block is the pretraining variant's (configs/pretrain.py), so a checkpoint of pretraining
variant SIZE loads into finetuning variant TASK_SIZE:

  python -m launch.finetune --config=configs/finetune.py:seg_tiny --workdir=/tmp/seg \
      --config.init_from=/tmp/msm_tiny [--config.mode=full --config.total_steps=500]

Without init_from the same network trains from scratch (give it mode=full). Audio:

  python -m launch.finetune --config=configs/finetune.py:audio_maskspec_tiny --workdir=/tmp/snd \
      --config.init_from=/tmp/maskspec --config.data.source=tfds --config.data.data_dir=DIR
"""
import ml_collections

from configs import pretrain

TASK_OF = {"har": "classification", "seg": "segmentation", "audio": "classification"}
# Data of each task: the built-in generator by default, or the tfds dataset of the same name.
GENERATOR_OF = {"har": "csi_har", "seg": "lte_nr", "audio": "audio_events"}
DATASET_OF = {"har": "csi_har", "seg": "radio_segmentation", "audio": "audio"}
# (time or subcarriers, frequency or packets, channels). HAR: 3 antennas as channels. Audio:
# frames of 10 ms x mel bins; the paper sizes take MaskSpec's 10.24 s x 128 (as the dataset).
SHAPE_OF = {("har", "tiny"): (32, 64, 3), ("seg", "tiny"): (64, 64, 1),
            ("audio", "tiny"): (64, 64, 1),
            ("har", "paper"): (112, 496, 3), ("seg", "paper"): (256, 256, 1),
            ("audio", "paper"): (1024, 128, 1)}


def get_config(variant: str = "seg_tiny"):
  task, _, size = (variant or "seg_tiny").partition("_")
  if task not in TASK_OF or not size:
    raise ValueError(f"finetune variant {variant!r} must be TASK_SIZE with TASK in "
                     f"{sorted(TASK_OF)}, e.g. seg_tiny, har_vit_s or audio_maskspec_base.")
  base = pretrain.get_config(size)
  cpu = size in pretrain.CPU_SIZES
  c = ml_collections.ConfigDict()
  c.variant = variant
  c.task = TASK_OF[task]
  c.seed = 0
  c.init_from = ""  # a pretraining workdir; empty = train from scratch
  c.init_step = -1  # its checkpoint step; -1 = the latest
  c.input_shape = SHAPE_OF[(task, "tiny" if cpu else "paper")]
  c.model = base.model
  c.model.drop_path = 0.1  # the paper's finetuning recipe; only trainable blocks are affected

  # What trains on top of the pretrained encoder:
  #   'paper_probe'  the radio foundation model paper's probes. Activity: the transformer blocks
  #                  frozen, the patch embedding re-initialised and trained (CSI's antennas are
  #                  not the pretraining's channels), plus the head. Segmentation: the encoder
  #                  frozen; the pretrained decoder's first decoder_blocks blocks and the head train.
  #   'linear'       a strict linear probe: the encoder frozen, a linear head on its tokens.
  #   'partial'      the head, the encoder's final norm and its last trainable_blocks blocks.
  #   'full'         everything, with layer-wise lr decay (and what trains from scratch).
  # The CPU activity default is 'full' without decay: at 0.07M parameters no probe of the frozen
  # tiny encoder gets off chance on CSI (docs/study.md), whole-network training does.
  c.mode = "full" if (task == "har" and cpu) else "linear" if task == "audio" else "paper_probe"
  c.trainable_blocks = 2
  c.layer_decay = 1.0 if (task == "har" and cpu) else 0.75
  c.pool = "cls"  # classification: 'cls' token or 'mean' of the patch tokens
  # Segmentation: pretrained decoder blocks in the head (the paper: 2; the tiny decoder has 1);
  # the strict 'linear' probe has none.
  c.decoder_blocks = min(2, c.model.decoder.depth)
  c.label_smoothing = 0.0
  c.mixup_alpha = 0.0  # classification: > 0 mixes neighbouring samples, weight ~ Beta(a, a)
  c.class_weights = ()  # per-class loss weights, e.g. (0.2, 1.0, 1.0); () = equal

  c.data = ml_collections.ConfigDict()
  c.data.source = "synthetic"  # the generator below, offline; or "tfds" (launch/make_dataset.py)
  c.data.generator = GENERATOR_OF[task]
  c.data.name = DATASET_OF[task]
  c.data.data_dir = ""
  # 'dataset': log power standardised with the train split's statistics; 'paper': the radio
  # foundation model paper's fixed pipeline, for its imported weights (msm_jax/data/normalize.py).
  c.data.normalization = "dataset"
  c.data.split = "train"
  # Held-out examples validated during training (every eval_every steps), kept in memory.
  c.data.val_split = "validation"
  c.data.val_examples = 128 if cpu else 512
  c.data.eval_split = "test"  # for generated data: held-out domains where the generator has them
  c.data.eval_examples = 256 if cpu else 1024  # generated data; tfds: 0 = whole split
  # > 0: train on a fixed pool of this many generated examples (a new order every epoch),
  # generated once and cached under data.cache_dir ('' = $MSM_JAX_CACHE or ~/.cache/msm_jax)
  # with the validation and test examples, so reruns start at once; 0: a fresh example for every
  # step. Generated data only: a tfds split takes slices instead, e.g. data.split='train[:64]'.
  c.data.num_examples = 1024 if cpu else 0
  c.data.cache_dir = ""
  c.data.shuffle_buffer = 10_000
  c.data.prefetch = 2
  # Processes generating synthetic examples: -1 = none on CPU, one per core (but one) on an
  # accelerator, where one numpy thread cannot keep up with the step. The tfds source ignores it.
  c.data.workers = -1

  # CPU sizes: measured on the built-in data (README, "Finetuning defaults"): the probes want a
  # large rate; when you change config.mode, use base_lr 0.02 for 'linear' / 'paper_probe' and
  # 0.005 for 'partial' / 'full'.
  c.batch_size = 64 if cpu else 256
  c.total_steps = (3000 if task == "har" else 600) if cpu else 10_000
  c.warmup_steps = c.get_ref("total_steps") // 10
  c.base_lr = (0.005 if c.mode in ("partial", "full") else 0.02) if cpu else 5e-4
  c.b1, c.b2 = 0.9, 0.999
  c.weight_decay = 0.05
  c.grad_clip_norm = 0.0
  c.skip_nonfinite = False  # as in configs/pretrain.py: NaN/inf steps stop the run, or are skipped
  c.grad_accum_steps = 1

  c.parallel = "jit"
  c.steps_per_call = 0  # automatic, as in configs/pretrain.py
  c.log_every = 50 if cpu else 100
  c.checkpoint_every = 300 if cpu else 2_000
  c.keep_checkpoints = 2
  c.figure_every = c.checkpoint_every if task == "seg" else 0  # segmentation overlays
  c.figure_examples = 4  # examples drawn; 0 also skips the evaluation's figures
  # val_accuracy (classification) or val_mean_iou (segmentation) of the data.val_examples is
  # logged every eval_every steps (a reference: it follows checkpoint_every; 0 disables it), and
  # with keep_best the params that scored highest are kept in WORKDIR/best too.
  c.eval_every = c.get_ref("checkpoint_every")
  c.keep_best = True
  c.eval_batch_size = 64
  return c
