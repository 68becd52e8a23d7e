"""Run grids: many (mixture x recipe) runs declared at once, optionally varying recipe keys.

```yaml
grids:
  rank_lr:
    mixtures: [arith_replay]
    recipes: [lora_r8]
    vary: {r: [8, 16], learning_rate: [0.0002, 0.00005]}
```

expands, before any other check, into the recipes ``lora_r8-r16-learning_rate5e-05`` (and
the other combinations) and the runs ``rank_lr-arith_replay-lora_r8-r16-learning_rate5e-05``
(...). Every generated run is an ordinary run afterwards: trained, evaluated and tabled like
one written by hand, and its recipe.json records the full recipe. The names are built from
the values, so adding a value to a list adds runs and leaves the existing ones (and their
results) untouched.
"""

from __future__ import annotations

import copy
import itertools
import re

from .errors import ConfigError


def value_label(value) -> str:
    """A value as it appears in a generated name (file-name safe: [A-Za-z0-9_-])."""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return re.sub(r"[^A-Za-z0-9_-]", "p", text.replace("+", ""))


def variant_name(recipe: str, combo: dict) -> str:
    return "-".join([recipe, *(f"{k}{value_label(v)}" for k, v in combo.items())])


def expand_grids(config: dict, recipe_validator) -> None:
    """Add each grid's recipes and runs to ``config`` in place.

    ``recipe_validator(recipe) -> list[str]`` returns schema errors for one derived recipe;
    they are reported under the grid's key so the user sees which value is wrong.
    """
    grids = config.get("grids") or {}
    runs, recipes = config["runs"], config.setdefault("recipes", {})
    problems = []
    for gname, grid in grids.items():
        key = f"config key 'grids.{gname}"
        missing = [r for r in grid["recipes"] if r not in recipes]
        if missing:
            problems.append(
                f"{key}.recipes': unknown recipe(s) {missing}; known: {', '.join(sorted(recipes))}"
            )
            continue
        unknown_mix = [m for m in grid["mixtures"] if m not in config.get("mixtures", {})]
        if unknown_mix:
            problems.append(
                f"{key}.mixtures': unknown mixture(s) {unknown_mix}; "
                f"known: {', '.join(sorted(config.get('mixtures', {})))}"
            )
            continue
        vary = grid.get("vary") or {}
        combos = [dict(zip(vary, values)) for values in itertools.product(*vary.values())]
        for base in grid["recipes"]:
            for combo in combos:
                name = variant_name(base, combo) if combo else base
                derived = {**copy.deepcopy(recipes[base]), **combo}
                errs = recipe_validator(derived)
                if errs:
                    problems.extend(f"{key}.vary': recipe '{base}' with {combo}: {e}" for e in errs)
                    continue
                if name in recipes and recipes[name] != derived:
                    problems.append(
                        f"{key}': the generated recipe name '{name}' is already a "
                        "different recipe under recipes:; rename one of them"
                    )
                    continue
                recipes[name] = derived
                for mix in grid["mixtures"]:
                    run = f"{gname}-{mix}-{name}"
                    spec = {
                        "mixture": mix,
                        "recipe": name,
                        **({"init_from": grid["init_from"]} if grid.get("init_from") else {}),
                        **({"base": grid["base"]} if grid.get("base") else {}),
                    }
                    if run in runs and runs[run] != spec:
                        problems.append(
                            f"{key}': the generated run name '{run}' is already a "
                            "run under runs:; rename the grid or the run"
                        )
                        continue
                    runs[run] = spec
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    if not runs:
        raise ConfigError(
            "invalid config:\n  config key 'runs': no runs to train; declare one "
            "under runs: (mixture + recipe) or a grid under grids:"
        )
