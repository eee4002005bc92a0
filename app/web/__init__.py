"""Server-rendered pages (Jinja2): leaderboards and submission results. No external assets."""
