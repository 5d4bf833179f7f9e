"""One translation conformance suite that every provider runs through.

A cell is client format x provider x feature: a real gateway in front of the provider's fake
upstream, driven by an official SDK, checked on what the client saw and on what the upstream
received. The pieces, each in the module that bears its name:

    scenario.py          the client-neutral vocabulary: what a test asks (Ask, Turn, ...) and
                         what a client saw (Answer, Ending)
    case.py              ProviderCase: what a provider declares, and UpstreamReader, how its
                         recorded request bodies read in that vocabulary
    providers/<type>.py  one case per provider, found automatically
    clients.py           one ClientFormat per client dialect (an official SDK behind it)
    features.py          the features: one check each, written once for every cell
    test_conformance.py  the parametrised suite

Adding a provider is one file in ``providers/``; adding a client format is one ``ClientFormat``
subclass listed in ``clients.CLIENT_FORMATS``. ``scripts/conformance_matrix.py`` runs the suite
and publishes the matrix in ``docs/conformance.md``.
"""
