#!/usr/bin/env python3
"""Plots in a real browser: draws every shipped sweep (scenarios/sweeps/), a sweep with long key
names and values out of order (long-keys.yaml), the plan example of the README (a GPU range and a
deadline; over fewer GPU counts, one fast run each, so that it takes seconds) and the ranked plans
of one GPU count (long-keys.yaml's small scenario), loads each SVG in headless
Chromium inside a page whose script measures every <text> element as the browser lays it out, and
fails when a text's box leaves the canvas or overlaps another text's box.

Exit 77 (ctest: skipped) when no `chromium` is on PATH; tools/setup.sh installs it.

usage: run.py ODYSSEY_BINARY [--screenshots DIR]   (DIR: a PNG of each plot, to look at)"""
import html
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
HERE = pathlib.Path(__file__).resolve().parent
SKIP = 77
SLACK = 0.5  # px: boxes may touch, and rounding is not overlap
CHROMIUM_SECONDS = 60

# Inline, so that the script can measure the SVG's own DOM; the result goes into the page, which
# `--dump-dom` prints.
PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><style>body {{ margin: 0 }}</style></head>
<body>{svg}<script>
const svg = document.querySelector("svg");
const canvas = svg.getBoundingClientRect();
const texts = [];
for (const t of svg.querySelectorAll("text")) {{
  const r = t.getBoundingClientRect();
  texts.push({{text: t.textContent, x: r.left - canvas.left, y: r.top - canvas.top, w: r.width, h: r.height}});
}}
const out = document.createElement("pre");
out.id = "boxes";
out.textContent = JSON.stringify({{width: canvas.width, height: canvas.height, texts: texts}});
document.body.appendChild(out);
</script></body></html>
"""


def odyssey(binary, *args):
    done = subprocess.run([binary, *map(str, args)], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"FAIL odyssey {' '.join(map(str, args))}: exit {done.returncode}\n{done.stderr}")


def chromium(*args, profile):
    """Runs headless Chromium in a process group of its own, killed whole when it ends or hangs, so
    that no renderer or helper outlives the test."""
    command = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={profile}", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=CHROMIUM_SECONDS)
    except subprocess.TimeoutExpired:
        sys.exit(f"FAIL chromium did not finish in {CHROMIUM_SECONDS} s: {' '.join(args)}")
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
    if process.returncode != 0:
        sys.exit(f"FAIL chromium exit {process.returncode}: {' '.join(args)}\n{err}")
    return out


def svg_size(svg):
    match = re.search(r'<svg[^>]*\bwidth="([\d.]+)"[^>]*\bheight="([\d.]+)"', svg)
    return float(match.group(1)), float(match.group(2))


def problems_of(boxes):
    width, height = boxes["width"], boxes["height"]
    texts = [t for t in boxes["texts"] if t["w"] > 0 and t["h"] > 0]
    out = []
    for t in texts:
        if t["x"] < -SLACK or t["y"] < -SLACK or t["x"] + t["w"] > width + SLACK or t["y"] + t["h"] > height + SLACK:
            out.append(f"'{t['text']}' leaves the {width:.0f} x {height:.0f} canvas: "
                       f"x {t['x']:.1f} to {t['x'] + t['w']:.1f}, y {t['y']:.1f} to {t['y'] + t['h']:.1f}")
    for i, a in enumerate(texts):
        for b in texts[i + 1:]:
            across = min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"])
            down = min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"])
            if across > SLACK and down > SLACK:
                out.append(f"'{a['text']}' and '{b['text']}' overlap by {across:.1f} x {down:.1f} px")
    return out, len(texts)


def check(svg_file, work, screenshots):
    svg = svg_file.read_text()
    page = work / (svg_file.stem + ".html")
    page.write_text(PAGE.format(svg=re.sub(r"^<\?xml[^>]*\?>\s*", "", svg)))
    dom = chromium("--dump-dom", page.as_uri(), profile=work / "profile")
    match = re.search(r'<pre id="boxes">(.*?)</pre>', dom, re.S)
    if not match:
        return [f"the page's script wrote no measurements (chromium printed {len(dom)} characters)"], 0
    if screenshots:
        width, height = svg_size(svg)
        chromium(f"--screenshot={screenshots / (svg_file.stem + '.png')}",
                 f"--window-size={int(width)},{int(height)}", page.as_uri(), profile=work / "profile")
    return problems_of(json.loads(html.unescape(match.group(1))))


def main():
    if len(sys.argv) not in (2, 4) or (len(sys.argv) == 4 and sys.argv[2] != "--screenshots"):
        sys.exit(__doc__)
    binary = pathlib.Path(sys.argv[1]).resolve()
    screenshots = pathlib.Path(sys.argv[3]).resolve() if len(sys.argv) == 4 else None
    if screenshots:
        screenshots.mkdir(parents=True, exist_ok=True)
    if shutil.which("chromium") is None:
        print("SKIP no `chromium` on PATH: the plots are not checked in a browser (tools/setup.sh installs it)")
        return SKIP

    with tempfile.TemporaryDirectory(prefix="odyssey-plots-") as tmp:
        work = pathlib.Path(tmp)
        sweeps = [f for f in sorted((ROOT / "scenarios" / "sweeps").glob("*.yaml"))
                  if re.search(r"^(grid|points):", f.read_text(), re.M)]
        sweeps.append(HERE / "long-keys.yaml")
        plots = []
        for sweep in sweeps:
            # The long keys' rows as JSON lines, which carry memory per stage: one chart more.
            out = work / (sweep.stem + (".jsonl" if sweep.parent == HERE else ".csv"))
            svg = work / f"sweep-{sweep.stem}.svg"
            odyssey(binary, "sweep", sweep, "--out", out, "--plot", svg, "--no-progress")
            plots.append(svg)
        # The README's plan (GPU range, deadline), over 256 to 2048 GPUs rather than 10240 and with
        # one fast run per GPU count.
        plan = work / "plan-gpt3-range-deadline.svg"
        odyssey(binary, "plan", "scenarios/gpt3-175b-azure-2020.yaml", "--set", "machine.preset=dgx-a100-superpod",
                "--gpus", "256:2048", "--deadline", "30", "--fast", "1", "--full", "0", "--json", "--plot", plan)
        plots.append(plan)
        # One GPU count: the ranked plans, each bar named by its strategy.
        ranked = work / "plan-ranked.svg"
        odyssey(binary, "plan", HERE / "scenario.yaml", "--fast", "15", "--full", "0", "--json", "--plot", ranked)
        plots.append(ranked)

        failed = 0
        for svg in plots:
            problems, texts = check(svg, work, screenshots)
            if problems:
                failed += 1
                print(f"FAIL {svg.name}: {len(problems)} problems with {texts} texts")
                for p in problems:
                    print(f"     {p}")
            else:
                print(f"ok   {svg.name}: {texts} texts inside the canvas, none overlapping")
    print(f"{len(plots) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
