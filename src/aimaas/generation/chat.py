"""The chat template, in reviewed code: messages in, the model's prompt text out.

Weights files (GGUF) often carry a Jinja chat template; running it would execute code that came
with third-party weights, so the platform never does. Each manifest names one of the templates
here instead (``GenerationPreprocessing.chat_template``).

The control markers of the template can never come from a caller: ONNX Runtime GenAI's
tokenizer turns ``<|im_start|>`` written inside a message into the control token itself, which
would let one message forge another role's turn. Such text is refused (422), not escaped, so a
caller sees why rather than getting a silently altered prompt.
"""

from __future__ import annotations

from collections.abc import Sequence

from aimaas import errors
from aimaas.inference.wire import ChatMessage

#: ChatML's control markers (Qwen2.5's special tokens among them).
CHATML_MARKERS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")


def check_text(text: str, where: str) -> None:
    """Refuse text that contains a control marker of the template.

    Raises
    ------
    aimaas.errors.InvalidInput
        ``text`` contains one of :data:`CHATML_MARKERS`.
    """
    for marker in CHATML_MARKERS:
        if marker in text:
            raise errors.InvalidInput(
                f"{where} contains the reserved control sequence {marker!r}.",
                code="reserved_token",
            )


def chatml(messages: Sequence[ChatMessage], default_system: str = "") -> str:
    """The ChatML prompt of ``messages``, ending where the assistant's answer begins.

    Parameters
    ----------
    messages
        The conversation, oldest first; a leading system message replaces ``default_system``.
    default_system
        The system turn used when the conversation has none (empty: no system turn).

    Returns
    -------
    str
        ``<|im_start|>{role}\\n{content}<|im_end|>\\n`` per turn, then ``<|im_start|>assistant\\n``.
    """
    turns = list(messages)
    parts: list[str] = []
    if default_system and not (turns and turns[0].role == "system"):
        parts.append(f"<|im_start|>system\n{default_system}<|im_end|>\n")
    for index, message in enumerate(turns):
        check_text(message.content, f"messages[{index}].content")
        parts.append(f"<|im_start|>{message.role}\n{message.content}<|im_end|>\n")
    parts.append("<|im_start|>assistant\n")
    return "".join(parts)


TEMPLATES = {"chatml": chatml}
