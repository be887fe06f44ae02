"""The documentation pages made from the code, so that they cannot drift from it.

A MkDocs hook (``hooks:`` in mkdocs.yml): when the site is built it adds

- ``index.md``: the repository's README.md, its ``docs/`` links made site links;
- ``reference/config.md``: every config key of the ``Config`` dataclasses (adautomix/config.py)
  with its default and the comment written beside it in the source;
- ``reference/presets.md``: every preset of adautomix/presets.py with its settings;
- ``reference/methods.md``: every method of the method registry with its λ, keys and needs.

``python docs/gen_pages.py OUT_DIR`` writes the same pages into OUT_DIR (to read them without
building the site).
"""
from __future__ import annotations

import dataclasses
import inspect
import io
import re
import sys
import tokenize
import typing
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the checkout's package, also when another copy is installed


def _cell(value: object) -> str:
    """A value as a Markdown table cell: YAML-like spelling, pipes escaped."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, str):
        text = f'"{value}"' if value == "" else value
    elif isinstance(value, float):
        text = f"{value:.6g}"
    else:
        text = str(value)
    return text.replace("|", "\\|")


def _code(value: object) -> str:
    return f"`{_cell(value)}`"


def field_comments(cls: type) -> dict[str, tuple[str, str]]:
    """``{field: (group, comment)}`` for a dataclass, read from its source with ``tokenize``: the
    comment at the end of the field's line, else the comment lines right above it. A comment block
    above a field that has its own comment heads a group of fields (``# PuzzleMix (...)``)."""
    source = inspect.getsource(cls)
    comments: dict[int, str] = {}
    code_lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
        elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            code_lines.add(tok.start[0])
    names = {f.name for f in dataclasses.fields(cls)}
    found: dict[str, tuple[str, str]] = {}
    for n, line in enumerate(source.splitlines(), 1):
        m = re.match(r"\s+(\w+)\s*:", line)
        if not m or m.group(1) not in names:
            continue
        above, k = [], n - 1
        while k in comments and k not in code_lines:  # a comment block on the lines above
            above.insert(0, comments[k])
            k -= 1
        if n in comments:
            found[m.group(1)] = (" ".join(above), comments[n])
        else:
            found[m.group(1)] = ("", " ".join(above))
    return found


def _type(hint: object) -> str:
    """A field's type as the docs spell it: ``int``, ``float or null``, ``true, false or auto``."""
    args = typing.get_args(hint)
    if typing.Literal["auto"] in args:
        return "true, false or auto"
    if type(None) in args:
        return " or ".join(_type(a) for a in args if a is not type(None)) + " or null"
    return getattr(hint, "__name__", str(hint)) if not typing.get_args(hint) else str(hint)


def _text(text: str) -> str:
    """A source comment as table text: ``one of NAME`` spelled out with NAME's values from
    adautomix.config, ``<`` and ``|`` escaped."""
    import adautomix.config as config

    def values(m: re.Match) -> str:
        named = getattr(config, m.group(1), None)
        if not isinstance(named, (tuple, dict)):
            return m.group(0)
        return "one of " + ", ".join(f"`{v}`" for v in named)

    text = re.sub(r"one of ([A-Z_]+)\b", values, text)
    return text.replace("<", "&lt;").replace("|", "\\|")


def config_page() -> str:
    from adautomix.config import Config

    out = ["# Config keys", "",
           "Every key of a run's config, generated from the `Config` dataclasses in",
           "`adautomix/config.py`: the default and the comment written beside the field. Set a key",
           "with `key=value` on the command line, in a `--config` YAML file or in a study's `base:`;",
           "`adautomix train --dry-run` prints the resolved config. `null` means \"decided at run",
           "time\" (by the data set, the method or the device, as the description says).", ""]

    def section(cls: type, prefix: str, instance: object) -> None:
        hints = typing.get_type_hints(cls)
        comments = field_comments(cls)
        rows, subsections = [], []
        for f in dataclasses.fields(cls):
            value = getattr(instance, f.name)
            if dataclasses.is_dataclass(value):
                subsections.append((type(value), f"{prefix}{f.name}.", value))
                continue
            group, what = comments.get(f.name, ("", ""))
            if group:
                rows.append(f"| **{_text(group)}** | | | |")
            rows.append(f"| `{prefix}{f.name}` | {_code(value)} | {_type(hints[f.name])} | {_text(what)} |")
        if rows:
            title = prefix.rstrip(".") or "top level"
            out.extend([f"## `{title}`" if prefix else "## Top level", ""])
            doc = inspect.getdoc(cls)
            if doc and not doc.startswith(cls.__name__ + "("):  # a written docstring, not the generated one
                out.extend([doc, ""])
            out.extend(["| key | default | type | what |", "|---|---|---|---|", *rows, ""])
        for sub in subsections:
            section(*sub)

    section(Config, "", Config())
    return "\n".join(out)


def presets_page() -> str:
    from adautomix.presets import PRESETS

    out = ["# Presets (reference)", "",
           "Every preset of `adautomix/presets.py`, generated from the code: what",
           "`adautomix train --preset NAME` sets. Why each value is what it is: [Presets](../presets.md).", ""]
    for p in PRESETS.values():
        out.extend([f"## `{p.name}`", "", f"{p.what}.", "", f"Published source: {p.source}.", "",
                    "| key | value |", "|---|---|",
                    *(f"| `{k}` | {_code(v)} |" for k, v in p.config.items()), ""])
        if p.init:
            out.extend([f"`model.init`: {p.init}", ""])
        if p.not_reproduced:
            out.extend(["Not reproduced:", "", *(f"- {_cell(n)}" for n in p.not_reproduced), ""])
    return "\n".join(out)


def methods_page() -> str:
    from adautomix.methods.registry import METHODS

    out = ["# Methods (reference)", "",
           "Every registered method (`method.name`), generated from the method registry: its paper,",
           "the default λ of Beta(λ, λ) (0: the method draws no λ), the `method.*` keys it reads,",
           "the defaults it sets for keys whose default differs between methods, and what it needs",
           "beyond a batch. How each one mixes: [Methods](../methods.md).", "",
           "| `method.name` | paper | λ | keys | own defaults | needs |", "|---|---|---|---|---|---|"]
    for m in METHODS.values():
        paper = re.sub(r"(https?://\S+)", r"<\1>", m.paper)
        keys = ", ".join(f"`{k}`" for k in getattr(m, "params", ()))
        defaults = ", ".join(f"`{k}` = {_code(v)}" for k, v in dict(getattr(m, "defaults", {})).items())
        needs = ", ".join(sorted(getattr(m, "needs", ())))
        out.append(f"| `{m.name}` | {_cell(paper)} | {_cell(m.mix_lambda)} | {keys} | {defaults} | {needs} |")
    return "\n".join(out) + "\n"


def index_page() -> str:
    """The README as the site's front page: links into ``docs/`` become links within the site, and
    the reference pages, which exist only in the site, are linked."""
    reference = ("generated from the code when the site is built: [config keys](reference/config.md), "
                 "[presets](reference/presets.md), [methods](reference/methods.md)")
    text = (REPO / "README.md").read_text().replace("](docs/", "](")
    return text.replace("generated from the code when the site is built: config keys, presets, methods", reference)


PAGES = {"index.md": index_page, "reference/config.md": config_page,
         "reference/presets.md": presets_page, "reference/methods.md": methods_page}


def on_files(files, config):
    """MkDocs hook: add the generated pages to the site's files."""
    from mkdocs.structure.files import File

    for uri, make in PAGES.items():
        files.append(File.generated(config, uri, content=make()))
    return files


if __name__ == "__main__":
    out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "site-pages")
    for uri, make in PAGES.items():
        (out_dir / uri).parent.mkdir(parents=True, exist_ok=True)
        (out_dir / uri).write_text(make())
        print(out_dir / uri)
