"""The status page's HTML, written on the server from a journal snapshot.

Every name goes through :func:`watcherd.display.printable` (one line, control characters and
undecodable bytes escaped) and then through HTML escaping, so a file name can neither break
the page nor run in it. The page holds no secret: not the API key, not the access token; its
only token is the CSRF token of its forms. The live part (:func:`live_html`) is also what the
page's small script fetches as JSON every few seconds, so it updates without a reload.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from html import escape

from watcherd import __version__
from watcherd.display import printable
from watcherd.journal import STATES, Source
from watcherd.progress import Progress
from watcherd.usage import model_of
from watcherd.web import charts
from watcherd.web.snapshot import Snapshot

REFRESH_MS = 3000
_STATE_COLOURS = {
    "pending": "#64748b", "uploading": "#3b82f6", "uploaded": "#3b82f6",
    "submitting": "#3b82f6", "submitted": "#6366f1", "transcribing": "#6366f1",
    "done": "#16a34a", "waiting": "#d97706", "failed": "#dc2626", "gone": "#94a3b8",
}
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
background:#f8fafc;color:#0f172a}
header{background:#0f172a;color:#f8fafc;padding:10px 20px;display:flex;align-items:baseline;
gap:16px}
header h1{font-size:18px;margin:0}header .muted{color:#cbd5e1}
main{padding:12px 20px;max-width:1100px}
section{background:#fff;border:1px solid #e2e8f0;border-radius:8px;padding:10px 14px;
margin:0 0 14px}
h2{font-size:15px;margin:2px 0 8px}
.counts{display:flex;flex-wrap:wrap;gap:8px;margin:0 0 14px;padding:0;list-style:none}
.count{background:#fff;border:1px solid #e2e8f0;border-radius:8px;padding:5px 10px;min-width:68px}
.count b{display:block;font-size:20px}.count span{color:#475569}
.count.zero{opacity:.5}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:5px 8px;border-top:1px solid #f1f5f9;vertical-align:top}
th{color:#475569;font-weight:600;border-top:none}
td.name{overflow-wrap:anywhere;min-width:200px;max-width:420px}
.state{display:inline-block;border-radius:10px;padding:0 8px;color:#fff;font-size:12px}
progress{width:160px;vertical-align:middle}
.reason{color:#7f1d1d}.why{color:#78350f}.muted{color:#64748b}
.empty{color:#64748b;font-style:italic}
button{font:inherit;border:1px solid #cbd5e1;background:#f1f5f9;border-radius:6px;
padding:2px 10px;cursor:pointer;white-space:nowrap}button:hover{background:#e2e8f0}
.error{background:#fef2f2;border-color:#fecaca;color:#7f1d1d}
.charts{display:flex;flex-wrap:wrap;gap:12px}.charts figure{margin:0}
figcaption{color:#475569;font-size:13px}
#conn{font-size:12px}
a{color:#1d4ed8}
td time{white-space:nowrap}
form.search{margin:0;display:flex;gap:8px}.searchbar{padding:12px 20px 0;max-width:1100px}
form.search input{font:inherit;flex:1;max-width:520px;padding:4px 8px;border:1px solid #cbd5e1;
border-radius:6px}
main form.search{margin:0 0 14px}
"""
STYLE += "".join(f".s-{state}{{background:{colour}}}"
                 for state, colour in _STATE_COLOURS.items())
STYLE += ".s-other{background:#64748b}"
_SCRIPT = """
(function(){
  var live=document.getElementById('live'), conn=document.getElementById('conn');
  function tick(){
    if(document.hidden){return;}
    fetch('/api/status',{credentials:'same-origin',headers:{'Accept':'application/json'}})
      .then(function(r){if(!r.ok){throw new Error('HTTP '+r.status);}return r.json();})
      .then(function(d){live.innerHTML=d.html;conn.textContent='live';})
      .catch(function(e){conn.textContent='not updating ('+e.message+')';});
  }
  setInterval(tick, REFRESH_MS);
})();
""".replace("REFRESH_MS", str(REFRESH_MS))


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def name_of(source: Source) -> str:
    """The file's name as shown: relative to its watched folder, printable."""
    path, root = source.path, source.watch_root
    if root and path.startswith(root.rstrip(os.sep) + os.sep):
        return printable(path[len(root.rstrip(os.sep)) + 1:])
    return printable(path)


def _when(ts: float | None, now: float) -> str:
    if ts is None:
        return ""
    clock = time.strftime("%H:%M:%S" if abs(now - ts) < 86400 else "%Y-%m-%d %H:%M",
                          time.localtime(ts))
    delta = ts - now
    rel = charts.duration_text(abs(delta))
    relative = "now" if abs(delta) < 1 else (f"in {rel}" if delta > 0 else f"{rel} ago")
    return f'<time datetime="{_iso(ts)}">{clock}</time> <span class="muted">({relative})</span>'


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _engine(source: Source) -> str:
    """The engine, with the Gladia model it runs ("gladia, solaria-3")."""
    model = model_of(source.options, source.engine)
    return f"{source.engine or ''}, {model}" if model and source.engine else source.engine or ""


def _state(state: str) -> str:
    # A class per state, not a style attribute: the page's CSP allows no inline styles.
    klass = f"s-{state}" if state in _STATE_COLOURS else "s-other"
    return f'<span class="state {klass}" data-state="{_e(state)}">{_e(state)}</span>'


def _name_cell(source: Source) -> str:
    return (f'<td class="name" title="{_e(printable(source.path))}">'
            f"{_e(name_of(source))}</td>")


def _retry_form(source: Source, csrf: str, label: str) -> str:
    return (f'<form method="post" action="/retry" class="retry">'
            f'<input type="hidden" name="id" value="{source.id}">'
            f'<input type="hidden" name="csrf" value="{_e(csrf)}">'
            f'<button type="submit" data-id="{source.id}">{_e(label)}</button></form>')


def _progress_cell(source: Source, progress: Progress | None, now: float) -> str:
    parts = []
    if progress is not None and progress.fraction is not None:
        pct = round(progress.fraction * 100)
        parts.append(f'<progress value="{pct}" max="100" title="{pct}%">{pct}%</progress> '
                     f'<span class="pct">{pct}%</span>')
    if progress is not None and progress.phase:
        parts.append(f'<span class="phase">{_e(progress.phase)}</span>')
    if progress is not None and progress.expected_end is not None:
        parts.append(f"expected end {_when(progress.expected_end, now)}")
    if not parts and source.job_id:
        parts.append(f'<span class="muted">job {_e(printable(source.job_id))}</span>')
    return "<td>" + " · ".join(parts) + "</td>"


def _counts(snapshot: Snapshot) -> str:
    items = []
    for state in STATES:
        n = snapshot.counts.get(state, 0)
        items.append(f'<li class="count{"" if n else " zero"}" data-state="{state}">'
                     f"<b>{n}</b><span>{state}</span></li>")
    return '<ul class="counts" id="counts">' + "".join(items) + "</ul>"


def _table(headers: Sequence[str], rows: Sequence[str], empty: str) -> str:
    if not rows:
        return f'<p class="empty">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _more(shown: int, total: int) -> str:
    if total <= shown:
        return ""
    return (f'<p class="muted">{total - shown} more not shown; '
            "<code>watcherd status</code> lists them all.</p>")


def live_html(snapshot: Snapshot, progress: Mapping[int, Progress], csrf: str,
              outputs: Mapping[int, Sequence[str]], now: float, *,
              paused: str | None = None) -> str:
    """The part of the page that updates: counts, the lists and the charts.

    ``paused`` says why all work is paused (the journal cannot be written), shown first.
    """
    parts = []
    if paused:
        parts.append(f'<section class="error" id="paused"><b>{_e(paused)}</b></section>')
    if snapshot.error:
        parts.append(f'<section class="error"><b>{_e(snapshot.error)}</b></section>')
    parts.append(_counts(snapshot))
    parts.append(_working_section(snapshot, progress, now))
    parts.append(_failed_section(snapshot, csrf, now))
    parts.append(_waiting_section(snapshot, csrf, now))
    if snapshot.usage is not None:
        lines = snapshot.usage.lines()
        parts.append('<section id="usage"><h2>Hours this month</h2><p>'
                     + _e(lines[0]) + "</p>"
                     + "".join(f"<p class=\"muted\">{_e(line.strip())}</p>"
                               for line in lines[1:]) + "</section>")
    parts.append(_charts_section(snapshot, now))
    parts.append(_recent_section(snapshot, outputs, now))
    parts.append(f'<p class="muted">Updated {_when(snapshot.taken_at, now)}</p>')
    return "".join(parts)


def _working_section(snapshot: Snapshot, progress: Mapping[int, Progress], now: float) -> str:
    rows = []
    for s in snapshot.working:
        rows.append(f'<tr data-id="{s.id}">{_name_cell(s)}<td>{_state(s.state)}</td>'
                    f"<td>{_e(_engine(s))}</td>"
                    f"{_progress_cell(s, progress.get(s.id), now)}"
                    f"<td>{_when(snapshot.since.get(s.id), now)}</td></tr>")
    return ('<section id="working"><h2>In flight</h2>'
            + _table(("File", "State", "Engine", "Progress", "Since"), rows,
                     "Nothing is being transcribed right now.")
            + (f'<p class="muted">{snapshot.queued_total} queued (settling or waiting '
               "for a free slot).</p>" if snapshot.queued_total else "")
            + "</section>")


def _failed_section(snapshot: Snapshot, csrf: str, now: float) -> str:
    rows = []
    for s in snapshot.failed:
        rows.append(f'<tr data-id="{s.id}">{_name_cell(s)}'
                    f'<td class="reason">{_e(printable(s.last_error or "no reason recorded"))}'
                    f"</td><td>{_when(snapshot.since.get(s.id), now)}</td>"
                    f"<td>{_retry_form(s, csrf, 'Retry')}</td></tr>")
    return ('<section id="failed"><h2>Failed</h2>'
            + _table(("File", "Reason", "Since", ""), rows, "No failed files.")
            + _more(len(snapshot.failed), snapshot.failed_total) + "</section>")


def _waiting_section(snapshot: Snapshot, csrf: str, now: float) -> str:
    rows = []
    for s in snapshot.waiting:
        why = s.last_error or s.note or "retry scheduled"
        rows.append(f'<tr data-id="{s.id}">{_name_cell(s)}'
                    f'<td class="why">{_e(printable(why))}</td>'
                    f"<td>{_when(s.next_attempt_at, now)}</td>"
                    f"<td>{s.attempts}</td><td>{_retry_form(s, csrf, 'Retry now')}</td></tr>")
    return ('<section id="waiting"><h2>Waiting</h2>'
            + _table(("File", "Why", "Next attempt", "Attempts", ""), rows,
                     "Nothing is waiting for a retry.")
            + _more(len(snapshot.waiting), snapshot.counts.get("waiting", 0))
            + "</section>")


def _charts_section(snapshot: Snapshot, now: float) -> str:
    hours = charts.buckets(snapshot.finished_within(charts.HOURS * 3600), now)
    return ('<section id="charts"><h2>Last 24 hours</h2><div class="charts">'
            f"<figure>{charts.files_chart(hours)}"
            "<figcaption>Files finished per hour</figcaption></figure>"
            f"<figure>{charts.latency_chart(hours)}"
            "<figcaption>Drop → transcript latency, median per hour</figcaption></figure>"
            "</div></section>")


def _recent_section(snapshot: Snapshot, outputs: Mapping[int, Sequence[str]], now: float) -> str:
    rows = []
    for s in snapshot.recent:
        done = snapshot.finished.get(s.id)
        links = " ".join(f'<a href="/transcript/{s.id}/{_e(suffix)}" target="_blank" '
                         f'rel="noopener">{_e(suffix)}</a>'
                         for suffix in outputs.get(s.id, ()))
        rows.append(f'<tr data-id="{s.id}">{_name_cell(s)}<td>{_when(s.done_at, now)}</td>'
                    f"<td>{charts.duration_text(done.latency) if done else ''}</td>"
                    f"<td>{_e(s.engine or '')}</td>"
                    f'<td class="links">{links or "<span class=muted>not on disk</span>"}'
                    "</td></tr>")
    return ('<section id="recent"><h2>Recently finished</h2>'
            + _table(("File", "Finished", "Drop → transcript", "Engine", "Transcript"),
                     rows, "Nothing finished yet.") + "</section>")


def search_form(query: str = "") -> str:
    """The search box: on the status page and atop its results."""
    return ('<form class="search" method="get" action="/search" role="search">'
            f'<input type="search" name="q" value="{_e(query)}" '
            'placeholder="Search transcripts: words, &quot;a phrase&quot;, prefix*" '
            'aria-label="Search transcripts"> <button type="submit">Search</button></form>')


def page_html(live: str, nonce: str, *, title: str = "watcherd") -> str:
    """The whole page around the live part, with its style and update script."""
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style nonce=\"{nonce}\">{STYLE}</style></head><body>"
        f'<header><h1>watcherd</h1><span class="muted">status · v{_e(__version__)}</span>'
        '<span class="muted" id="conn">live</span></header>'
        f'<div class="searchbar">{search_form()}</div>'
        f'<main id="live">{live}</main>'
        f'<script nonce="{nonce}">{_SCRIPT}</script></body></html>'
    )


def login_html(nonce: str, *, wrong: bool) -> str:
    """The page that asks for the access token (non-loopback addresses)."""
    message = ('<p class="reason">That is not the token. It is in the file named by '
               "<code>[http] token_file</code>.</p>" if wrong else "")
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>watcherd: sign in</title><style nonce=\"{nonce}\">{STYLE}</style></head>"
        '<body><header><h1>watcherd</h1></header><main><section><h2>Access token</h2>'
        "<p>This page is reachable from the network, so it asks for the token in the file "
        "named by <code>[http] token_file</code>.</p>"
        f'{message}<form method="post" action="/login">'
        '<input type="password" name="token" autocomplete="current-password" required '
        'autofocus size="40"> <button type="submit">Open</button></form>'
        "</section></main></body></html>"
    )
