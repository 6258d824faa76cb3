"""Speech to text: decoding uploads, splitting long audio by voice activity, Whisper through
CTranslate2, and OpenAI's transcription response formats.

The runner is loaded by :func:`aimaas.inference.runners.load_runner` for manifests whose
``runtime`` is ``ctranslate2``.
"""

from aimaas.speech.decode import Decoded, TooLong, decode_audio

__all__ = ["Decoded", "TooLong", "decode_audio"]
