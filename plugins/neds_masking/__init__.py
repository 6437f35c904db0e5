"""Masking schemes: which inputs are hidden and predicted, drawn per sample.

multitask   NEDS's multi-task masking (registered as `neds_multitask`)
plugin      registers them (entry point `neds_masking`)
"""
