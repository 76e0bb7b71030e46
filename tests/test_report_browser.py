"""Every kind of report fits a 1280-px-wide window: nothing is cut off and the page never scrolls sideways.

One smoke run (synthetic data) per kind of report: the first experiment of each distinct run function, so every
family and every report layout is covered (e.g. alphazero's wide `final_match` / `generations` tables). Two checks:

- without a browser: the HTML itself puts every table with more than `WIDE_TABLE_COLUMNS` columns inside a
  horizontally scrolling box and gives every picture a `max-width` (so a wide figure is scaled, not cut);
- in headless Chromium where one is installed (`chromium`, `chromium-browser`, `google-chrome`, ...; skipped
  otherwise, saying so): from the rendered page, its scroll width against the viewport's width, naming the
  elements that stick out when it fails; then a 1280-px-wide screenshot of the whole page, kept for a person to
  look at under pytest's temporary directory (`/tmp/pytest-of-$USER/pytest-current/report-screenshots/`).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from dldojo.engine import registry

VIEWPORT_WIDTH = 1280
WIDE_TABLE_COLUMNS = 5
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chromium-headless-shell",
            "chrome-headless-shell", "chrome")


def report_kinds() -> list[str]:
    """The first experiment (by name) of each distinct run function: one report of every layout."""
    kinds: dict[tuple[str, str], str] = {}
    for name, experiment in registry.load_all().items():
        kinds.setdefault((experiment.run.__module__, experiment.run.__qualname__), name)
    return sorted(kinds.values())


KINDS = report_kinds()


@pytest.fixture(scope="module")
def reports(synthetic_root, tmp_path_factory):
    """`reports(name)` -> {"en": report.html, "ja": report-ja.html} of a smoke run of `name` (run once, on first
    use, so that selecting a few tests with -k runs only their experiments)."""
    from dldojo.engine.launch import run_experiment
    from dldojo.engine.report import build_report

    root = tmp_path_factory.mktemp("report-runs")
    pages: dict[str, dict[str, Path]] = {}
    env = {"DLDOJO_DATA": str(synthetic_root), "DLDOJO_OFFLINE": "1", "XDG_CACHE_HOME": str(root / "cache"),
           "DLDOJO_RUNS": str(root / "runs")}

    def of(name: str) -> dict[str, Path]:
        if name not in pages:
            with pytest.MonkeyPatch.context() as patch:
                for key, value in env.items():
                    patch.setenv(key, value)
                run_dir = Path(run_experiment(name, preset="smoke", quiet=True, seed=1, report=False)["run_dir"])
                ja = build_report(run_dir, lang="ja").replace(run_dir / "report-ja.html")
                pages[name] = {"en": build_report(run_dir), "ja": ja}
        return pages[name]

    return of


# ----- the HTML itself -----

class _Page(HTMLParser):
    """The tables (column count, classes of their ancestors), the pictures (inline style) and the CSS of a page."""

    VOID = {"img", "br", "meta", "link", "input", "hr", "wbr", "col", "source"}

    def __init__(self):
        super().__init__()
        self.open: list[tuple[str, set[str]]] = []
        self.tables: list[dict] = []
        self.images: list[dict] = []
        self.css = ""
        self._row_cells: int | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append({"style": attrs.get("style") or "", "alt": attrs.get("alt") or "",
                                "ancestors": [t for t, _ in self.open]})
        elif tag == "table":
            self.tables.append({"columns": 0, "ancestor_classes": set().union(*(c for _, c in self.open))
                                if self.open else set()})
        elif tag == "tr":
            self._row_cells = 0
        elif tag in ("td", "th") and self._row_cells is not None:
            self._row_cells += 1
        if tag not in self.VOID:
            self.open.append((tag, set((attrs.get("class") or "").split())))

    def handle_endtag(self, tag):
        if tag == "tr" and self._row_cells is not None and self.tables:
            self.tables[-1]["columns"] = max(self.tables[-1]["columns"], self._row_cells)
            self._row_cells = None
        for i in range(len(self.open) - 1, -1, -1):  # close up to the matching tag
            if self.open[i][0] == tag:
                del self.open[i:]
                break

    def handle_data(self, data):
        if self.open and self.open[-1][0] == "style":
            self.css += data


def css_rules(css: str) -> dict[str, str]:
    """selector -> declarations (whitespace removed) of a flat style sheet; a selector list gives each one."""
    rules: dict[str, str] = {}
    for selectors, body in re.findall(r"([^{}]+)\{([^}]*)\}", css):
        for selector in selectors.split(","):
            rules[selector.strip()] = rules.get(selector.strip(), "") + re.sub(r"\s+", "", body) + ";"
    return rules


@pytest.mark.parametrize("name", KINDS)
def test_wide_tables_scroll_and_pictures_shrink_to_the_page(name, reports):
    for lang, path in reports(name).items():
        page = _Page()
        page.feed(path.read_text())
        rules = css_rules(page.css)
        scrolling = {selector[1:] for selector, body in rules.items()
                     if selector.startswith(".") and re.search(r"overflow(-x)?:(auto|scroll)", body)}
        assert scrolling, f"{name} ({lang}): no scrolling box in the style sheet"
        wide = [t for t in page.tables if t["columns"] > WIDE_TABLE_COLUMNS]
        loose = [t["columns"] for t in wide if not t["ancestor_classes"] & scrolling]
        assert not loose, f"{name} ({lang}): tables of {loose} columns outside a scrolling box"
        assert page.images, f"{name} ({lang}): no pictures (at least the training curves)"
        page_rule = "max-width:100%" in rules.get("img", "")
        unbounded = [i["alt"] for i in page.images if not page_rule and "max-width" not in i["style"]]
        assert not unbounded, f"{name} ({lang}): pictures without a max-width: {unbounded}"
        assert "max-width" in rules.get("body", ""), f"{name} ({lang}): the text column has no maximum width"


# ----- a real browser -----

def browser() -> str | None:
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


MEASURE = """<script>
addEventListener("load", () => {
  const root = document.documentElement, width = root.clientWidth;
  const out = [...document.body.querySelectorAll("*")].filter(e => {
    const parent = e.parentElement && e.parentElement.closest(".scroll");
    return !parent && e.id !== "dldojo-measure" && e.getBoundingClientRect().right > width + 0.5;
  }).map(e => `${e.tagName.toLowerCase()}${e.className ? "." + e.className : ""} ` +
              `(right edge ${Math.round(e.getBoundingClientRect().right)} px)`);
  const pre = document.createElement("pre");
  pre.id = "dldojo-measure";
  pre.textContent = JSON.stringify({scrollWidth: root.scrollWidth, clientWidth: width, innerWidth: innerWidth,
                                    scrollHeight: root.scrollHeight, outside: out.slice(0, 10)});
  document.body.appendChild(pre);
});
</script>"""


def _chromium(exe: str, profile: Path, *args: str, height: int = 1000) -> subprocess.CompletedProcess:
    return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--hide-scrollbars", "--no-first-run", f"--user-data-dir={profile}",
                           f"--window-size={VIEWPORT_WIDTH},{height}", "--virtual-time-budget=10000", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize("name", KINDS)
def test_report_fits_1280_px_in_chromium(name, reports, tmp_path, tmp_path_factory):
    exe = browser()
    if exe is None:
        pytest.skip(f"no headless Chromium on PATH (looked for {', '.join(BROWSERS)}); install one, e.g. "
                    f"`apt-get install chromium`, to render the reports in a real browser")
    from PIL import Image

    shots = tmp_path_factory.getbasetemp() / "report-screenshots"
    shots.mkdir(exist_ok=True)
    for lang, path in reports(name).items():
        measured = tmp_path / f"{lang}.html"
        measured.write_text(path.read_text().replace("</body>", MEASURE + "</body>"))
        dom = _chromium(exe, tmp_path / "profile", "--dump-dom", measured.as_uri())
        found = re.search(r'<pre id="dldojo-measure">(.*?)</pre>', dom.stdout, re.S)
        assert found, f"{name} ({lang}): Chromium rendered nothing measurable: {dom.stderr[-500:]}"
        result = json.loads(found.group(1).replace("&quot;", '"').replace("&gt;", ">").replace("&lt;", "<")
                            .replace("&amp;", "&"))
        assert result["innerWidth"] == VIEWPORT_WIDTH, result
        assert result["scrollWidth"] <= result["clientWidth"], \
            f"{name} ({lang}): the page is {result['scrollWidth']} px wide in a {result['clientWidth']} px window; " \
            f"sticking out: {result['outside']}"
        assert not result["outside"], f"{name} ({lang}): cut off at {VIEWPORT_WIDTH} px: {result['outside']}"

        shot = shots / f"{name}-{lang}.png"
        _chromium(exe, tmp_path / "profile", f"--screenshot={shot}", path.as_uri(),
                  height=min(result["scrollHeight"], 16000))  # the whole page, for a person to look at
        assert shot.exists(), f"{name} ({lang}): no screenshot"
        with Image.open(shot) as image:
            assert image.width == VIEWPORT_WIDTH
