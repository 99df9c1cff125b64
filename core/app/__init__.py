"""What the app needs that is not UI, on top of the engine (which never imports this package).

`backbones` (info before loading, the shared pool, the default installer) · `forms` (option fields generated from
config dataclasses) · `request` (`ComparisonRequest` and its checks before launch) · `service` (`Workspace`:
validate, launch, resume, summaries) · `views/` (the pandas tables, verdicts and token previews the pages show, one
module per page's concern).
"""
