"""rmtalign/_weights.py: the weights operator (regenerated or kept blocks, read-only views)."""
import numpy as np
import pytest

from rmtalign import MLP


def test_kept_weight_blocks_change_nothing_and_are_read_only():
    from rmtalign._weights import Weights

    fam = MLP(5, 24)
    kept, plain = Weights(fam, 11, keep_blocks=True), Weights(fam, 11)
    S = np.array([1, 4, 5, 9, 20])
    V = np.random.default_rng(0).standard_normal((2, S.size))
    U = np.random.default_rng(1).standard_normal((2, 24))
    np.testing.assert_allclose(kept.matvecs(3, V, cols=S), plain.matvecs(3, V, cols=S), rtol=1e-13)
    np.testing.assert_allclose(kept.rmatvecs(3, U, cols=S), plain.rmatvecs(3, U, cols=S), rtol=1e-13)
    block = kept.view(3, cols=S)
    np.testing.assert_array_equal(block, plain.view(3, cols=S))
    with pytest.raises(ValueError, match="read-only"):
        block *= 2.0
    # Other columns of a kept layer, or a budget too small, fall back to regeneration.
    np.testing.assert_array_equal(kept.view(3, cols=S[:3]), plain.view(3, cols=S[:3]))
    tiny = Weights(fam, 11, memory_budget=8, keep_blocks=True)
    assert tiny.copy(3, cols=S).flags.writeable
    # All columns (a linear network's mask keeps every one): cols=None and arange are one block.
    full = kept.matvecs(4, V[:, :1].repeat(24, axis=1))
    assert not kept.view(4, cols=np.arange(24)).flags.writeable
    np.testing.assert_allclose(full, plain.matvecs(4, V[:, :1].repeat(24, axis=1)), rtol=1e-13)
