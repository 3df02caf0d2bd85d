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


def fused(fp32: Path, out: Path, attention: bool = True, fast_gelu: bool = False) -> Path:
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    if not out.exists():
        options = FusionOptions("bert")
        options.enable_attention, options.enable_gelu_approximation = attention, fast_gelu
        with quantised.quiet():
            optimize_model(str(fp32), model_type="bert", num_heads=12, hidden_size=384, opt_level=0,
                           optimization_options=options).save_model_to_file(str(out))
    return out


def dynamic(src: Path, out: Path) -> Path:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if not out.exists():
        with quantised.quiet():
            quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8, per_channel=True,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
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


def session(path: Path, threads: int, denormal_as_zero: bool = False):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level = threads, 1, 3
    if denormal_as_zero:
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


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
        sample = torch.tensor([[101, 7592, 2088, 102, 0], [101, 1037, 2936, 6251, 102]])
        inputs = (sample, (sample > 0).long(), torch.zeros_like(sample))
        model.set_attn_implementation("eager")
        with quantised.quiet(), torch.inference_mode():
            torch.onnx.export(quantised.hidden_states(model), inputs, str(onnx_fp32), dynamo=False, opset_version=17,
                              input_names=NAMES, output_names=["last_hidden_state"],
                              dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*NAMES, "last_hidden_state"]})
        model.set_attn_implementation("sdpa")
    full = fused(onnx_fp32, work / "fused.onnx")
    calibration = train.text.tolist()[:200] + embeddings.retrieval_texts()[:60]
    print("building variants (static calibration takes a minute or two) ...", flush=True)
    variants = {  # name: (file, denormals as zero)
        "dynamic int8 (ours)": (dynamic(full, work / "dynamic.onnx"), False),
        "ours, denormals as zero": (work / "dynamic.onnx", True),
        "ours, FastGelu": (dynamic(fused(onnx_fp32, work / "fast_gelu.onnx", fast_gelu=True),
                                   work / "dynamic_fast_gelu.onnx"), False),
        "static int8 QDQ, MatMul only": (static(fused(onnx_fp32, work / "unfused_attention.onnx", attention=False),
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
        one = ModelBundle(quantised.Int8Model(session(path, 1, daz), True, workers), tokenizer, meta, "cpu", "int8")
        batched = ModelBundle(Batched(session(path, workers, daz)), tokenizer, meta, "cpu", "int8")
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
