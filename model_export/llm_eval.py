"""The language models' evaluation: 30 prompts with answers a program can check.

English and Chinese; facts, arithmetic and instructions, plus one prompt longer than the
model's context, which must be refused (422 ``context_length_exceeded``), not answered. The
set was written before any model answered it and is not tuned to one model: a model's pass
rate is what it is, recorded in its manifest (``accuracy``) and in the README.

A case passes when the greedy answer (temperature 0) contains one of ``accept`` (compared
case-insensitively after removing spaces and thousands separators) and none of ``reject``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from aimaas import errors


@dataclass(frozen=True)
class Case:
    """One prompt and what a right answer contains."""

    prompt: str
    accept: tuple[str, ...]
    language: str
    kind: str  # "fact", "arithmetic", "instruction" or "refusal"
    reject: tuple[str, ...] = field(default=())


CASES: tuple[Case, ...] = (
    Case("What is the capital of France? Answer in one word.", ("paris",), "en", "fact"),
    Case("What is the capital of Japan? Answer in one word.", ("tokyo",), "en", "fact"),
    Case("Which planet is known as the Red Planet?", ("mars",), "en", "fact"),
    Case("What is the chemical symbol for gold?", ("au",), "en", "fact"),
    Case("How many days are there in a leap year?", ("366",), "en", "fact"),
    Case("Who wrote the play Romeo and Juliet?", ("shakespeare",), "en", "fact"),
    Case("What is the largest ocean on Earth?", ("pacific",), "en", "fact"),
    Case("What is 12 + 30? Answer with the number only.", ("42",), "en", "arithmetic"),
    Case("What is 7 times 8? Answer with the number only.", ("56",), "en", "arithmetic"),
    Case("What is 100 minus 37? Answer with the number only.", ("63",), "en", "arithmetic"),
    Case("What is 144 divided by 12? Answer with the number only.", ("12",), "en", "arithmetic"),
    Case(
        "Reply with exactly the word OK and nothing else.", ("ok",), "en", "instruction",
    ),
    Case(
        "Write the word 'banana' in capital letters.", ("BANANA",), "en", "instruction",
    ),
    Case(
        "Translate 'thank you' into French. Reply with the translation only.",
        ("merci",), "en", "instruction",
    ),
    Case(
        "Write a Python expression that computes the length of a list named items.",
        ("len(items)",), "en", "instruction",
    ),
    Case("中国的首都是哪座城市？", ("北京",), "zh", "fact"),
    Case("日本的首都是哪座城市？", ("东京",), "zh", "fact"),
    Case("一年有几个月？请只回答数字。", ("12", "十二"), "zh", "fact"),
    Case("水的化学式是什么？", ("h2o", "h₂o"), "zh", "fact"),
    Case("世界上最高的山峰是哪一座？", ("珠穆朗玛", "珠峰", "everest"), "zh", "fact"),
    Case("《红楼梦》的作者是谁？", ("曹雪芹",), "zh", "fact"),
    Case("一个星期有几天？请只回答数字。", ("7", "七"), "zh", "fact"),
    Case("15 加 27 等于多少？请只回答数字。", ("42",), "zh", "arithmetic"),
    Case("9 乘以 9 等于多少？请只回答数字。", ("81",), "zh", "arithmetic"),
    Case("50 减去 18 等于多少？请只回答数字。", ("32",), "zh", "arithmetic"),
    Case("100 除以 4 等于多少？请只回答数字。", ("25",), "zh", "arithmetic"),
    Case("请把“good morning”翻译成中文，只回答译文。", ("早上好", "早安"), "zh", "instruction"),
    Case("请用英文单词回答：猫的英文是什么？", ("cat",), "zh", "instruction"),
    Case("请只回复“好的”两个字。", ("好的",), "zh", "instruction"),
    # Longer than any context this platform serves: must be refused before generation.
    Case("repeat after me: " + "lorem ipsum " * 20_000, (), "en", "refusal"),
)


def normalise(text: str) -> str:
    """Lower case, no spaces or thousands separators (``1,000`` and ``1 000`` are ``1000``)."""
    return "".join(text.split()).replace(",", "").lower()


def passes(case: Case, answer: str) -> bool:
    """Whether ``answer`` is right for ``case`` (see the module docstring)."""
    got = normalise(answer)
    if case.kind == "instruction" and case.accept == ("BANANA",):
        return "BANANA" in answer  # the instruction is the capital letters themselves
    return any(normalise(a) in got for a in case.accept) and not any(
        normalise(r) in got for r in case.reject
    )


@dataclass(frozen=True)
class Outcome:
    """One case's answer (None: refused) and whether it passed."""

    case: Case
    answer: str | None
    passed: bool


def evaluate(answer: Callable[[str], str]) -> list[Outcome]:
    """Run every case through ``answer`` (one user message in, the greedy reply out).

    ``answer`` raises :class:`aimaas.errors.InvalidInput` for a prompt it refuses; the refusal
    case passes only then, and every other case fails if refused.
    """
    outcomes = []
    for case in CASES:
        try:
            reply: str | None = answer(case.prompt)
        except errors.InvalidInput:
            reply = None
        if case.kind == "refusal":
            outcomes.append(Outcome(case, reply, reply is None))
        else:
            outcomes.append(Outcome(case, reply, reply is not None and passes(case, reply)))
    return outcomes
