"""``make gpu-check`` (tumorfab.gpu_check) on the CPU: its SMALL run, and how it fails.

No GPU here, so the check runs its SMALL items on the CPU (~1 min on 2
cores): the real BraTS case (../shared/data/real, CI has it) at 3 mm, narrow
networks, one or two steps each.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from tumorfab import gpu_check
from tumorfab.device import DETERMINISTIC_ENV
from tumorfab.gpu_check import ITEMS, main, selected_items, state_differences
from tumorfab.synthesis.pix2pix import losses as pix2pix_losses

needs_real_data = pytest.mark.skipif(
    not gpu_check.BRATS_CASE.is_dir() or not gpu_check.HEALTHY_HEAD.is_file(),
    reason=f"{gpu_check.REAL_DATA} is not there (CI has it)",
)


def table_rows(markdown: str) -> dict[str, list[str]]:
    """The table's rows by item: each row's cells."""
    rows = {}
    for line in markdown.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] in ITEMS:
            rows[cells[0]] = cells
    return rows


@pytest.mark.slow
@needs_real_data
def test_the_small_cpu_run_passes_every_item_and_says_no_gpu_was_checked(tmp_path):
    table = tmp_path / "gpu_check.md"
    result = subprocess.run(
        [sys.executable, "-m", "tumorfab.gpu_check", "--cpu", "--markdown", str(table)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.splitlines()[0].startswith("NO GPU CHECKED (--cpu given)")
    rows = table_rows(table.read_text())
    assert list(rows) == list(ITEMS)
    for item, cells in rows.items():
        assert cells[1] == "cpu" and cells[-1].startswith("passed"), cells
    assert "random weights" in rows["synthstrip"][-1]
    assert "resumed state = saved state" in rows["checkpoint-resume"][-1]
    assert table_rows(result.stdout) == rows


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple:
    """The check's input (``GPUCheck.prepare``: the BraTS case normalized and at 3 mm),
    made once for the tests of how an item fails: the case folder and its description."""
    work = tmp_path_factory.mktemp("gpu_check_input")
    check = gpu_check.GPUCheck(
        torch.device("cpu"), gpu_check.SMALL, work, gpu_check.BRATS_CASE, gpu_check.HEALTHY_HEAD, None, threads=1
    )
    described = check.prepare()
    return check.case_dir, described


def reuse_prepared(monkeypatch, prepared) -> None:
    """``main`` takes the prepared input instead of preparing it again."""
    case_dir, described = prepared

    def prepare(check):
        check.case_dir = case_dir
        return described

    monkeypatch.setattr(gpu_check.GPUCheck, "prepare", prepare)


@needs_real_data
def test_a_non_finite_loss_fails_its_item_and_the_command(tmp_path, monkeypatch, prepared):
    reuse_prepared(monkeypatch, prepared)
    real_generator_loss = pix2pix_losses.generator_loss

    def nan_generator_loss(*args, **kwargs):
        total, parts = real_generator_loss(*args, **kwargs)
        return total * float("nan"), {**parts, "g_total": float("nan")}

    monkeypatch.setattr(pix2pix_losses, "generator_loss", nan_generator_loss)
    table = tmp_path / "gpu_check.md"
    assert main(["--cpu", "--only", "pix2pix-fp32", "--markdown", str(table)]) == 1
    rows = table_rows(table.read_text())
    assert list(rows) == ["pix2pix-fp32"]
    assert rows["pix2pix-fp32"][-1] == "FAILED: non-finite loss at step 0: g_total: 1 of 1 values"
    assert "0 of 1 items passed" in table.read_text()


@needs_real_data
def test_an_exception_fails_its_item_and_the_items_that_need_it(tmp_path, monkeypatch, prepared):
    reuse_prepared(monkeypatch, prepared)

    def broken(check):
        raise RuntimeError("planning failed\nsecond line")

    monkeypatch.setitem(ITEMS, "nnunet-train", (broken, ()))
    table = tmp_path / "gpu_check.md"
    assert main(["--cpu", "--only", "feature-extractor", "--markdown", str(table)]) == 1
    rows = table_rows(table.read_text())
    assert rows["nnunet-train"][-1] == "FAILED: RuntimeError: planning failed"
    assert rows["feature-extractor"][-1] == "FAILED: needs nnunet-train, which failed"


def test_only_adds_the_items_an_item_needs_in_running_order():
    assert selected_items(["checkpoint-resume", "pix2pix-bf16"]) == ["nnunet-train", "pix2pix-bf16", "checkpoint-resume"]
    assert selected_items(None) == list(ITEMS)
    with pytest.raises(SystemExit, match="unknown items"):
        selected_items(["tfgan-fp8"])


def test_state_differences_names_each_leaf_that_differs():
    saved = {"generator": {"w": torch.ones(3)}, "rows": [{"step": 0}], "rng": {"numpy": ("MT", torch.zeros(2).numpy())}}
    restored = {"generator": {"w": torch.tensor([1.0, 1.0, 1.5])}, "rows": [{"step": 0}], "rng": {"numpy": ("MT", torch.ones(2).numpy())}}
    assert state_differences(saved, saved) == []
    assert state_differences(saved, restored) == ["/generator/w", "/rng/numpy/1"]
    assert state_differences(saved, {**saved, "extra": 1}) == ["/ (keys)"]



def test_the_deterministic_switch_sets_torch_s_flags_when_a_device_is_resolved():
    """In a fresh interpreter: a device resolved without the switch leaves torch's
    flags alone; with it, they are set (one process, the switch turned on in between)."""
    code = (
        "import os, torch\n"
        "from tumorfab.device import DETERMINISTIC_ENV, resolve_device\n"
        "for switch in ('', '1'):\n"
        "    os.environ[DETERMINISTIC_ENV] = switch\n"
        "    resolve_device('cpu')\n"
        "    print(torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),"
        " torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, os.environ.get('CUBLAS_WORKSPACE_CONFIG'))"
    )
    unset = ("CUBLAS_WORKSPACE_CONFIG", DETERMINISTIC_ENV)
    environment = {key: value for key, value in os.environ.items() if key not in unset}
    result = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    without, with_switch = (line.split() for line in result.stdout.splitlines())
    assert without == ["False", "False", "False", "False", "None"]
    assert with_switch == ["True", "True", "True", "False", ":4096:8"]
