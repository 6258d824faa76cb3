"""Where ONNX graphs run: execution targets (CPU, CUDA, TensorRT) and how sessions are made.

A target turns a verified model folder into an ONNX Runtime session that the task runners of
:mod:`aimaas.inference.runners` can use unchanged (they only call ``run``, ``get_inputs`` and
``get_outputs``). Targets are chosen by name through :data:`TARGETS`; ``"auto"`` picks the best
one that ``onnxruntime.get_available_providers()`` offers, so the same server code runs on a
GPU instance and, with the CPU provider, on a laptop or in tests.

On CUDA two optional speed-ups apply:

- *fp16*: where ``manifest.fp16_allowed``, the graph is converted to float16 (inputs and
  outputs stay float32/int64, so runners and clients see no difference) and kept only if it
  agrees with the float32 graph on probe inputs (``min_cosine``); otherwise float32 is served.
- *IO binding*: outputs are bound to device memory and copied back once per run, which
  avoids ONNX Runtime's intermediate host buffers.

Neither applies on CPU: there the session is built exactly as the in-process backend builds
it, so the GPU server's CPU fallback answers bit for bit what the Lambda answers.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aimaas import errors
from aimaas.inference.runners import session_options
from aimaas.manifest import ModelManifest, TensorSpec, TextPreprocessing, VadPreprocessing

logger = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"

# Probe texts for the fp16 parity check: short and long, Latin and CJK, so that every
# sequence bucket and the tokenizer's unusual paths are covered.
PROBE_TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "Stock markets rallied after the central bank left interest rates unchanged.",
    "我喜欢在周末去公园散步。",
    "A much longer sentence about football, elections, quantum computing and the weather "
    "that keeps going so that the probe also covers sequences of a few dozen tokens.",
)


@dataclass(frozen=True)
class EngineOptions:
    """How sessions are built; read from the environment by the server settings.

    Parameters
    ----------
    threads
        ONNX Runtime intra-op threads (0: runtime default); matters on CPU only.
    device_id
        CUDA device ordinal.
    fp16
        ``"auto"``: convert where the manifest allows it and parity holds; ``"off"``: never;
        ``"force"``: try every model (parity still decides).
    io_binding
        Bind outputs to device memory on CUDA.
    min_cosine
        Smallest per-row cosine similarity between fp16 and fp32 outputs that keeps fp16.
    require_gpu
        Refuse to serve from the CPU when the GPU does not work (on a GPU instance a silent
        fallback would be slow and expensive; failing makes the deployment fail visibly).
    """

    threads: int = 0
    device_id: int = 0
    fp16: str = "auto"
    io_binding: bool = True
    min_cosine: float = 0.999
    require_gpu: bool = False
    trt_cache_dir: Path = Path("/tmp/aimaas-trt-cache")  # noqa: S108 - a cache, not secrets


@dataclass
class LoadedSession:
    """A session plus what was decided while building it (reported by /metrics and logs)."""

    session: Any
    providers: list[str]
    precision: str = "fp32"
    io_binding: bool = False
    notes: list[str] = field(default_factory=list)


class IoBoundSession:
    """An ``InferenceSession`` look-alike whose ``run`` uses IO binding.

    Inputs are bound from host memory (ONNX Runtime copies them to the device once), outputs
    are allocated on ``device`` and copied back to numpy in one go after the run. Each call
    makes its own binding, so concurrent calls are safe.

    Parameters
    ----------
    session
        The wrapped ``onnxruntime.InferenceSession``.
    device
        ``"cuda"`` or ``"cpu"`` (CPU is only useful to test this class).
    device_id
        Device ordinal.
    """

    def __init__(self, session: Any, device: str = "cuda", device_id: int = 0) -> None:
        self._session = session
        self._device = device
        self._device_id = device_id

    def __getattr__(self, name: str) -> Any:
        # get_inputs, get_outputs, get_providers... behave as on the plain session.
        return getattr(self._session, name)

    def run(
        self,
        output_names: Sequence[str] | None,
        input_feed: Mapping[str, np.ndarray],
        run_options: Any = None,
    ) -> list[np.ndarray]:
        """Same contract as ``InferenceSession.run``."""
        binding = self._session.io_binding()
        for name, value in input_feed.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        names = output_names or [o.name for o in self._session.get_outputs()]
        for name in names:
            binding.bind_output(name, self._device, self._device_id)
        if run_options is None:
            self._session.run_with_iobinding(binding)
        else:
            self._session.run_with_iobinding(binding, run_options)
        return list(binding.copy_outputs_to_cpu())


def preload_cuda_libraries() -> None:
    """Load CUDA and cuDNN from the ``nvidia-*`` pip packages when they are installed.

    ``pip install onnxruntime-gpu[cuda,cudnn]`` brings them on a machine with only a driver;
    ONNX Runtime finds them only after ``preload_dlls``. In the CUDA base image the system
    libraries are used and nothing is preloaded.
    """
    import importlib.util

    if importlib.util.find_spec("nvidia") is None:
        return
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        try:
            preload()
        except Exception as exc:  # the system libraries may still work: ORT will say
            logger.warning("preloading CUDA libraries from pip packages failed: %s", exc)


def available_providers() -> list[str]:
    """``onnxruntime.get_available_providers()`` (imported lazily)."""
    import onnxruntime as ort

    return list(ort.get_available_providers())


class ExecutionTarget(ABC):
    """Builds sessions for one kind of device."""

    name: str = "target"
    #: Provider that must be available for this target to be usable.
    requires: str = CPU
    #: Batches of one model run at once by default (``AIMAAS_BATCH_CONCURRENCY`` overrides).
    concurrency: int = 1

    def __init__(self, options: EngineOptions) -> None:
        self.options = options

    @abstractmethod
    def providers(self, manifest: ModelManifest) -> list[str | tuple[str, dict[str, Any]]]:
        """ONNX Runtime providers (with options), best first, ending in the CPU provider."""

    def load(self, manifest: ModelManifest, folder: Path) -> LoadedSession:
        """Create the session of ``manifest`` from its verified files in ``folder``.

        Raises
        ------
        aimaas.errors.BackendUnavailable
            ONNX Runtime cannot load the graph.
        """
        session = self._session(folder / manifest.artifact.file, self.providers(manifest))
        return LoadedSession(session=session, providers=list(session.get_providers()))

    def _session(
        self, model: Path | bytes, providers: Sequence[str | tuple[str, dict[str, Any]]]
    ) -> Any:
        import onnxruntime as ort

        try:
            return ort.InferenceSession(
                model if isinstance(model, bytes) else str(model),
                sess_options=session_options(self.options.threads),
                providers=list(providers),
            )
        except Exception as exc:  # ORT raises its own unexported exception types
            raise errors.BackendUnavailable(
                "A model could not be loaded on this server.", code="model_load_error"
            ) from exc


class CpuTarget(ExecutionTarget):
    """The CPU provider only, configured exactly as the in-process (Lambda) backend does."""

    name = "cpu"
    requires = CPU

    def providers(self, manifest: ModelManifest) -> list[str | tuple[str, dict[str, Any]]]:
        return [CPU]


class CudaTarget(ExecutionTarget):
    """CUDA with CPU fallback for the few nodes CUDA lacks; fp16 and IO binding on top."""

    name = "cuda"
    requires = CUDA
    # Two batches in flight: the host work of one (tokenising, building the answer) overlaps
    # the device run of the other, so the GPU does not idle between batches.
    concurrency = 2

    def __init__(self, options: EngineOptions) -> None:
        super().__init__(options)
        preload_cuda_libraries()

    def _cuda_options(self) -> dict[str, Any]:
        return {
            "device_id": self.options.device_id,
            # Grow the arena by what is asked, not by powers of two: many models share a GPU.
            "arena_extend_strategy": "kSameAsRequested",
            # Text batches change shape on every call; an exhaustive search per shape would
            # make the first call of each shape very slow.
            "cudnn_conv_algo_search": "HEURISTIC",
        }

    def providers(self, manifest: ModelManifest) -> list[str | tuple[str, dict[str, Any]]]:
        return [(CUDA, self._cuda_options()), CPU]

    def load(self, manifest: ModelManifest, folder: Path) -> LoadedSession:
        path = folder / manifest.artifact.file
        providers = self.providers(manifest)
        fp32 = self._session(path, providers)
        loaded = LoadedSession(session=fp32, providers=list(fp32.get_providers()))
        if CUDA not in loaded.providers:
            if self.options.require_gpu:
                raise errors.BackendUnavailable(
                    f"CUDA did not initialise for {manifest.model_id} (driver, CUDA or cuDNN).",
                    code="gpu_unavailable",
                )
            loaded.notes.append("CUDA provider failed to initialise; running on CPU")
            return loaded
        if wants_fp16(manifest, self.options):
            half, note = try_fp16(
                manifest,
                folder,
                fp32,
                lambda graph: self._session(graph, providers),
                self.options.min_cosine,
            )
            loaded.notes.append(note)
            if half is not None:
                loaded.session, loaded.precision = half, "fp16"
        if self.options.io_binding:
            loaded.session = IoBoundSession(loaded.session, "cuda", self.options.device_id)
            loaded.io_binding = True
        return loaded


class TensorRtTarget(CudaTarget):
    """TensorRT first (engines cached on disk), then CUDA, then CPU. Opt-in: engine builds
    take minutes and need the TensorRT libraries, which the CUDA image does not ship."""

    name = "tensorrt"
    requires = TENSORRT

    def providers(self, manifest: ModelManifest) -> list[str | tuple[str, dict[str, Any]]]:
        trt = {
            "device_id": self.options.device_id,
            "trt_fp16_enable": wants_fp16(manifest, self.options),
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(self.options.trt_cache_dir),
        }
        return [(TENSORRT, trt), (CUDA, self._cuda_options()), CPU]

    def load(self, manifest: ModelManifest, folder: Path) -> LoadedSession:
        self.options.trt_cache_dir.mkdir(parents=True, exist_ok=True)
        # TensorRT does its own reduced precision; no graph conversion on top of it.
        session = self._session(folder / manifest.artifact.file, self.providers(manifest))
        loaded = LoadedSession(session=session, providers=list(session.get_providers()))
        if self.options.io_binding and CUDA in loaded.providers:
            loaded.session = IoBoundSession(session, "cuda", self.options.device_id)
            loaded.io_binding = True
        return loaded


TARGETS: Mapping[str, type[ExecutionTarget]] = {
    "cpu": CpuTarget,
    "cuda": CudaTarget,
    "tensorrt": TensorRtTarget,
}
# What "auto" tries, best first. TensorRT is never picked automatically (see TensorRtTarget).
AUTO_ORDER = ("cuda", "cpu")


def build_target(
    name: str, options: EngineOptions, available: Sequence[str] | None = None
) -> ExecutionTarget:
    """The execution target named ``name`` (``"auto"``: the best available).

    Parameters
    ----------
    name
        ``"auto"`` or a key of :data:`TARGETS`.
    options
        Session options.
    available
        Providers to consider available (``onnxruntime.get_available_providers()`` by default).

    Returns
    -------
    ExecutionTarget

    Raises
    ------
    ValueError
        Unknown name, or a named target whose provider this ONNX Runtime build lacks.
    """
    offered = list(available) if available is not None else available_providers()
    if name == "auto":
        for candidate in AUTO_ORDER:
            # Check the class first: building a CUDA target preloads CUDA libraries.
            if TARGETS[candidate].requires in offered:
                if options.require_gpu and candidate == "cpu":
                    raise ValueError(f"a GPU is required but ONNX Runtime offers only {offered}")
                return TARGETS[candidate](options)
        raise ValueError(f"no usable execution provider among {offered}")
    try:
        target_cls = TARGETS[name]
    except KeyError:
        raise ValueError(f"unknown execution target {name!r}; known: {sorted(TARGETS)}") from None
    if target_cls.requires not in offered:
        raise ValueError(
            f"target {name!r} needs {target_cls.requires}; this build offers {offered}"
        )
    return target_cls(options)


def wants_fp16(manifest: ModelManifest, options: EngineOptions) -> bool:
    """Whether to try float16: the manifest allows it (``auto``), or ``force`` for experiments.

    ``force`` still keeps fp16 only when parity holds; it exists so a GPU check can measure
    fp16 on a model whose manifest does not (yet) allow it.
    """
    if manifest.quantization.method != "none":
        return False  # an int8 graph has nothing to gain from float16 and its ops refuse it
    return options.fp16 == "force" or (options.fp16 == "auto" and manifest.fp16_allowed)


def try_fp16(
    manifest: ModelManifest,
    folder: Path,
    fp32_session: Any,
    make_session: Callable[[bytes], Any],
    min_cosine: float,
) -> tuple[Any | None, str]:
    """Build the float16 session of ``manifest`` if it agrees with ``fp32_session``.

    Parameters
    ----------
    manifest, folder
        The model and its verified files.
    fp32_session
        The float32 session on the same device (the reference).
    make_session
        Builds a session from serialised ONNX bytes on that device.
    min_cosine
        Smallest per-row cosine between fp16 and fp32 outputs on the probe inputs.

    Returns
    -------
    tuple
        The fp16 session (None when conversion failed or parity did not hold) and a note that
        says which, with the measured cosine.
    """
    try:
        half = make_session(convert_to_fp16(folder / manifest.artifact.file))
        feeds = probe_feeds(manifest, folder)
        cosine = min_row_cosine(fp32_session.run(None, feeds), half.run(None, feeds))
    except Exception as exc:  # conversion or run failed: fp32 is always a safe answer
        return None, f"fp16 not used: {type(exc).__name__}: {exc}"[:300]
    if cosine >= min_cosine:
        return half, f"fp16 parity cosine {cosine:.6f}"
    return None, f"fp16 rejected: cosine {cosine:.6f} < {min_cosine}"


def convert_to_fp16(path: Path) -> bytes:
    """The float16 version of an ONNX graph, float32 at its inputs and outputs.

    Uses ONNX Runtime's transformer tooling (it knows the fused contrib ops such as
    ``Attention`` and ``SkipLayerNormalization`` that the text models use).
    """
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(path)))
    model.convert_float_to_float16(keep_io_types=True, use_symbolic_shape_infer=True)
    return model.model.SerializeToString()


def probe_feeds(manifest: ModelManifest, folder: Path, batch: int = 4) -> dict[str, np.ndarray]:
    """Inputs to compare two versions of a graph on (and to warm it up with): real tokens for
    text, a valid window for silero-vad, noise for the rest."""
    params = manifest.preprocessing
    if isinstance(params, TextPreprocessing):
        from aimaas.preprocess.text import TextEncoder

        encoder = TextEncoder(folder / params.tokenizer_file, params.max_length)
        return encoder.encode(list(PROBE_TEXTS)).feeds([s.name for s in manifest.inputs])
    rng = np.random.default_rng(0)
    if isinstance(params, VadPreprocessing):
        # One window with its context, a zero state and the real sample rate: the graph
        # checks the rate and the window length.
        audio, state, rate = (spec.name for spec in manifest.inputs)
        window = params.window_samples + params.context_samples
        return {
            audio: (0.1 * rng.standard_normal((1, window))).astype(np.float32),
            state: np.zeros((2, 1, 128), dtype=np.float32),
            rate: np.array(params.sample_rate, dtype=np.int64),
        }
    return {spec.name: _random_input(spec, batch, rng) for spec in manifest.inputs}


def _random_input(spec: TensorSpec, batch: int, rng: np.random.Generator) -> np.ndarray:
    shape = [
        batch if dim == "batch" else (dim if isinstance(dim, int) else 16) for dim in spec.shape
    ]
    if spec.dtype.startswith("float"):
        return rng.standard_normal(shape).astype(np.float32)
    if spec.dtype == "uint8":  # image pixels (detection graphs take NHWC uint8)
        return rng.integers(0, 256, shape, dtype=np.uint8)
    return np.ones(shape, dtype=np.int64 if spec.dtype == "int64" else np.int32)


def min_row_cosine(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> float:
    """Smallest cosine similarity between matching rows of matching outputs."""
    worst = 1.0
    for ref, cand in zip(reference, candidate, strict=True):
        a = np.asarray(ref, dtype=np.float64).reshape(len(ref), -1)
        b = np.asarray(cand, dtype=np.float64).reshape(len(cand), -1)
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        cos = np.where(norms > 0, (a * b).sum(axis=1) / np.maximum(norms, 1e-30), 1.0)
        worst = min(worst, float(cos.min()))
    return worst
