r"""Import PyTorch MAE weights as an msm-jax pretraining workdir.

  python -m launch.import_checkpoint --input=pretrained_small_75.pth --workdir=/tmp/msm_paper_s
  python -m launch.import_checkpoint --input=/path/to/hf_model_dir --workdir=/tmp/msm_hf

--input: the radio foundation model paper's MSM weights or any facebookresearch/mae checkpoint
(.pth, or .safetensors), or a Hugging Face ViTMAEForPreTraining save_pretrained directory
(config.json + model.safetensors or pytorch_model.bin). The format is recognised from the tensor
names (--format=mae|hf to insist). Files are read without running code (torch.load with
weights_only=True, or safetensors); needs `pip install 'msm-jax[torch]'`.

Writes a step-0 checkpoint and config.json into --workdir, then prints the commands that finetune
from it and continue pretraining it. Anything that does not map onto an msm-jax model fails with
one line naming the file and tensor, and exit status 1.
"""
import shlex

from absl import flags

from launch import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("input", None, "A .pth/.bin/.safetensors file or a Hugging Face model dir.")
flags.DEFINE_string("workdir", None, "The new pretraining workdir (must be empty or absent).")
flags.DEFINE_enum("format", None, ["mae", "hf"], "The checkpoint layout; default: recognised.")
flags.DEFINE_integer("num_heads", None, "Encoder attention heads; MAE files do not store them "
                     "(default: the msm-jax preset of the same shape, e.g. vit_s: 8).")
flags.DEFINE_integer("decoder_num_heads", None, "Decoder attention heads, likewise.")
flags.mark_flags_as_required(["input", "workdir"])


def main(argv):
  del argv
  from msm_jax.checkpoint.importer import import_checkpoint
  from msm_jax.metrics.logger import quiet_library_logs
  quiet_library_logs()
  imported = import_checkpoint(FLAGS.input, FLAGS.workdir, FLAGS.format, FLAGS.num_heads,
                               FLAGS.decoder_num_heads)  # CheckpointImportError: one line (cli)
  for note in imported.notes:
    print(f"Note: {note}")
  workdir = shlex.quote(imported.workdir)
  command = lambda *words, prefix: " ".join(
      list(words) + [shlex.quote(f) for f in imported.overrides if f.startswith(prefix)])
  print(f"Imported {FLAGS.input} ({imported.layout.description}) into {workdir}.")
  print("Finetune from it:\n  " + command(
      "python -m launch.finetune", f"--config=configs/finetune.py:seg_{imported.config.variant}",
      "--workdir=FINETUNE_WORKDIR", f"--config.init_from={workdir}", prefix="--config.model."))
  print("Continue pretraining it:\n  " + command(
      "python -m launch.pretrain", f"--config=configs/pretrain.py:{imported.config.variant}",
      f"--workdir={workdir}", prefix="--config."))
  if imported.layout.format == "mae":
    print("The paper's weights were trained on inputs normalised as it did: add "
          "--config.data.normalization=paper to either command.")


if __name__ == "__main__":
  cli.run(main)
