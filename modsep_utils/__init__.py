"""modsep_utils: the helper package behind the modsep notebooks.

One module per step of the paper "Modularity in Transformers: Investigating Neuron
Separability & Specialization":

- ``models``   load the trained / randomly initialised models (embedded or hub)
- ``data``     named subsets (forget sets, retain mixtures, multiple choice)
- ``neurons``  where the MLP neurons are, streaming statistics, pruning masks  (01)
- ``scoring``  forget/retain importance scores and top-k selection              (02)
- ``pruning``  accuracy, bisection to a target drop, cross-evaluation           (03)
- ``overlap``  intersections of selected neuron sets                            (04)
- ``moe``      MoEfication: balanced k-means of W_in rows                       (05)
- ``auc``      Lorenz curves and their normalised area                          (06)
- ``explore``  the class-pair explorer                                          (07)
- ``run``      papermill driver: ``python -m modsep_utils.run --profile embedded``
- ``reproduction``  compare a run's headline numbers with the committed ones
"""
__version__ = "0.1.0"
