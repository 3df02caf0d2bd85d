"""core.files: visitor text shown as text (plain) on every page that shows it, CSV downloads a spreadsheet
cannot run (csv_download), and uploads that used to crash (colliding column names, UTF-16/32 with a BOM)."""
import csv
import io
import re
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core import files, store, vision

HOSTILE = ["![x](http://host/p.png)", "[Sign in](http://host/l)", "<b>x</b>"]


def app() -> AppTest:
    return AppTest.from_file("../app.py", default_timeout=120)


AUTOLINKS = [re.compile(r"(https?://|www(?=\.))([-.\w]+)", re.I),  # remark-gfm's literal autolinks
             re.compile(r"([-.\w+]+)@([-\w]+(?:\.[-\w]+)+)")]


def shown_literally(markdown: str, text: str) -> bool:
    """`markdown` has `text` in it only as text: escaped, no tag, no link, no auto-link."""
    return (files.plain(text) in markdown and text not in markdown
            and not any(p.search(markdown) for p in AUTOLINKS) and "<b>" not in markdown)


@pytest.mark.parametrize("text", HOSTILE + ["see http://host/l or www.host.com, mail me@host.com :red[x] $x$"])
def test_plain_markdown_renders_to_the_text_itself(text):
    markdown_it = pytest.importorskip("markdown_it")
    rendered = markdown_it.MarkdownIt("gfm-like", {"linkify": False}).render(files.plain(text))
    assert "<a" not in rendered and "<img" not in rendered and "<b>" not in rendered
    assert not any(p.search(files.plain(text)) for p in AUTOLINKS)
    visible = re.sub(r"<[^>]+>", "", rendered).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    assert visible.replace(files.WORD_JOINER, "").strip() == text  # the reader sees exactly what was typed


def everything_shown(at: AppTest) -> list[str]:
    shown = [e.value for kind in ("markdown", "caption", "success", "info", "warning", "error")
             for e in getattr(at, kind)]
    return shown + [e.label for e in at.expander]


def test_saved_class_names_render_as_text_for_the_next_visitor(tmp_path, monkeypatch):
    monkeypatch.setenv("LAUNCHPAD_STORE", str(tmp_path))
    classes = HOSTILE
    model = vision.CustomClassifier(classes, np.zeros((3, 8), np.float32), np.zeros(3, np.float32),
                                    {"examples": {c: 2 for c in classes}, "loo_accuracy": 1.0})
    vision.save_custom(model, "hostile")
    at = app().run()
    at.switch_page("pages/image_classifier.py").run()
    at.selectbox(key="saved-choice").set_value("hostile")
    at.button(key="load-custom").click().run()
    assert not at.exception
    caption = next(s for s in everything_shown(at) if s.startswith("Examples per class"))
    for name in classes:
        assert shown_literally(caption, name), caption
    assert not any(name in s for s in everything_shown(at) for name in classes)


def test_ticket_text_renders_as_text_on_the_support_desk():
    question = "Refund? " + " ".join(HOSTILE) + " http://host/l"
    store.create_ticket(question, [{"role": "user", "content": question}, {"role": "assistant", "content": "<b>x</b>"}],
                        "[Sign in](http://host/l)", "me@host.com")
    at = app().run()
    at.switch_page("pages/support_desk.py").run()
    assert not at.exception
    shown = everything_shown(at)
    assert any(shown_literally(s, question) for s in shown)  # the conversation
    assert any(files.plain(question[:80]) in label for label in (e.label for e in at.expander))
    assert not any(raw in s for s in shown for raw in HOSTILE + ["http://host"])
    assert any(c.value == "me@host.com" for c in at.code)  # copyable, without hidden characters


FORMULAS = ["=HYPERLINK(\"http://host\",\"x\")", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rsplit,row", "  =1+1",
            "＝1+1"]


def test_csv_download_neutralises_every_formula_cell_and_keeps_numbers():
    frame = pd.DataFrame({"text": FORMULAS, "n": [-3.5, 0, 1e6, -1, 2, 3, 4, 5],
                          "mixed": ["-3.5", "ok", None, "1,200.50", 7, -4.25, "=x", "a\r\nb"],
                          "=header": ["fine"] * 8})
    rows = list(csv.reader(io.StringIO(files.csv_download(frame).decode("utf-8"), newline="")))
    assert len(rows) == 1 + len(frame)  # no cell split a row
    for row in rows:
        assert len(row) == 4
        for cell in row:
            if cell.lstrip(" ").startswith(files.FORMULA_START):
                assert re.fullmatch(r"[-+]?[\d.][\d.,]*(e[-+]?\d+)?", cell.strip(), re.I), cell  # only numbers
    assert rows[0][3] == "'=header"
    assert [r[0] for r in rows[1:]] == ["'" + f for f in FORMULAS]
    assert [float(r[1]) for r in rows[1:]] == frame.n.tolist()  # numbers stay numbers
    assert [r[2] for r in rows[1:]][:2] == ["-3.5", "ok"] and rows[6][2] == "-4.25" and rows[7][2] == "'=x"


def test_no_page_writes_a_csv_download_of_its_own():
    pages = Path(__file__).resolve().parent.parent / "pages"
    offenders = [p.name for p in pages.glob("*.py") if ".to_csv(" in p.read_text()]
    assert not offenders, f"use core.files.csv_download in {offenders}"


def test_columns_that_collide_after_trimming_get_a_clear_message():
    with pytest.raises(files.UploadError, match=r"'Age' and 'Age '.*Rename or delete"):
        files.read_csv(b"Age,Age ,Income\n30,31,1000\n", "applicants.csv")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-32-be"])
def test_utf16_and_utf32_csvs_with_a_bom_are_read(encoding):
    text = "name;score\nJosé;3\nZoë;4\n"
    data = text.encode(encoding)
    if not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        data = ("\ufeff" + text).encode(encoding)  # the -be codecs write no BOM of their own
    frame, notices = files.read_csv(data, "scores.csv")
    assert frame.to_dict("records") == [{"name": "José", "score": "3"}, {"name": "Zoë", "score": "4"}]
    assert not notices


def test_plain_keeps_what_the_reader_sees():
    text = "Ünïcödé · 50% off — (maybe) #1 *great* deal_of_the_day"
    assert unicodedata.normalize("NFC", files.plain(text).replace("\\", "")) == text
