"""The served language model (registry build, ONNX Runtime GenAI on CPU): answers, stop
sequences, seeds, limits and an abandoned stream."""

from __future__ import annotations

from pathlib import Path

import pytest

from aimaas import errors
from aimaas.generation.runner import GenerationRunner
from aimaas.inference.wire import ChatMessage, GenerationRequest
from aimaas.manifest import ModelManifest
from aimaas_testing.paths import REGISTRY

NAME = "qwen2-5-coder-0-5b-instruct"


@pytest.fixture(scope="module")
def runner() -> GenerationRunner:
    folders = sorted((REGISTRY / NAME).glob("*/manifest.json"))
    if not folders:
        pytest.skip(f"{NAME} is not built (python -m model_export build {NAME})")
    folder: Path = folders[-1].parent
    manifest = ModelManifest.model_validate_json((folder / "manifest.json").read_text())
    return GenerationRunner(manifest, folder, threads=2)


def ask(content: str, **options: object) -> GenerationRequest:
    return GenerationRequest(
        messages=[ChatMessage(role="user", content=content)], **{"max_tokens": 24, **options}
    )


def test_greedy_answers_in_english_and_chinese(runner: GenerationRunner) -> None:
    english = runner.run(ask("What is the capital of France?", temperature=0.0))
    chinese = runner.run(ask("中国的首都是哪里？", temperature=0.0))
    assert "Paris" in english.text and english.finish_reason == "stop"
    assert "北京" in chinese.text
    assert english.prompt_tokens > 10 and 0 < english.completion_tokens <= 24


def test_a_stop_sequence_ends_the_answer_before_it(runner: GenerationRunner) -> None:
    full = runner.run(ask("What is the capital of France?", temperature=0.0))
    cut = runner.run(ask("What is the capital of France?", temperature=0.0, stop=["Paris"]))
    assert "Paris" in full.text and "Paris" not in cut.text
    assert full.text.startswith(cut.text) and cut.finish_reason == "stop"


def test_the_same_seed_samples_the_same_answer(runner: GenerationRunner) -> None:
    request = ask("Write a short poem about rain.", temperature=1.0, top_p=0.95, seed=7)
    first, again = runner.run(request), runner.run(request)
    other = runner.run(request.model_copy(update={"seed": 8}))
    assert first.text == again.text
    assert other.text != first.text  # a seed that changed nothing would be no seed at all


def test_max_tokens_ends_with_length(runner: GenerationRunner) -> None:
    result = runner.run(ask("Count from 1 to 100.", temperature=0.0, max_tokens=5))
    assert result.completion_tokens == 5 and result.finish_reason == "length"


def test_an_over_long_prompt_is_refused(runner: GenerationRunner) -> None:
    with pytest.raises(errors.InvalidInput) as caught:
        runner.run(ask("lorem ipsum " * 20_000))
    assert caught.value.code == "prompt_too_long"


def test_an_abandoned_stream_stops_and_reports_what_was_generated(
    runner: GenerationRunner,
) -> None:
    stream = runner.stream(ask("Count from 1 to 100, one number per line.", max_tokens=200,
                               temperature=0.0))  # fmt: skip
    seen = [next(stream) for _ in range(3)]
    stream.close()  # what the server does when the client disconnects
    assert seen[-1].completion_tokens >= 3 and seen[-1].finish_reason is None
    with pytest.raises(StopIteration):
        next(stream)


def test_a_prompt_read_in_pieces_answers_as_one_read(
    runner: GenerationRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aimaas.generation import runner as module

    request = ask("Explain what a hash table is, with an example in Python. " * 24, max_tokens=12,
                  temperature=0.0)  # fmt: skip
    assert len(runner.prompt_tokens(request)) > 2 * module.PREFILL_CHUNK  # read in 3+ pieces
    pieces = runner.run(request)
    monkeypatch.setattr(module, "PREFILL_CHUNK", 10**6)
    assert runner.run(request) == pieces


def test_a_prompt_that_outlasts_the_deadline_is_an_unbilled_504(
    runner: GenerationRunner,
) -> None:
    from aimaas import deadline

    request = ask("Explain what a hash table is, with an example in Python. " * 24, max_tokens=4)
    token = deadline.start(0.7)  # time for the first piece of the prompt, not for all three
    try:
        with pytest.raises(errors.DeadlineExceeded):
            runner.run(request)
    finally:
        deadline.reset(token)


def test_any_integer_seed_is_taken(runner: GenerationRunner) -> None:
    # The runtime takes non-negative int32 seeds; OpenAI clients may send any 64-bit integer.
    request = ask("Write a short poem about rain.", temperature=1.0, max_tokens=8, seed=7)
    wide = request.model_copy(update={"seed": 7 + 2**31})
    assert runner.run(wide).text == runner.run(request).text
    assert runner.run(request.model_copy(update={"seed": -(2**63)})).completion_tokens > 0
