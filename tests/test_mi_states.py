"""Hidden states for ``analyze mi`` (``training/mi_states.py``) on the tiny random Llama: one row
per answer token, the same whatever the batch (padding never leaks in), and layers checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from safework.training.mi_states import (
    Item,
    answer_states,
    default_layers,
    reference_states,
    resolve_layers,
)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def model(tiny_model: Path) -> object:
    return transformers.AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()


ITEMS = [
    Item([1, 5, 9, 12], [40, 41, 42]),
    Item([1, 7], [50, 51, 52, 53, 54]),
    Item([1, 3, 3, 3, 3, 3, 3], [60]),
]


def test_one_row_per_answer_token_whatever_the_batch(model: object) -> None:
    layers = [1, 2]
    alone = answer_states(model, ITEMS, layers, pad_id=0, batch_size=1)
    together = answer_states(model, ITEMS, layers, pad_id=0, batch_size=8)
    for item, a, b in zip(ITEMS, alone, together, strict=True):
        for layer in layers:
            assert a[layer].shape == (len(item.answer_ids), 32)
            np.testing.assert_allclose(a[layer], b[layer], atol=1e-5)
    # row t is the state after reading answer token t
    ids = torch.tensor([ITEMS[1].prompt_ids + ITEMS[1].answer_ids])
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states
    np.testing.assert_allclose(together[1][2][4], hidden[2][0, 2 + 4].numpy(), atol=1e-5)


def test_reference_is_the_mean_of_its_states(model: object) -> None:
    states = answer_states(model, ITEMS[:1], [2], pad_id=0)[0][2]
    (reference,) = reference_states(model, ITEMS[:1], [2], pad_id=0)
    np.testing.assert_allclose(reference[2], states.mean(axis=0), atol=1e-6)


def test_layers_are_resolved_and_checked() -> None:
    assert resolve_layers([-1, 0, 15], 30) == [30, 0, 15]
    assert default_layers(30) == [15, 30]
    assert default_layers(2) == [1, 2]
    with pytest.raises(ValueError, match=r"layer 31 is outside 0\.\.30"):
        resolve_layers([31], 30)
    with pytest.raises(ValueError, match="layer -32"):
        resolve_layers([-32], 30)
