"""Data: UK Biobank extracts (cadft.data.ukb) -> labels and follow-up (task, followup) -> features, history, text ->
split -> the prepared table (prepare, cache, card)."""
