"""Explanations (`explain` group): which parts of a record moved each risk, for the language model and the baselines
alike, and, on synthetic cohorts, how well that agrees with each participant's true risk factors.

occlusion.py takes the parts of a record out one at a time (the language model); baselines.py gives logistic
regression's and LightGBM's own attributions on the same participants; truth.py reads the synthetic cohort's true
contributions; importance.py summarises them (global importance with CIs, direction, agreement with the truth);
run.py explains a run's sample and writes the files; report.py renders them, and the top reasons per participant.
"""
