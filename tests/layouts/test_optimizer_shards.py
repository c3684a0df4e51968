"""How a split sample's processes share out the optimizer's work
(``parallel.mesh.optimizer_shards``); the step itself runs under MPI in
``test_mesh.py`` and ``test_deepcam_layouts.py``."""
import pytest

from core.errors import HarnessError
from parallel.mesh.optimizer_shards import share_out, sharded_step

SIZES = [1728, 16, 884736, 256, 32768, 1, 4]      # CosmoFlow-like: one kernel holds most weights


def test_an_elementwise_rule_cuts_every_weight_into_equal_ranges():
    pieces = share_out(SIZES, 3, elementwise=True)
    for weight, size in enumerate(SIZES):
        ranges = [(p.start, p.stop) for p in pieces if p.weight == weight]
        covered = [i for start, stop in ranges for i in range(start, stop)]
        assert covered == list(range(size)), weight             # each element once, in order
    held = [sum(p.stop - p.start for p in pieces if p.owner == owner) for owner in range(3)]
    assert max(held) - min(held) <= len(SIZES), held


def test_whole_tensor_rules_get_whole_weights_dealt_out_largest_first():
    sizes = [100, 90, 80, 70, 60, 50, 40, 5]
    pieces = share_out(sizes, 2, elementwise=False)
    assert sorted(p.weight for p in pieces) == list(range(len(sizes)))
    assert all((p.start, p.stop) == (0, sizes[p.weight]) for p in pieces)
    held = [sum(sizes[p.weight] for p in pieces if p.owner == owner) for owner in range(2)]
    assert sorted(held) == [235, 260], held       # greedy: within the largest weight of each other


def test_a_whole_tensor_rule_refuses_a_split_weight_in_one_line():
    from deepcam.optimizers import AdamFamilyRule

    lamb = AdamFamilyRule("LAMB", 0.01, (0.9, 0.999), 1e-6, 0.01, max_grad_norm=1.0)
    with pytest.raises(HarnessError, match="needs whole weights.*use a layout that keeps every weight whole"):
        sharded_step(lamb, [], [], [], split=[False, True], hvd=None, process_set=None)
