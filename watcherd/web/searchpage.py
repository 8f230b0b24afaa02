"""The status page's search: the results page, and a finished file's transcript by time.

``GET /search?q=QUERY`` finds what ``watcherd search`` finds (the journal's one search) and
links each hit to ``GET /view/ID#tSECONDS``: the file's stored transcript, one utterance per
line, the one said at that time the target of the link (the browser scrolls to it and the
page's style marks it). Every text from a transcript or a file name is escaped; the only
markup in a snippet is the ``<mark>`` around each match, added after escaping.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from watcherd.display import printable
from watcherd.journal import Source
from watcherd.journal.search import Hit, format_time, marked_spans
from watcherd.outputs.job import read_job
from watcherd.web import page

STYLE = """
ol.hits{list-style:none;padding:0;margin:0}ol.hits li{padding:6px 0;border-top:1px solid #f1f5f9}
header h1 a{color:inherit;text-decoration:none}
mark{background:#fde68a;padding:0 1px}
.utterance{padding:3px 6px;border-radius:4px}.utterance:target{background:#fef3c7}
.utterance a{color:#64748b;text-decoration:none;margin-right:8px;font-variant-numeric:tabular-nums}
"""


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def anchor(seconds: float) -> str:
    """The fragment of the utterance that starts at ``seconds`` (whole seconds)."""
    return f"t{max(0, int(seconds))}"


def _snippet_html(snippet: str) -> str:
    """A snippet escaped, each match in ``<mark>``."""
    plain, spans = marked_spans(snippet)
    out, pos = [], 0
    for a, b in spans:
        out += [_e(plain[pos:a]), "<mark>", _e(plain[a:b]), "</mark>"]
        pos = b
    out.append(_e(plain[pos:]))
    return "".join(out)


def results_html(query: str, hits: Sequence[Hit], error: str | None, nonce: str,
                 *, backlog: int = 0) -> str:
    """The results page: the box, then one line per file (time, name, snippet)."""
    parts = [page.search_form(query)]
    if error is not None:
        parts.append(f'<p class="reason" id="search-error">{_e(error)}</p>')
    elif query:
        rows = []
        for hit in hits:
            link = f"/view/{hit.source.id}#{anchor(hit.start)}"
            more = f' <span class="muted">(+{hit.hits - 1} more)</span>' if hit.hits > 1 else ""
            rows.append(
                f'<li class="hit"><a class="at" href="{_e(link)}">{format_time(hit.start)}</a> '
                f'<b title="{_e(printable(hit.source.path))}">{_e(page.name_of(hit.source))}'
                f"</b>{more}<br><span class=\"snippet\">{_snippet_html(hit.snippet)}</span></li>")
        parts.append(f'<ol class="hits">{"".join(rows)}</ol>' if rows else
                     f'<p class="empty">Nothing found for {_e(printable(query))}.</p>')
    if backlog:
        parts.append(f'<p class="muted">{backlog} older transcripts are not indexed yet; '
                     "they are being indexed now.</p>")
    body = f'<section><h2>Search</h2>{"".join(parts)}</section>'
    return _page(body, nonce, title="watcherd: search")


def transcript_html(source: Source, job: object, nonce: str) -> str:
    """A finished file's stored transcript, one utterance per line, each with its anchor."""
    utterances = read_job(job).transcription.utterances
    rows = []
    seen: set[str] = set()
    for u in utterances:
        name = anchor(u.start)
        ident = f' id="{name}"' if name not in seen else ""
        seen.add(name)
        speaker = f'<span class="muted">S{u.speaker + 1}</span> ' if u.speaker is not None else ""
        rows.append(f'<p class="utterance"{ident}><a href="#{name}">{format_time(u.start)}</a>'
                    f"{speaker}{_e(u.text)}</p>")
    body = (f'<section><h2>{_e(page.name_of(source))}</h2>'
            f'<p class="muted">{_e(printable(source.path))} · <a href="/search">search</a> · '
            '<a href="/">status</a></p>'
            + ("".join(rows) or '<p class="empty">This transcript has no utterances.</p>')
            + "</section>")
    return _page(body, nonce, title=f"watcherd: {page.name_of(source)}")


def _page(body: str, nonce: str, *, title: str) -> str:
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style nonce=\"{nonce}\">{page.STYLE}{STYLE}</style>"
        '</head><body><header><h1><a href="/">watcherd</a></h1></header>'
        f"<main>{body}</main></body></html>"
    )
