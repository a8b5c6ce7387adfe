"""report.html in a real browser: headless Chromium at 1,280 px (skipped without it).

The page of the committed CIFAR-10 study's records (and pictures) must be no wider than the window,
every image must load, and the table must sort by a column when its heading is clicked.
A probe script appended to a copy of the page writes what the browser measured into the
DOM, which ``--dump-dom`` prints.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = next((c for c in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(c)), None)
RUNS = Path(__file__).resolve().parents[1] / "results" / "studies" / "cifar10" / "runs"

PROBE = """<script>
window.addEventListener('load', function () {
  var imgs = Array.from(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var th = document.querySelectorAll('table.study th')[6];  // test acc
  th.click();
  var col = Array.from(document.querySelectorAll('table.study tbody tr')).map(
    function (r) { return r.cells[6].innerText; });
  var out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = 'width=' + document.documentElement.scrollWidth + ' window=' +
    window.innerWidth + ' images=' + ok + '/' + imgs.length + ' sorted=' + col.join(',');
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (Debian: apt-get install chromium)")
def test_report_fits_a_1280px_window_and_its_images_load(tmp_path):
    from featbench.report import render

    if not RUNS.is_dir():
        pytest.skip(f"no committed study records at {RUNS}")
    shutil.copytree(RUNS, tmp_path / "runs")
    pictures = sorted((RUNS.parent / "pictures").glob("*.png"))
    if pictures:  # the study's pictures (featbench show), shown under the plots
        shutil.copytree(RUNS.parent / "pictures", tmp_path / "pictures")
    page = render(tmp_path)["report.html"]
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,900",
         "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120).stdout
    m = re.search(r"width=(\d+) window=(\d+) images=(\d+)/(\d+) sorted=([^<]*)", dom)
    assert m, dom[-500:]
    width, window, ok, n_images = (int(m[i]) for i in range(1, 5))
    assert window == 1280 and width <= window
    assert n_images == 4 + len(pictures) and ok == n_images
    values = [float(v) for v in m[5].split(",")]
    assert values == sorted(values) and len(values) >= 25
    assert "/work/" not in page.read_text().split("<body>")[0]  # no absolute path in the title
