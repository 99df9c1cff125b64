"""The template language and verbalizers, and their rendering to token ids.

A template such as ``"[P*3] {text} It was [P] [MASK] ."`` mixes anchor text, CSV fields (``{text}``), continuous
slots (``[P]``, ``[P*k]``), discrete trigger slots (``[T]``, ``[T*k]``) and the label slot (``[MASK]``). Rendering
tokenises each text piece on its own and concatenates, so the position of every slot is known exactly and the
same encoding serves masked LMs (label at the mask tokens) and causal LMs (label as the continuation).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

import torch

from core.data.lookalike import difference, skeleton
from core.engine.backbone import Backbone, LMKind

SLOT_RE = re.compile(r"\{(\w+)\}|\[(MASK|P|T)(?:\*(\d+))?\]")
MAX_SLOT_REPEAT = 64


class TemplateError(ValueError):
    """A template or verbalizer that cannot be used. The message is one line naming the fix."""


class SlotKind(str, Enum):
    TEXT = "text"
    FIELD = "field"
    SOFT = "soft"
    TRIGGER = "trigger"
    MASK = "mask"


@dataclass(frozen=True)
class Piece:
    kind: SlotKind
    value: str = ""  # anchor text, or the field name
    count: int = 1  # how many soft/trigger tokens


@dataclass(frozen=True)
class Template:
    """A parsed template. Build with `Template.parse`; `source` round-trips."""

    source: str
    pieces: tuple[Piece, ...]

    @classmethod
    def parse(cls, source: str) -> Template:
        if not source or not source.strip():
            raise TemplateError("the template is empty; write one such as '{text} It was [MASK]'")
        pieces: list[Piece] = []
        pos = 0
        for match in SLOT_RE.finditer(source):
            if match.start() > pos:
                pieces.append(Piece(SlotKind.TEXT, source[pos : match.start()]))
            pieces.append(_slot(match))
            pos = match.end()
        if pos < len(source):
            pieces.append(Piece(SlotKind.TEXT, source[pos:]))
        template = cls(source=source, pieces=tuple(pieces))
        template._check_shape()
        return template

    def _check_shape(self) -> None:
        masks = sum(p.kind is SlotKind.MASK for p in self.pieces)
        if masks != 1:
            raise TemplateError(f"the template needs exactly one [MASK] where the label word goes (found {masks})")
        if not self.fields:
            raise TemplateError("the template uses no CSV field; put {text} where the example's text goes")
        stray = re.search(
            r"\[(?:MASK|P|T)[^\]]*\]|\[mask\]", "".join(p.value for p in self.pieces if p.kind is SlotKind.TEXT)
        )
        if stray:
            raise TemplateError(f"{stray.group(0)!r} is not a slot; use [MASK], [P], [P*k], [T] or [T*k]")

    @property
    def fields(self) -> list[str]:
        return [p.value for p in self.pieces if p.kind is SlotKind.FIELD]

    @property
    def n_soft(self) -> int:
        return sum(p.count for p in self.pieces if p.kind is SlotKind.SOFT)

    @property
    def n_trigger(self) -> int:
        return sum(p.count for p in self.pieces if p.kind is SlotKind.TRIGGER)

    @property
    def anchor(self) -> tuple[int, int]:
        """(start, end) piece indices of what stands between the last field before [MASK] and [MASK] itself (an
        empty span when no field comes first): the words AutoPrompt turns into triggers that start as those words."""
        mask = next(i for i, p in enumerate(self.pieces) if p.kind is SlotKind.MASK)
        fields = [i for i, p in enumerate(self.pieces[:mask]) if p.kind is SlotKind.FIELD]
        return (fields[-1] + 1 if fields else mask), mask

    def validate(self, columns: Sequence[str], kind: LMKind | None = None) -> None:
        """Check fields exist in the data and, given a causal LM, that [MASK] is last (scored as continuation)."""
        missing = [f for f in self.fields if f not in columns]
        if missing:
            raise TemplateError(
                f"the template uses {{{missing[0]}}} but the data has no such column; "
                f"use one of: {', '.join('{' + c + '}' for c in columns)}"
            )
        if kind is LMKind.CAUSAL:
            tail = self.pieces[-1]
            last_is_mask = tail.kind is SlotKind.MASK or (
                tail.kind is SlotKind.TEXT and not tail.value.strip() and self.pieces[-2].kind is SlotKind.MASK
            )
            if not last_is_mask:
                raise TemplateError(
                    "for a causal LM [MASK] must end the template (the label is scored as the "
                    "continuation); move it to the end, e.g. '{text} It was [MASK]'"
                )

    def fill(self, record: Mapping[str, str], triggers: Sequence[str] = ()) -> str:
        """Human-readable rendering: fields filled, trigger words shown, soft slots as [P]."""
        trig = iter(triggers)
        out = []
        for p in self.pieces:
            if p.kind is SlotKind.TEXT:
                out.append(p.value)
            elif p.kind is SlotKind.FIELD:
                out.append(str(record.get(p.value, "")))
            elif p.kind is SlotKind.TRIGGER:
                out.append(" ".join(next(trig, "[T]") for _ in range(p.count)))
            elif p.kind is SlotKind.SOFT:
                out.append(" ".join(["[P]"] * p.count))
            else:
                out.append("[MASK]")
        return "".join(out)

    def with_triggers(self, words: Sequence[str]) -> str:
        """The template source with its [T] slots replaced by found trigger words (a plain manual template)."""
        words = list(words)
        out = []
        for p in self.pieces:
            if p.kind is SlotKind.TRIGGER:
                out.append(" ".join(words[: p.count]))
                words = words[p.count :]
            else:
                out.append(source_of(p))
        return "".join(out)


def _slot(match: re.Match) -> Piece:
    if match.group(1):
        return Piece(SlotKind.FIELD, match.group(1))
    name, count = match.group(2), int(match.group(3) or 1)
    if not 1 <= count <= MAX_SLOT_REPEAT:
        raise TemplateError(f"[{name}*{count}] repeats {count} times; use a count from 1 to {MAX_SLOT_REPEAT}")
    if name == "MASK":
        if match.group(3):
            raise TemplateError("[MASK] takes no count; multi-token label words get as many masks as they need")
        return Piece(SlotKind.MASK)
    return Piece(SlotKind.SOFT if name == "P" else SlotKind.TRIGGER, count=count)


def source_of(p: Piece) -> str:
    """The template text of one piece (parsing it gives the piece back)."""
    if p.kind is SlotKind.TEXT:
        return p.value
    if p.kind is SlotKind.FIELD:
        return "{" + p.value + "}"
    if p.kind is SlotKind.MASK:
        return "[MASK]"
    tag = "P" if p.kind is SlotKind.SOFT else "T"
    return f"[{tag}]" if p.count == 1 else f"[{tag}*{p.count}]"


@dataclass(frozen=True)
class Verbalizer:
    """Label name → one or more words (a word may be several tokens)."""

    words: dict[str, tuple[str, ...]]

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, str | Sequence[str]], label_names: Sequence[str]) -> Verbalizer:
        words: dict[str, tuple[str, ...]] = {}
        for label in label_names:
            if label not in mapping:
                twin = next((k for k in mapping if isinstance(k, str) and skeleton(k) == skeleton(label)), None)
                if twin is not None:
                    raise TemplateError(
                        f"the verbalizer's label {twin!r} looks like the data's {label!r} but is not the same "
                        f"({difference(twin, label)}); write the label exactly as in the data"
                    )
                raise TemplateError(
                    f'the verbalizer has no word for label {label!r}; add e.g. {{"{label}": ["{label}"]}}'
                )
            value = mapping[label]
            if not isinstance(value, str | list | tuple):
                raise TemplateError(
                    f'the verbalizer word for label {label!r} must be a word or a list of words, like ["great"]'
                )
            items = (value,) if isinstance(value, str) else tuple(value)
            if not items or any(not isinstance(w, str) or not w.strip() for w in items):
                raise TemplateError(f"the verbalizer word for label {label!r} is empty; give at least one word")
            words[label] = tuple(dict.fromkeys(w.strip() for w in items))  # a repeated word counts once
        extra = set(mapping) - set(label_names)
        if extra:
            raise TemplateError(
                f"the verbalizer names label {sorted(extra)[0]!r} that is not in the data; "
                f"labels are: {', '.join(label_names)}"
            )
        _refuse_shared_words(words)
        return cls(words)

    @classmethod
    def from_json(cls, text: str, label_names: Sequence[str]) -> Verbalizer:
        try:
            mapping = json.loads(text)
        except json.JSONDecodeError as err:
            raise TemplateError(
                f"the verbalizer is not valid JSON ({err.msg} at character {err.pos}); "
                'write it like {"positive": ["great"], "negative": ["terrible"]}'
            ) from None
        except RecursionError:
            raise TemplateError('the verbalizer nests too deeply; write it like {"positive": ["great"]}') from None
        if not isinstance(mapping, dict):
            raise TemplateError('the verbalizer must be a JSON object like {"positive": ["great"]}')
        return cls.from_mapping(mapping, label_names)

    @classmethod
    def default(cls, label_names: Sequence[str]) -> Verbalizer:
        """The label names themselves, which works whenever labels are words (positive/negative, …)."""
        words = {name: (name.replace("_", " "),) for name in label_names}
        _refuse_shared_words(words)
        return cls(words)

    def to_dict(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.words.items()}


def _refuse_shared_words(words: Mapping[str, Sequence[str]]) -> None:
    """A word that stands for two labels makes their scores equal by construction: refuse it."""
    owner: dict[str, str] = {}
    for label, items in words.items():
        for word in items:
            if owner.setdefault(word, label) != label:
                raise TemplateError(
                    f"the verbalizer word {word!r} is given for both {owner[word]!r} and {label!r}; "
                    "give each label its own words"
                )


@dataclass
class Encoded:
    """A right-padded batch of rendered prompts with the positions of every slot.

    input_ids, attention_mask: (B, T). soft_mask / trigger_mask: (B, T) bool, the same count in every row, in
    template order. target_pos: (B, L) the positions whose output scores the L label-word tokens (MLM: the mask
    tokens themselves; causal: the position before each word token).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    soft_mask: torch.Tensor
    trigger_mask: torch.Tensor
    target_pos: torch.Tensor
    lengths: list[int] = field(default_factory=list)
    frozen: list[int] = field(default_factory=list)  # per row: leading tokens no prompt parameter changes

    def to(self, device: torch.device) -> Encoded:
        return Encoded(
            *(
                t.to(device)
                for t in (self.input_ids, self.attention_mask, self.soft_mask, self.trigger_mask, self.target_pos)
            ),
            self.lengths,
            self.frozen,
        )


def _tokens(backbone: Backbone, text: str, *, literal: bool = False) -> list[int]:
    """Token ids of `text`, no special tokens added. `literal` text (a data field, a label word) is only text: the
    spelling of a special token in it ("[MASK]", "[SEP]", "</s>", "<|endoftext|>") is split like any other word,
    so the one mask of a prompt is its template's [MASK] and a row cannot end or restructure the prompt. A
    template's anchors are the author's, and may name special tokens on purpose ("{text} [SEP] {text_b}")."""
    if not text:
        return []
    return backbone.tokenizer(text, add_special_tokens=False, split_special_tokens=literal)["input_ids"]


def mask_has_space(template: Template) -> bool:
    """Whether the label word follows whitespace (BPE tokenizers then need the word with a leading space)."""
    for i, p in enumerate(template.pieces):
        if p.kind is SlotKind.MASK:
            return (
                i > 0 and template.pieces[i - 1].kind is SlotKind.TEXT and template.pieces[i - 1].value[-1:].isspace()
            )
    return False


@dataclass
class _Row:
    ids: list[int]
    soft: list[int]
    trigger: list[int]
    target: list[int]
    frozen: int = 0  # tokens up to the end of the last field before the first [P]/[T]/[MASK] slot


def render_ids(
    backbone: Backbone,
    template: Template,
    record: Mapping[str, str],
    fill: Sequence[int],
    n_targets: int,
    *,
    trigger_ids: Sequence[int] = (),
    max_length: int = 256,
) -> _Row:
    """Token ids of one prompt: specials + pieces, with `fill` at [MASK] (MLM: L mask ids; causal: word[:-1])."""
    pieces = _piece_tokens(backbone, template, record, trigger_ids)
    budget = max_length - len(backbone.prefix_ids) - len(backbone.suffix_ids) - len(fill)
    _truncate_fields(pieces, budget)
    ids, soft, trig = list(backbone.prefix_ids), [], []
    target: list[int] = []
    frozen, leading = 0, True
    for piece, toks in pieces:
        start = len(ids)
        leading = leading and piece.kind in (SlotKind.TEXT, SlotKind.FIELD)
        if leading and piece.kind is SlotKind.FIELD:
            frozen = start + len(toks)
        if piece.kind is SlotKind.MASK:
            ids.extend(fill)
            if backbone.kind is LMKind.MASKED:
                target = list(range(start, start + n_targets))
            else:  # the logits at position t predict token t+1
                target = list(range(start - 1, start - 1 + n_targets))
            continue
        ids.extend(toks)
        if piece.kind is SlotKind.SOFT:
            soft.extend(range(start, len(ids)))
        elif piece.kind is SlotKind.TRIGGER:
            trig.extend(range(start, len(ids)))
    if backbone.kind is LMKind.MASKED:
        ids.extend(backbone.suffix_ids)
    if target:  # the suffix must hold every target position (causal: the one before the label word)
        frozen = min(frozen, min(target))
    return _Row(ids, soft, trig, target, frozen)


def _piece_tokens(
    backbone: Backbone, template: Template, record: Mapping[str, str], trigger_ids: Sequence[int]
) -> list[tuple[Piece, list[int]]]:
    out: list[tuple[Piece, list[int]]] = []
    trig = list(trigger_ids) if trigger_ids else [backbone.mask_id or backbone.pad_id] * template.n_trigger
    if len(trig) != template.n_trigger:
        raise TemplateError(
            f"the template has {template.n_trigger} trigger slots but {len(trig)} trigger tokens were given"
        )
    carried_space = False  # whitespace cut from the end of an anchor moves to the next field's first token (BPE)
    for p in template.pieces:
        if p.kind is SlotKind.TEXT:
            text = p.value.rstrip()
            carried_space = text != p.value
            out.append((p, _tokens(backbone, text)))
            continue
        if p.kind is SlotKind.FIELD:
            value = str(record.get(p.value, ""))
            out.append((p, _tokens(backbone, (" " + value) if carried_space and value else value, literal=True)))
        elif p.kind is SlotKind.SOFT:
            out.append((p, [backbone.pad_id] * p.count))
        elif p.kind is SlotKind.TRIGGER:
            out.append((p, trig[: p.count]))
            trig = trig[p.count :]
        else:
            out.append((p, []))
        carried_space = False
    return out


def _truncate_fields(pieces: list[tuple[Piece, list[int]]], budget: int) -> None:
    """Shorten the longest field first until the prompt fits; anchors and slots are never cut."""
    total = sum(len(t) for _, t in pieces)
    while total > budget:
        idx = max(
            (i for i, (p, _) in enumerate(pieces) if p.kind is SlotKind.FIELD),
            key=lambda i: len(pieces[i][1]),
            default=None,
        )
        if idx is None or not pieces[idx][1]:
            raise TemplateError(
                f"the template alone needs {total} tokens, more than the limit of {budget}; "
                "shorten the template or raise the maximum length"
            )
        cut = min(total - budget, len(pieces[idx][1]))
        pieces[idx] = (pieces[idx][0], pieces[idx][1][:-cut])
        total -= cut


def encode_batch(
    backbone: Backbone,
    template: Template,
    records: Sequence[Mapping[str, str]],
    fill: Sequence[int],
    n_targets: int,
    *,
    trigger_ids: Sequence[int] = (),
    max_length: int = 256,
) -> Encoded:
    """Render and right-pad a batch; right padding keeps each row's positions independent of the batch."""
    rows = [
        render_ids(backbone, template, r, fill, n_targets, trigger_ids=trigger_ids, max_length=max_length)
        for r in records
    ]
    return pad_rows(backbone, rows, n_targets)


def pad_rows(backbone: Backbone, rows: Sequence[_Row], n_targets: int) -> Encoded:
    """Right-pad rendered rows into one batch."""
    width = max(len(r.ids) for r in rows)
    batch = len(rows)
    ids = torch.full((batch, width), backbone.pad_id, dtype=torch.long)
    attn = torch.zeros((batch, width), dtype=torch.long)
    soft = torch.zeros((batch, width), dtype=torch.bool)
    trig = torch.zeros((batch, width), dtype=torch.bool)
    target = torch.tensor([r.target for r in rows], dtype=torch.long).reshape(batch, n_targets)
    for i, r in enumerate(rows):
        ids[i, : len(r.ids)] = torch.tensor(r.ids)
        attn[i, : len(r.ids)] = 1
        soft[i, r.soft] = True
        trig[i, r.trigger] = True
    return Encoded(ids, attn, soft, trig, target, [len(r.ids) for r in rows], [r.frozen for r in rows])


def tokenize_word(backbone: Backbone, word: str, *, space_before: bool) -> list[int]:
    """Token ids of a label word as it would appear in the slot (with a leading space for BPE after a space)."""
    ids = _tokens(backbone, (" " + word) if space_before else word, literal=True)
    if not ids:
        raise TemplateError(f"the label word {word!r} tokenises to nothing; choose another word")
    return ids


def with_soft_slots(template: Template, *, after_fields: int = 0, before_mask: int = 0, at_start: int = 0) -> str:
    """The template's source with continuous slots added, anchors kept (P-tuning's default templates).

    `after_fields` [P] tokens go right after the last field, `before_mask` right before [MASK], `at_start` before
    everything: ``"{text} It was [MASK]"`` with (3, 2, 0) becomes ``"{text} [P*3] It was [P*2] [MASK]"``.
    """

    def slot(n: int) -> str:
        return "[P]" if n == 1 else f"[P*{n}]"

    last_field = max(i for i, p in enumerate(template.pieces) if p.kind is SlotKind.FIELD)
    out = [slot(at_start) + " "] if at_start else []
    for i, p in enumerate(template.pieces):
        if p.kind is SlotKind.MASK and before_mask:
            prev = out[-1] if out else ""
            out.append(("" if not prev or prev[-1:].isspace() else " ") + slot(before_mask) + " ")
        out.append(source_of(p))
        if i == last_field and after_fields:
            out.append(" " + slot(after_fields))
    return "".join(out)


def without_soft_slots(template: Template) -> str:
    """The template's source with every [P] slot removed (for methods that take no input-level soft tokens)."""
    return "".join(source_of(p) for p in template.pieces if p.kind is not SlotKind.SOFT)
