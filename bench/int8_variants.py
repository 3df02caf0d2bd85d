"""Ways to make the embedder's ONNX copy faster, tried side by side against what the slot serves (dynamic int8,
one text per call, a worker per core) and against fp32 torch (`embeddings.encode`: sorted by length, batches of 64).

Each variant is built from the same fp32 export (core/quantised.py's: TorchScript exporter, eager attention) into
`--work`, then run two ways on the held-out tweets: one text per call on a worker per core (one-thread sessions,
as the slot does), and padded batches of 64 sorted by length (one session, a thread per core). Printed per variant:
texts a second both ways, the lowest cosine similarity to fp32 torch's embeddings, retrieval top-1 on the chat
evaluation sets (one text per call), and whether one text's embedding is the same alone as in a batch of 64.
Asserts nothing.

Variants: dynamic int8 (ours); ours with denormals flushed to zero; ours with the tanh approximation of GELU
(FastGelu); static int8 (QDQ, MinMax calibration on 260 training tweets and FAQ texts, per-channel weights,
MatMul only, attention left unfused so its projections are MatMuls: quantising every op let the padding's mask
leak into batches); 8-bit weight-only MatMulNBits (blockwise, int8 compute); fp32 ONNX (fused).

Usage: python bench/int8_variants.py [--texts 1000] [--work /tmp/int8-variants]
"""
import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core import catalog, embeddings, quantised, sentiment  # noqa: E402,F401  (catalog declares every slot)
from core.registry import ModelBundle  # noqa: E402

NAMES = ["input_ids", "attention_mask", "token_type_ids"]


def fused(fp32: Path, out: Path, config, attention: bool = True, fast_gelu: bool = False) -> Path:
    from onnxruntime.transformers.fusion_options import FusionOptions

    if not out.exists():
        options = FusionOptions("bert")
        options.enable_attention, options.enable_gelu_approximation = attention, fast_gelu
        quantised.fuse(fp32, out, config, options)
    return out


def dynamic(src: Path, out: Path) -> Path:
    if not out.exists():
        quantised.quantise_dynamic(src, out)
    return out


def static(src: Path, out: Path, tokenizer, calibration: list[str]) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{n: v.astype(np.int64) for n, v in tokenizer([t], return_tensors="np").items()}
                                 for t in calibration])

        def get_next(self):
            return next(self.batches, None)

    if not out.exists():
        with quantised.quiet():
            quantize_static(str(src), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
    return out


def nbits8(src: Path, out: Path) -> Path:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    if not out.exists():
        config = DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=True, accuracy_level=4, bits=8)
        with quantised.quiet():
            quantizer = MatMulNBitsQuantizer(onnx.load(str(src)), algo_config=config)
            quantizer.process()
            quantizer.model.save_model_to_file(str(out))
    return out


class Batched:
    """A session called like the torch encoder on a padded batch (what the per-text Int8Model avoids)."""

    def __init__(self, sess):
        self.session, self.inputs = sess, [i.name for i in sess.get_inputs()]

    def __call__(self, input_ids, attention_mask, token_type_ids=None):
        given = {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy(),
                 "token_type_ids": np.zeros_like(input_ids.numpy())}
        return quantised.Hidden(torch.from_numpy(self.session.run(None, {n: given[n] for n in self.inputs})[0]))


def rate(bundle: ModelBundle, texts: list[str]) -> float:
    embeddings.encode(bundle, texts[:64])
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        embeddings.encode(bundle, texts)
        best = max(best, len(texts) / (time.perf_counter() - started))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/int8-variants"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    source = embeddings.SPEC.default()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.location)
    model = embeddings._torch_model(source, "cpu", torch.float32)
    meta = {"pooling": "mean", "dim": model.config.hidden_size, "max_length": 512, "runtime": "torch"}
    fp32 = ModelBundle(model, tokenizer, meta, "cpu", "float32")
    frame, _ = sentiment.dataset()
    train, test = sentiment.split(frame)[:2]
    texts = test.text.tolist()[: args.texts]

    work, onnx_fp32 = args.work, args.work / "fp32.onnx"
    if not onnx_fp32.exists():
        quantised.export_fp32(quantised.hidden_states(model), model, NAMES, "last_hidden_state", onnx_fp32)
    full = fused(onnx_fp32, work / "fused.onnx", model.config)
    calibration = train.text.tolist()[:200] + embeddings.retrieval_texts()[:60]
    print("building variants (static calibration takes a minute or two) ...", flush=True)
    variants = {  # name: (file, denormals as zero)
        "dynamic int8 (ours)": (dynamic(full, work / "dynamic.onnx"), False),
        "ours, denormals as zero": (work / "dynamic.onnx", True),
        "ours, FastGelu": (dynamic(fused(onnx_fp32, work / "fast_gelu.onnx", model.config, fast_gelu=True),
                                   work / "dynamic_fast_gelu.onnx"), False),
        "static int8 QDQ, MatMul only": (static(fused(onnx_fp32, work / "unfused_attention.onnx", model.config,
                                                      attention=False),
                                                work / "static.onnx", tokenizer, calibration), False),
        "8-bit MatMulNBits": (nbits8(full, work / "nbits8.onnx"), False),
        "fp32 ONNX (fused)": (full, False),
    }
    workers = quantised.threads()
    reference = embeddings.encode(fp32, texts)
    base = rate(fp32, texts)
    print(f"\n{len(texts)} held-out tweets on {os.cpu_count()} cores, best of 3; fp32 torch {base:.0f} texts/s, "
          f"top-1 {embeddings.retrieval_top1(fp32)}")
    print(f"{'variant':<30}{'one per call':>13}{'vs torch':>9}{'batched 64':>11}{'vs torch':>9}{'min cos':>8}"
          f"{'alone = in batch':>17}  top-1 per set")
    for name, (path, daz) in variants.items():
        entries = {"session.set_denormal_as_zero": "1"} if daz else None
        one = ModelBundle(quantised.Int8Model(quantised.session(path, 1, entries), True, workers), tokenizer, meta,
                          "cpu", "int8")
        batched = ModelBundle(Batched(quantised.session(path, workers, entries)), tokenizer, meta, "cpu", "int8")
        per_text, in_batches = rate(one, texts), rate(batched, texts)
        cosine = float((embeddings.encode(one, texts) * reference).sum(1).min())
        alone, crowd = embeddings.encode(batched, texts[:1])[0], embeddings.encode(batched, texts[:64])[0]
        same = float(alone @ crowd)
        print(f"{name:<30}{per_text:>13.0f}{per_text / base:>8.2f}x{in_batches:>11.0f}{in_batches / base:>8.2f}x"
              f"{cosine:>8.4f}{same:>17.4f}  {embeddings.retrieval_top1(one)}", flush=True)
        one.model.close()
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
