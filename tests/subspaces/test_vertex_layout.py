"""vertex_columns and shuffled_vertices: column order, groups and the initial draws."""

import torch

from lsuite.functional.vertex_layout import shuffled_vertices, vertex_columns

SHAPES = {
    "a.weight": torch.Size([3, 2]),
    "a.bias": torch.Size([3]),
    "b.weight": torch.Size([2, 3]),
    "b.bias": torch.Size([2]),
}


def test_weights_first_and_contiguous_columns():
    columns = vertex_columns(SHAPES, layerwise=False)
    assert columns.names == ("a.weight", "b.weight", "a.bias", "b.bias")
    assert columns.slices == {
        "a.weight": (0, 6),
        "b.weight": (6, 12),
        "a.bias": (12, 15),
        "b.bias": (15, 17),
    }
    assert columns.num_weights == 12 and columns.other_names == ["a.bias", "b.bias"]
    assert columns.num_groups == 1 and set(columns.groups.values()) == {0}
    layout = columns.layout(1)
    assert [(e.name, e.start, e.stop) for e in layout.parts[1]] == [
        ("a.bias", 0, 3),
        ("b.bias", 3, 5),
    ]


def test_layerwise_groups_by_module_and_no_weights():
    columns = vertex_columns(SHAPES, layerwise=True)
    assert columns.num_groups == 2
    assert columns.groups == {"a.weight": 0, "a.bias": 0, "b.weight": 1, "b.bias": 1}
    assert [e.group for e in columns.layout(2).parts[0]] == [0, 1]
    assert [e.group for e in columns.layout(1).parts[0]] == [0, 0]
    biases = vertex_columns({"x": torch.Size([4])}, layerwise=False)
    assert biases.weight_names == ["x"] and biases.num_weights == 4


def test_shuffled_vertices_permute_each_tensor():
    base = {n: torch.arange(s.numel(), dtype=torch.float64).view(s) for n, s in SHAPES.items()}
    names = list(vertex_columns(SHAPES, layerwise=False).names)
    torch.manual_seed(0)
    rows = shuffled_vertices(base, names, 3)
    assert rows.shape == (3, 17)
    assert torch.equal(rows[0], torch.cat([base[n].flatten() for n in names]))
    for row in rows[1:]:
        assert torch.equal(row[:6].sort().values, base["a.weight"].flatten())
        assert torch.equal(row[15:].sort().values, base["b.bias"])
    assert not torch.equal(rows[1], rows[2])
