from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flowseg.model.net import FlowUNet, NetConfig, count_parameters, deepened, load_net, save_net


@pytest.mark.parametrize("config", [NetConfig(), NetConfig(skip="concat", style=False),
                                    NetConfig(widths=(8, 16), full_res=4, blocks=2),
                                    NetConfig(widths=(8, 16, 32), full_res=4, blocks=(1, 2, 3))])
def test_output_shape(config: NetConfig) -> None:
    net = FlowUNet(config).eval()
    size = net.stride * 2
    with torch.no_grad():
        out = net(torch.randn(2, config.in_channels, size, size + net.stride))
    assert out.shape == (2, 3, size, size + net.stride)


def test_default_is_compact() -> None:
    assert count_parameters(FlowUNet()) <= 4_000_000


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    config = NetConfig(widths=(8, 16, 32), full_res=4, skip="concat")
    net = FlowUNet(config).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    path = save_net(net, tmp_path / "m.pt", thresholds={"cellprob_threshold": 0.5})
    loaded = load_net(path)
    assert loaded.config == config and loaded.metadata["thresholds"]["cellprob_threshold"] == 0.5
    assert "flowseg_version" in loaded.metadata
    x = torch.randn(1, 3, 16, 24)
    with torch.no_grad():
        assert torch.equal(net(x), loaded(x))


def test_bad_checkpoints_give_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_net(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match=r"junk.pt: not a flowseg checkpoint"):
        load_net(junk)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(ValueError, match=r"other\.pt: not a flowseg checkpoint"):
        load_net(other)


def test_bad_config() -> None:
    with pytest.raises(ValueError, match="skip"):
        NetConfig(skip="sum")
    for blocks in [(1, 2), 0, (1, 1, 0, 1, 1), ("1",) * 5, 1.5]:
        with pytest.raises(ValueError, match="invalid network shape"):
            NetConfig(blocks=blocks)


def test_per_level_blocks_round_trip(tmp_path: Path) -> None:
    config = NetConfig(widths=(8, 16, 32), full_res=4, blocks=(1, 2, 2))
    net = FlowUNet(config).eval()
    assert [len(level) for level in net.encode] == [1, 2, 2]
    loaded = load_net(save_net(net, tmp_path / "m.pt"))
    assert loaded.config == config
    x = torch.randn(1, 3, 16, 24)
    with torch.no_grad():
        assert torch.equal(net(x), loaded(x))


def test_deepened_computes_the_same_until_trained(tmp_path: Path) -> None:
    net = FlowUNet(NetConfig(widths=(8, 16, 32), full_res=4)).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    deeper = deepened(net, (1, 2, 3))
    assert deeper.config.level_blocks == (1, 2, 3)
    assert count_parameters(deeper) > count_parameters(net)
    x = torch.randn(2, 3, 32, 40)
    with torch.no_grad():
        assert torch.allclose(net(x), deeper(x), atol=1e-5)
    # the added blocks learn: their last batch norm gets a gradient from the first step
    deeper.train()
    deeper(x).square().mean().backward()
    assert deeper.encode[2][2].body[-1].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="lose blocks"):
        deepened(deeper, 1)


@pytest.mark.parametrize(("change", "message"), [
    (lambda p: p.pop("net_config"), "holds no network configuration"),
    (lambda p: p["net_config"].update(colour="red"), "unknown fields colour"),
    (lambda p: p["net_config"].update(widths=[10**6] * 5), "larger than any flowseg model"),
    (lambda p: p["net_config"].update(widths=["a"]), "is not numbers"),
    (lambda p: p["net_config"].update(blocks=[1, 2, 3]), "invalid network shape"),
    (lambda p: p["net_config"].update(blocks=[1, 99]), "larger than any flowseg model"),
])
def test_a_checkpoint_with_a_bad_stored_config_is_named(tmp_path: Path, tiny_model: Path,
                                                          change, message: str) -> None:  # type: ignore[no-untyped-def]
    payload = torch.load(tiny_model, weights_only=True)
    payload["net_config"] = dict(payload["net_config"])
    change(payload)
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=f"bad.pt: .*{message}"):
        load_net(tmp_path / "bad.pt")
