"""Rule release_check: the final gate. In strict mode, a chosen model that misses a gate fails the run."""

from deltaflow.errors import DeltaflowError
from deltaflow.io import read_json, write_text
from deltaflow.rulekit import start_job
from deltaflow.selection import failed_reasons, underpowered_notes

start_job(snakemake)
sel = read_json(snakemake.input.selection)
verdict = read_json(snakemake.input.gates)[sel["chosen"]]
reasons = failed_reasons(verdict)
if reasons and snakemake.params.strict:
    raise DeltaflowError(
        f"release gate failed (gates.strict is true): the chosen model '{sel['chosen']}' misses "
        f"{len(reasons)} gate(s):\n  "
        + "\n  ".join(reasons)
        + "\nSee results/tables/gates.json and results/model_card.md; relax gates or improve the model."
    )
status = "PASS" if not reasons else "FAIL (not strict: reported, not enforced)"
# a pass its data cannot decide is said to be so (gates.underpowered: block makes it a failure)
notes = underpowered_notes(verdict)
if notes and not reasons:
    status = "PASS (underpowered: not decided by the data)"
write_text(
    snakemake.output[0],
    f"{status}: {sel['chosen']}\n"
    + "".join(f"  {r}\n" for r in reasons)
    + "".join(f"  underpowered: {n}\n" for n in notes),
)
