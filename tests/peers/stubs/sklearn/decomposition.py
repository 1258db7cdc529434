"""Stub of sklearn.decomposition (tests/peers)."""

from _missing import missing

KernelPCA = missing("sklearn.decomposition.KernelPCA")
NMF = missing("sklearn.decomposition.NMF")
