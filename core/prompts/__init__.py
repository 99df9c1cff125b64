"""Prompt files: what a learned prompt is on disk (`artifacts`: safetensors + JSON manifest, never a pickle), the
folder PEFT loads (`peft_export`), labelling a new CSV with one (`predict`) and spreadsheet-safe CSV export
(`export`).

May import: the foundations, `core.data`, `core.engine`, `core.methods` (a file names its method and is scored by
it). Never the comparison, a run or the app."""
