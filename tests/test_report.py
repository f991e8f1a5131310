"""The HTML report written by zoo compare --out."""

import json
from html.parser import HTMLParser
from pathlib import Path

from zoo.cli import main


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.text, self.stack, self.cells = [], [], [], []

    VOID = frozenset({"meta", "img", "br", "hr", "link", "input", "col", "source", "wbr"})

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)
        for key, value in attrs:
            if key in ("src", "href") and value:
                self.links.append(value)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}>"
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)
        if self.stack and self.stack[-1] in ("th", "td"):
            self.cells.append(data.strip())


def test_index_page_parses_links_exist_and_names_everything(tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["compare", "normal", "poisson", "--estimators", "mle,map,em,map_em", "--out", str(out), "--quiet"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    page = out / "index.html"
    assert f"wrote {page}" in stdout
    parser = _Collect()
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>")
    parser.feed(html)
    parser.close()
    assert parser.stack == []
    assert parser.links
    for link in parser.links:
        if link.startswith("#"):
            assert f"id='{link[1:]}'" in html
        else:
            assert (out / link).is_file(), link
    pngs = [link for link in parser.links if link.endswith(".png")]
    assert {Path(p).parts[0] for p in pngs} == {"normal", "poisson"}
    headings = [t.strip() for t in parser.text if t.strip()]
    assert "normal" in headings and "poisson" in headings
    runs = json.loads((out / "results.json").read_text())["runs"]
    for run in runs:
        for est, rec in run["estimators"].items():
            # a whole table cell names the estimator (a substring test would let "em" pass on "map_em" alone)
            assert parser.cells.count(est) >= 2, est  # a column of the estimates, a row of the summary
            first = next(iter(rec["params"].values()))
            value = first if isinstance(first, float) else first[0]
            shown = [float(c.split(" ± ")[0].replace(",", "")) for c in parser.cells if " ± " in c]
            assert any(abs(v - value) <= 0.06 * abs(value) * 1e-2 + 1e-3 for v in shown), (est, value)


def test_numbers_are_shown_to_the_precision_of_their_error():
    from zoo.report import sig

    assert sig(1.23456789, 0.00213) == "1.2346 ± 0.0021"
    assert sig(1234.56, 12.3) == "1,235 ± 12"
    assert sig(0.0225532) == "0.02255"
    assert sig(-2090.961523, digits=9) == "-2,090.96152"
    assert sig(3.2e-7) == "3.200e-07" and sig(float("nan")) == ""
