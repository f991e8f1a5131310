"""The HTML report as a browser shows it: rendered by headless Chromium at 1,400 px, checked on the DOM.

Chromium comes from Debian's ``chromium`` package, which ``make test`` installs where it can; where it cannot be
installed these tests are skipped with that reason.
"""

import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from zoo.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed (make test "
                                                          "installs it where apt-get can)")

# Appended to a copy of the page: after layout, write what the browser computed into the DOM, so the dump shows it.
PROBE = """<script>
window.addEventListener('load', () => {
  const b = document.body;
  b.dataset.scrollWidth = document.documentElement.scrollWidth;
  b.dataset.imagesLoaded = [...document.images].filter(i => i.complete && i.naturalWidth > 0).length;
  b.dataset.images = document.images.length;
  b.dataset.brokenAnchors = [...document.querySelectorAll("a[href^='#']")]
      .filter(a => !document.getElementById(a.getAttribute('href').slice(1))).length;
});
</script>"""


class DOM(HTMLParser):
    def __init__(self):
        super().__init__()
        self.body, self.tables, self._table, self._row, self._cell = {}, [], None, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.body = attrs
        elif tag == "table":
            self._table = {"class": attrs.get("class", ""), "head": [], "rows": []}
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = {"tag": tag, "class": attrs.get("class", ""), "text": ""}

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            (self._table["rows"] if self._table["head"] else self._table["head"]).append(self._row)
            self._row = None
        elif tag == "table" and self._table is not None:
            self.tables.append(self._table)
            self._table = None


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    assert main(["compare", "normal", "poisson", "--estimators", "mle,em,map", "--out", str(out), "--quiet"]) == 0
    page = out / "index.html"
    probe = out / "probe.html"
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={out / 'profile'}", "--window-size=1400,1000",
                           "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = DOM()
    dom.feed(proc.stdout)
    return dom


def test_the_page_fits_1400_pixels_and_every_figure_and_anchor_works(rendered):
    body = rendered.body
    assert int(body["data-scroll-width"]) <= 1400
    assert int(body["data-images"]) >= 4 and body["data-images-loaded"] == body["data-images"]
    assert body["data-broken-anchors"] == "0"


def test_estimate_tables_have_one_header_row_the_truth_highlighted_and_errors_in_the_cell(rendered):
    estimates = [t for t in rendered.tables if t["class"] == "estimates"]
    assert len(estimates) == 2
    for table in estimates:
        (head,) = table["head"]
        names = [c["text"] for c in head]
        assert names == ["parameter", "truth", "mle", "em", "map"]
        assert head[1]["class"] == "hl"
        for row in table["rows"]:
            assert row[0]["tag"] == "th" and row[0]["text"]  # a parameter label, never a blank index row
            assert row[1]["class"] == "hl" and row[1]["text"]
            for cell in row[2:]:
                value, sd = cell["text"].split(" ± ")
                # significant digits: the value to the decimal place of the error's second digit
                assert len(value.split(".")[-1]) == len(sd.split(".")[-1]) if "." in sd else "." not in value


def test_summary_tables_show_aic_and_bic_for_point_estimators(rendered):
    summaries = [t for t in rendered.tables if t["class"] == "summary"]
    assert len(summaries) == 2
    for table in summaries:
        names = [c["text"] for c in table["head"][0]]
        assert names[:4] == ["estimator", "log-likelihood", "AIC", "BIC"]
        for row in table["rows"]:
            loglik, aic = (float(c["text"].replace(",", "")) for c in row[1:3])
            assert aic > -2 * loglik  # -2 log L + 2 p with p >= 1
