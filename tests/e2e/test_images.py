"""Images end to end: ``safework serve --model tiny-vlm`` (``engine/tiny_vlm.py``: SmolLM2 with
a small random vision encoder, Idefics3-shaped) driven by the official ``openai`` client.

The tiny VLM has not learnt to see, so no test reads what it says about a picture. What is
checked: the pixels reach the model (two images give different next-token logprobs), vLLM
agrees with transformers on the same image prompt in float32 (prompt length with the image's
tokens, top token and its logprob), usage counts the image tokens, streaming works, and bad
images and a text-only model are 400s; ``:aligned`` decodes an image conversation (usage
counting the image as plain does) and ``/v1/moderations`` judges text and image parts as one
input with ``judge:served`` (the tiny VLM judging), while the text server's value models refuse
it. Its server runs for this module only, beside the session's text server."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from .conftest import MODEL, RemoteServer, start_server, stop_server

pytestmark = pytest.mark.slow

VLM = "tiny-vlm"
TOKENS_PER_IMAGE = 16 + 3  # image tokens, <global-img> and two <fake_token_around_image>
QUESTION = "Describe the picture."


def png(color: tuple[int, int, int], size: tuple[int, int] = (96, 64)) -> Any:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, color)
    ImageDraw.Draw(image).rectangle((10, 10, 40, 30), fill=(255 - color[0], 255, 0))
    return image


def data_url(image: Any) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def with_images(*images: Any, text: str = QUESTION) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [
        {"type": "image_url", "image_url": {"url": data_url(im)}} for im in images
    ]
    return [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]


@pytest.fixture(scope="module")
def vlm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteServer]:
    home = tmp_path_factory.mktemp("vlm")
    remote = start_server(
        home,
        *("--model", VLM, "--no-search", "--no-memory", "--max-images", "2"),
        *("--value-model", "judge=judge:served"),  # the tiny VLM judges, with the images
    )
    try:
        yield remote
    finally:
        stop_server(remote)


def first_token(vlm: RemoteServer, messages: list[dict[str, Any]]) -> Any:
    r = vlm.client().chat.completions.create(
        model=VLM,
        messages=messages,
        max_tokens=1,
        temperature=0,
        logprobs=True,
        top_logprobs=5,
        extra_body={"return_tokens_as_token_ids": True},  # "token_id:1234"
    )
    return r, r.choices[0].logprobs.content[0]


def test_the_image_reaches_the_model_and_agrees_with_transformers(vlm: RemoteServer) -> None:
    import torch
    from transformers import AutoProcessor, Idefics3ForConditionalGeneration

    from safework.engine.tiny_vlm import tiny_vlm_dir

    image = png((20, 40, 200))
    reply, token = first_token(vlm, with_images(image))
    _, other = first_token(vlm, with_images(png((230, 120, 10))))
    assert abs(token.logprob - other.logprob) > 1e-5 or token.token != other.token

    folder = tiny_vlm_dir()
    processor = AutoProcessor.from_pretrained(folder)
    model = Idefics3ForConditionalGeneration.from_pretrained(folder, dtype=torch.float32)
    messages = [{"role": "user", "content": "<image>" + QUESTION}]
    prompt = processor.tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False
    )
    inputs = processor(text=prompt, images=[image], return_tensors="pt")
    assert reply.usage.prompt_tokens == inputs["input_ids"].shape[1]
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1]  # (vocab,)
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    top = int(logprobs.argmax())
    chosen = int(token.token.removeprefix("token_id:"))
    # vLLM's top token is transformers' (or within 0.01 nats of it: a near-tie may part on
    # another CPU's rounding), with the same logprob
    assert float(logprobs[top] - logprobs[chosen]) <= 0.01, (token.token, top)
    assert math.isclose(float(logprobs[chosen]), token.logprob, abs_tol=0.02)


def test_usage_counts_image_tokens_streamed_or_not(vlm: RemoteServer) -> None:
    client = vlm.client()
    text_only = client.chat.completions.create(
        model=VLM, messages=[{"role": "user", "content": QUESTION}], max_tokens=4, temperature=0
    )
    two = with_images(png((0, 0, 0)), png((255, 255, 255)))
    stream = client.chat.completions.create(
        model=VLM,
        messages=two,
        max_tokens=4,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.prompt_tokens == text_only.usage.prompt_tokens + 2 * TOKENS_PER_IMAGE
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("data:image/png;base64,aGVsbG8=", "not a PNG, JPEG, WebP or GIF"),
        ("http://169.254.169.254/latest/meta-data/", "does not fetch image URLs"),
        ("data:image/svg+xml;base64,PHN2Zy8+", "image/svg+xml is not an accepted image type"),
    ],
)
def test_bad_images_are_400s(vlm: RemoteServer, url: str, message: str) -> None:
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]
    with pytest.raises(openai.BadRequestError) as caught:
        vlm.client().chat.completions.create(model=VLM, messages=messages, max_tokens=4)
    error = caught.value.body
    assert error["param"] == "messages[0].content[0]"
    assert message in error["message"]


def test_three_images_are_one_too_many(vlm: RemoteServer) -> None:
    images = with_images(png((1, 2, 3)), png((4, 5, 6)), png((7, 8, 9)))
    with pytest.raises(openai.BadRequestError, match="at most 2 images"):
        vlm.client().chat.completions.create(model=VLM, messages=images, max_tokens=4)


def test_the_text_model_says_it_reads_text_only(server: RemoteServer) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        server.client().chat.completions.create(
            model=MODEL, messages=with_images(png((9, 9, 9))), max_tokens=4
        )
    assert caught.value.body["code"] == "images_not_supported"
    assert "reads text only" in caught.value.body["message"]


def test_aligned_decoding_answers_an_image_conversation(vlm: RemoteServer) -> None:
    client = vlm.client()
    messages = with_images(png((200, 30, 30)))
    plain = client.chat.completions.create(
        model=VLM, messages=messages, max_tokens=8, temperature=0
    )
    aligned = client.chat.completions.create(
        model=f"{VLM}:aligned", messages=messages, max_tokens=8, temperature=0
    )
    assert aligned.choices[0].message.content
    assert aligned.usage.prompt_tokens == plain.usage.prompt_tokens  # the image counted too


def moderate(remote: RemoteServer, model: str, color: tuple[int, int, int]) -> Any:
    parts = [
        {"type": "text", "text": "Is this picture safe to show to children?"},
        {"type": "image_url", "image_url": {"url": data_url(png(color))}},
    ]
    with remote.http() as http:
        return http.post("/v1/moderations", json={"model": model, "input": parts})


def test_moderations_judge_text_and_image_parts_together(vlm: RemoteServer) -> None:
    r = moderate(vlm, VLM, (10, 10, 10))
    assert r.status_code == 200, r.text
    (result,) = r.json()["results"]  # the parts are one input, as OpenAI counts them
    assert "judge" in result["category_scores"]
    assert isinstance(result["flagged"], bool)


def test_moderating_an_image_needs_a_value_model_that_reads_images(server: RemoteServer) -> None:
    r = moderate(server, MODEL, (10, 10, 10))  # the built-in value models read text only
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "images_not_supported"
