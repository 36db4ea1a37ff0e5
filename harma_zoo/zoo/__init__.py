"""The zoo's tools: publishing trained adapters, model cards, the catalog, exporting and converting.

``catalog`` (rows for ``harma-zoo list``), ``publish`` (add a trained checkpoint), ``cards``
(generated model cards), ``export`` (a trained backbone as a zoo backbone), ``convert`` (HarMA
reference checkpoints). The registry, downloads and ``zoo:`` names live below, in ``harma_zoo.hub``.
"""
