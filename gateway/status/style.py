"""The page's inline CSS and script: small, no framework, nothing fetched but the fragment.

The script asks for ``/status/fragment`` every few seconds and swaps it into ``<main>``; the
URL is built on ``location.origin`` because a page opened as ``http://user:key@host/`` may not
``fetch`` a relative URL (the browser's rule against credentials in request URLs), and the
browser sends the cached Basic credentials of the page itself.
"""

from __future__ import annotations

import json
from typing import Final

PAGE_CSS: Final = """
:root{color-scheme:light dark;font-family:system-ui,sans-serif;font-size:15px}
body{margin:0 auto;max-width:1200px;padding:.5rem}
header{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:baseline}
h1{font-size:1.3rem;margin:.2rem 0}h2{font-size:1.1rem;margin:1.2rem 0 .4rem}
nav a{margin-right:.6rem}nav a[aria-current]{font-weight:bold;text-decoration:none}
#updated{font-size:.8rem;opacity:.7}
.scroll{overflow-x:auto}table{border-collapse:collapse;margin:.3rem 0;min-width:50%}
th,td{padding:.2rem .5rem;border-bottom:1px solid #8884;text-align:left;white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.total td{font-weight:bold}tr.warn td{background:#f5c2c2;color:#600}
.state-up{color:#0a7a3a}.state-down{color:#b00;font-weight:bold}
.empty{opacity:.6}.note{font-size:.85rem;opacity:.8}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:.8rem}
figure.chart{margin:0}figcaption{font-size:.9rem;margin-bottom:.2rem}
figure.chart svg{width:100%;height:150px;border:1px solid #8883}
svg polyline{stroke-width:1.8;vector-effect:non-scaling-stroke}
svg .axes line{stroke:#888;stroke-width:1}svg .axes text{font-size:10px;fill:#888}
ul.legend{list-style:none;padding:0;margin:.2rem 0;font-size:.8rem;display:flex;flex-wrap:wrap;
gap:.2rem .8rem}
.swatch{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;vertical-align:middle}
@media (max-width:600px){body{font-size:14px}.charts{grid-template-columns:1fr}}
"""

_SCRIPT: Final = """
(function(){
  var range = RANGE, every = EVERY;
  var live = document.getElementById('live'), stamp = document.getElementById('updated');
  var url = new URL('/status/fragment?range=' + encodeURIComponent(range), location.origin);
  function tick(){
    fetch(url, {cache: 'no-store', credentials: 'same-origin'}).then(function(r){
      if (!r.ok) { stamp.textContent = 'refresh failed: HTTP ' + r.status; return null; }
      return r.text();
    }).then(function(html){
      if (html === null) return;
      live.innerHTML = html;
      stamp.textContent = 'updated ' + new Date().toLocaleTimeString();
      stamp.dataset.refreshes = String(Number(stamp.dataset.refreshes || 0) + 1);
    }).catch(function(e){ stamp.textContent = 'refresh failed: ' + e; });
  }
  setInterval(tick, every * 1000);
})();
"""


def page_script(range_name: str, refresh_s: float) -> str:
    return _SCRIPT.replace("RANGE", json.dumps(range_name)).replace("EVERY", json.dumps(refresh_s))
