"""Documents/s of `persuasion detect` on the local engine and on the Ray engine, over the same input, in one run.

    python -m persuasion.eval.ray_throughput --data ../shared/data/ptc-semeval2020 --split dev --model fast

Each engine runs as the command a user types, in its own process, so a figure is the whole job's wall time:
starting Python, loading the model (Ray: starting a local Ray instance and each actor's model) and writing the
records. While the Ray job runs, the resident memory of each scoring actor's process is sampled from /proc,
and its peak printed: what one worker holds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SAMPLE_SECONDS = 0.2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m persuasion.eval.ray_throughput",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="PTC folder holding <split>-articles/")
    parser.add_argument("--split", default="dev", help="which <split>-articles/ folder to score (default: dev)")
    parser.add_argument("--model", default="fast", help="a shipped model or a checkpoint folder (default: fast)")
    parser.add_argument("--actors", type=int, default=2, help="the Ray engine's actors (default: 2)")
    parser.add_argument("--cpus-per-actor", type=float, default=0.5,
                        help="CPUs each actor reserves (default: 0.5, so two actors leave a CPU of two to reading "
                             "and writing)")
    args = parser.parse_args(argv)
    articles = args.data / f"{args.split}-articles"
    if not articles.is_dir():
        parser.error(f"{articles}: no such folder")
    documents = len(list(articles.glob("*.txt")))
    command = [sys.executable, "-m", "persuasion.cli", "detect", str(articles), "--model", args.model, "--quiet"]
    with tempfile.TemporaryDirectory() as scratch:
        local_seconds = timed(command + ["-o", str(Path(scratch) / "local.jsonl")])
        sampler = ActorMemory()
        sampler.start()
        ray_seconds = timed(command + ["-o", str(Path(scratch) / "ray"), "--engine", "ray", "--actors",
                                       str(args.actors), "--cpus-per-actor", str(args.cpus_per_actor)])
        sampler.stop()
        written = sum(len(shard.read_text(encoding="utf-8").splitlines())
                      for shard in (Path(scratch) / "ray").glob("part-*.jsonl"))
    if written != documents:
        raise SystemExit(f"the Ray engine wrote {written} records for {documents} documents")
    figures = {"documents": documents, "model": args.model,
               "local": {"seconds": round(local_seconds, 1),
                         "documents_per_second": round(documents / local_seconds, 2)},
               "ray": {"seconds": round(ray_seconds, 1), "documents_per_second": round(documents / ray_seconds, 2),
                       "actors": args.actors, "cpus_per_actor": args.cpus_per_actor,
                       "actor_peak_rss_mib": sampler.peak_mib()}}
    print(f"{documents} {args.split} articles, model {args.model}, each job's whole wall time:")
    print(f"  local engine: {local_seconds:.1f} s, {documents / local_seconds:.2f} documents/s")
    print(f"  ray engine ({args.actors} actors x {args.cpus_per_actor:g} CPU): {ray_seconds:.1f} s, "
          f"{documents / ray_seconds:.2f} documents/s; each actor's peak resident memory: "
          f"{', '.join(f'{mib:.0f} MiB' for mib in sampler.peak_mib())}")
    print(json.dumps(figures))
    return 0


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if finished.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited with {finished.returncode}: {finished.stderr.strip()[-2000:]}")
    return seconds


class ActorMemory:
    """The peak resident set of each process running a scoring actor, sampled from /proc."""

    def __init__(self):
        self.peaks: dict[int, int] = {}  # pid -> kB
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()

    def sample(self) -> None:
        while not self.stopping.wait(SAMPLE_SECONDS):
            for process in Path("/proc").iterdir():
                try:
                    if process.name.isdigit() and b"DocumentScorer" in (process / "cmdline").read_bytes():
                        status = (process / "status").read_text()
                        kilobytes = int(status.split("VmRSS:")[1].split()[0])
                        self.peaks[int(process.name)] = max(self.peaks.get(int(process.name), 0), kilobytes)
                except (OSError, IndexError, ValueError):
                    continue

    def peak_mib(self) -> list[float]:
        return [round(kilobytes / 1024, 1) for kilobytes in sorted(self.peaks.values(), reverse=True)]


if __name__ == "__main__":
    sys.exit(main())
