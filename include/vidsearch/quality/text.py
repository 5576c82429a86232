"""Pure text measurements the transcript gate uses: repeated-token loops and the compression ratio.

A known Whisper failure is the decoding loop: the model gets stuck and emits the same word or short
phrase until its 30 s window ends ("the the the ...", "Thank you. Thank you. Thank you. ..."). Loops run
to dozens of repeats; speech repeats a word a few times ("no, no, no"), so the thresholds are generous.
"""

from __future__ import annotations

import re
import zlib

# Words: runs of letters/digits with inner apostrophes ("don't"); punctuation and case are ignored, so
# "Thank you. thank you," is the 2-gram "thank you" twice. Scripts written without spaces (Chinese,
# Japanese, Thai) give one token per run of characters: their loops are left to the compression ratio.
_TOKEN = re.compile(r"\w+(?:['’]\w+)*")

MAX_NGRAM = 4


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens of `text`, punctuation dropped."""
    return _TOKEN.findall(text.casefold())


def longest_repeat(text: str, *, max_n: int = MAX_NGRAM) -> tuple[int, str]:
    """(count, n-gram) of the longest consecutive repetition of any 1..max_n-token n-gram in `text`.

    "the the the" -> (3, "the"); "thank you. thank you." -> (2, "thank you"); text without a repeat ->
    (1, its first token); no tokens -> (0, ""). Ties go to the shortest n-gram. Linear in the text
    length for each n."""
    words = tokens(text)
    if not words:
        return 0, ""
    best_count, best_gram = 1, words[0]
    for n in range(1, max_n + 1):
        # words[j] == words[j + n] for a run of `run` positions from `start`: the stretch
        # words[start : start + run + n] has period n, i.e. (run + n) // n whole repeats of the n-gram.
        run, start = 0, 0
        for j in range(len(words) - n):
            if words[j] == words[j + n]:
                if run == 0:
                    start = j
                run += 1
                count = (run + n) // n
                if count > best_count:
                    best_count, best_gram = count, " ".join(words[start : start + n])
            else:
                run = 0
    return best_count, best_gram


def repeated_loop(text: str, *, max_repeats: int, max_n: int = MAX_NGRAM) -> tuple[str, int] | None:
    """The (n-gram, count) of a loop in `text`: a 1..max_n-token n-gram repeated consecutively more
    than `max_repeats` times (case and punctuation ignored); None when there is none."""
    count, gram = longest_repeat(text, max_n=max_n)
    return (gram, count) if count > max_repeats else None


def compression_ratio(text: str) -> float:
    """UTF-8 length over zlib-compressed length (Whisper's own measure: its decoder retries a window
    whose text compresses better than 2.4). Normal phrases stay near or below 1.5 (short texts do not
    compress at all); a repeated sentence climbs with every repeat. 0.0 for empty text."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0
