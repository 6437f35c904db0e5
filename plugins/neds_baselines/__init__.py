"""Baselines fitted in closed form, registered as models and scored like NEDS (stage `fit`).

decoders   ridge_decoder: ridge per time bin from the population vector (wheel, whisker),
           logistic regression on the trial's flattened activity (choice, block)
plugin     registers them (entry point `neds_baselines`)
"""
