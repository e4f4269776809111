"""Image parts through the server on the fake engine: a model that reads images gets them (one
per placeholder, in order, for every engine request of the request), usage counts their
tokens, and every refusal is a 400 naming the part before anything is generated. The real
vision-language model end to end is ``tests/e2e``'s."""

from __future__ import annotations

import json
from typing import Any

import pytest

from safework.server.images import ImageSettings
from safework.value_models import registry

from .conftest import serve
from .fakes import (
    IMAGE_TOKEN_ID,
    IMAGE_TOKENS,
    BagOfWordsEncoder,
    FakeEngine,
    ScriptEngine,
    StepEngine,
    reading_images,
)
from .test_images import data_url, encoded

RED = data_url(encoded("PNG", (40, 30)))
BLUE = data_url(encoded("JPEG", (20, 10)), "image/jpeg")


def image(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def ask(client: Any, content: list[dict[str, Any]] | str, **body: Any) -> Any:
    messages = [{"role": "user", "content": content}]
    return client.post("/v1/chat/completions", json={"messages": messages, **body})


def test_a_model_that_reads_images_gets_each_in_its_place() -> None:
    engine = FakeEngine(reads_images=True)
    with serve(engine) as client:
        response = ask(
            client, [image(RED), text("What is in these <image> pictures?"), image(BLUE)]
        )
    assert response.status_code == 200, response.text
    (given,) = engine.images
    assert [im.size for im in given] == [(40, 30), (20, 10)]
    assert all(im.mode == "RGB" for im in given)
    prompt = engine.requests[0][0]
    assert prompt.count(IMAGE_TOKEN_ID) == 2  # the typed "<image>" is text, not an image
    assert "< image>" in "".join(chr(t) for t in prompt if t != IMAGE_TOKEN_ID)
    usage = response.json()["usage"]
    assert usage["prompt_tokens"] == len(prompt) + 2 * (IMAGE_TOKENS - 1)


def test_a_streamed_image_request_counts_the_image_tokens() -> None:
    engine = FakeEngine(reads_images=True)
    with serve(engine) as client:
        response = ask(
            client,
            [text("Describe it."), image(RED)],
            stream=True,
            stream_options={"include_usage": True},
        )
    assert response.status_code == 200
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    usage = json.loads(events[-2])["usage"]
    assert usage["prompt_tokens"] == len(engine.requests[0][0]) + IMAGE_TOKENS - 1
    assert len(engine.images[0]) == 1


def test_a_text_only_model_refuses_images_naming_the_part() -> None:
    engine = FakeEngine()
    with serve(engine) as client:
        response = ask(client, [text("What is this?"), image(RED)])
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "messages[0].content[1]"
    assert error["code"] == "images_not_supported"
    assert "'fake-model' reads text only" in error["message"]
    assert engine.requests == []


@pytest.mark.parametrize(
    ("content", "param", "message"),
    [
        ([image("data:text/plain;base64,aGk=")], "messages[0].content[0]", "text/plain"),
        ([text("x"), image("http://example.com/a.png")], "messages[0].content[1]", "fetch"),
        ([image(RED)] * 3, "messages[0].content[2]", "at most 2 images"),
        ([image(data_url(b"not an image"))], "messages[0].content[0]", "not a PNG"),
    ],
)
def test_bad_images_are_400s_and_nothing_is_generated(
    content: list[dict[str, Any]], param: str, message: str
) -> None:
    engine = FakeEngine(reads_images=True)
    with serve(engine, images=ImageSettings(max_images=2)) as client:
        response = ask(client, content)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"]) == (param, "invalid_image")
    assert message in error["message"]
    assert engine.requests == []


def test_images_come_from_the_user_only() -> None:
    engine = FakeEngine(reads_images=True)
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [image(RED)]},
        {"role": "user", "content": "And?"},
    ]
    with serve(engine) as client:
        response = client.post("/v1/chat/completions", json={"messages": messages})
    assert response.status_code == 400
    assert "user messages only" in response.json()["error"]["message"]


def test_a_text_request_to_a_model_that_reads_images_is_unchanged() -> None:
    engine = FakeEngine(reads_images=True)
    with serve(engine) as client:
        response = ask(client, "Plain text, with a literal <image> tag.")
    assert response.status_code == 200
    assert engine.images == [[]]
    assert IMAGE_TOKEN_ID not in engine.requests[0][0]


def test_every_strategy_gives_the_images_to_each_of_its_engine_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Aligned decoding (candidates per step), search (one request per turn) and /cot/edit
    (reasoning, then answer) each start several engine requests: all get the image."""
    from . import test_alignment_server as aligned
    from . import test_search_server as search

    monkeypatch.setitem(aligned.registry.LOADERS, "fake", "tests.fakes:load_fake_value_model")
    monkeypatch.setitem(search.search_base.LOADERS, "fake", "tests.fakes:load_fake_search")
    monkeypatch.setattr(search.server_search, "default_encoder", lambda cache: BagOfWordsEncoder())
    content = [image(RED), text("How do I stay safe?")]
    usage: dict[str, int] = {}
    step_engine = reading_images(StepEngine(aligned.SCRIPT))
    with serve(step_engine, value_models=aligned.value_models()) as client:
        for model in ("fake-model", "fake-model:aligned"):
            response = ask(client, content, model=model)
            assert response.status_code == 200
            usage[model] = response.json()["usage"]["prompt_tokens"]
    script_engine = reading_images(ScriptEngine(search.PROTOCOL_MODEL))
    with serve(script_engine, search=search.settings()) as client:
        response = ask(client, content, model="fake-model:search")
        assert response.status_code == 200
        usage["search"] = response.json()["usage"]["prompt_tokens"]
    edit_engine = FakeEngine(reads_images=True)
    body = {
        "messages": [{"role": "user", "content": content}],
        "edited_reasoning": "Think about the picture first.",
        "remember": False,
    }
    with serve(edit_engine) as client:
        response = client.post("/cot/edit", json=body)
        assert response.status_code == 200
        usage["cot/edit"] = response.json()["usage"]["prompt_tokens"]
    for engine in (step_engine, script_engine, edit_engine):
        assert len(engine.images) >= 2
        assert all([im.size for im in given] == [(40, 30)] for given in engine.images)
    # usage counts the image's tokens whichever strategy wrote the answer
    assert usage["fake-model:aligned"] == usage["fake-model"]
    search_prompt = len(script_engine.requests[0][0])
    assert usage["search"] == search_prompt + IMAGE_TOKENS - 1
    assert usage["cot/edit"] == len(edit_engine.requests[0][0]) + IMAGE_TOKENS - 1


def test_a_judge_on_a_model_that_reads_images_sees_them() -> None:
    """judge:served on a vision-language model gets each pair's images, one placeholder per
    image before its instruction; on a text model the images are left out."""
    import asyncio

    from PIL import Image

    from safework.value_models.judge import TEMPLATES, JudgeValueModel

    picture = Image.new("RGB", (8, 8))
    vlm = FakeEngine("safe", reads_images=True)
    judge = JudgeValueModel("judge", "judge:served", vlm, TEMPLATES["llama-guard"])
    assert judge.reads_images
    scores = asyncio.run(
        judge.score_with_images(["What is this?", "Hi"], ["A cat.", "Hello."], [[picture], []])
    )
    assert [s.score for s in scores] == [1.0, 1.0]
    assert sorted(len(given) for given in vlm.images) == [0, 1]
    pairs = zip(vlm.requests, vlm.images, strict=True)
    with_image = next(ids for (ids, _), given in pairs if given)
    assert with_image.count(IMAGE_TOKEN_ID) == 1
    text = FakeEngine("safe")
    blind = JudgeValueModel("judge", "judge:served", text, TEMPLATES["llama-guard"])
    assert not blind.reads_images
    asyncio.run(blind.score_with_images(["What is this?"], ["A cat."], [[picture]]))
    assert text.images == [[]]


def test_guided_decoding_gives_the_images_to_the_models_that_read_them() -> None:
    import asyncio

    from safework.value_models.base import ValueModel, ValueScore
    from safework.value_models.steps import (
        Candidate,
        GuidanceConfig,
        GuidanceStats,
        WeightedModel,
        score_candidates,
    )

    class Recorder(ValueModel):
        def __init__(self, name: str, reads: bool) -> None:
            self.name, self.spec, self.reads_images = name, "test", reads
            self.seen: list[Any] = []

        async def score(self, prompts: list[str], responses: list[str]) -> list[ValueScore]:
            self.seen.append(None)
            return [ValueScore(self.name, 1.0) for _ in prompts]

        async def score_with_images(
            self, prompts: list[str], responses: list[str], images: Any
        ) -> list[ValueScore]:
            self.seen.append(images)
            return [ValueScore(self.name, 1.0) for _ in prompts]

    eyes, text = Recorder("eyes", True), Recorder("text", False)
    models = (WeightedModel(eyes, 1.0, 0.0), WeightedModel(text, 1.0, 0.0))
    config = GuidanceConfig(models=models, images=("picture",))
    candidates = [Candidate("a\n", [1], False), Candidate("b\n", [2], False)]
    asyncio.run(score_candidates(config, "q", "", candidates, GuidanceStats()))
    assert eyes.seen == [[("picture",), ("picture",)]]
    assert text.seen == [None]


def moderate(client: Any, parts: list[dict[str, Any]]) -> Any:
    return client.post("/v1/moderations", json={"input": parts})


def test_moderation_of_an_image_needs_a_model_that_reads_images(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from safework.value_models.registry import ValueModelEntry, ValueModelsConfig

    monkeypatch.setitem(registry.LOADERS, "fake", "tests.fakes:load_fake_value_model")
    parts = [text("Is this allowed?"), image(RED)]
    blind = ValueModelsConfig({"safety": ValueModelEntry("fake:unsafe")})
    with serve(FakeEngine(reads_images=True), value_models=blind) as client:
        response = moderate(client, parts)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["code"]) == ("input[1]", "images_not_supported")

    engine = FakeEngine("unsafe\nS9", reads_images=True)  # the judge's verdict
    judge = ValueModelsConfig({"judge": ValueModelEntry("judge:served")})
    with serve(engine, value_models=judge) as client:
        response = moderate(client, parts)
        bad = moderate(client, [text("And this?"), image("data:image/png;base64,AAAA")])
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]  # text and image: one input
    assert result["flagged"] is True
    assert result["categories"]["judge"] is True
    (given,) = engine.images
    assert [im.size for im in given] == [(40, 30)]
    assert engine.requests[0][0].count(IMAGE_TOKEN_ID) == 1
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_image"
