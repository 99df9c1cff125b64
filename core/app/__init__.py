"""What the app needs that is not UI, on top of the engine (which never imports this package).

`forms` (option fields generated from
config dataclasses) · `request` (`ComparisonRequest` and its checks before launch) · `service` (`Workspace`:
validate, launch, resume, summaries) · `views/` (the pandas tables, verdicts and token previews the pages show, one
module per page's concern) · `access` (token and sign-in decisions) · `drafts` (a person's unfinished work).

May import: every package below it (the run machinery included). Never Streamlit (that is `ui/`) or the CLI.
"""
