"""The real command line: Ctrl-C leaves a checkpoint that --resume continues; two processes (gloo) train together."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _wilson(*args: str) -> list[str]:
    return [sys.executable, "-m", "wilson_core.cli", *args]


def test_ctrl_c_saves_a_checkpoint_that_resume_continues(tiny_model, data_dir, tmp_path):
    out = tmp_path / "run"
    common = ["--data", str(data_dir / "sft.jsonl"), "--base", str(tiny_model), "--out", str(out),
              "--batch-size", "2", "--max-length", "128", "--logging-steps", "1", "--save-steps", "1000", "--no-merge"]
    process = subprocess.Popen(_wilson("train", "lora-sft", *common, "--max-steps", "400"),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    seen = []
    deadline = time.monotonic() + 120
    assert process.stdout is not None
    for line in process.stdout:
        seen.append(line)
        if "step 3/400" in line:
            process.send_signal(signal.SIGINT)
            break
        assert time.monotonic() < deadline, "".join(seen)
    rest, _ = process.communicate(timeout=120)
    output = "".join(seen) + rest
    assert process.returncode == 0, output
    assert "interrupted; checkpoint saved" in output and "--resume" in output
    metrics = json.loads((out / "metrics.json").read_text())
    stopped = metrics["steps"]
    assert metrics["interrupted"] is True and 3 <= stopped < 400
    assert (out / "checkpoints" / f"checkpoint-{stopped}" / "adapter_model.safetensors").exists()
    assert (out / "adapter" / "adapter_model.safetensors").exists()

    resumed = subprocess.run(_wilson("train", "lora-sft", *common, "--max-steps", str(stopped + 2), "--resume"),
                             capture_output=True, text=True, env=ENV, timeout=180)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == stopped + 2 and metrics["interrupted"] is False


@pytest.mark.skipif(shutil.which("torchrun") is None and not os.path.exists(os.path.join(os.path.dirname(sys.executable), "torchrun")),
                    reason="torchrun not installed")
def test_two_cpu_processes_train_one_adapter_with_gloo(tiny_model, data_dir, tmp_path):
    """What 'accelerate launch' / 'torchrun' do on many GPUs, tested with two CPU processes."""
    out = tmp_path / "ddp"
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    result = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "--master_port", "29561", "-m", "wilson_core.cli",
         "train", "lora-sft", "--data", str(data_dir / "sft.jsonl"), "--base", str(tiny_model), "--out", str(out),
         "--batch-size", "2", "--max-length", "128", "--max-steps", "2", "--no-merge"],
        capture_output=True, text=True, env=ENV, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    # 2 steps x 2 examples x 2 processes = 8 of the 16 examples: half an epoch
    assert metrics["steps"] == 2 and metrics["epochs"] == pytest.approx(0.5)
    assert result.stdout.count("Training done") == 1  # only rank 0 reports
    assert (out / "adapter" / "adapter_model.safetensors").exists()
