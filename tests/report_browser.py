"""A real headless Chromium for the report's tests and for `make docs`: open a page with a probe script, read back
what the browser laid out (images, problems, elements wider than the window, the verdict's numbers, and the boxes
of the key elements), and compare those boxes with a committed layout snapshot (tests/data/report_layout/), a
screenshot compared as rendered boxes and text rather than as pixels.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

LAYOUT_DIR = Path(__file__).resolve().parent / "data" / "report_layout"
LAYOUT_SNAPSHOTS = ("demo", "known-answer")  # docs/figures/<name>, the committed results snapshots

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

PROBE = r"""<script>
const KEY_ELEMENTS = "h1, h2, .verdict .answer .n, table";
window.__problems = [];
window.addEventListener("error", e => __problems.push("error: " + (e.message || e.target.outerHTML)), true);
document.addEventListener("securitypolicyviolation", e => __problems.push("blocked: " + e.blockedURI));
for (const level of ["error", "warn"]) {
  const original = console[level];
  console[level] = (...args) => { __problems.push(level + ": " + args.join(" ")); original(...args); };
}
window.addEventListener("load", () => {
  const images = [...document.images].map(i => ({alt: i.alt, loaded: i.complete && i.naturalWidth > 0}));
  const out = document.createElement("pre");
  out.id = "probe";
  const width = document.documentElement.clientWidth;
  const describe = e => e.tagName.toLowerCase() + "." + e.className + ": " + e.textContent.slice(0, 60);
  const wide = [...document.body.querySelectorAll("*")].filter(e => e.getBoundingClientRect().right > width + 0.5);
  const verdict = [...document.querySelectorAll(".verdict .answer .n")].map(e => {
    const box = e.getBoundingClientRect();
    return {text: e.textContent, top: box.top, bottom: box.bottom, right: box.right};
  });
  const flat = t => t.trim().replace(/\s+/g, " ").slice(0, 50);
  const key = [...document.querySelectorAll(KEY_ELEMENTS)].map(e => {
    const box = e.getBoundingClientRect();
    const text = e.tagName === "TABLE" ? (e.rows.length ? flat(e.rows[0].textContent) : "") : flat(e.textContent);
    return {tag: e.tagName.toLowerCase(), text, left: Math.round(box.left), top: Math.round(box.top + scrollY),
            width: Math.round(box.width), height: Math.round(box.height)};
  });
  out.textContent = JSON.stringify({images, problems: __problems, height: document.body.scrollHeight, width,
    screen: window.innerHeight, wide: wide.map(describe), verdict, key});
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str | None:
    override = os.environ.get("SCALE_CHROMIUM")
    return override or next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def in_browser(page: str, folder: Path, *extra: str) -> subprocess.CompletedProcess:
    """Open a copy of the page with the probe script (its policy widened for inline scripts only)."""
    probed = page.replace("<head>", "<head>" + PROBE, 1).replace(
        "default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';", 1
    )
    copy = folder / "probed.html"
    copy.write_text(probed)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
             "--virtual-time-budget=10000", *extra, copy.as_uri()],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip


def probe_of(dumped: subprocess.CompletedProcess) -> dict:
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', dumped.stdout, re.S)
    assert found, "the probe did not run: " + dumped.stderr[-2000:]
    return json.loads(
        found.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    )


def console_lines(run: subprocess.CompletedProcess) -> list[str]:
    return [line for line in run.stderr.splitlines() if ":CONSOLE" in line]


def layout_at_1280(page: str, folder: Path) -> dict:
    """The probe of the page laid out in a 1280 x 900 window (a laptop's first screen)."""
    return probe_of(in_browser(page, folder, "--dump-dom", "--window-size=1280,900"))


def layout_differences(saved: list[dict], now: list[dict], px: int = 24, drift: float = 0.03) -> list[str]:
    """Where the key elements moved: the same headings, tables and verdict numbers in the same order, each box's
    left edge and width within `px`, its top within `px` plus `drift` of the distance from the page's top (a font
    that renders a little taller moves everything below it a little)."""
    names = [(box["tag"], box["text"]) for box in saved]
    if names != [(box["tag"], box["text"]) for box in now]:
        first = next(
            (i for i, (a, b) in enumerate(zip(saved, now)) if (a["tag"], a["text"]) != (b["tag"], b["text"])),
            min(len(saved), len(now)),
        )
        seen = now[first] if first < len(now) else "nothing"
        return [f"element {first}: {saved[first] if first < len(saved) else 'nothing'} saved, {seen} now"]
    problems = []
    for a, b in zip(saved, now):
        slack = {"left": px, "width": px, "top": px + drift * abs(a["top"])}
        moved = [key for key, limit in slack.items() if abs(a[key] - b[key]) > limit]
        if moved:
            problems.append(f"{a['tag']} {a['text']!r}: " + ", ".join(f"{k} {a[k]} -> {b[k]}" for k in moved))
    return problems


def write_layout(name: str, page: str) -> Path:
    """Lay the page out in Chromium and save its key boxes as the layout snapshot `name`."""
    with tempfile.TemporaryDirectory(prefix="report-layout-") as folder:
        key = layout_at_1280(page, Path(folder))["key"]
    LAYOUT_DIR.mkdir(parents=True, exist_ok=True)
    path = LAYOUT_DIR / f"{name}.json"
    path.write_text(json.dumps(key, indent=1) + "\n")
    return path
