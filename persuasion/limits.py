"""How long one document may be: the one limit the Python API, `persuasion detect` and `persuasion serve` apply.

`Detector.detect` reads a long document window by window and decodes it as it goes
(persuasion/model/streaming.py), so its memory does not grow with the document; time grows linearly.
The limit is the longest document measured that way (`persuasion speed --long`, the model card's "Long
documents"): within it a document takes minutes, not hours, on a laptop CPU. Split longer ones.
`persuasion serve --max-text-chars` may set a lower limit for one server, never a higher one.
"""

MAX_DOCUMENT_CHARACTERS = 5_000_000


def too_long(length: int) -> str | None:
    """Why a text of `length` characters cannot be scored, in one line, or None."""
    if length > MAX_DOCUMENT_CHARACTERS:
        return (f"{length:,} characters is over the {MAX_DOCUMENT_CHARACTERS:,}-character limit of one document; "
                "split it")
    return None
