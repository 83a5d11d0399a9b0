"""The package's size limits: how long one document may be (the one limit the Python API, `persuasion detect` and
`persuasion serve` apply), and what one request to `persuasion serve` may send.

`Detector.detect` reads a long document window by window and decodes it as it goes
(persuasion/model/streaming.py), so its memory does not grow with the document; time grows linearly.
The document limit is the longest document measured that way (`persuasion speed --long`, the model card's "Long
documents"): within it a document takes minutes, not hours, on a laptop CPU. Split longer ones.
`persuasion serve --max-text-chars` may set a lower limit for one server, never a higher one.
"""

MAX_DOCUMENT_CHARACTERS = 5_000_000
# A request's text, at most: about 30 news articles, answered in seconds. A server may allow up to the limit of
# one document (minutes each); while the one inference thread works, other requests wait.
MAX_TEXT_CHARS = 200_000
MAX_REQUEST_BYTES = 2_000_000
MAX_QUEUE = 64  # requests waiting for or holding the model; more get 503


def too_long(length: int) -> str | None:
    """Why a text of `length` characters cannot be scored, in one line, or None."""
    if length > MAX_DOCUMENT_CHARACTERS:
        return (f"{length:,} characters is over the {MAX_DOCUMENT_CHARACTERS:,}-character limit of one document; "
                "split it")
    return None
