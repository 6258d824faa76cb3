"""Speech to text on CPU: real-time factor and latency of Whisper tiny.en vs base, cold start.

Recordings of 5 / 30 / 120 s are built from real speech (``beckett.wav`` read by a person,
repeated with one-second pauses, cut to length) and encoded as MP3, so every figure includes
decoding, voice-activity splitting and Whisper (the served path, ``aimaas.speech``, int8 on
``--threads`` CPU threads). Cold start is measured in a fresh interpreter: spawn to the first
transcript of the 5 s recording (imports, model load and one transcription).

    python benchmarks/bench_speech.py [--threads 2] [--repeats 3] [--quick]

Prints a table and writes ``benchmarks/results/speech.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from aimaas_testing.paths import REGISTRY

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "speech.json"
MODELS = ("whisper-tiny-en", "whisper-base")
#: The request deadline (aimaas.deadline's default): the budget of a synchronous answer.
DEADLINE_S = 25.0

COLD = r"""
import sys, time
started = float(sys.argv[1])
from pathlib import Path
from aimaas.inference import wire
from aimaas.inference.runners import load_runner
from aimaas.manifest import ModelManifest
folder = Path(sys.argv[2])
manifest = ModelManifest.model_validate_json((folder / "manifest.json").read_text())
runner = load_runner(manifest, folder, threads=int(sys.argv[3]))
loaded = time.time()
runner.run(wire.TranscriptionRequest(audio=[Path(sys.argv[4]).read_bytes()]))
done = time.time()
print(f"{loaded - started:.3f} {done - started:.3f}")
"""


def recording(seconds: float) -> bytes:
    """``seconds`` of real speech (beckett.wav with pauses), as MP3."""
    from aimaas_testing import audio

    speech, rate = audio.beckett()
    piece = np.concatenate([speech, np.zeros(rate, dtype=np.float32)])
    repeats = int(np.ceil(seconds * rate / len(piece)))
    return audio.encode(np.tile(piece, repeats)[: int(seconds * rate)], rate, "mp3")


def cold_start(folder: Path, clip: Path, threads: int) -> tuple[float, float]:
    started = time.time()
    out = subprocess.run(
        [sys.executable, "-c", COLD, repr(started), str(folder), str(threads), str(clip)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    loaded, first = (float(x) for x in out.stdout.split()[-2:])
    return loaded, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="5 and 30 s only, one repeat")
    args = parser.parse_args()
    from aimaas.inference import wire
    from aimaas.inference.runners import load_runner
    from aimaas.manifest import ModelManifest

    durations = (5.0, 30.0) if args.quick else (5.0, 30.0, 120.0)
    repeats = 1 if args.quick else args.repeats
    clips = {d: recording(d) for d in durations}
    clip_dir = REPO / "build" / "cache" / "bench-speech"
    clip_dir.mkdir(parents=True, exist_ok=True)
    (clip_dir / "5s.mp3").write_bytes(clips[5.0])
    rows, cold = [], {}
    for name in MODELS:
        folder = REGISTRY / name / "1.0.0"
        if not (folder / "manifest.json").is_file():
            print(f"{name}: not built in {REGISTRY} (make models)", file=sys.stderr)
            continue
        loaded_s, first_s = cold_start(folder, clip_dir / "5s.mp3", args.threads)
        cold[name] = {"spawn_to_loaded_s": loaded_s, "spawn_to_first_transcript_s": first_s}
        manifest = ModelManifest.model_validate_json((folder / "manifest.json").read_text())
        runner = load_runner(manifest, folder, threads=args.threads)
        # Measure past the served limit too: the limit is chosen from these figures.
        runner.params = runner.params.model_copy(update={"max_seconds": 3600.0})
        runner.run(wire.TranscriptionRequest(audio=[clips[5.0]]))  # warm
        for seconds, data in clips.items():
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                runner.run(wire.TranscriptionRequest(audio=[data]))
                times.append(time.perf_counter() - started)
            latency = statistics.median(times)
            rows.append(
                {
                    "model": name,
                    "audio_s": seconds,
                    "mp3_bytes": len(data),
                    "latency_s": round(latency, 3),
                    "rtf": round(latency / seconds, 4),
                    "runs": repeats,
                    "max_seconds_in_manifest": manifest.preprocessing.max_seconds,
                }
            )
    print(f"\nWhisper on CPU, {args.threads} threads, {platform.processor() or platform.machine()}")
    print(f"{'model':<17}{'audio s':>8}{'MP3 KB':>8}{'latency s':>11}{'RTF':>8}")
    for r in rows:
        print(
            f"{r['model']:<17}{r['audio_s']:>8.0f}{r['mp3_bytes'] / 1000:>8.0f}"
            f"{r['latency_s']:>11.2f}{r['rtf']:>8.3f}"
        )
    print(f"\n{'cold start':<17}{'loaded s':>10}{'first transcript s':>20}")
    for name, c in cold.items():
        print(f"{name:<17}{c['spawn_to_loaded_s']:>10.2f}{c['spawn_to_first_transcript_s']:>20.2f}")
    longest = {}
    for name in MODELS:
        mine = [r for r in rows if r["model"] == name]
        if mine:
            rtf = max(r["rtf"] for r in mine)  # the worst real-time factor seen
            longest[name] = round(DEADLINE_S / rtf, 1)
            print(f"{name}: at RTF {rtf:.3f}, {longest[name]:.0f} s of audio fill the deadline")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "threads": args.threads,
                "machine": platform.machine(),
                "cpu_count": os.cpu_count(),
                "speech": rows,
                "cold_start": cold,
                "deadline_s": DEADLINE_S,
                "audio_filling_the_deadline_s": longest,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
