"""stardist nuclei: does segqc flag a briefly trained UNet's bad nuclei masks?

Cuts stardist's 512 x 512 fluorescence nuclei image (``stardist/data/images``, read
with Pillow, no TensorFlow) into 64 x 64 tiles with a foreground mask: left half
labelled, right half test. Trains a MONAI UNet on the labelled tiles and keeps its
test predictions after 15, 40 and 150 steps, adds one graded corruption per test
tile, then runs ``segqc train`` on the labelled tiles (with flips and 90-degree
rotations) and ``segqc score`` on every prediction with ground truth. Provenance
per case: ``OUT/data/test/provenance.csv``.

Setup (once)::

    pip install -e . && pip install --no-deps stardist

Run (about 6 minutes on 2 CPU cores)::

    python examples/stardist_nuclei.py --out nuclei-qc
"""

from realdata import example_main, nuclei_set

if __name__ == "__main__":
    example_main(__doc__, nuclei_set, "nuclei-qc")
