"""Finding 18 of issue 17: resuming training never runs code from a checkpoint file.

``optimizer.pt`` used to be read with ``torch.load(weights_only=False)``: a checkpoint folder
someone else wrote (a shared disk, a downloaded run) could carry a pickle whose
``__reduce__`` runs anything at resume. It is now read with ``weights_only=True``; the
genuine state still loads (``test_sft.py::test_resume_continues_from_the_saved_step`` resumes
through it), and a planted object is refused without being called.
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from safework.training.trainer import load_trusted_tensors  # noqa: E402


class _Planted:
    """Unpickling this calls ``Path.touch(marker)``: the stand-in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


def test_a_planted_object_is_refused_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "optimizer.pt"
    torch.save({"optimizer": {}, "scheduler": {}, "rng": _Planted(marker)}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_trusted_tensors(path)
    assert not marker.exists()


def test_the_states_a_checkpoint_holds_load(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))
    rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
    path = tmp_path / "optimizer.pt"
    state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
    torch.save({**state, "rng": rng}, path)
    saved = load_trusted_tensors(path)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    random.setstate(saved["rng"]["python"])
    torch.set_rng_state(saved["rng"]["torch"])
