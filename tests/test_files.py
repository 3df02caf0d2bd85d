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


# --- the readers, on their own (fast: mutation testing runs these, `make mutate`) ------------------------

def test_csv_uploads_are_read_up_to_200000_rows_with_a_notice():
    assert files.MAX_UPLOAD_ROWS == 200_000
    header = b"a,b\r\n"
    exact, notices = files.read_csv(header + b"1,2\r\n" * 200_000, "exact.csv")
    assert len(exact) == 200_000 and notices == []
    cut, notices = files.read_csv(header + b"1,2\r\n" * 200_001, "long.csv")
    assert len(cut) == 200_000 and notices == ["Only the first 200,000 rows were read."]


@pytest.mark.parametrize("data, delimiter", [(b"a,b\n1,2\n3,4\n", ","), (b"a;b\n1;2\n3;4\n", ";"),
                                             (b"a\tb\n1\t2\n3\t4\n", "\t")])
def test_csv_delimiters_are_sniffed(data, delimiter):
    frame, notices = files.read_csv(data, "x.csv")
    assert list(frame.columns) == ["a", "b"] and frame.values.tolist() == [["1", "2"], ["3", "4"]] and notices == []


def test_a_one_line_csv_and_malformed_lines_are_read_with_notices():
    frame, notices = files.read_csv(b"only,header", "h.csv")
    assert list(frame.columns) == ["only", "header"] and frame.empty and notices == []
    for bad in (b"3,4,5", b"3,4,5,6"):  # twice the header's fields once turned the first columns into an index
        frame, notices = files.read_csv(b"a,b\n1,2\n" + bad + b"\n7,8\n", "bad.csv")
        assert frame.values.tolist() == [["1", "2"], ["7", "8"]] and frame.index.tolist() == [0, 1]
        assert notices == ["1 malformed line(s) with the wrong number of fields were skipped."]
    frame, _ = files.read_csv(b" a , b\n1,2\n", "spaces.csv")
    assert list(frame.columns) == ["a", "b"]


@pytest.mark.parametrize("data, says", [(b"", "is empty"), (b"  \n ", "is empty"),
                                        (b"PK\x03\x04\x00\x00binary", "looks like a binary file"),
                                        (b"\xff\xfe\x00\xd8", "starts like UTF-16-LE text but is not valid")])
def test_unreadable_uploads_say_what_is_wrong(data, says):
    with pytest.raises(files.UploadError, match=re.escape(says)) as info:
        files.decode_text(data, "up.csv")
    assert "up.csv" in str(info.value)


def test_text_encodings_are_recognised():
    assert files.decode_text("naïve".encode("utf-8"), "u.csv") == ("naïve", "")
    assert files.decode_text(b"\xef\xbb\xbfa,b", "bom.csv") == ("a,b", "")
    text, notice = files.decode_text("café".encode("cp1252"), "w.csv")
    assert text == "café" and "Windows-1252" in notice and "w.csv" in notice
    for encoding, bom in (("utf-32-le", b"\xff\xfe\x00\x00"), ("utf-16-be", b"\xfe\xff")):
        assert files.decode_text(bom + "é,x".encode(encoding), "u.csv") == ("é,x", "")


@pytest.mark.parametrize("cells, expected", [
    (["1,200.50", "3", ""], [1200.5, 3.0, None]), (["1,5", "1.234,56"], [1.5, 1234.56]),
    (["1,234", "2,000"], [1234.0, 2000.0]), (["-7", "+2.5", "x"], [-7.0, 2.5, None]), ([" 4 ", "5"], [4.0, 5.0]),
    (["1,200", None], [1200.0, None])])
def test_numbers_read_thousands_and_decimal_commas(cells, expected):
    got = files.numbers(pd.Series(cells, dtype=object)).tolist()
    assert [None if np.isnan(g) else g for g in got] == expected
    assert files.numbers(pd.Series([1, 2])).dtype == float


@pytest.mark.parametrize("value, safe", [
    ("=1+1", "'=1+1"), ("+cmd", "'+cmd"), ("-x", "'-x"), ("@SUM(A1)", "'@SUM(A1)"), ("\t=x", "'\t=x"),
    ("\r=x", "'\r=x"), ("\n=x", "'\n=x"), ("  =x", "'  =x"), ("＝x", "'＝x"), ("＋x", "'＋x"), ("－x", "'－x"),
    ("＠x", "'＠x"), ("-3.5", "-3.5"), ("+1,000", "+1,000"), ("1e-5", "1e-5"), ("-2E+3", "-2E+3"), ("ok", "ok"),
    ("a=b", "a=b"), ("", ""), (None, None), (3, 3), (-2.5, -2.5), (True, True), (np.int64(4), np.int64(4)),
    ("-1e5x", "'-1e5x"), ("- 3", "'- 3"), ("X=1", "X=1"), ("X =1", "X =1")])
def test_safe_cell_neutralises_formulas_and_keeps_numbers(value, safe):
    assert files.safe_cell(value) == safe


def test_csv_download_quotes_text_and_leaves_numbers_and_booleans_bare():
    frame = pd.DataFrame({"=h": ["a\tb", None], "n": [1.5, 2.0], "flag": [True, False], "when": ["-1", "=2"]})
    out = files.csv_download(frame).decode("utf-8")
    assert out.split("\r\n")[0] == '"\'=h","n","flag","when"'
    assert out.split("\r\n")[1] == '"a\tb",1.5,True,"-1"'
    assert out.split("\r\n")[2] == '"",2.0,False,"\'=2"' and out.endswith("\r\n")


@pytest.mark.parametrize("text, shown", [
    ("a*b*", "a\\*b\\*"), ("<i>", "&lt;i&gt;"), ("http://x", "http:\u2060//x"), ("www.x", "www\u2060\\.x"),
    ("a@b", "a\u2060@b"), ("1\n2", "1  \n2"), ("1\r\n2\r3", "1  \n2  \n3"), (":red[x]", ":\u2060red\\[x\\]"),
    ("$x$", "\\$x\\$"), (42, "42"), ("a & b", "a &amp; b"), ("\"q\"", "\"q\"")])
def test_plain_escapes_exactly_what_markdown_would_act_on(text, shown):
    assert files.plain(text) == shown


def test_reader_messages_name_the_file_and_say_what_to_do():
    with pytest.raises(files.UploadError) as info:
        files.read_csv(b'"a\nb', "quote.csv")
    assert str(info.value) == "quote.csv is not a readable CSV file (No columns to parse from file)."
    with pytest.raises(files.UploadError) as info:
        files.read_csv(b"a,b\n1,2\x00", "nul.csv")
    assert str(info.value) == "nul.csv looks like a binary file, not text. Export it as CSV (UTF-8) and try again."
    with pytest.raises(files.UploadError) as info:
        files.read_csv(b"Age, Age ,x,x \n1,2,3,4\n", "clash.csv")
    assert str(info.value) == ("clash.csv has columns whose names differ only in spaces ('Age' and ' Age '; 'x' and "
                               "'x '), so we cannot tell them apart. Rename or delete one of each and upload again.")
    with pytest.raises(files.UploadError) as info:
        files.decode_text(b"\xff\xfe\x00\xd8", "u16.csv")
    assert str(info.value) == ("u16.csv starts like UTF-16-LE text but is not valid UTF-16-LE (unexpected end of "
                               "data). Save it again as CSV (UTF-8) and try again.")


def test_cells_are_kept_as_typed_and_undecodable_bytes_are_replaced():
    frame, _ = files.read_csv(b"a,b\nNA,null\nN/A,\n", "na.csv")
    assert frame.values.tolist() == [["NA", "null"], ["N/A", ""]]  # no cell is guessed to be missing
    text, notice = files.decode_text(b"caf\xe9 \x81", "w.csv")  # 0x81 is no character in Windows-1252 either
    assert text == "café \ufffd" and "read as Windows-1252" in notice


@pytest.mark.parametrize("data", [b"a b\n1 2\n", b"a|b\n1|2\n"])
def test_only_commas_semicolons_and_tabs_separate_columns(data):
    frame, _ = files.read_csv(data, "s.csv")
    assert frame.shape == (1, 1)  # a space or a bar is text inside the one column


def test_header_width_counts_the_first_record_and_is_zero_when_csv_cannot_read_it():
    assert files.header_width("a;b;c\n1;2;3\n", ";") == 3
    assert files.header_width("", ",") == 0
    # A quoted header field over the csv module's field limit: csv refuses it, the width is 0 and pandas reports it.
    too_long = '"' + "a" * (csv.field_size_limit() + 1) + '",b\n1,2\n'
    assert files.header_width(too_long, ",") == 0
