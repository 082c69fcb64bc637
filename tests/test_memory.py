"""Networks are checked before training: built on the meta device, against the device's memory."""

from __future__ import annotations

import pytest
import torch

from segqc.errors import ConfigError
from segqc.nets.memory import check_image_network, count_values
from segqc.nets.ncsnpp import NCSNpp

CPU = torch.device("cpu")
SMALL = {"nf": 8, "ch_mult": [1, 2], "num_res_blocks": 1}


def test_a_small_network_fits_and_its_activations_are_counted() -> None:
    needed = check_image_network(SMALL, 2, (32, 32), 1, 3, 8, CPU, amp=False)
    with torch.device("meta"):
        net = NCSNpp(2, 1, 3, input_size=32, **SMALL)
        values = count_values(net, lambda: net(torch.zeros(1, 1, 32, 32), torch.zeros(1, 3, 32, 32), torch.ones(1)))
    parameters = sum(p.numel() for p in net.parameters())
    assert values > 32 * 32 * 8 and needed == parameters * 4 * 6 + values * 8 * 4


@pytest.mark.parametrize("network, size, message", [
    ({**SMALL, "nff": 8}, (32, 32), "model.network.nff: unknown setting (did you mean 'nf'?)"),
    ({**SMALL, "ch_mult": [1, 2, 2]}, (30, 30), "cannot build the network for data.spatial_size [30, 30]"),
    ({**SMALL, "nf": "8"}, (32, 32), "cannot build the network"),
    ({**SMALL, "attn_resolutions": [7]}, (32, 32), "match no level"),
    ({**SMALL, "nf": 100_000}, (32, 32), "model.network: training needs at least"),
    ({**SMALL, "nf": 10**20}, (32, 32),
     "model.network.nf: invalid value 100000000000000000000; expected whole numbers in 0..1,048,576"),
    ({**SMALL, "ch_mult": [1, 10**20]}, (32, 32), "model.network.ch_mult: invalid value [1, 100000000000000000000]"),
    ({**SMALL, "num_res_blocks": 10**20}, (32, 32),
     "model.network.num_res_blocks: invalid value 100000000000000000000; expected whole numbers in 0..100"),
], ids=["unknown-key", "size-cannot-halve", "wrong-type", "attention-nowhere", "too-large", "nf-beyond-64-bits",
        "ch-mult-beyond-64-bits", "res-blocks-absurd"])
def test_impossible_networks_are_refused_naming_the_key(network, size, message) -> None:
    with pytest.raises(ConfigError) as info:
        check_image_network(network, 2, size, 1, 3, 8, CPU, amp=False)
    assert message in str(info.value)
