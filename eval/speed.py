"""`persuasion speed`: inference tokens/s of the detector against a plain transformers pipeline.

    persuasion speed --data ../shared/data/ptc-semeval2020 --split dev [--precision fp32,bf16,int8] [--json speed.json]
    persuasion speed --data ../shared/data/ptc-semeval2020 --long [--long-sizes 500000,2000000,5000000]

The detector is timed once in each precision (model/precision.py), and the table says which one
`auto` picks on this machine and whether bf16 is native here; a model whose context classifier
(model/context.py) reads detected spans again is also timed without it, in each precision, to show what that
costs. `--long` times instead one generated document of each size (the split's text repeated), at `auto`
or the first `--precision`: seconds, characters/s and the process's peak resident set while detecting it,
which streaming keeps flat.

Every system reads the same articles in the same run and is warmed up on one of them first.
Tokens are the encoder tokenizer's word pieces over the texts (no special tokens), one count
shared by all systems so their rates compare. Memory is the process's resident set (host RAM):
"peak" is its highest point during a run, "peak +" that peak minus the resident set just before.
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from persuasion.corpus import read_ptc_articles
from persuasion.errors import PersuasionError
from persuasion.model.checkpoint import SHIPPED_NAMES
from persuasion.model.precision import PRECISIONS, choose_precision, native_bf16

LONG_DOCUMENT_LIMIT_MIB = 1024  # --long: the process's peak, model included, with a 5 M-character document
LONG_SIZES = (500_000, 2_000_000, 5_000_000)  # characters
LINEAR_TOLERANCE = 1.2  # --long: the largest document may take this much more than linear in the smallest
TIMED_PRECISIONS = ("fp32", "bf16", "int8")


@dataclass
class Measurement:
    system: str
    documents: int
    tokens: int
    seconds: float
    peak_rss_mib: float
    peak_increase_mib: float
    ratio_to_reference: float | None = None  # tokens/s divided by the reference's tokens/s

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("inf")

    def to_dict(self) -> dict:
        return {**asdict(self), "tokens_per_second": self.tokens_per_second}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path, help="PTC folder holding <split>-articles/")
    parser.add_argument("--split", default="dev", help="which <split>-articles/ folder to read (default: dev)")
    parser.add_argument("--model", default=None,
                        help="a shipped model (default, fast) or a checkpoint directory (default: the default model)")
    parser.add_argument("--limit", type=int, default=0, help="time only the first N articles (default: all)")
    parser.add_argument("--batch-size", type=int, default=32, help="windows per forward pass, for every system")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when available")
    parser.add_argument("--precision", default=None, metavar="P,P,...",
                        help=f"time the detector in each of these (default: {','.join(TIMED_PRECISIONS)}; int8 on "
                             "the CPU only); --long times the first (default: auto)")
    parser.add_argument("--long", action="store_true",
                        help="time one generated document of each --long-sizes instead (seconds, characters/s, "
                             "peak memory)")
    parser.add_argument("--long-sizes", default=",".join(map(str, LONG_SIZES)), metavar="N,N,...",
                        help="characters in each --long document (default: 500000,2000000,5000000)")
    parser.add_argument("--json", type=Path, default=None, dest="json_path", help="also write the figures here")


def parse_sizes(value: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(size) for size in value.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise PersuasionError(f"--long-sizes {value!r}: give character counts separated by commas, "
                              f"e.g. 500000,2000000")
    return tuple(sorted(sizes))


def parse_precisions(value: str) -> tuple[str, ...]:
    precisions = tuple(precision.strip() for precision in value.split(","))
    unknown = [precision for precision in precisions if precision not in PRECISIONS]
    if unknown or not precisions:
        raise PersuasionError(f"--precision {value!r}: give some of {', '.join(PRECISIONS)}, separated by commas")
    return precisions


def measured_on(args: argparse.Namespace, checkpoint: Path, device: str) -> dict:
    """What a JSON of figures was measured on; a shipped model by its name (its path names this machine's clone)."""
    import torch

    model = (args.model or "default") if args.model in (None, *SHIPPED_NAMES) else str(checkpoint)
    native = native_bf16(device)
    return {"split": args.split, "model": model, "device": device, "threads": torch.get_num_threads(),
            "batch_size": args.batch_size, "bf16_native": native,
            "auto_precision": choose_precision("auto", device, native)}


def run(args: argparse.Namespace) -> int:
    import torch

    from persuasion.model.checkpoint import resolve_model
    from persuasion.model.detector import Detector
    from persuasion.model.windows import tokenize_document

    if args.limit < 0 or args.batch_size < 1:
        raise PersuasionError("--limit must be 0 or more and --batch-size at least 1")
    long_sizes = parse_sizes(args.long_sizes)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise PersuasionError("--device cuda: no CUDA device is visible; use --device cpu")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    precisions = parse_precisions(args.precision) if args.precision else ("auto",) if args.long else TIMED_PRECISIONS
    if "int8" in precisions and device != "cpu":
        raise PersuasionError("--precision int8 runs on the CPU only; add --device cpu or leave int8 out")
    checkpoint = resolve_model(args.model)

    articles = read_ptc_articles(args.data, args.split)
    texts = [article.text for article in articles if article.text.strip()][: args.limit or None]
    if not texts:
        raise PersuasionError(f"{args.data}: the {args.split} split has no article with text")

    if args.long:
        detector = Detector.load(checkpoint, device=device, precision=precisions[0])
        return run_long(args, long_sizes, detector, texts, checkpoint, device)
    detector = Detector.load(checkpoint, device=device, precision="fp32")
    tokens = sum(len(tokenize_document(detector.tokenizer, text).token_ids) for text in texts)
    native = native_bf16(device)
    print(f"persuasion speed: {args.split} split, {len(texts)} articles, {tokens:,} tokens, {device}, "
          f"{torch.get_num_threads()} torch threads, batch {args.batch_size}, model {checkpoint}; "
          f"bf16 {'is' if native else 'is not'} native here, so auto is {choose_precision('auto', device, native)}")

    reference = reference_runner(build_reference(checkpoint, detector, device), args.batch_size)
    reference(texts[:1])  # warm-up
    reference_row = measure("transformers pipeline (reference)", reference, texts, tokens)
    del reference, detector

    rows = []
    for precision in precisions:
        with warnings.catch_warnings():  # bf16 where it is not native: the header line said so
            warnings.simplefilter("ignore")
            detector = Detector.load(checkpoint, device=device, precision=precision)
        detect = detector_runner(detector, args.batch_size)
        detect(texts[:1])
        rows.append(measure(f"detector {detector.precision} (full pipeline)", detect, texts, tokens))
        if detector.context is not None and detector.decoding.detection_context_mix:  # what reading spans again costs
            head_alone = detector.with_context(None)
            rows.append(measure(f"detector {detector.precision} without its context classifier",
                                detector_runner(head_alone, args.batch_size), texts, tokens))
            del head_alone
        del detector, detect

    rows.append(reference_row)
    for row in rows:
        row.ratio_to_reference = row.tokens_per_second / reference_row.tokens_per_second
    print_table(rows)
    if not _reset_peak():
        print("note: this system cannot reset the recorded peak, so each peak is the process's peak so far")

    if args.json_path:
        write_figures(args.json_path, measured_on(args, checkpoint, device) | {
            "documents": len(texts), "tokens": tokens, "systems": [row.to_dict() for row in rows]})
    return 0


def run_long(args: argparse.Namespace, sizes: tuple[int, ...], detector, texts: list[str], checkpoint: Path,
             device: str) -> int:
    """One generated document of each size, largest last: seconds, characters/s, the process's peak memory."""
    import torch

    from persuasion.model.streaming import release_freed_memory

    print(f"persuasion speed --long: documents of {', '.join(f'{size:,}' for size in sizes)} characters "
          f"from the {args.split} split, {device}, {detector.precision}, {torch.get_num_threads()} torch threads, "
          f"batch {args.batch_size}, model {checkpoint}")
    detector.detect(texts[0], batch_size=args.batch_size)  # warm-up
    rows = []
    for size in sizes:
        text = document_of_characters(texts, size)
        gc.collect()
        release_freed_memory()  # what the previous document left in the heap is not this one's peak
        _reset_peak()
        start = time.perf_counter()
        detector.detect(text, batch_size=args.batch_size)
        seconds = time.perf_counter() - start
        rows.append({"characters": size, "seconds": seconds, "characters_per_second": size / seconds,
                     "peak_rss_mib": _memory_mib("VmHWM")})
        print(f"{size:>11,} characters  {seconds:>8.1f} s  {size / seconds:>9,.0f} characters/s  "
              f"peak {rows[-1]['peak_rss_mib']:>6.0f} MiB", flush=True)
    smallest, largest = rows[0], rows[-1]
    linearity = largest["seconds"] / (smallest["seconds"] * largest["characters"] / smallest["characters"])
    peak = max(row["peak_rss_mib"] for row in rows)
    print(f"peak memory {peak:.0f} MiB ({'within' if peak <= LONG_DOCUMENT_LIMIT_MIB else 'OVER'} the "
          f"{LONG_DOCUMENT_LIMIT_MIB} MiB limit); the largest took {linearity:.2f}x linear in the smallest "
          f"({'within' if linearity <= LINEAR_TOLERANCE else 'OVER'} {LINEAR_TOLERANCE}x)")
    if not _reset_peak():
        print("note: this system cannot reset the recorded peak, so each peak is the process's peak so far")
    if args.json_path:
        write_figures(args.json_path, measured_on(args, checkpoint, device) | {
            "precision": detector.precision, "documents": rows, "limit_mib": LONG_DOCUMENT_LIMIT_MIB,
            "time_ratio_to_linear": linearity,
            "linear_tolerance": LINEAR_TOLERANCE})
    return 0


def write_figures(path: Path, figures: dict) -> None:
    """The --json file, in a folder made for it: a new model's eval/results/NAME/ does not exist yet, and
    failing there would throw away minutes of timing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2) + "\n")


def document_of_characters(texts: list[str], characters: int) -> str:
    """The split's articles, one after another and again, cut to `characters` characters."""
    joined = "".join(text + "\n\n" for text in texts)
    return (joined * (characters // len(joined) + 1))[:characters]


def detector_runner(detector, batch_size: int) -> Callable[[list[str]], None]:
    def detect(texts: list[str]) -> None:
        list(detector.detect_many(texts, batch_size=batch_size))
    return detect


def reference_runner(reference, batch_size: int) -> Callable[[list[str]], None]:
    def tag(texts: list[str]) -> None:
        reference(texts, batch_size=batch_size)
    return tag


def build_reference(checkpoint: Path, detector, device: str):
    """transformers' own token-classification pipeline with the detector's encoder and windows.

    Given `stride`, the pipeline tokenizes with return_overflowing_tokens: each text becomes
    chunks of tokenizer.model_max_length tokens overlapping by `stride`, so setting those to the
    detector's window and overlap makes it read every token through the same windows (without
    `stride` it would truncate each text to its first window). It then aggregates word pieces
    into word-level entities, the pipeline's closest counterpart to our span decoding.
    """
    from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer, pipeline

    from persuasion.model.network import TAGS

    model = AutoModelForTokenClassification.from_config(AutoConfig.from_pretrained(checkpoint, num_labels=len(TAGS)))
    missing, _ = model.base_model.load_state_dict(detector.network.encoder.state_dict(), strict=False)
    if missing:
        raise PersuasionError(f"{checkpoint}: encoder weights do not fit {type(model).__name__} (missing {missing[0]})")
    classifier = getattr(model, "classifier", None)
    if isinstance(classifier, type(detector.network.tag_head)):  # same tag probabilities as the detector
        classifier.load_state_dict(detector.network.tag_head.state_dict())
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    settings = detector.settings
    tokenizer.model_max_length = settings.window_tokens
    overlap = max(0, settings.window_tokens - 2 - settings.window_stride)
    return pipeline("token-classification", model=model.eval(), tokenizer=tokenizer, device=device,
                    aggregation_strategy="simple", stride=overlap)


def measure(system: str, run_system: Callable[[list[str]], object], texts: list[str], tokens: int) -> Measurement:
    gc.collect()
    _reset_peak()
    before = _memory_mib("VmRSS")
    start = time.perf_counter()
    run_system(texts)
    seconds = time.perf_counter() - start
    peak = _memory_mib("VmHWM")
    return Measurement(system, len(texts), tokens, seconds, peak, max(0.0, peak - before))


def print_table(rows: list[Measurement]) -> None:
    width = max(len(row.system) for row in rows)
    print(f"{'system':<{width}}  {'docs':>5}  {'tokens':>9}  {'seconds':>8}  {'tokens/s':>9}  "
          f"{'vs reference':>12}  {'peak MiB':>8}  {'peak + MiB':>10}")
    for row in rows:
        ratio = f"{row.ratio_to_reference:.2f}x" if row.ratio_to_reference is not None else "-"
        print(f"{row.system:<{width}}  {row.documents:>5}  {row.tokens:>9,}  {row.seconds:>8.2f}  "
              f"{row.tokens_per_second:>9,.0f}  {ratio:>12}  {row.peak_rss_mib:>8.0f}  {row.peak_increase_mib:>10.0f}")


def _reset_peak() -> bool:
    """Linux lets a process reset its recorded peak resident set (VmHWM) by writing 5 here."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _memory_mib(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) from /proc; elsewhere getrusage's peak since start-up."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        try:
            import resource  # Unix only
        except ImportError:
            return float("nan")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)  # bytes on macOS, KiB on Linux
    return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE).group(1)) / 1024
