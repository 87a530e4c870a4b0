"""Seeds keyed by content: a grid point's numbers depend only on what it is, never on its
position in the grid (rmtalign.seeds.point_seed; used by the CLI and width_limit)."""
import numpy as np
import pytest

import rmtalign as ra
from rmtalign.seeds import point_seed, resolve_seed


def _state(ss):
    return ss.generate_state(4).tolist()


def test_point_seed_depends_on_content_only():
    fam = ra.ResNet.scaled(16, 32, 1.0)
    a = point_seed(7, fam, "bfa-exact")
    assert _state(a) == _state(point_seed(7, ra.ResNet.scaled(16, 32, 1.0), "bfa-exact"))
    assert _state(a) == _state(point_seed(np.random.SeedSequence(7), fam, "bfa-exact"))
    others = [point_seed(8, fam, "bfa-exact"), point_seed(7, fam, "bfa-free"),
              point_seed(7, fam.replace(width=33), "bfa-exact"),
              point_seed(7, fam.replace(lr_rule="uniform"), "bfa-exact"),
              point_seed(7, ra.MLP(16, 32), "bfa-exact")]
    states = [_state(s) for s in others]
    assert all(s != _state(a) for s in states) and len({tuple(s) for s in states}) == len(states)
    # a child SeedSequence keeps its own lineage: its points differ from the parent's
    child = np.random.SeedSequence(7).spawn(1)[0]
    assert _state(point_seed(child, fam, "bfa-exact")) != _state(a)
    with pytest.raises(TypeError, match="quantity"):
        point_seed(7, fam, 3)
    with pytest.raises(ValueError, match="seed"):
        point_seed(-1, fam, "bfa-exact")


def test_seed_none_is_resolved_once_per_grid():
    ss, _ = resolve_seed(None)
    fam = ra.MLP(5, 8)
    assert _state(point_seed(ss, fam, "q")) == _state(point_seed(ss, fam, "q"))
    rebuilt = np.random.SeedSequence(ss.entropy)
    assert _state(point_seed(rebuilt, fam, "q")) == _state(point_seed(ss, fam, "q"))


def test_width_limit_points_do_not_depend_on_the_width_list():
    fam = ra.MLP(6, 8)
    small = ra.width_limit(fam, [16, 32], samples=3, seed=5)
    other = ra.width_limit(fam, [48, 32, 16], samples=3, seed=5)  # reordered and extended
    np.testing.assert_array_equal(other.means[2], small.means[0])
    np.testing.assert_array_equal(other.means[1], small.means[1])
    np.testing.assert_array_equal(other.sems[2], small.sems[0])
    # each width is the plain sampler at the content seed of that family
    fam32 = fam.replace(width=32)
    direct = ra.sample_bfa(fam32, samples=3, seed=point_seed(5, fam32, "bfa-exact"))
    np.testing.assert_array_equal(small.means[1], direct.mean("cos"))
    free = ra.width_limit(fam, [16, 32], samples=3, seed=5, mode="free")
    assert not np.array_equal(free.means[:, 2:], small.means[:, 2:])
