"""The phase report's page: its stylesheet and its Jinja template, which
:func:`app.report.render.render_report` fills with one context per task."""

CSS = """
:root { --fg: #1d2733; --muted: #5b6673; --line: #d5dbe1; --accent: #1f5fa8; --bg: #f6f8fa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; color: var(--fg); margin: 0; background: white; }
header.top { padding: 1.6rem 2rem 1rem; border-bottom: 3px solid var(--accent); }
header.top h1 { margin: 0 0 .3rem; font-size: 1.6rem; }
main { padding: 0 2rem 3rem; max-width: none; }
nav.toc a { margin-right: 1rem; color: var(--accent); }
section.task { margin-top: 2.2rem; border-top: 1px solid var(--line); padding-top: .6rem; }
h2 { font-size: 1.35rem; margin: .6rem 0 .3rem; }
h3 { font-size: 1.05rem; margin: 1.6rem 0 .4rem; }
p.muted, .muted { color: var(--muted); }
table { border-collapse: collapse; margin: .4rem 0 .8rem; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: .28rem .6rem; text-align: right;
  vertical-align: top; }
th { background: var(--bg); font-weight: 600; }
td.team, th.team { text-align: left; }
td .ci { display: block; color: var(--muted); font-size: .82em; }
th.ranked { color: var(--accent); }
td.na { color: var(--muted); }
dl.prov { display: grid; grid-template-columns: max-content 1fr; gap: .1rem 1rem; margin: .4rem 0;
  font-size: .85em; }
dl.prov dt { color: var(--muted); } dl.prov dd { margin: 0; font-family: ui-monospace, monospace;
  word-break: break-all; }
figure { margin: .6rem 0 1.2rem; } figure svg { max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: .85em; }
.wide { overflow-x: auto; }
footer { color: var(--muted); font-size: .8em; padding: 1rem 2rem; border-top: 1px solid var(--line); }
"""

TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>{{ css }}</style>
</head>
<body>
<header class="top">
  <h1>{{ title }}</h1>
  <p class="muted">Phase <strong>{{ phase }}</strong> · generated {{ generated_at }}
  {%- if evaluator_version %} · hecktor-eval {{ evaluator_version }}{% endif %}</p>
  <nav class="toc">{% for t in tasks %}<a href="#{{ t.anchor }}">Task {{ t.task }}</a>{% endfor %}</nav>
</header>
<main>
{% if not tasks %}<p class="muted">No task has a scored submission in this phase.</p>{% endif %}
{% for t in tasks %}
<section class="task" id="{{ t.anchor }}">
  <h2>{{ t.title }}</h2>
  <p class="muted">{{ t.n_teams }} team(s)
    {%- if t.n_cases %} · {{ t.n_cases }} case(s){% endif %}
    {%- if t.n_centres %} · {{ t.n_centres }} centre(s){% endif %}</p>
  {% if t.provenance %}<dl class="prov">
    {% for k, v in t.provenance %}<dt>{{ k }}</dt><dd>{{ v }}</dd>{% endfor %}
  </dl>{% endif %}

  <h3>Leaderboard</h3>
  <div class="wide"><table class="leaderboard">
    <thead><tr>
      <th>Rank</th><th class="team">Team</th>
      {% for h in t.leaderboard.score_headers %}<th{% if t.leaderboard.ranked[loop.index0] %} class="ranked"{% endif %}>{{ h }}</th>{% endfor %}
      {% for h in t.leaderboard.count_headers %}<th>{{ h }}</th>{% endfor %}
      {% for h in t.leaderboard.rank_headers %}<th>{{ h }}</th>{% endfor %}
    </tr></thead>
    <tbody>
    {% for r in t.leaderboard.rows %}<tr>
      <td>{{ r.rank }}</td>
      <td class="team">{{ r.team }}{% if r.submission %} <span class="muted">#{{ r.submission }}</span>{% endif %}</td>
      {% for c in r.cells %}<td>{{ c.value }}{% if c.interval %}<span class="ci">{{ c.interval }}</span>{% endif %}</td>{% endfor %}
      {% for c in r.counts %}<td>{{ c }}</td>{% endfor %}
      {% for c in r.ranks %}<td>{{ c }}</td>{% endfor %}
    </tr>{% endfor %}
    </tbody>
  </table></div>
  <p class="muted">Ranked metrics in blue; ties share the average rank.
  {%- if t.boot and t.boot.n_resamples %} Under each value, the {{ t.leaderboard.alpha_pct }}% percentile
  interval over {{ t.boot.n_resamples }} bootstrap resamples of the {{ t.boot.n_cases }} cases
  (seed {{ t.boot.seed }}; the same resamples for every team).{% endif %}</p>

  {% if t.stability %}
  <h3>Rank stability</h3>
  <table class="stability">
    <thead><tr><th class="team">Team</th><th>Full-data rank</th><th>Median rank</th>
      <th>Ranks in {{ t.leaderboard.alpha_pct }}% of resamples</th><th>First place (incl. ties)</th></tr></thead>
    <tbody>
    {% for r in t.stability.rows %}<tr><td class="team">{{ r.team }}</td><td>{{ r.full }}</td>
      <td>{{ r.median }}</td><td>{{ r.interval }}</td><td>{{ r.first }}</td></tr>{% endfor %}
    </tbody>
  </table>
  <p class="muted">Kendall's τ between the full-data final ranking and each resample's:
    mean {{ t.stability.tau.mean }}, median {{ t.stability.tau.median }},
    {{ t.leaderboard.alpha_pct }}% interval {{ t.stability.tau.interval }} ({{ t.stability.tau.n }} resamples).
    Of {{ t.stability.n_resamples }} resamples, {{ t.stability.n_used }} are used{% if t.stability.n_left_out %}:
    {{ t.stability.n_left_out }} are left out because a ranked metric is undefined there for some team,
    so no rank can be given{% endif %}. A rank range holds the ranks of the central
    {{ t.leaderboard.alpha_pct }}% of them.</p>
  {% for note in t.boot_notes %}<p class="muted">Note: {{ note }}</p>{% endfor %}
  <figure>{{ t.stability.svg }}<figcaption>Final rank across bootstrap resamples.</figcaption></figure>
  {% endif %}

  {% if t.centres %}
  <h3>Per centre</h3>
  {% for tab in t.centres.tables %}
  {% if tab.centres %}<div class="wide"><table class="centres">
    <thead><tr><th class="team">{{ tab.metric }}</th>
      {% for c in tab.centres %}<th>{{ c.name }} <span class="muted">(n={{ c.n }})</span></th>{% endfor %}</tr></thead>
    <tbody>
    {% for r in tab.rows %}<tr><td class="team">{{ r.team }}</td>
      {% for c in r.cells %}<td{% if c.reason %} class="na" title="{{ c.reason }}"{% endif %}>{{ c.value }}</td>{% endfor %}
    </tr>{% endfor %}
    </tbody>
  </table></div>{% endif %}
  {% if tab.svg %}<figure>{{ tab.svg }}</figure>{% endif %}
  {% if tab.too_few %}<p class="muted">{{ tab.metric }}: {% for c in tab.too_few %}{{ c.name }} ({{ c.n }} case{{ '' if c.n == 1 else 's' }}){{ ', ' if not loop.last else '' }}{% endfor %}:
    too few cases to estimate it for any team ({{ tab.too_few[0].reason }}).</p>{% endif %}
  {% endfor %}
  {% endif %}

  {% if t.per_case_svg %}
  <h3>Per-case GTVp DSC</h3>
  <figure>{{ t.per_case_svg }}<figcaption>Each dot is one case; box: quartiles;
    diamond: mean (the ranked GTVp metric). Cases empty on both sides are not shown.</figcaption></figure>
  {% endif %}
</section>
{% endfor %}
</main>
<footer>Self-contained report: every table and figure is in this file.</footer>
</body>
</html>
"""
