"""Reading text files that users upload: any encoding, any delimiter, never a crash."""
from __future__ import annotations

import csv
import io

import pandas as pd

MAX_UPLOAD_ROWS = 200_000


class UploadError(ValueError):
    """An upload we cannot use. The message says what is wrong and what to do."""


def decode_text(data: bytes, name: str) -> tuple[str, str]:
    """(text, notice): UTF-8 with or without BOM, else Windows-1252 with a notice; binary is refused."""
    if not data.strip():
        raise UploadError(f"{name} is empty.")
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
    bad_lines: list = []
    try:
        frame = pd.read_csv(io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=False, engine="python",
                            on_bad_lines=lambda line: bad_lines.append(line) or None, nrows=MAX_UPLOAD_ROWS + 1)
    except (csv.Error, pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise UploadError(f"{name} is not a readable CSV file ({exc}).") from exc
    if bad_lines:
        notices.append(f"{len(bad_lines)} malformed line(s) with the wrong number of fields were skipped.")
    if len(frame) > MAX_UPLOAD_ROWS:
        frame = frame.head(MAX_UPLOAD_ROWS)
        notices.append(f"Only the first {MAX_UPLOAD_ROWS:,} rows were read.")
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame, notices


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
