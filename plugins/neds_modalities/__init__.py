"""Tokenizers and heads for NEDS's modalities (spikes, lfp, wheel, whisker, choice, block).

tokenizers  spikes, lfp, dynamic (any scalar-per-bin behaviour), static (per-trial class variables)
heads       spikes (Poisson), regression (MSE), classification (cross-entropy)
plugin      registers them (entry point `neds_modalities`)
"""
