"""What the app needs that is not UI, on top of the engine (which never imports this package).

`backbones` (info before loading, the shared pool, the default installer) · `forms` (option fields generated from
config dataclasses) · `service` (`ComparisonRequest`, `Workspace`: validate, launch, resume, summaries) ·
`views` (the pandas tables and token previews the pages show).
"""
