"""The notebooks run top to bottom (with few steps), so they never rot."""
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def notebook_source(name: str, **constants) -> str:
  with open(os.path.join(ROOT, "notebooks", name)) as f:
    cells = json.load(f)["cells"]
  code = "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
  for key, value in constants.items():
    code, count = re.subn(rf"^{key} = .*$", f"{key} = {value!r}", code, flags=re.M)
    assert count == 1, f"{key} is not set in exactly one place in {name}"
  return code


def run_notebook(tmp_path, name: str, **constants) -> str:
  """Runs the notebook's code cells in a fresh interpreter in tmp_path; returns its stdout."""
  code = "import matplotlib\nmatplotlib.use('Agg')\n" + notebook_source(name, **constants)
  env = dict(os.environ, PYTHONPATH=ROOT)
  result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


def test_quickstart_notebook_runs(tmp_path):
  stdout = run_notebook(tmp_path, "msm_quickstart.ipynb", TOTAL_STEPS=4)
  assert '"encoder"' in stdout and "encoder parameters" in stdout
  workdir = tmp_path / "workdirs" / "notebook_tiny"
  assert (workdir / "figures" / "reconstruction_0000004.png").exists()


def test_segmentation_notebook_runs(tmp_path):
  stdout = run_notebook(tmp_path, "msm_segmentation.ipynb", NUM_EXAMPLES=16, PRETRAIN_STEPS=4,
                        FINETUNE_STEPS=4)
  assert "'mean_iou'" in stdout and "'trainable_params'" in stdout
  root = tmp_path / "workdirs" / "notebook_segmentation"
  assert (root / "segmentation" / "eval.json").exists()
  assert (root / "pretrain" / "figures" / "reconstruction_0000004.png").exists()
