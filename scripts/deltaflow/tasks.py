"""Deterministic capability-task generators (seeds 000 and 004).

Each generator enumerates a finite item space, shuffles it with the seed and
takes the eval split first and the train split after it, so the two splits are
disjoint by construction (asserted, and tested).
"""

from __future__ import annotations

import random
from typing import Callable

LETTERS = "ABCD"

# Common English words for the spelling task; a fixed list so no download is needed.
WORDS = """
about above across action actor adult advice affair afraid agency agent agree ahead
allow almost alone along already always amount analysis animal annual answer anyone
appear apply approach area argue around arrive artist assume attack author autumn
avoid baby back ball bank base beat beauty become before begin behind believe benefit
better beyond bird black blood board body book born both bottle bottom branch bread
break bring brother budget build burden business butter cabin camera campaign cancer
candle capital career carry castle catch cause center chair chance change charge check
child choice church circle citizen city claim class clear close coach coast cold color
column common cookie corner cotton couple course court cover create credit crime cross
culture cup current custom dance danger daughter debate decade decide deep defense
degree design detail device dinner direct doctor dollar door double dream drive during
early earth east easy economy edge effect effort eight either election energy engine
enjoy enough enter entire escape evening event exact expert factor family farmer father
fault feeling field figure final finger finish fire flight floor flower focus follow
forest forget format forward friend front fruit future garden gather general gentle
glass golden govern ground group grow guard guess guitar habit handle happen harbor
health heart heavy height hello history hold holiday honey horse hotel house human
hunger hunter idea image impact income index inside island issue jacket journey judge
kitchen knife ladder language large laugh lawyer leader lemon letter level library
light limit listen little local lucky machine magic manage market master matter meadow
member memory method middle minute mirror modern moment money monkey month morning
mother motion mountain music narrow nation nature nearly needle never night normal
north number object ocean office orange order other owner paint paper parent party
pencil people pepper person phone picture pilot planet plastic player pocket poem
police policy potato power pretty prison profit public purple quarter question quick
rabbit radio rather reader reason record region remain report result river rocket
sample school season second secret silver simple sister smile soldier spring square
stage station stone story street strong student summer system table talent teacher
theory thing ticket tiger today tomato travel tree turkey uncle under valley village
visit voice water window winter woman wonder worker world writer yellow young zebra
""".split()


def _arithmetic_items():
    for op in "+-":
        for a in range(10, 100):
            for b in range(10, 100):
                if op == "-" and b > a:
                    continue
                yield (op, a, b)


def _arithmetic_row(item, rng: random.Random) -> dict:
    op, a, b = item
    answer = a + b if op == "+" else a - b
    return {
        "prompt": f"What is {a} {op} {b}? Answer with the number only.",
        "answer": str(answer),
        "item_key": f"{a}{op}{b}",
    }


def _mcq_row(item, rng: random.Random) -> dict:
    op, a, b = item
    answer = a + b if op == "+" else a - b
    distractors = set()
    for delta in rng.sample([-11, -10, -2, -1, 1, 2, 9, 10, 11], 9):
        if len(distractors) == 3:
            break
        if answer + delta >= 0:
            distractors.add(answer + delta)
    options = [answer, *sorted(distractors)]
    rng.shuffle(options)
    gold = LETTERS[options.index(answer)]
    body = "\n".join(f"{letter}. {opt}" for letter, opt in zip(LETTERS, options))
    return {
        "prompt": f"What is {a} {op} {b}?\n{body}\nAnswer with the letter only.",
        "answer": gold,
        "choices": list(LETTERS),
        "item_key": f"{a}{op}{b}",
    }


def _spelling_row(word, rng: random.Random) -> dict:
    return {
        "prompt": f"Spell the word '{word}' letter by letter, separated by spaces.",
        "answer": " ".join(word),
        "item_key": word,
    }


GENERATORS: dict[str, tuple[Callable[[], list], Callable]] = {
    "arithmetic": (lambda: list(_arithmetic_items()), _arithmetic_row),
    "mcq_letters": (lambda: list(_arithmetic_items()), _mcq_row),
    "spelling": (lambda: sorted(set(WORDS)), _spelling_row),
}


def generate_task(task: str, *, train_rows: int, eval_rows: int, seed: int, name: str) -> list[dict]:
    """Rows in deltaflow's schema for both splits of a generated task."""
    if task not in GENERATORS:
        raise ValueError(f"unknown generated task '{task}'; known: {sorted(GENERATORS)}")
    space_fn, row_fn = GENERATORS[task]
    space = space_fn()
    if train_rows + eval_rows > len(space):
        raise ValueError(
            f"task '{task}' has only {len(space)} distinct items; "
            f"train_rows + eval_rows = {train_rows + eval_rows} would overlap — lower them"
        )
    rng = random.Random(seed)
    order = list(range(len(space)))
    rng.shuffle(order)
    splits = {"eval": order[:eval_rows], "train": order[eval_rows:eval_rows + train_rows]}
    rows = []
    for split in ("train", "eval"):
        for i, idx in enumerate(splits[split]):
            item_rng = random.Random(f"{seed}-{idx}")
            task_row = row_fn(space[idx], item_rng)
            rows.append({
                "id": f"{name}-{split}-{i:06d}",
                "source": name,
                "split": split,
                "origin": "synthetic",
                "messages": [
                    {"role": "user", "content": task_row["prompt"]},
                    {"role": "assistant", "content": task_row["answer"]},
                ],
                "label": task_row["answer"],
                "label_set": task_row.get("choices"),
                "item_key": task_row["item_key"],
            })
    train_keys = {r["item_key"] for r in rows if r["split"] == "train"}
    eval_keys = {r["item_key"] for r in rows if r["split"] == "eval"}
    assert not train_keys & eval_keys, "generated splits overlap"
    return rows
