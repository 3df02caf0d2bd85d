"""Reading text files that users upload (any encoding, any delimiter, never a crash), showing what visitors
typed as plain text, and CSV downloads that spreadsheets cannot run."""
from __future__ import annotations

import codecs
import csv
import html
import io
import re

import numpy as np
import pandas as pd

from core import config

MAX_UPLOAD_ROWS = 200_000
# byte-order marks, UTF-32 before UTF-16 (UTF-32 LE starts with UTF-16 LE's mark)
BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
        (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))


class UploadError(ValueError):
    """An upload we cannot use. The message says what is wrong and what to do."""


def decode_text(data: bytes, name: str) -> tuple[str, str]:
    """(text, notice): UTF-8 with or without BOM, else Windows-1252 with a notice; binary is refused."""
    if not data.strip():
        raise UploadError(f"{name} is empty.")
    for bom, encoding in BOMS:  # UTF-16/32 (Excel's "Unicode text") have NUL bytes but are text
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(encoding), ""
            except UnicodeDecodeError as exc:
                raise UploadError(f"{name} starts like {encoding.upper()} text but is not valid {encoding.upper()} "
                                  f"({exc.reason}). Save it again as CSV (UTF-8) and try again.") from None
    if b"\x00" in data[:4096]:
        raise UploadError(f"{name} looks like a binary file, not text. Export it as CSV (UTF-8) and try again.")
    try:
        return data.decode("utf-8-sig"), ""
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace"), (
            f"{name} is not UTF-8; it was read as Windows-1252. Check accented characters, or save it as UTF-8.")


def read_csv(data: bytes, name: str) -> tuple[pd.DataFrame, list[str]]:
    """A table of strings from an uploaded CSV (comma, semicolon or tab), with notices about what was done."""
    text, notice = decode_text(data, name)
    notices = [notice] if notice else []
    try:
        sample = text[:8192]
        delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t").delimiter if sample.count("\n") else ","
    except csv.Error:
        delimiter = ","
    refusal = config.over_budget("max_csv_columns", header_width(text, delimiter), f"Columns in {name}")
    if refusal:  # counted on the header alone: a 100,000-column file is refused before pandas reads it
        raise UploadError(refusal)
    bad_lines: list = []
    try:
        frame = pd.read_csv(io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=False, engine="python",
                            on_bad_lines=lambda line: bad_lines.append(line) or None, nrows=MAX_UPLOAD_ROWS + 1,
                            index_col=False)  # else a line with extra fields turns columns into an index
    except (csv.Error, pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise UploadError(f"{name} is not a readable CSV file ({exc}).") from exc
    if bad_lines:
        notices.append(f"{len(bad_lines)} malformed line(s) with the wrong number of fields were skipped.")
    if len(frame) > MAX_UPLOAD_ROWS:
        frame = frame.head(MAX_UPLOAD_ROWS)
        notices.append(f"Only the first {MAX_UPLOAD_ROWS:,} rows were read.")
    frame.columns = _unique_names(frame.columns, name)
    return frame, notices


def header_width(text: str, delimiter: str) -> int:
    """How many fields the first record of a CSV text has (its header), read by the csv module alone."""
    try:
        return len(next(csv.reader(io.StringIO(text), delimiter=delimiter), []))
    except csv.Error:  # a field over csv's size limit, a NUL: pandas reports it below
        return 0


def _unique_names(columns, name: str) -> list[str]:
    """Column names without surrounding spaces; two that become the same ("Age" and "Age ") are refused."""
    names = [str(c).strip() for c in columns]
    clashes = [[repr(str(c)) for c, n in zip(columns, names) if n == dup] for dup in dict.fromkeys(names)
               if names.count(dup) > 1]
    if clashes:
        listed = "; ".join(" and ".join(group) for group in clashes)
        raise UploadError(f"{name} has columns whose names differ only in spaces ({listed}), so we cannot tell them "
                          "apart. Rename or delete one of each and upload again.")
    return names


def numbers(values: pd.Series) -> pd.Series:
    """Numbers from a column that may hold strings; unparseable cells become NaN.

    A comma is a thousands separator ("1,200.50") unless some cell of the column can only be read with a
    decimal comma ("1,5", "1.234,56"): then the whole column is read that way, dots being thousands separators."""
    if pd.api.types.is_numeric_dtype(values):
        return values.astype(float)
    text = values.astype("string").str.strip()
    decimal_comma = text.str.fullmatch(r"[-+]?(\d{1,3}(\.\d{3})+|\d*),\d+") & ~text.str.fullmatch(
        r"[-+]?\d{1,3}(,\d{3})+")
    if decimal_comma.fillna(False).any():
        text = text.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
    else:
        text = text.str.replace(",", "", regex=False)
    return pd.to_numeric(text.mask(text == ""), errors="coerce").astype(float)


# --- visitor text on a page ----------------------------------------------------------------------------

WORD_JOINER = "\u2060"  # invisible, zero width: breaks a pattern without changing what the reader sees
_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>$=])")
_AUTOLINK = re.compile(r"(?i)(?P<colon>:)|\b(?P<www>www)(?=\.)|(?P<at>@)")


def _break_link(match: re.Match) -> str:
    return {"colon": ":" + WORD_JOINER, "www": match.group(0) + WORD_JOINER, "at": WORD_JOINER + "@"}[match.lastgroup]


def plain(text) -> str:
    """Markdown that shows `text` exactly as typed: no HTML, formatting, links, images, maths, colours, emoji
    codes or auto-links from it. Escaping alone does not stop GitHub-style auto-links (a bare http://host,
    www.host or name@host becomes a link after escapes are resolved), so an invisible word joiner goes after
    every ':' (which also stops :red[...] and :emoji: codes), after 'www' and before '@'."""
    text = _AUTOLINK.sub(_break_link, html.escape(str(text), quote=False))
    text = _PUNCTUATION.sub(r"\\\1", text)
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "  \n")


# --- CSV downloads -------------------------------------------------------------------------------------

FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")  # and their full-width forms
_NUMBER = re.compile(r"[-+]?[\d.][\d.,]*(?:[eE][-+]?\d+)?")


def safe_cell(value):
    """A CSV cell a spreadsheet shows and never runs (OWASP CSV injection): text that starts, after any
    spaces, with =, +, -, @, a tab or a line break gets a leading apostrophe. Numbers stay numbers, also
    when written as text ("-3.5"): only digits, signs, separators and an exponent cannot make a formula."""
    if value is None or isinstance(value, (bool, int, float, np.integer, np.floating)):
        return value
    text = str(value)
    if text.lstrip(" ").startswith(FORMULA_START) and not _NUMBER.fullmatch(text.strip()):
        return "'" + text
    return text


def csv_download(frame: pd.DataFrame) -> bytes:
    """The bytes of every CSV we offer for download (UTF-8): each text cell and header through `safe_cell`,
    every text cell quoted (so a tab or line break inside one cannot split a row), numbers unquoted."""
    out = frame.copy()
    out.columns = [safe_cell(str(c)) for c in out.columns]
    for i in range(out.shape[1]):
        values = out.iloc[:, i]
        if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
            out.isetitem(i, values.map(safe_cell, na_action="ignore").astype(object))
    return out.to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\r\n").encode("utf-8")
