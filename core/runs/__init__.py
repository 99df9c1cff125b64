"""The run machinery: where a run's state lives (`store`, SQLite with claim epochs), who works on it (`jobs`: the
queue and the worker loop; `worker`: the detached process; `runner`: a stored run turned back into its units),
how long it will take (`estimate`), and where else it can run (`cluster` for Ray tasks, `ray_launcher` for a run
as a Ray actor; `device_claim` for a GPU a plain CLI run holds).

May import: everything below it (foundations, data, engine, methods, prompts, compare). Never the app or the CLI.
`ray` is imported inside the functions that need it, only when an address is given."""
