"""Language models on ONNX Runtime GenAI: a prompt in, a stream of text pieces out.

The runner is the ``onnxruntime-genai`` runner kind of the runner port (manifest ``runtime``);
serving needs only ``onnxruntime-genai`` and ``numpy``, never torch. One :class:`og.Model` is
shared by every generation of the process (its weights are read-only); each generation has its
own ``Generator`` and KV cache, so concurrent streams are independent.

Why the loop is here and not in the library's own ``Engine``: between tokens the runner checks
the request deadline and stop sequences, and a stream that the client abandons is closed by the
caller (``GeneratorExit``), which ends the loop at once and frees the generator and its slot.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aimaas import deadline, errors
from aimaas.generation.chat import TEMPLATES, check_text
from aimaas.inference import wire
from aimaas.manifest import GenerationPreprocessing, ModelManifest

#: Prompt tokens read per step: the prompt is appended in pieces so the request deadline is
#: checked between them (the int4 CPU model reads only ~150 prompt tokens a second, so a whole
#: 4,000-token prompt in one call would hold the worker for half a minute, past any deadline).
#: The KV cache makes the pieces equal to one call (same tokens out, checked in the tests).
PREFILL_CHUNK = 128


#: Seeds ONNX Runtime GenAI takes (a non-negative int32).
SEED_RANGE = 2**31


def _out_of_time() -> bool:
    """Whether too little of the request's deadline is left to take one more model step."""
    left = deadline.time_left()
    return left is not None and left < 2 * deadline.DELIVERY_MARGIN_S


def _held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest end of ``text`` that could still grow into a stop sequence (it
    must not be sent yet: the next token may complete the stop, which is never sent)."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


class GenerationRunner:
    """A loaded language model (ONNX Runtime GenAI).

    Parameters
    ----------
    manifest
        The model's manifest (``preprocessing`` is :class:`GenerationPreprocessing`).
    folder
        Its verified registry folder (``genai_config.json``, ``model.onnx`` and its data,
        tokenizer files).
    threads
        Intra-op threads of the decoder session (0: the runtime's default).
    providers
        Execution providers, e.g. ``["CUDAExecutionProvider"]`` on the GPU server (default CPU).
    """

    task = "text-generation"

    def __init__(
        self,
        manifest: ModelManifest,
        folder: Path,
        *,
        threads: int = 0,
        providers: Sequence[str] | None = None,
    ) -> None:
        import onnxruntime_genai as og

        params = manifest.preprocessing
        assert isinstance(params, GenerationPreprocessing)
        self.manifest = manifest
        self.folder = folder
        self.params = params
        self.template = TEMPLATES[params.chat_template]
        config = og.Config(str(folder))
        if threads > 0:
            options = {"intra_op_num_threads": threads, "inter_op_num_threads": 1}
            config.overlay(json.dumps({"model": {"decoder": {"session_options": options}}}))
        config.clear_providers()
        for provider in providers or []:
            if provider.startswith("CUDA"):
                config.append_provider("cuda")
        self._og = og
        self.model = og.Model(config)
        self.tokenizer = og.Tokenizer(self.model)

    # ---- prompt -----------------------------------------------------------------------------

    def prompt_text(self, request: wire.GenerationRequest) -> str:
        """The text the model is fed: the chat template over ``messages``, or the raw prompt."""
        if request.messages is not None:
            return self.template(request.messages, self.params.default_system)
        assert request.prompt is not None
        check_text(request.prompt, "prompt")
        return request.prompt

    def prompt_tokens(self, request: wire.GenerationRequest) -> np.ndarray:
        """Token ids of the prompt, after the size limits.

        Raises
        ------
        aimaas.errors.InvalidInput
            The prompt is over ``max_prompt_chars``, or leaves no room in the context.
        """
        text = self.prompt_text(request)
        if len(text) > self.params.max_prompt_chars:
            raise errors.InvalidInput(
                f"The prompt has {len(text)} characters; {self.manifest.model_id} takes at most "
                f"{self.params.max_prompt_chars}.",
                code="prompt_too_long",
            )
        tokens = np.asarray(self.tokenizer.encode(text), dtype=np.int32)
        if len(tokens) >= self.params.context_length:
            raise errors.InvalidInput(
                f"The prompt is {len(tokens)} tokens; the context of {self.manifest.model_id} is "
                f"{self.params.context_length} tokens (prompt and completion together).",
                code="context_length_exceeded",
            )
        return tokens

    def _generator(self, request: wire.GenerationRequest, tokens: np.ndarray) -> Any:
        og = self._og
        room = self.params.context_length - len(tokens)
        new = min(request.max_tokens, self.params.max_new_tokens, room)
        search: dict[str, Any] = {"max_length": len(tokens) + new}
        if request.temperature > 0:
            search |= {"do_sample": True, "temperature": request.temperature, "top_k": 0}
            search |= {"top_p": request.top_p}
            if request.seed is not None:
                # The runtime takes an int32 seed, and -1 means "pick one at random": any
                # integer a client sends maps onto the non-negative int32 range, repeatably.
                search["random_seed"] = request.seed % SEED_RANGE
        else:  # temperature 0 is greedy decoding, as OpenAI documents it
            search["do_sample"] = False
        generator_params = og.GeneratorParams(self.model)
        generator_params.set_search_options(**search)
        generator = og.Generator(self.model, generator_params)
        for start in range(0, len(tokens), PREFILL_CHUNK):
            if _out_of_time():  # nothing generated yet: an unbilled 504
                raise errors.DeadlineExceeded(
                    "The request ran out of time while reading the prompt; send a shorter one."
                )
            generator.append_tokens(tokens[start : start + PREFILL_CHUNK])
        return generator

    # ---- generation -------------------------------------------------------------------------

    def stream(self, request: wire.GenerationRequest) -> Iterator[wire.GenerationChunk]:
        """Generate, yielding text as it becomes final; the last chunk has the finish reason and
        the token counts. Closing the iterator stops the generation at once.

        Raises
        ------
        aimaas.errors.InvalidInput
            The prompt is refused (see :meth:`prompt_tokens`).
        aimaas.errors.DeadlineExceeded
            The request's deadline passed before the first token (later, the stream ends with
            ``finish_reason="length"``: what was generated is answered and billed).
        """
        tokens = self.prompt_tokens(request)
        generator = self._generator(request, tokens)
        decoder = self.tokenizer.create_stream()
        stops = [s for s in request.stop if s]
        pending = ""  # decoded text not sent yet (it may be the start of a stop sequence)
        produced = 0
        finish: wire.FinishReason = "length"
        eos = set(self.tokenizer.eos_token_ids)
        try:
            while not generator.is_done():
                if _out_of_time():
                    if produced == 0:  # nothing to answer: an unbilled 504
                        raise errors.DeadlineExceeded(
                            "The request ran out of time before the first token."
                        )
                    break
                generator.generate_next_token()
                token = int(generator.get_next_tokens()[0])
                produced += 1
                if token in eos:
                    finish = "stop"
                    break
                pending += decoder.decode(token)
                cut = min((i for s in stops if (i := pending.find(s)) >= 0), default=-1)
                if cut >= 0:
                    pending = pending[:cut]
                    finish = "stop"
                    break
                ready = len(pending) - _held_back(pending, stops)
                if ready > 0:
                    yield wire.GenerationChunk(
                        text=pending[:ready], prompt_tokens=len(tokens), completion_tokens=produced
                    )
                    pending = pending[ready:]
        finally:
            del generator  # frees the KV cache now, also when the caller closed the stream
        yield wire.GenerationChunk(
            text=pending,
            finish_reason=finish,
            prompt_tokens=len(tokens),
            completion_tokens=produced,
        )

    def run(self, request: wire.GenerationRequest) -> wire.GenerationResult:
        """The whole generation at once (the non-streaming answer)."""
        text: list[str] = []
        last = wire.GenerationChunk()
        for last in self.stream(request):
            text.append(last.text)
        assert last.finish_reason is not None
        return wire.GenerationResult(
            text="".join(text),
            finish_reason=last.finish_reason,
            prompt_tokens=last.prompt_tokens,
            completion_tokens=last.completion_tokens,
        )


def load_generation_runner(
    manifest: ModelManifest,
    folder: Path,
    *,
    threads: int = 0,
    providers: Sequence[str] | None = None,
) -> GenerationRunner:
    """The :data:`aimaas.inference.runners.RUNTIMES` loader of ``onnxruntime-genai`` models.

    Raises
    ------
    aimaas.errors.BackendUnavailable
        ONNX Runtime GenAI cannot load the model.
    """
    try:
        return GenerationRunner(manifest, folder, threads=threads, providers=providers)
    except ImportError as exc:
        raise errors.BackendUnavailable(
            "This deployment has no language-model runtime.", code="model_load_error"
        ) from exc
    except RuntimeError as exc:  # onnxruntime-genai raises RuntimeError for unusable files
        raise errors.BackendUnavailable(
            f"Model {manifest.model_id} could not be loaded.", code="model_load_error"
        ) from exc
