"""Scoring saved model outputs: metrics (matching, code, aggregation), parsers (answer extraction
as Python), ifeval (instruction-following checkers)."""
