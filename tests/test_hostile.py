"""Hostile uploads of every kind (#23), generated here, run against the core functions the pages call
(files.read_csv then recommender.clean_interactions, vision.read_images, chat.parse_faq). None may crash (only
the functions' own clear refusals are allowed), take more than 60 s, or take the process past 1 GB.

Each kind runs in a fresh Python process, so its peak resident size (VmHWM) is that kind's alone."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECONDS, PEAK_MB = 60, 1024

WORKER = r'''
import io, json, random, resource, struct, sys, time, zlib
from core import chat, files, recommender, vision

def png(width, height, data=b"\x00"):
    """A PNG whose header claims width x height, with only a sliver of image data (a decompression bomb)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b"")

def real(fmt, size=(320, 240), **kw):
    from PIL import Image
    out = io.BytesIO()
    Image.radial_gradient("L").resize(size).convert("RGB").save(out, fmt, **kw)
    return out.getvalue()

def animated(frames):
    from PIL import Image
    out = io.BytesIO()
    images = [Image.new("P", (64, 64), i % 256) for i in range(frames)]
    images[0].save(out, "GIF", save_all=True, append_images=images[1:], duration=10, loop=0)
    return out.getvalue()

rng = random.Random(0)
junk = bytes(rng.randrange(256) for _ in range(1 << 20))
CSV = {
    "huge header (100,000 columns)": ",".join(f"c{i}" for i in range(100_000)).encode() + b"\n" + b"1," * 99_999 + b"1\n",
    "one 8 MB quoted field": b'user,item\n"' + b'""' * 4_000_000 + b'",x\n',
    "unterminated quote": b'user,item\n"a' + b"b" * 8_000_000,
    "deeply nested quotes": b"user,item\n" + b'"' * 2_000_001 + b"\n",
    "binary junk": junk,
    "binary junk without NUL": bytes(b or 1 for b in junk),
    "repetition (40 MB of one line)": b"user,item,rating\n" + b"u1,i1,5\n" * 5_000_000,
    "one 20 MB line": b"x" * 20_000_000,
    "1e308, inf and NaN ratings": b"user,item,rating\n" + b"".join(
        f"u{i % 7},i{i % 13},{v}\n".encode() for i, v in enumerate(["1e308", "inf", "-inf", "NaN", "nan", "1e-400", "4"] * 30)),
    "UTF-16 with a broken tail": b"\xff\xfe" + "user,item\nu,i\n".encode("utf-16-le") + b"\x00\xd8",
    "UTF-32 BOM only": b"\xff\xfe\x00\x00",
    "only newlines": b"\n" * 5_000_000,
    "only delimiters": b";" * 5_000_000,
}
IMAGES = {
    "decompression bomb (100,000 x 100,000 PNG header)": [(png(100_000, 100_000), "bomb.png")],
    "many 24 MP headers in one upload": [(png(6000, 4000), f"big{i}.png") for i in range(8)],
    "too many files": [(real("PNG", (32, 32)), f"f{i}.png") for i in range(60)],
    "truncated PNG": [(real("PNG")[:300], "cut.png")],
    "truncated JPEG": [(real("JPEG")[:700], "cut.jpg")],
    "JPEG named .png": [(real("JPEG"), "photo.png")],
    "EPS disguised as PNG": [(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", "logo.png")],
    "binary EPS disguised as PNG": [(b"\xc5\xd0\xd3\xc6" + junk[:4096], "logo.png")],
    "animated GIF, 3,000 frames": [(animated(3000), "many.gif")],
    "zero bytes": [(b"", "empty.png")],
    "random bytes": [(junk, "noise.webp")],
    "huge-sided strip": [(png(50_000, 1), "strip.png")],
}
FAQ = {
    "200,000 headings": ("".join(f"# question {i}?\nanswer {i}\n" for i in range(200_000)).encode(), "faq.md"),
    "one 20 MB paragraph": (b"word " * 4_000_000, "faq.md"),
    "100,000 nested quotes": (b">" * 100_000 + b" x\n", "faq.md"),
    "huge header CSV": (CSV["huge header (100,000 columns)"], "faq.csv"),
    "binary junk as Markdown": (junk, "faq.md"),
    "deep quoting CSV": (CSV["deeply nested quotes"], "faq.csv"),
    "formula cells": (b"question,answer\n=HYPERLINK(\"http://x\"),@SUM(1)\n", "faq.csv"),
}

def run(kind):
    if kind == "csv":
        for name, data in CSV.items():
            def case(data=data, name=name):
                try:
                    frame, _ = files.read_csv(data, "upload.csv")
                except files.UploadError:
                    return "refused"
                try:
                    recommender.clean_interactions(frame)
                except recommender.DataError:
                    return "read, refused as interactions"
                return "read"
            yield name, case
    elif kind == "image":
        for name, items in IMAGES.items():
            def case(items=items):
                try:
                    pictures, problems = vision.read_images(items)
                except vision.ImageInputError:
                    return "refused"
                return f"{len(pictures)} read, {len(problems)} refused"
            yield name, case
    else:
        for name, (data, filename) in FAQ.items():
            def case(data=data, filename=filename):
                try:
                    return f"{len(chat.parse_faq(data, filename)[0])} entries"
                except chat.KnowledgeBaseError:
                    return "refused"
            yield name, case

def peak_mb():
    """This process's own peak resident size (VmHWM). Not getrusage's ru_maxrss: Linux carries that across exec,
    so a worker started from a pytest process holding the models reported the parent's 1,630 MB."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


for name, case in run(sys.argv[1]):
    started = time.perf_counter()
    try:
        outcome = case()
    except Exception as exc:  # a crash: reported, the test fails
        outcome = f"CRASH {type(exc).__name__}: {exc}"[:300]
    print(json.dumps({"case": name, "outcome": outcome, "seconds": round(time.perf_counter() - started, 2),
                      "peak_mb": peak_mb()}), flush=True)
'''


@pytest.mark.parametrize("kind", ["csv", "image", "faq"])
def test_hostile_uploads_never_crash_hang_or_exhaust_memory(kind):
    done = subprocess.run([sys.executable, "-c", WORKER, kind], cwd=ROOT, capture_output=True, text=True,
                          timeout=SECONDS * 4)
    assert done.returncode == 0, done.stderr[-3000:]
    cases = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    print("\n".join(f"{c['case']}: {c['outcome']} ({c['seconds']} s, peak {c['peak_mb']} MB)" for c in cases))
    assert len(cases) >= 7
    for c in cases:
        assert not c["outcome"].startswith("CRASH"), c
        assert c["seconds"] < SECONDS, c
        assert c["peak_mb"] < PEAK_MB, c
