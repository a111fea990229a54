import pytest
import torch

from ddpm.checkpoint import CheckpointError, ResumeStore, load_checkpoint, save_checkpoint


def test_checkpoints_load_weights_only(tmp_path):
    save_checkpoint({"w": torch.ones(2), "step": 3}, tmp_path / "c.pt")
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded["step"] == 3 and torch.equal(loaded["w"], torch.ones(2))


def test_arbitrary_objects_are_refused(tmp_path):
    torch.save({"f": ResumeStore}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(tmp_path / "evil.pt")


@pytest.mark.parametrize("damage", [lambda b: b[: len(b) // 2], lambda b: b"\0" * len(b), lambda b: b""])
def test_damaged_checkpoint_error_names_the_file(tmp_path, damage):
    path = save_checkpoint({"w": torch.ones(100)}, tmp_path / "c.pt")
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match=r"c\.pt is corrupted or truncated"):
        load_checkpoint(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_resume_store_keeps_the_last_k_and_falls_back(tmp_path):
    store = ResumeStore(tmp_path, keep=2)
    assert store.latest() is None
    for step in (10, 20, 30):
        store.save({"step": step}, step)
    assert store.steps() == [20, 30]
    store.path(30).write_bytes(b"truncated")
    messages = []
    assert store.latest(messages.append) == {"step": 20}
    assert "state_000000030.pt" in messages[0]
    store.clear()
    assert store.steps() == []


def test_resume_store_needs_keep_of_at_least_one(tmp_path):
    with pytest.raises(ValueError, match="keep must be >= 1"):
        ResumeStore(tmp_path, keep=0)
