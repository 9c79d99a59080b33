"""Build the static course site from the executed notebooks: `make site` (or `python tools/build_site.py`).

One HTML page per notebook and solutions notebook, with the stored outputs and plots, links between
notebooks turned into links between pages, and an index page with the course map. The site needs no
network: MathJax, require.js and the widget renderer are copied next to the pages (from the npm registry's
`mathjax@2.7.9`, `requirejs@2.3.8` and `@jupyter-widgets/html-manager@1.0.15` packages, fetched once with
`npm pack` into data/cache/npm/ and then reused).

Leaves out: a search box and live widgets. Widgets are drawn from the state stored at execution time,
but their callbacks need a running kernel: on the site they do not react.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
NPM_CACHE = ROOT / "data" / "cache" / "npm"
VENDOR = {"mathjax": "2.7.9", "requirejs": "2.3.8", "@jupyter-widgets/html-manager": "1.0.15", "jquery": "2.2.4", "d3": "5.7.0"}
# Script addresses that stored outputs carry (bertviz's views load these from a CDN), and the local copy
# each is pointed at instead, relative to _static/. The browser test fails on any address left.
CDN_REWRITES = {
    "https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.6/require.min.js": "require.js",
    "https://cdnjs.cloudflare.com/ajax/libs/jquery/2.0.0/jquery.min": "jquery.min",
    "https://cdnjs.cloudflare.com/ajax/libs/d3/5.7.0/d3.min": "d3.min",
}
# The parts of the MathJax package that the TeX-AMS_CHTML-full configuration loads.
MATHJAX_PARTS = ("MathJax.js", "config/", "extensions/", "jax/input/TeX/", "jax/output/CommonHTML/", "jax/element/", "localization/en/", "fonts/HTML-CSS/TeX/woff/")


def fetch_vendor(name: str, version: str) -> Path:
    """The npm tarball of `name@version`, from the cache or fetched once with `npm pack`."""
    NPM_CACHE.mkdir(parents=True, exist_ok=True)
    tarball = NPM_CACHE / f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"
    if not tarball.exists():
        if shutil.which("npm") is None:
            raise SystemExit(f"npm is needed once to fetch {name}@{version} for the offline site; install Node.js and npm")
        subprocess.run(["npm", "pack", f"{name}@{version}", "--pack-destination", str(NPM_CACHE)], check=True, capture_output=True)
    return tarball


def extract_members(tar: tarfile.TarFile, dest: Path, members: list[tarfile.TarInfo]) -> int:
    """Write the regular files among `members` under `dest`; return how many were written.

    The same result as `tar.extractall(dest, members, filter="data")` for these packages, without the
    `filter` argument, which Python has only from 3.11.4 (Debian 12 ships 3.11.2). Links, devices and
    any name that would land outside `dest` are refused.
    """
    root = dest.resolve()
    written = 0
    for m in members:
        target = (root / m.name).resolve()
        if target != root and root not in target.parents:
            raise ValueError(f"{tar.name}: member {m.name!r} would be written outside {dest}")
        if m.isdir():
            target.mkdir(parents=True, exist_ok=True)
        elif m.isfile():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(m).read())
            written += 1
        else:
            raise ValueError(f"{tar.name}: member {m.name!r} is not a regular file or folder (links are not extracted)")
    return written


def install_static(static: Path) -> None:
    """Copy MathJax and require.js into the site's _static folder."""
    with tarfile.open(fetch_vendor("mathjax", VENDOR["mathjax"])) as tar:
        members = [m for m in tar.getmembers() if m.name.removeprefix("package/").startswith(MATHJAX_PARTS)]
        for m in members:
            m.name = m.name.removeprefix("package/")
        extract_members(tar, static / "mathjax", members)
    with tarfile.open(fetch_vendor("requirejs", VENDOR["requirejs"])) as tar:
        source = tar.extractfile("package/require.js")
        (static / "require.js").write_bytes(source.read())
    for name, member, target in (("jquery", "package/dist/jquery.min.js", "jquery.min.js"), ("d3", "package/dist/d3.min.js", "d3.min.js")):
        with tarfile.open(fetch_vendor(name, VENDOR[name])) as tar:
            (static / target).write_bytes(tar.extractfile(member).read())
    # The widget renderer: the self-contained bundle, which draws stored widget state without a kernel.
    with tarfile.open(fetch_vendor("@jupyter-widgets/html-manager", VENDOR["@jupyter-widgets/html-manager"])) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith("package/dist/") and not m.name.endswith(".map")]
        for m in members:
            m.name = m.name.removeprefix("package/dist/")
        extract_members(tar, static / "html-manager", members)


def title_of(nb: nbformat.NotebookNode, fallback: str) -> str:
    """The text of the notebook's first `# ` heading."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


LINK = re.compile(r'href="(?!https?://)([^"#]+)\.ipynb(#[^"]*)?"')


def page_html(nb: nbformat.NotebookNode, depth: int, title: str, nav: str) -> str:
    """One notebook as a stand-alone page whose scripts are all local."""
    prefix = "../" * depth
    exporter = HTMLExporter(
        template_name="lab",
        mathjax_url=f"{prefix}_static/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe",
        require_js_url=f"{prefix}_static/require.js",
        widget_renderer_url=f"{prefix}_static/html-manager/embed.js",
    )
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    for url, local in CDN_REWRITES.items():
        body = body.replace(url, f"{prefix}_static/{local}")
    body = LINK.sub(lambda m: f'href="{m.group(1)}.html{m.group(2) or ""}"', body)
    bar = f'<nav class="course-nav" style="padding:8px 16px;border-bottom:1px solid #ddd;font-family:sans-serif">{nav}</nav>'
    return re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + bar, body, count=1)


def build(out: Path) -> list[Path]:
    if out.exists():
        shutil.rmtree(out)
    (out / "solutions").mkdir(parents=True)
    install_static(out / "_static")
    pages: list[tuple[str, str, Path]] = []  # (relative html path, title, notebook)
    for nb_path in sorted(NOTEBOOKS.glob("*.ipynb")) + sorted((NOTEBOOKS / "solutions").glob("*.ipynb")):
        rel = nb_path.relative_to(NOTEBOOKS).with_suffix(".html").as_posix()
        pages.append((rel, title_of(nbformat.read(nb_path, as_version=4), nb_path.stem), nb_path))
    written = []
    main_pages = [p for p in pages if "/" not in p[0]]
    for i, (rel, title, nb_path) in enumerate(pages):
        depth = rel.count("/")
        up = "../" * depth
        links = [f'<a href="{up}index.html">Course map</a>']
        if "/" not in rel:
            j = main_pages.index((rel, title, nb_path))
            if j > 0:
                links.append(f'<a href="{main_pages[j - 1][0]}">← {html.escape(main_pages[j - 1][1])}</a>')
            if j + 1 < len(main_pages):
                links.append(f'<a href="{main_pages[j + 1][0]}">{html.escape(main_pages[j + 1][1])} →</a>')
        nb = nbformat.read(nb_path, as_version=4)
        target = out / rel
        target.write_text(page_html(nb, depth, title, " · ".join(links)), encoding="utf-8")
        written.append(target)
    rows = "\n".join(
        f'<li><a href="{rel}">{html.escape(title)}</a>'
        + "".join(f' · <a href="{r}">solutions</a>' for r, _, _ in pages if r == f"solutions/{Path(rel).stem}_solutions.html")
        + "</li>"
        for rel, title, _ in main_pages
    )
    index = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>How large language models work</title>
<style>body{{font-family:sans-serif;max-width:50em;margin:2em auto;line-height:1.5}}li{{margin:.3em 0}}</style></head>
<body><h1>How large language models work: from raw text to a fine-tuned BERT</h1>
<p>A hands-on course in numbered notebooks. Every idea is built from scratch, checked against the real
reference and used on real data. These pages show the notebooks as executed by the test run; to run them
and use the widgets, clone the repository and run <code>make lab</code>.</p>
<h2>Table of contents</h2><ol start="0">{rows}</ol></body></html>
"""
    (out / "index.html").write_text(index, encoding="utf-8")
    written.append(out / "index.html")
    (out / "pages.json").write_text(json.dumps([p.relative_to(out).as_posix() for p in written], indent=1))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "_site", help="output folder (default: _site)")
    args = parser.parse_args()
    pages = build(args.out)
    print(f"built {len(pages)} pages in {args.out}")


if __name__ == "__main__":
    main()
