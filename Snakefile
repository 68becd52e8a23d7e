# deltaflow: raw datasets -> mixtures -> PEFT adapters -> per-benchmark evals -> delta tables
# -> gates, selection, plots and the model card.
# Thin on purpose: config loading and validation live in rules/common.smk, logic in scripts/.
import os

from snakemake.utils import min_version

from deltaflow.io import read_config_file

min_version("9.0")

# The libraries' own progress bars (lm-eval's requests, datasets, transformers) refresh at most
# every 30 s in a job's log (tqdm reads TQDM_MININTERVAL when imported; jobs inherit it), beside
# deltaflow's own progress lines with rate and ETA (deltaflow/progress.py).
os.environ.setdefault("TQDM_MININTERVAL", "30")

# --configfile deep-merges over a `configfile:` directive, so the default config is only
# loaded when none was given on the command line (a test config must not inherit its runs).
if not config:
    # an empty or duplicate-key file is named here; Snakemake's own message names no file
    if os.path.exists("config/config.yaml"):
        read_config_file("config/config.yaml")

    configfile: "config/config.yaml"


report: "rules/report/workflow.rst"


# Tables, selection, the release check, plots and the card read small files and take seconds:
# on a cluster they run where snakemake runs instead of waiting in the queue once each.
localrules:
    delta_table,
    seed_table,
    select_model,
    release_check,
    plots,
    model_card,
    gguf_parity_report,


include: "rules/common.smk"
include: "rules/model.smk"
include: "rules/data.smk"
include: "rules/generate.smk"
include: "rules/mixtures.smk"
include: "rules/train.smk"
include: "rules/merge.smk"
include: "rules/export.smk"
include: "rules/eval.smk"
include: "rules/judge.smk"
include: "rules/tables.smk"
include: "rules/seeds.smk"
include: "rules/selection.smk"
include: "rules/finalists.smk"
include: "rules/tracking.smk"
include: "rules/report.smk"

# results copied without .snakemake/: rerun the jobs made with other params or code (common.smk)
mark_stale_results()


rule all:
    input:
        get_final_output(),
    default_target: True
