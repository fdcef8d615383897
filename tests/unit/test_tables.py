import csv
import io

from openpyxl import load_workbook

from shared.adapters.tables import safe_cell, to_csv, to_xlsx


def test_formula_like_text_is_neutralised() -> None:
    for text in ("=1+1", "+SUM(A1)", "-2", "@cmd", "\t=x"):
        assert safe_cell(text) == "'" + text
    assert safe_cell("Sở Y tế") == "Sở Y tế"
    assert safe_cell(-5) == -5  # numbers stay numbers


def test_csv_and_xlsx_keep_text_as_text_and_money_exact() -> None:
    header = ["Đơn vị", "Số tiền"]
    rows = [['=HYPERLINK("x")', 33_224_853_808]]
    text = to_csv(header, rows).decode("utf-8-sig")
    assert list(csv.reader(io.StringIO(text))) == [header, ['\'=HYPERLINK("x")', "33224853808"]]
    sheet = load_workbook(io.BytesIO(to_xlsx("Báo cáo", header, rows))).active
    assert sheet is not None
    assert sheet["A3"].value == '\'=HYPERLINK("x")'
    assert sheet["A3"].data_type == "s"
    assert sheet["B3"].value == 33_224_853_808
