"""persuasion: find persuasion and propaganda techniques in text.

    from persuasion import Detector
    result = Detector.load().detect(text)
"""

from persuasion.result import DetectionResult, SentenceScore, Span, TechniqueSummary
from persuasion.taxonomy import TECHNIQUE_INFO, TECHNIQUES

__all__ = ["Detector", "DetectionResult", "SentenceScore", "Span", "TechniqueSummary", "TECHNIQUES", "TECHNIQUE_INFO"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # Imported on first use: `persuasion.model` imports this package, and torch is slow to load.
    if name == "Detector":
        from persuasion.model.detector import Detector

        return Detector
    raise AttributeError(f"module 'persuasion' has no attribute {name!r}")
