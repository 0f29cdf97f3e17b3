"""The heartbeat of long silent steps: one line per period, no carriage returns, a final line."""

from __future__ import annotations

import time

from wilson_core.progress import heartbeat


def test_a_long_step_says_it_is_still_running_then_done():
    lines: list[str] = []
    with heartbeat("exporting", every=0.05, say=lines.append, indent=""):
        time.sleep(0.23)
    assert len(lines) >= 4 and lines[0].startswith("exporting... ") and lines[-1].startswith("exporting: done in")
    assert not any("\r" in line for line in lines)


def test_a_short_step_says_nothing_and_errors_pass_through():
    lines: list[str] = []
    with heartbeat("quick", every=5, say=lines.append):
        pass
    assert lines == []
    try:
        with heartbeat("failing", every=5, say=lines.append):
            raise KeyError("x")
    except KeyError:
        pass
    assert lines == []


def test_progress_bars_are_off_when_wilson_writes_to_a_log():
    import subprocess
    import sys

    code = ("import os\nfrom wilson_core.cli import main\nmain(['--help'])\n"
            "print('TQDM', os.environ.get('TQDM_DISABLE'), os.environ.get('HF_HUB_DISABLE_PROGRESS_BARS'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "TQDM 1 1"
