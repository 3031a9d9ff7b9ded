import collections
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

from neuralgraphs.train import checkpoint as C


def _state():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 7, "best": 0.25,
            "name": "dnw", "history": [1.0, 0.5], "nested": {"a": (1, 2), "b": None},
            "ordered": collections.OrderedDict(x=torch.arange(3))}


def _assert_equal(a, b):
    assert type(a) is type(b) or (isinstance(a, dict) and isinstance(b, dict))
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_equal(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_equal(x, y)
    else:
        assert a == b


def test_round_trip(tmp_path):
    state = _state()
    path = tmp_path / "ckpt.pt"
    C.save_checkpoint(path, state)
    loaded = C.load_checkpoint(path)
    _assert_equal(state, loaded)
    assert os.listdir(tmp_path) == ["ckpt.pt"]
    # Overwriting replaces the content.
    C.save_checkpoint(str(path), {"epoch": 8})
    assert C.load_checkpoint(str(path)) == {"epoch": 8}


def test_scheduler_state_round_trip(tmp_path):
    from neuralgraphs.train import schedules as S
    opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=0.1)
    sched = S.multistep(opt, [2, 4])
    for _ in range(3):
        opt.step()
        sched.step()
    C.save_checkpoint(tmp_path / "s.pt", {"scheduler": sched.state_dict()})
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=0.1)
    sched2 = S.multistep(opt2, [2, 4])
    sched2.load_state_dict(C.load_checkpoint(tmp_path / "s.pt")["scheduler"])
    assert sched2.last_epoch == 3 and sched2.get_last_lr() == pytest.approx([0.1 * 0.1])


def test_crash_mid_write_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    C.save_checkpoint(path, {"epoch": 1, "w": torch.ones(3)})
    before = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"PARTIAL" * 100)
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        C.save_checkpoint(path, {"epoch": 2, "w": torch.zeros(3)})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.pt"]  # no temporary file left behind
    loaded = C.load_checkpoint(path)
    assert loaded["epoch"] == 1 and torch.equal(loaded["w"], torch.ones(3))


def test_crash_on_first_write_leaves_nothing(tmp_path, monkeypatch):
    def broken_save(obj, f, *args, **kwargs):
        f.write(b"x")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        C.save_checkpoint(tmp_path / "new.pt", {"epoch": 0})
    assert os.listdir(tmp_path) == []


def test_a_write_removes_what_a_killed_write_left(tmp_path):
    # a process killed in mid-write leaves mkstemp's file; nothing else beside the target is touched
    left = [".ckpt.pt.k3x_9q2a.tmp", ".ckpt.pt.abcdefgh.tmp"]
    kept = [".other.pt.abcdefgh.tmp", ".ckpt.pt.tmp", "ckpt.pt.abcdefgh.tmp", ".ckpt.pt.ABC.tmp", ".xckpt.pt.ab.tmp"]
    for name in left + kept:
        (tmp_path / name).write_bytes(b"PARTIAL")
    C.save_checkpoint(tmp_path / "ckpt.pt", {"epoch": 1})
    assert sorted(os.listdir(tmp_path)) == sorted(kept + ["ckpt.pt"])
    assert C.load_checkpoint(tmp_path / "ckpt.pt") == {"epoch": 1}


class _Payload:
    def __init__(self):
        self.value = 42


def test_weights_only_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"obj": _Payload()}, path)  # written without our checks, as a foreign file would be
    with pytest.raises(ValueError, match=r"evil\.pt: refused by torch\.load\(weights_only=True\); the file holds "
                                         "objects other than tensors"):
        C.load_checkpoint(path)
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(_Payload(), protocol=2))
    with pytest.raises(ValueError, match=r"raw\.pkl: not a checkpoint written by torch\.save"):
        C.load_checkpoint(raw)


def test_save_refuses_what_load_would_refuse(tmp_path):
    with pytest.raises(TypeError, match=r"state\['obj'\]"):
        C.save_checkpoint(tmp_path / "a.pt", {"obj": _Payload()})
    with pytest.raises(TypeError, match="as_tensor"):
        C.save_checkpoint(tmp_path / "a.pt", {"arr": {"x": [np.zeros(2)]}})
    with pytest.raises(TypeError, match="state"):
        C.save_checkpoint(tmp_path / "a.pt", [1, 2])
    assert os.listdir(tmp_path) == []


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        C.load_checkpoint(tmp_path / "missing.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="dict"):
        C.load_checkpoint(tmp_path / "list.pt")
    with pytest.raises(FileNotFoundError, match="folder"):
        C.save_checkpoint(tmp_path / "no" / "such" / "dir.pt", {})


@pytest.mark.parametrize("keep", [4, 100, 0.5, -1])
def test_load_says_a_cut_checkpoint_is_truncated(tmp_path, keep):
    good = tmp_path / "good.pt"
    C.save_checkpoint(good, {"model": {"w": torch.randn(50, 50)}, "epoch": 3})
    data = good.read_bytes()
    assert data[:4] == b"PK\x03\x04"  # torch.save's zip archive, as the diagnosis expects
    end = int(len(data) * keep) if isinstance(keep, float) else keep
    bad = tmp_path / "bad.pt"
    bad.write_bytes(data[:end])
    with pytest.raises(ValueError, match=r"bad\.pt: the checkpoint is truncated or corrupt") as info:
        C.load_checkpoint(bad)
    assert str(bad) in str(info.value) and "other than tensors" not in str(info.value)


@pytest.mark.parametrize("content", [
    b"hello world\nthis is a text file\n" * 5,
    np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    pickle.dumps({"epoch": 3}, protocol=2),  # a plain pickle, not torch.save's layout
])
def test_load_says_a_foreign_file_is_not_a_checkpoint(tmp_path, content):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(content)
    with pytest.raises(ValueError, match=r"bad\.pt: not a checkpoint written by torch\.save") as info:
        C.load_checkpoint(bad)
    assert str(bad) in str(info.value) and "other than tensors" not in str(info.value)


def test_load_says_an_empty_file_or_a_foreign_zip_is_not_a_checkpoint(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.pt: the file is empty; expected a checkpoint written by torch"):
        C.load_checkpoint(empty)
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("notes.txt", "not a checkpoint")
    with pytest.raises(ValueError, match=r"other\.zip: not a checkpoint written by torch\.save: a zip archive"):
        C.load_checkpoint(archive)


def test_map_location(tmp_path):
    C.save_checkpoint(tmp_path / "m.pt", {"w": torch.ones(2)})
    assert C.load_checkpoint(tmp_path / "m.pt", map_location=torch.device("cpu"))["w"].device.type == "cpu"


# ------------------------------------------------------------------------------------------------ YAML

def test_yaml_config(tmp_path):
    pytest.importorskip("yaml")
    path = tmp_path / "c.yaml"
    path.write_text("width: 32\ndensity: 0.1\nmilestones: [80, 120]\nname: tiny\n")
    assert C.load_yaml_config(path) == {"width": 32, "density": 0.1, "milestones": [80, 120], "name": "tiny"}
    (tmp_path / "empty.yaml").write_text("")
    assert C.load_yaml_config(tmp_path / "empty.yaml") == {}
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        C.load_yaml_config(tmp_path / "list.yaml")
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        C.load_yaml_config(tmp_path / "nope.yaml")


def test_yaml_refuses_python_tags(tmp_path):
    pytest.importorskip("yaml")
    marker = tmp_path / "created"
    path = tmp_path / "evil.yaml"
    path.write_text(f"a: !!python/object/apply:os.system ['touch {marker}']\n"
                    "b: !!python/object:collections.OrderedDict {}\n")
    with pytest.raises(ValueError, match="evil.yaml"):
        C.load_yaml_config(path)
    assert not marker.exists()


class _Net:
    def __init__(self, width, depth=2, *, density=0.5):
        self.width, self.depth, self.density = width, depth, density


def _fn(a, b=1, **extra):
    return a, b, extra


def test_apply_config():
    net = C.apply_config(_Net, {"width": 16, "density": 0.1}, depth=5)
    assert (net.width, net.depth, net.density) == (16, 5, 0.1)
    net = C.apply_config(_Net, {"width": 16, "depth": 3}, depth=4)  # overrides win
    assert net.depth == 4
    assert C.apply_config(_fn, {"a": 1, "zzz": 2}) == (1, 1, {"zzz": 2})  # **kwargs accepts anything


def test_apply_config_errors():
    with pytest.raises(TypeError, match=r"unknown key\(s\) \['colour', 'size'\].*\['width', 'depth', 'density'\]"):
        C.apply_config(_Net, {"width": 1, "colour": 2, "size": 3})
    with pytest.raises(TypeError, match=r"missing required key\(s\) \['width'\]"):
        C.apply_config(_Net, {"depth": 1})
    with pytest.raises(TypeError, match="config"):
        C.apply_config(_Net, [("width", 1)])
    with pytest.raises(TypeError, match="config"):
        C.apply_config(_Net, {1: 2})
    with pytest.raises(TypeError, match="cls_or_fn"):
        C.apply_config(3, {})
