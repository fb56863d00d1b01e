"""A GAN training whose loss or weights turn non-finite stops at once (``gan.run_training``),
naming the step, the terms and the precision, and keeps its last good checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tumorfab.synthesis import gan


class _Scaler:
    def __init__(self, enabled: bool):
        self.enabled = enabled

    def is_enabled(self) -> bool:
        return self.enabled


class FakeTrainer:
    """What ``run_training`` reads of a trainer; ``losses[step]`` is the step's loss,
    ``broken_after`` the step after which a weight is NaN (a NaN gradient under a finite loss)."""

    def __init__(self, losses: dict[int, float], scaler: bool = False, broken_after: int | None = None):
        self.losses, self.scaler, self.broken_after, self.steps = losses, _Scaler(scaler), broken_after, []
        self.precision = gan.precision_name(torch.float16 if scaler else torch.bfloat16, scaler)

    def train_step(self, step: int, *batch) -> dict[str, float]:
        self.steps.append(step)
        return {"d_loss": 1.0, "g_total": self.losses.get(step, 1.0)}

    def nonfinite_parameters(self) -> list[str]:
        return ["D.patch_head.weight"] if self.broken_after is not None and self.steps[-1] >= self.broken_after else []

    def state(self, step: int, rows: list, digest: str) -> dict:
        return {"step": step, "rows": rows, "digest": digest}


def _run(trainer: FakeTrainer, work: Path, total: int = 20) -> list[dict]:
    return gan.run_training(trainer, lambda step: (step,), total, 5, 2, work, "digest", "TF-GAN", [])


def _saved_step(work: Path) -> int:
    return torch.load(work / gan.CHECKPOINT, weights_only=False)["step"]


def test_a_non_finite_loss_stops_at_once_without_the_scaler(tmp_path):
    trainer = FakeTrainer({5: float("nan")})
    with pytest.raises(gan.NonFiniteTraining) as stopped:
        _run(trainer, tmp_path)
    message = str(stopped.value)
    assert "TF-GAN: loss non-finite at step 5 (g_total nan) under bf16 autocast" in message
    assert f"{tmp_path / gan.CHECKPOINT} (step 4) is the last good checkpoint" in message
    assert trainer.steps[-1] == 5 and _saved_step(tmp_path) == 4


def test_a_non_finite_loss_at_the_first_step_leaves_no_checkpoint(tmp_path):
    with pytest.raises(gan.NonFiniteTraining, match="step 0 .*no checkpoint was written"):
        _run(FakeTrainer({0: float("inf")}), tmp_path)
    assert not (tmp_path / gan.CHECKPOINT).exists()


def test_the_gradient_scaler_skips_a_few_non_finite_steps_as_pytorch_s_does(tmp_path):
    overflow = {step: float("inf") for step in range(3, 3 + gan.SCALER_SKIP_LIMIT)}
    rows = _run(FakeTrainer(overflow, scaler=True), tmp_path)
    assert len(rows) == 20 and _saved_step(tmp_path) == 20


def test_a_loss_that_stays_non_finite_under_the_scaler_stops(tmp_path):
    trainer = FakeTrainer({step: float("nan") for step in range(3, 20)}, scaler=True)
    with pytest.raises(gan.NonFiniteTraining, match=rf"step {3 + gan.SCALER_SKIP_LIMIT} for {gan.SCALER_SKIP_LIMIT + 1} steps in a row .*fp16 autocast \+ gradient scaler"):
        _run(trainer, tmp_path)
    # the skipped steps left the weights as they were: their checkpoints are good ones
    assert trainer.steps[-1] == 3 + gan.SCALER_SKIP_LIMIT and _saved_step(tmp_path) == 2 + gan.SCALER_SKIP_LIMIT


def test_weights_made_non_finite_under_a_finite_loss_are_never_checkpointed(tmp_path):
    with pytest.raises(gan.NonFiniteTraining, match=r"weights non-finite after step 7 \(D.patch_head.weight\).*\(step 6\) is the last good"):
        _run(FakeTrainer({}, broken_after=6), tmp_path)
    assert _saved_step(tmp_path) == 6


def test_bf16_on_the_cpu_runs_on_aten_s_kernels_and_restores_onednn():
    assert torch.backends.mkldnn.enabled
    with gan.precision_kernels(torch.bfloat16, torch.device("cpu")):
        assert not torch.backends.mkldnn.enabled
    assert torch.backends.mkldnn.enabled
    for dtype, device in ((None, "cpu"), (torch.float16, "cuda"), (torch.bfloat16, "cuda")):
        with gan.precision_kernels(dtype, torch.device(device)):
            assert torch.backends.mkldnn.enabled
