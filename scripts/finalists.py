"""Checkpoint finalists: who runs the benchmarks of the suite that follows the selection
({finalists: k}, deltaflow.suites): the chosen model and its k runners-up."""

from deltaflow.io import read_json, write_json
from deltaflow.rulekit import start_job
from deltaflow.suites import finalists

start_job(snakemake)
p = snakemake.params
selection = read_json(snakemake.input.selection)
((suite, k),) = p.suites.items()
models = finalists(selection, k)
write_json(
    snakemake.output.finalists,
    {
        "suite": suite,
        "k": k,
        "chosen": selection["chosen"],
        "models": models,
        "benchmarks": list(p.benchmarks),
        "why": f"The chosen model and the {len(models) - 1} next-best by the selection's score "
        f"(results/tables/selection.json; excluded models left out)",
    },
)
