"""Every page of the static site opens in Chromium with no JavaScript error, no missing resource and
no request off this machine; a screenshot of each page is saved under data/runs/screenshots/."""

from __future__ import annotations

import json

import pytest

from conftest import ROOT, SCREENSHOTS

PAGES = json.loads((ROOT / "_site" / "pages.json").read_text()) if (ROOT / "_site" / "pages.json").exists() else []


def test_site_has_every_notebook():
    notebooks = sorted(p.relative_to(ROOT / "notebooks").with_suffix(".html").as_posix()
                       for p in (ROOT / "notebooks").glob("**/*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    assert notebooks, "no notebooks found"
    assert sorted(p for p in PAGES if p != "index.html") == notebooks


@pytest.mark.parametrize("page_path", PAGES)
def test_page_renders_offline_without_errors(page_path, site_server, watched_page):
    page, watcher = watched_page
    page.goto(f"{site_server}/{page_path}", wait_until="load")
    page.wait_for_load_state("networkidle")
    if page_path != "index.html":
        # MathJax has typeset the page (or had nothing to do) and the notebook's cells are there
        page.wait_for_function("() => !window.MathJax || (window.MathJax.Hub && window.MathJax.Hub.queue.pending === 0)", timeout=30_000)
        assert page.locator(".jp-Cell").count() > 0, "no notebook cells on the page"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / (page_path.replace("/", "__") + ".png")), full_page=page_path == "index.html")
    assert watcher.problems == [], "\n".join(watcher.problems)


def test_links_between_pages_resolve(site_server, watched_page):
    page, watcher = watched_page
    bad = []
    for page_path in PAGES:
        page.goto(f"{site_server}/{page_path}", wait_until="domcontentloaded")
        for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))"):
            if href.endswith(".ipynb") or ".ipynb#" in href:
                bad.append(f"{page_path}: link still points at a notebook: {href}")
            elif href.endswith(".html") and not href.startswith("http"):
                base = page_path.rsplit("/", 1)[0] + "/" if "/" in page_path else ""
                target = (ROOT / "_site" / base / href).resolve()
                if not target.exists():
                    bad.append(f"{page_path}: broken link {href}")
    assert bad == [], "\n".join(bad)


def test_course_attention_view_renders_and_reacts_offline(site_server, watched_page):
    """Notebook 03's own attention view (no CDN) draws its lines and redraws when the layer changes."""
    page, watcher = watched_page
    page.goto(f"{site_server}/03_attention.html", wait_until="load")
    view = page.locator(".cav").first
    view.scroll_into_view_if_needed()
    lines_before = view.locator("svg line").count()
    assert lines_before > 0, "the attention view drew no lines"
    select = view.locator("select.cav-layer")
    options = select.locator("option").all_inner_texts()
    select.select_option(options[-1])
    page.wait_for_timeout(300)
    assert view.locator("svg line").count() > 0
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    view.screenshot(path=str(SCREENSHOTS / "03_course_attention_view.png"))
    assert watcher.problems == [], "\n".join(watcher.problems)


def _diagrams_by_page() -> dict[str, list[str]]:
    from course_lib.diagrams import DIAGRAMS

    pages: dict[str, list[str]] = {}
    for name, (_, notebooks) in sorted(DIAGRAMS.items()):
        for notebook in notebooks:
            pages.setdefault(f"{notebook}.html", []).append(name)
    return pages


@pytest.mark.parametrize("page_path, names", sorted(_diagrams_by_page().items()))
def test_every_diagram_shows_on_its_page(page_path, names, site_server, watched_page):
    """Each concept diagram is on its notebook's page as an image that loaded (not a broken image) and is visible."""
    page, watcher = watched_page
    page.goto(f"{site_server}/{page_path}", wait_until="load")
    found = page.eval_on_selector_all(
        ".jp-RenderedSVG img, .jp-RenderedSVG svg",
        """els => els.map(e => {
             let text = e.tagName.toLowerCase() === 'svg' ? e.outerHTML : '';
             const src = e.getAttribute('src') || '';
             if (src.startsWith('data:image/svg+xml;base64,')) text = atob(src.split(',')[1]);
             const box = e.getBoundingClientRect();
             return {text: text.slice(0, 2000), width: box.width, height: box.height,
                     loaded: e.tagName.toLowerCase() === 'svg' || (e.complete && e.naturalWidth > 0)};
           })""")
    for name in names:
        hits = [f for f in found if f'id="diagram-{name}"' in f["text"]]
        assert hits, f"{page_path}: diagram {name!r} is not on the page"
        assert hits[0]["loaded"], f"{page_path}: diagram {name!r} is a broken image"
        assert hits[0]["width"] > 200 and hits[0]["height"] > 50, f"{page_path}: diagram {name!r} is drawn too small: {hits[0]}"
    assert watcher.problems == [], "\n".join(watcher.problems)
