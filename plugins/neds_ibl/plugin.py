"""neds_ibl: the IBL data source (ONE-api + brainbox) and the synthetic IBL session generator."""

from neds_framework import hookimpl
