"""release.also and release.notes: checked before any job (what may be released, where a note
goes). The release folders and cards themselves: tests/test_workflow.py on the tiny run."""

import pytest
from conftest import TINY_MODEL, config_errors

from deltaflow.config import validate_config
from deltaflow.models import ModelGraph


@pytest.mark.parametrize(
    "release,key,words",
    [
        ({"also": ["nope"]}, "release.also[0]", "'nope' cannot be released: not a model of this config"),
        (
            {"also": ["base"]},
            "release.also[0]",
            "'base' cannot be released: the base or a replicate-seed arm",
        ),
        (
            {"also": ["run_a", "rival"]},
            "release.also[1]",
            "'rival' cannot be released: a model we did not train that is not releasable",
        ),
        (
            {"also": ["run_a"], "notes": {"run_b": "why"}},
            "release.notes.run_b",
            "'run_b' is not listed there; add it to release.also",
        ),
        ({"also": ["run_a", "run_a"]}, "release.also", "non-unique"),
    ],
)
def test_what_cannot_be_released_is_refused_before_any_job(tiny_cfg, release, key, words):
    tiny_cfg["models"] = {"rival": {"kind": "full", "source": {**TINY_MODEL, "seed": 3}}}
    tiny_cfg["release"] = release
    err = config_errors(tiny_cfg)
    assert f"config key '{key}'" in err and words in err, err


def test_release_defaults_and_the_candidates(tiny_cfg):
    tiny_cfg["models"] = {
        "rival": {"kind": "full", "source": {**TINY_MODEL, "seed": 3}},
        "v1": {"kind": "full", "source": {**TINY_MODEL, "seed": 4}, "releasable": True},
    }
    cfg = validate_config(tiny_cfg, check_files=False)
    assert cfg["release"] == {"also": [], "notes": {}}
    assert ModelGraph(cfg).candidates() == [
        "v1",
        "run_a",
        "run_b",
        "run_dpo",
        "run_b@step3",
        "a_dpo_ties",
        "run_a.x0.5",
    ]
    tiny_cfg["release"] = {"also": ["v1", "run_b@step3"], "notes": {"v1": "the last release, re-run"}}
    validate_config(tiny_cfg, check_files=False)
