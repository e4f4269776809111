"""Words at MI peaks (``training/mi_tokens.py``): tokens labelled with their whole word, the
safety lexicon and its file form, and the summary's counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from safework.training.mi_tokens import SAFETY_LEXICON, load_lexicon, peak_summary, words_of


def test_every_token_is_labelled_with_its_whole_word(smollm_tokenizer) -> None:
    text = "Remember: unsafelyish requests, I cannot help; consult a professional."
    ids = smollm_tokenizer.encode(text, add_special_tokens=False)
    words = words_of(smollm_tokenizer, ids)
    assert len(words) == len(ids)
    assert words[0] == "Remember"
    pieces = [smollm_tokenizer.decode([i]).strip() for i in ids]
    split = [w for w, p in zip(words, pieces, strict=True) if w == "unsafelyish"]
    assert len(split) > 1  # a word of several tokens labels each of them
    assert "professional" in words
    assert words[-1] == "."  # punctuation stands for itself


def test_summary_counts_peaks_and_their_safety_share() -> None:
    summary = peak_summary(["Remember", "avoid", "the", "Avoid", "cat"], SAFETY_LEXICON, 50)
    assert summary["peak_rate"] == {"rate": 0.1, "k": 5, "n": 50}
    assert summary["safety_share"] == {"rate": 0.6, "k": 3, "n": 5}
    assert summary["words"][0] == ("avoid", 2)
    empty = peak_summary([], SAFETY_LEXICON, 0)
    assert empty["safety_share"]["rate"] is None
    assert empty["peak_rate"]["rate"] is None


def test_a_lexicon_file_replaces_the_default(tmp_path: Path) -> None:
    path = tmp_path / "words.txt"
    path.write_text("# my words\nWait\n\nhmm  # thinking\n")
    assert load_lexicon(path) == frozenset({"wait", "hmm"})
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ValueError, match="holds no word"):
        load_lexicon(tmp_path / "empty.txt")


def test_plot_labels_show_whitespace_and_keep_dollars_literal() -> None:
    from safework.training.mi_plot import _shown

    assert _shown("\n") == "\\n"
    assert _shown("  ") == "\u00b7\u00b7"
    assert _shown("$5") == "\\$5"
    assert _shown("avoid") == "avoid"
