"""Config and data files read strictly: a YAML key given twice, an empty config file and invalid
UTF-8 in a data file are errors naming the file and the line."""

import json
import subprocess

import pytest
import yaml
from conftest import SNAKEMAKE, copy_workflow, run_snakemake, tiny_config

from deltaflow.errors import ConfigError, DataError
from deltaflow.io import read_config_file, read_jsonl


def _tiny_yaml_with_a_second(key_block: str) -> tuple[str, int, int]:
    """The tiny config's YAML with ``key_block`` appended; the lines of its top-level key, twice."""
    text = yaml.safe_dump(tiny_config(), sort_keys=False)
    key = key_block.split(":")[0]
    first = text.splitlines().index(f"{key}:") + 1
    return text + key_block, first, len(text.splitlines()) + 1


def test_a_key_given_twice_in_a_configfile_is_refused_naming_both_lines(tmp_path):
    text, first, second = _tiny_yaml_with_a_second("benchmarks:\n  arithmetic: {dataset: arithmetic, n: 3}\n")
    path = tmp_path / "config.yaml"
    path.write_text(text)
    proc = run_snakemake(tmp_path, path, "-n", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert (
        f"config file {path}:{second}: key 'benchmarks' is given twice in one mapping (lines {first} and "
        f"{second}); YAML would keep only the last"
    ) in out
    assert not (tmp_path / "results").exists()


def test_strict_reading_nested_keys_json_and_yaml_merge_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("datasets:\n  a:\n    type: generated\n    seed: 1\n    seed: 2\n")
    with pytest.raises(
        ConfigError, match=r"c.yaml:5: key 'seed' is given twice in one mapping \(lines 4 and 5\)"
    ):
        read_config_file(path)
    path.write_text('{"runs": {}, "runs": {"a": 1}}')
    with pytest.raises(ConfigError, match="key 'runs' is given twice in one object"):
        read_config_file(path)
    # a merge key's values may be overridden: that is no duplicate
    path.write_text("base: &b {lr: 1, r: 4}\nrecipes:\n  x:\n    <<: *b\n    lr: 2\n")
    assert read_config_file(path)["recipes"]["x"] == {"lr": 2, "r": 4}


def test_a_key_given_twice_in_a_benchmark_file_is_refused(tmp_path):
    from deltaflow.bench import registry

    (tmp_path / "mine.yaml").write_text("task: mine\noutput_type: multiple_choice\ntask: other\n")
    with pytest.raises(
        ConfigError, match=r"benchmark file .*mine.yaml:3: key 'task' is given twice .*lines 1 and 3"
    ):
        registry.load("mine", (str(tmp_path),))


@pytest.mark.parametrize("text", ["", "# settings to come\n"])
def test_an_empty_config_file_is_named(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"config file {path} is empty"):
        read_config_file(path)


def test_an_empty_default_config_is_named_by_the_workflow(tmp_path):
    """The default config (the Snakefile's `configfile:`); an empty --configfile is refused by
    Snakemake's own loader before the workflow is read (config/README.md)."""
    wf = copy_workflow(tmp_path / "wf")
    (wf / "config/config.yaml").write_text("")
    proc = subprocess.run(
        [SNAKEMAKE, "-s", str(wf / "Snakefile"), "--directory", str(wf), "-n", "--cores", "1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "config file config/config.yaml is empty" in proc.stdout + proc.stderr


def test_invalid_utf8_in_a_data_file_names_file_line_and_offset(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(DataError) as err:
        read_jsonl(path)
    assert str(err.value).startswith(f"{path}:2: not valid UTF-8 (byte b'\\xe9' at byte offset 30, column 14")
    assert "iconv -f latin1 -t utf-8" in str(err.value)


def test_invalid_utf8_in_a_dataset_or_benchmark_source_is_a_data_error(tmp_path):
    from deltaflow.bench.loaders import read_table
    from deltaflow.datasets import normalize_dataset

    src = tmp_path / "a.json"
    src.write_bytes(json.dumps([{"instruction": "x", "output": "y"}]).encode()[:-2] + b', "note": "\xff"}]')
    with pytest.raises(DataError, match=r"a.json:1: not valid UTF-8 \(byte b'\\xff'"):
        normalize_dataset("a", {"type": "file", "path": str(src), "format": "alpaca"})
    csv = tmp_path / "items.csv"
    csv.write_bytes(b"question,answer\n1+1,2\nna\xefve,3\n")
    with pytest.raises(DataError, match=r"items.csv:3: not valid UTF-8"):
        read_table(csv)
    (tmp_path / "gz").mkdir()
    import gzip

    gz = tmp_path / "gz/rows.jsonl.gz"
    gz.write_bytes(gzip.compress(b'{"a": "\x80"}\n'))
    with pytest.raises(DataError, match=r"rows.jsonl.gz:1: not valid UTF-8"):
        read_jsonl(gz)
