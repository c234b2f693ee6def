"""``td.summary``: the layer table of the zoo models, checked against hand-computed numbers."""

import pytest

import tinydl as td
from tinydl import layers as nn

F32 = 4  # bytes


def test_summary_is_exposed_at_the_top_level():
    assert td.summary is nn.summary


def test_lenet5_rows_totals_and_table():
    model = nn.LeNet5()
    s = td.summary(model, (1, 1, 28, 28))
    rows = [
        (r["name"], r["type"], r["output_shape"], r["params"], r["mult_adds"]) for r in s.layers
    ]
    assert rows == [
        ("0", "Conv2d", (1, 6, 28, 28), 6 * 25 + 6, 6 * 28 * 28 * 25),
        ("1", "ReLU", (1, 6, 28, 28), 0, 0),
        ("2", "MaxPool2d", (1, 6, 14, 14), 0, 0),
        ("3", "Conv2d", (1, 16, 10, 10), 16 * 6 * 25 + 16, 16 * 10 * 10 * 6 * 25),
        ("4", "ReLU", (1, 16, 10, 10), 0, 0),
        ("5", "MaxPool2d", (1, 16, 5, 5), 0, 0),
        ("6", "Flatten", (1, 400), 0, 0),
        ("7", "Linear", (1, 120), 400 * 120 + 120, 400 * 120),
        ("8", "ReLU", (1, 120), 0, 0),
        ("9", "Linear", (1, 84), 120 * 84 + 84, 120 * 84),
        ("10", "ReLU", (1, 84), 0, 0),
        ("11", "Linear", (1, 10), 84 * 10 + 10, 84 * 10),
    ]
    assert s.total_params == model.num_parameters() == 61_706
    assert s.trainable_params == 61_706
    assert s.total_mult_adds == 117_600 + 240_000 + 48_000 + 10_080 + 840
    leaf_out = (
        2 * 6 * 28 * 28 + 6 * 14 * 14 + 2 * 16 * 10 * 10 + 16 * 5 * 5 + 400 + 2 * 120 + 2 * 84 + 10
    )
    assert s.activation_bytes == leaf_out * F32
    assert s.param_bytes == 61_706 * F32 and s.input_bytes == 28 * 28 * F32
    text = str(s)
    for line in (
        "Total params: 61,706",
        "Total mult-adds: 416,520 (Linear, Conv2d, attention)",
        "Output shape: (1, 10)",
    ):
        assert line in text, text
    assert any(
        r.split()[:3] == ["3", "Conv2d", "(1,"] and r.endswith("2,416    240,000")
        for r in text.splitlines()
    ), text


def test_mlp_counts_scale_with_the_batch():
    model = nn.MLP()  # 784 -> 256 -> 128 -> 10
    s = td.summary(model, (3, 1, 28, 28))
    params = (784 * 256 + 256) + (256 * 128 + 128) + (128 * 10 + 10)
    assert s.total_params == model.num_parameters() == params
    assert s.total_mult_adds == 3 * (784 * 256 + 256 * 128 + 128 * 10)
    assert [r["output_shape"] for r in s.layers] == [
        (3, 784), (3, 256), (3, 256), (3, 128), (3, 128), (3, 10)]  # fmt: skip
    assert sum(r["params"] for r in s.layers) == params


def test_mnist_cnn_counts_conv_and_linear_and_leaves_batchnorm_uncounted():
    model = nn.MnistCNN()  # width 32, hidden 128, no conv/hidden bias
    s = td.summary(model, (1, 1, 28, 28))
    convs = 1 * 32 * 9 + 32 * 32 * 9 + 32 * 64 * 9 + 64 * 64 * 9
    bns = 2 * (32 + 32 + 64 + 64 + 128)
    linears = 64 * 7 * 7 * 128 + 128 * 10 + 10
    assert s.total_params == model.num_parameters() == convs + bns + linears
    assert s.total_mult_adds == (
        28 * 28 * 32 * 1 * 9 + 28 * 28 * 32 * 32 * 9 + 14 * 14 * 64 * 32 * 9
        + 14 * 14 * 64 * 64 * 9 + 3136 * 128 + 128 * 10
    )  # fmt: skip
    bn_rows = [r for r in s.layers if r["type"].startswith("BatchNorm")]
    assert len(bn_rows) == 5 and all(r["mult_adds"] is None for r in bn_rows)
    assert "(-- : not counted)" in str(s)
    assert s.layers[-1]["output_shape"] == (1, 10) and s.layers[6]["output_shape"] == (
        1,
        32,
        14,
        14,
    )


def test_containers_get_rows_and_the_column_adds_up():
    model = nn.ResNetSmall()
    s = td.summary(model, (2, 1, 28, 28))
    names = [r["name"] for r in s.layers]
    assert names[:2] == ["stem", "stem.0"] and "stages.1.shortcut.0" in names and "" not in names
    assert sum(r["params"] for r in s.layers) == s.total_params == model.num_parameters()
    block = s.layers[names.index("stages.1")]
    assert block["type"] == "BasicBlock" and block["output_shape"] == (2, 32, 14, 14)
    assert block["mult_adds"] == 0 and not block["leaf"]


@pytest.mark.parametrize("start", ["train", "eval", "mixed"])
def test_the_mode_is_restored_and_the_hooks_removed(start):
    model = nn.MnistCNN()
    if start == "eval":
        model.eval()
    elif start == "mixed":
        model[1].eval()
    before = [m.training for m in model.modules()]
    seen = []
    model[1].register_forward_hook(lambda m, a, o: seen.append(m.training))
    td.summary(model, (1, 1, 28, 28))
    assert seen == [False]  # the dummy forward ran in eval mode
    assert [m.training for m in model.modules()] == before
    assert all(not m.__dict__.get("_forward_pre_hooks") for m in model.modules())
    assert len(model[1].__dict__["_forward_hooks"]) == 1  # the user's hook stays


def test_a_failing_forward_restores_the_mode_and_removes_the_hooks():
    model = nn.LeNet5()
    with pytest.raises(td.ShapeError):
        td.summary(model, (1, 3, 28, 28))  # 3 channels for a 1-channel conv
    assert all(m.training for m in model.modules())
    assert all(not m.__dict__.get("_forward_hooks") for m in model.modules())


def test_no_graph_is_built():
    seen = []
    model = nn.Linear(4, 2)
    model.register_forward_hook(lambda m, a, o: seen.append(o.requires_grad))
    s = td.summary(model, (5, 4))
    assert seen == [False]
    assert [r["name"] for r in s.layers] == [""] and s.total_mult_adds == 5 * 4 * 2  # a leaf model


def test_conv_formula_with_groups_and_stride_and_linear_on_3d_input():
    conv = nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2)
    s = td.summary(nn.Sequential(conv), (2, 4, 9, 9))
    assert s.layers[0]["output_shape"] == (2, 8, 5, 5)
    assert s.total_mult_adds == 2 * 8 * 5 * 5 * (4 // 2) * 3 * 3
    s = td.summary(nn.Sequential(nn.Linear(5, 7)), (2, 3, 5))
    assert s.total_mult_adds == 2 * 3 * 5 * 7


class _Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3, bias=False)

    def forward(self, a, b):
        return self.fc(self.fc(a) + b), b


def test_several_inputs_outputs_and_a_module_called_twice():
    s = td.summary(_Twice().double(), [(2, 3), (2, 3)], dtype=td.float64)
    assert [r["name"] for r in s.layers] == ["fc", "fc"]
    assert s.total_mult_adds == 2 * (2 * 3 * 3) and s.total_params == 9
    assert s.output_shape == [(2, 3), (2, 3)] and s.input_bytes == 2 * 6 * 8
    d = s.to_dict()
    assert d["dtype"] == "float64" and d["input_shapes"] == [[2, 3], [2, 3]]
    assert "[(2, 3), (2, 3)]" in str(s)


def test_to_dict_has_the_numbers_of_the_table():
    s = td.summary(nn.LeNet5(), (1, 1, 28, 28))
    d = s.to_dict()
    assert d["total_params"] == 61_706 and d["non_trainable_params"] == 0
    assert d["total_mult_adds"] == 416_520 and d["activation_bytes"] == s.activation_bytes
    assert d["layers"][0] == {
        "name": "0",
        "type": "Conv2d",
        "output_shape": (1, 6, 28, 28),
        "params": 156,
        "mult_adds": 117_600,
        "output_bytes": 6 * 28 * 28 * F32,
    }


def test_frozen_parameters_are_not_trainable():
    model = nn.LeNet5()
    model[0].requires_grad_(False)
    s = td.summary(model, (1, 1, 28, 28))
    assert s.trainable_params == 61_706 - 156
    assert "Non-trainable params: 156" in str(s)


def test_attention_and_embedding_are_counted():
    layer = td.layers.TransformerEncoderLayer(16, 4, 32, batch_first=True)
    rows = {r["name"]: r for r in td.summary(layer, (2, 5, 16)).to_dict()["layers"]}
    # in-proj of q, k, v (10 rows of 16 -> 16 each) + scores and weighted values (10 x 5 x 16 each)
    assert rows["self_attn"]["mult_adds"] == 3 * 10 * 16 * 16 + 2 * 10 * 5 * 16
    assert rows["self_attn.out_proj"]["mult_adds"] == 10 * 16 * 16
    emb = td.summary(td.layers.Embedding(10, 4), (2, 3), dtype=td.int64).to_dict()
    assert emb["layers"][0]["mult_adds"] == 0 and emb["output_shape"] == (2, 3, 4)
