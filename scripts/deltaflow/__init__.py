"""deltaflow: the importable logic behind the Snakemake rules.

One module per concept; the entry scripts in ``scripts/`` only unpack
``snakemake.input/params/output`` and call into here.
"""

__version__ = "0.1.0"
