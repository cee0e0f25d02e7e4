"""Make a GX Data Docs site render styled with no network: its CDN links point at vendored copies.

GX 1.x's page templates load Bootstrap, jQuery, Popper, bootstrap-table, bootstrap-datepicker, Font
Awesome, a dark theme and Vega from public CDNs, and the navbar logo from an S3 bucket (with the context id
in the query string). GX's site builder has no setting for the asset location, so after GX renders, every
page of the site is rewritten: each known CDN URL becomes a relative link to the copy shipped in
``scoring/quality/assets/vendor`` (copied into ``<site>/static/vendor/``), the logo becomes GX's own copy in
``<site>/static/images/``, and the subresource-integrity attributes go (a ``crossorigin`` load of a
``file:`` URL fails in Chromium), and a relative link into ``static/`` that misses (GX's favicon link on
validation pages) is corrected. Tags for assets not shipped are removed where the page does not need them
(the dark theme; Vega on pages without a chart). Anything else still pointing at the network is logged.
No GX import; nothing is downloaded.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent / "assets" / "vendor"
DROP = ""  # the tag is removed

_FILTER_CSS = "bootstrap-table-filter-control-1.19.1.min.css"
# URL as GX's templates spell it -> file under assets/vendor (DROP: remove the tag).
VENDORED: dict[str, str] = {
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery-3.7.1.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper-1.12.9.min.js",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap-4.3.1.min.js",
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap-4.3.1.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "bootstrap-table-1.19.1.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "bootstrap-table-1.19.1.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
        "bootstrap-table-filter-control-1.19.1.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
        _FILTER_CSS,
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css":
        _FILTER_CSS,
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js":
        "bootstrap-datepicker-1.9.0.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css":
        "bootstrap-datepicker-1.9.0.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": "fontawesome-6.6.0/css/all.min.css",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css": DROP,
}
VEGA = ("https://cdn.jsdelivr.net/npm/vega@5", "https://cdn.jsdelivr.net/npm/vega-lite@5",
        "https://cdn.jsdelivr.net/npm/vega-embed@6")
GX_IMAGES = "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/"

_TAG = re.compile(r"<(script|link|img)\b[^>]*?\b(src|href)=\"(https?://[^\"]+)\"[^>]*>(\s*</script>)?", re.I)
_SRI = re.compile(r"\s+(integrity|crossorigin)=\"[^\"]*\"", re.I)
_STATIC = re.compile(r"\b(src|href)=\"((?:\.\./)*\.?/?static/([^\"?#]+))\"")


def install_assets(site_dir: Path) -> Path:
    """Copy the vendored assets into ``<site_dir>/static/vendor`` (files already there and equal are kept).

    Returns:
        The vendor folder inside the site.
    """
    target = site_dir / "static" / "vendor"
    for src in ASSETS.rglob("*"):
        if src.is_file():
            dst = target / src.relative_to(ASSETS)
            if not dst.is_file() or dst.stat().st_size != src.stat().st_size:
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
    return target


def offline_page(html: str, page: Path, site_dir: Path) -> tuple[str, list[str]]:
    """``html`` of ``page`` (a file of the site at ``site_dir``) with its CDN links made local.

    Returns:
        The rewritten HTML and the network URLs it still loads (an unknown asset, or Vega on a page with
        a chart).
    """
    vendor, images = site_dir / "static" / "vendor", site_dir / "static" / "images"
    charts = "vegaEmbed(" in html
    left: list[str] = []

    def local(path: Path) -> str:
        return Path(os.path.relpath(path, page.parent)).as_posix()

    def swap(match: re.Match[str]) -> str:
        tag, url = match.group(0), match.group(3)
        if url in VENDORED:
            name = VENDORED[url]
            return "" if name == DROP else _SRI.sub("", tag.replace(url, local(vendor / name)))
        if url in VEGA and not charts:
            return ""
        if match.group(1).lower() == "img" and url.startswith(GX_IMAGES):
            name = url[len(GX_IMAGES):].split("?", 1)[0]
            if (images / name).is_file():
                return tag.replace(url, local(images / name)).replace(' class="NO-CACHE"', "")
        left.append(url)
        return tag

    def static(match: re.Match[str]) -> str:
        # GX 1.x links the favicon one folder short on validation pages: point it at the site's copy.
        if (page.parent / match.group(2)).exists() or not (site_dir / "static" / match.group(3)).is_file():
            return match.group(0)
        return f'{match.group(1)}="{local(site_dir / "static" / match.group(3))}"'

    return _STATIC.sub(static, _TAG.sub(swap, html)), left


def make_offline(site_dir: Path) -> list[str]:
    """Install the assets into the site and rewrite every page that still points at a CDN.

    Pages written before this existed are rewritten too; a rewritten page is left alone next time.

    Args:
        site_dir: a GX Data Docs site folder (``index.html`` and ``static/`` at its top).

    Returns:
        The network URLs still loaded by some page (each logged as a warning); empty when the site is
        fully offline.
    """
    install_assets(site_dir)
    remaining: set[str] = set()
    for page in site_dir.rglob("*.html"):
        if ".gx_stores" in page.parts or "static" in page.relative_to(site_dir).parts[:1]:
            continue
        html = page.read_text(encoding="utf-8")
        new, left = offline_page(html, page, site_dir)
        if new != html:
            page.write_text(new, encoding="utf-8")
        remaining.update(left)
    for url in sorted(remaining):
        logger.warning("Data Docs still load %s from the network (no vendored copy)", url)
    return sorted(remaining)
