"""Masking schemes: which inputs are hidden and predicted, drawn per sample.

multitask   NEDS's multi-task masking (registered as `neds_multitask`)
schemes     temporal, random, causal, neuron, inter_region, intra_region
mixture     per sample, one of several registered maskers with given probabilities
draw        the vectorised random draws they share
plugin      registers them (entry point `neds_masking`)
"""
