"""Synthetic UK Biobank-like cohort with a known true risk per person (`cadft-synth`).

cohort.py draws baseline characteristics, treatment.py medication and on-treatment values, hazards.py
the event hazards and the oracle risk, outcomes.py prevalent disease and what happens after baseline,
hospital.py and selfreport.py the codes and answers UK Biobank would record (codes.yaml: code titles and
background rates), measurements.py the single-valued fields, simulate.py ties them into per-field values,
write.py writes the extract formats and cli.py is the console script.
"""
