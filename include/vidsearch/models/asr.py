"""Speech recognition: Whisper (transformers) over one segment's audio clip, phrase-level timestamps.

`Transcriber(model_path)` loads `WhisperForConditionalGeneration` and `WhisperProcessor` with
`from_pretrained` from a folder `modelstore.resolve_model(..., "asr", ...)` returned (a hub id such as
`openai/whisper-base` or `openai/whisper-tiny` resolved to its cached snapshot, a local folder, or the
tiny random model); a folder that does not load is a `ModelUnavailableError` (permanent).

How a clip is transcribed (`Transcriber.transcribe`):

1. Windows. Whisper hears at most 30 s at a time. The clip is cut into windows of at most 30 s
   (`plan_windows`): each cut lies in the quietest 0.1 s of the last `CUT_SEARCH_S` (5 s) before the
   30 s limit, so a cut lands in a pause between phrases rather than inside a word, and the windows
   do not overlap (no phrase is transcribed twice within a clip). Windows are independent, so they are
   decoded in batches of `batch_size` windows (`generate` on a batch of short-form inputs).
2. Language and no-speech. One decoder step after <|startoftranscript|> gives, per window, the
   probability of every language token and of <|nospeech|> (as Whisper's `detect_language` and its
   no-speech detection do). With `language="auto"` the clip's language is the one with the highest
   probability averaged over the windows (weighted by how likely each holds speech); it is recorded
   with that probability, and every window is decoded in it. An English-only model (`*.en`) records
   "en" without a probability.
3. Decoding: `generate(..., return_timestamps=True, return_segments=True, task="transcribe")` from the
   encoder states of step 2 (the encoder runs once per window); each segment (start and end timestamp
   tokens) is a phrase. Its `avg_logprob` is the mean log-probability
   the model gives its tokens (a teacher-forced pass over what was generated; the raw model
   distribution, before Whisper's timestamp rules), its `no_speech_prob` that of its window. As Whisper
   does, a window whose no-speech probability is above `no_speech_threshold` (0.6) while its mean
   log-probability is below `logprob_threshold` (-1.0) is taken as silence: its phrases are dropped.

Times: phrases are relative to the clip start; `vidsearch.transcripts.build_chunks` makes them
relative to the video (clip_start_s + t). Word-level timestamps are not produced: they need a
checkpoint's alignment heads and eager cross-attention, which this path does not use.
"""

from __future__ import annotations

import io
import logging
import wave
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vidsearch.errors import InputError, ModelUnavailableError
from vidsearch.models.modelstore import loading, select_device, select_dtype
from vidsearch.records import AudioClip, TranscriptResult
from vidsearch.transcripts import Phrase, transcript_result

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
WINDOW_S = 30.0
CUT_SEARCH_S = 5.0
_CUT_FRAME_S = 0.1
NO_SPEECH_THRESHOLD = 0.6
LOGPROB_THRESHOLD = -1.0


def load_wav(data: bytes, what: str = "audio clip") -> np.ndarray:
    """float32 samples in [-1, 1) of a 16 kHz mono 16-bit PCM WAV (what `media.audio` writes);
    InputError for another layout or bytes that are not a WAV."""
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            layout = (wav.getnchannels(), wav.getsampwidth(), wav.getframerate())
            if layout != (1, 2, SAMPLE_RATE):
                raise InputError(f"{what} is {layout} (channels, bytes per sample, rate); expected (1, 2, 16000)")
            pcm = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise InputError(f"{what} is not a readable WAV file: {exc}") from exc
    return np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2").astype(np.float32) / 32768.0


def plan_windows(
    samples: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    window_s: float = WINDOW_S,
    search_s: float = CUT_SEARCH_S,
) -> list[tuple[int, int]]:
    """[start, end) sample ranges covering `samples` in order, each at most `window_s` long, cut in the
    quietest `_CUT_FRAME_S` frame of the last `search_s` before each window's limit (see the module
    docstring). No samples: no windows."""
    total = len(samples)
    limit = int(round(window_s * sample_rate))
    search = min(int(round(search_s * sample_rate)), limit - 1)
    frame = max(1, int(round(_CUT_FRAME_S * sample_rate)))
    windows = []
    start = 0
    while start < total:
        if total - start <= limit:
            windows.append((start, total))
            break
        lo, hi = start + limit - search, start + limit
        region = samples[lo:hi].astype(np.float64)
        usable = (len(region) // frame) * frame
        if usable >= frame:
            energy = (region[:usable] ** 2).reshape(-1, frame).mean(axis=1)
            # The quietest frame; among equals the latest (longest window).
            best = len(energy) - 1 - int(np.argmin(energy[::-1]))
            cut = lo + best * frame + frame // 2
        else:
            cut = hi
        windows.append((start, cut))
        start = cut
    return windows


@dataclass
class Transcription:
    """What the model heard in one clip: phrases with times relative to the clip start."""

    language: str | None
    language_probability: float | None
    phrases: list[Phrase] = field(default_factory=list)
    windows: int = 0


class Transcriber:
    """A Whisper model and its processor on one device, transcribing 16 kHz mono clips."""

    def __init__(self, model_path: str, *, device: str = "auto", dtype: str = "float32") -> None:
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        self.model_path = model_path
        self.device = select_device(device)
        self.dtype = select_dtype(dtype, self.device)
        with loading("a Whisper speech recognition model", model_path):
            processor = WhisperProcessor.from_pretrained(model_path)
            model: Any = WhisperForConditionalGeneration.from_pretrained(model_path, dtype=torch.float32)
        self.processor: Any = processor
        self.tokenizer: Any = processor.tokenizer
        self.model: Any = model.to(device=self.device, dtype=self.dtype).eval()
        generation = self.model.generation_config
        if getattr(generation, "no_timestamps_token_id", None) is None:
            raise ModelUnavailableError(
                f"{model_path!r}: its generation_config has no no_timestamps_token_id, so it cannot predict "
                "timestamps (save a Whisper checkpoint's generation_config.json into the folder)"
            )
        extractor = processor.feature_extractor
        if int(extractor.sampling_rate) != SAMPLE_RATE:
            raise ModelUnavailableError(f"{model_path!r} expects {extractor.sampling_rate} Hz audio, not 16000")
        self.window_s = float(min(WINDOW_S, extractor.chunk_length))
        self.lang_to_id: dict[str, int] = {
            token.strip("<|>"): int(i) for token, i in (getattr(generation, "lang_to_id", None) or {}).items()
        }
        self.multilingual = bool(getattr(generation, "is_multilingual", False)) and bool(self.lang_to_id)
        self.sot = int(generation.decoder_start_token_id)
        self.eot = int(generation.eos_token_id if generation.eos_token_id is not None else self.tokenizer.eos_token_id)
        no_speech = [self.tokenizer.convert_tokens_to_ids(t) for t in ("<|nospeech|>", "<|nocaptions|>")]
        unk = self.tokenizer.unk_token_id
        self.no_speech_id = next(
            (int(i) for i in no_speech if i is not None and i != unk), int(generation.no_timestamps_token_id) - 1
        )
        task_to_id = getattr(generation, "task_to_id", None) or {}
        self.transcribe_id = int(task_to_id["transcribe"]) if "transcribe" in task_to_id else None

    def language_code(self, language: str) -> str | None:
        """The language code to decode in: None for "auto"; InputError for a language the model lacks."""
        from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

        name = language.strip().lower()
        if name in ("", "auto"):
            return None
        code = TO_LANGUAGE_CODE.get(name, name)
        if not self.multilingual:
            if code != "en":
                raise InputError(f"the English-only model {self.model_path!r} cannot transcribe {language!r}")
            return code
        if code not in self.lang_to_id:
            raise InputError(f"unknown language {language!r} (expected auto or one of the model's codes, e.g. en)")
        return code

    def transcribe(self, samples: np.ndarray, *, language: str = "auto", batch_size: int = 8) -> Transcription:
        """Transcribe float32 16 kHz mono `samples` (see the module docstring)."""
        import torch

        if batch_size < 1:
            raise InputError(f"batch size must be positive, got {batch_size}")
        forced = self.language_code(language)
        windows = plan_windows(samples, SAMPLE_RATE, self.window_s)
        if not windows:
            return Transcription(forced or (None if self.multilingual else "en"), None)
        batches = [windows[i : i + batch_size] for i in range(0, len(windows), batch_size)]
        encoded = []  # (features, attention mask, encoder states, no-speech probs) per batch
        language_probs = []
        for batch in batches:
            features, mask = self._features([samples[a:b] for a, b in batch])
            with torch.inference_mode():
                states = self.model.get_encoder()(features).last_hidden_state
                probs = self._first_step_probs(states)
            encoded.append((features, mask, states, probs[:, self.no_speech_id].cpu().numpy()))
            if self.multilingual:
                language_probs.append(probs[:, list(self.lang_to_id.values())].cpu().numpy())

        code, probability = forced, None
        if not self.multilingual:
            code = "en"
        elif forced is None:
            no_speech = np.concatenate([e[3] for e in encoded]).astype(np.float64)
            per_window = np.concatenate(language_probs).astype(np.float64)
            per_window /= per_window.sum(axis=1, keepdims=True)
            weights = np.clip(1.0 - no_speech, 1e-6, None)
            mean = (per_window * weights[:, None]).sum(axis=0) / weights.sum()
            best = int(np.argmax(mean))
            code, probability = list(self.lang_to_id)[best], float(min(max(mean[best], 0.0), 1.0))
        logger.info(
            "asr: %d windows in %d batches, language %s%s",
            len(windows),
            len(batches),
            code,
            f" (p={probability:.2f})" if probability is not None else "",
        )

        phrases: list[Phrase] = []
        for batch, (features, mask, states, no_speech) in zip(batches, encoded):
            phrases += self._decode_batch(batch, features, mask, states, no_speech, code)
        return Transcription(code, probability, phrases, len(windows))

    def transcribe_clip(
        self,
        samples: np.ndarray,
        clip: AudioClip,
        *,
        is_last: bool,
        model_name: str | None = None,
        language: str = "auto",
        batch_size: int = 8,
        timings_s: dict[str, float] | None = None,
    ) -> TranscriptResult:
        """The TranscriptResult of one segment's clip: its phrases as chunks (times relative to the video),
        only those the segment owns (`vidsearch.transcripts.owned_chunks`)."""
        heard = self.transcribe(samples, language=language, batch_size=batch_size)
        return transcript_result(
            clip,
            heard.phrases,
            is_last=is_last,
            model=model_name or self.model_path,
            device=str(self.device),
            language=heard.language,
            language_probability=heard.language_probability,
            timings_s=timings_s,
        )

    # ------------------------------------------------------------------------------------------ steps

    def _features(self, pieces: Sequence[np.ndarray]) -> tuple[Any, Any]:
        inputs = self.processor.feature_extractor(
            list(pieces), sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=True
        )
        features = inputs["input_features"].to(device=self.device, dtype=self.dtype)
        return features, inputs["attention_mask"].to(self.device)

    def _prefix(self, code: str | None) -> list[int]:
        """The decoder's start tokens with timestamps on: <|startoftranscript|> [<|lang|> <|transcribe|>]."""
        prefix = [self.sot]
        if self.multilingual and code is not None:
            prefix.append(self.lang_to_id[code])
            if self.transcribe_id is not None:
                prefix.append(self.transcribe_id)
        return prefix

    def _first_step_probs(self, states: Any) -> Any:
        """Probabilities of the first token after <|startoftranscript|>, per window (float32)."""
        import torch

        start = torch.full((states.shape[0], 1), self.sot, dtype=torch.long, device=self.device)
        logits = self.model(encoder_outputs=(states,), decoder_input_ids=start, use_cache=False).logits[:, -1]
        return logits.float().softmax(dim=-1)

    def _decode_batch(
        self,
        batch: list[tuple[int, int]],
        features: Any,
        mask: Any,
        states: Any,
        no_speech: np.ndarray,
        code: str | None,
    ) -> list[Phrase]:
        import torch

        kwargs: dict[str, Any] = {"return_timestamps": True, "return_segments": True}
        if self.multilingual:
            kwargs.update(language=code, task="transcribe")
        # The encoder ran once, for language and no-speech: generate decodes from its states.
        from transformers.modeling_outputs import BaseModelOutput

        with torch.inference_mode():
            output = self.model.generate(
                encoder_outputs=BaseModelOutput(last_hidden_state=states), attention_mask=mask, **kwargs
            )
        segments_per_window = output["segments"]
        token_lists = [[seg["tokens"].tolist() for seg in segs] for segs in segments_per_window]
        logprobs = self._token_logprobs(states, [sum(t, []) for t in token_lists], code)
        phrases: list[Phrase] = []
        for (start, end), segs, tokens, window_logprobs, silence in zip(
            batch, segments_per_window, token_lists, logprobs, no_speech
        ):
            offset, length = start / SAMPLE_RATE, (end - start) / SAMPLE_RATE
            window_phrases = []
            position = 0
            for seg, seg_tokens in zip(segs, tokens):
                scores = window_logprobs[position : position + len(seg_tokens)]
                position += len(seg_tokens)
                # A window shorter than 30 s is padded with silence: nothing is said past its end.
                seg_start, seg_end = float(seg["start"]), min(float(seg["end"]), length)
                if seg_start >= length:
                    continue
                window_phrases.append(
                    Phrase(
                        start_s=offset + seg_start,
                        end_s=offset + max(seg_end, seg_start),
                        text=self.tokenizer.decode(seg_tokens, skip_special_tokens=True),
                        avg_logprob=float(np.mean(scores)) if len(scores) else None,
                        no_speech_prob=float(silence),
                    )
                )
            window_mean = float(np.mean(window_logprobs)) if len(window_logprobs) else 0.0
            if float(silence) > NO_SPEECH_THRESHOLD and window_mean < LOGPROB_THRESHOLD:
                logger.info("asr: window at %.2f s taken as silence (no-speech p=%.2f)", offset, float(silence))
                continue
            phrases += window_phrases
        return phrases

    def _token_logprobs(self, states: Any, sequences: list[list[int]], code: str | None) -> list[np.ndarray]:
        """Per window, the log-probability of each generated token given the ones before it (one
        teacher-forced decoder pass over the batch, right-padded)."""
        import torch

        prefix = self._prefix(code)
        # What fits in the decoder's positions (generate stays within them; this is only a guard).
        room = int(self.model.config.max_target_positions) - len(prefix)
        sequences = [s[:room] for s in sequences]
        longest = max((len(s) for s in sequences), default=0)
        if longest == 0:
            return [np.zeros(0, dtype=np.float32) for _ in sequences]
        rows = [prefix + s + [self.eot] * (longest - len(s)) for s in sequences]
        ids = torch.tensor(rows, dtype=torch.long, device=self.device)
        with torch.inference_mode():
            logits = self.model(encoder_outputs=(states,), decoder_input_ids=ids, use_cache=False).logits.float()
            logprobs = logits.log_softmax(dim=-1)
            # The logits at position p predict the token at p + 1.
            predicted = logprobs[:, len(prefix) - 1 : -1].gather(-1, ids[:, len(prefix) :, None])[..., 0]
        values = predicted.cpu().numpy()
        return [values[i, : len(s)] for i, s in enumerate(sequences)]
