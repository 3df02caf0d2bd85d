"""core.trained: the lifecycle every model our code trains shares (train once, retrain when stale, atomic saves)."""
import json

import pytest

from core import config, store
from core.registry import READY, Kind, Registry, SlotError, SlotSpec, Source
from core.trained import TrainedModel


def toy(slot: str, runs: list, version: int = 1, data: str = "v1", fail: bool = False) -> TrainedModel:
    """A trainer that writes meta.json and a weights file, counting its runs."""
    def train(progress):
        runs.append(data)
        progress("training the toy")
        with trained.saving() as tmp:
            (tmp / "weights.txt").write_text(f"trained on {data}")
            if fail:
                raise RuntimeError("the trainer broke halfway")
            (tmp / "meta.json").write_text(json.dumps({"version": version, "data_fingerprint": data}))
        trained.record({"epochs": 1}, data, 0.01, {"accuracy": 0.5}, model="toy")

    trained = TrainedModel(slot=slot, title="the toy", version=version, data_package="json", install="-",
                           train=train, fingerprint=lambda: data)
    return trained


def test_trains_once_then_uses_the_stored_model():
    runs = []
    model = toy("toy_once", runs)
    folder, seconds = model.ready(lambda message: None)
    assert runs == ["v1"] and seconds > 0 and (folder / "weights.txt").read_text() == "trained on v1"
    assert model.ready(lambda message: None) == (folder, 0.0) and runs == ["v1"]
    assert len(store.training_runs("toy_once")) == 1


def test_new_training_code_or_new_data_makes_the_stored_model_stale():
    runs = []
    toy("toy_stale", runs).ready(print)
    assert toy("toy_stale", runs, version=2).stale() == "the training code changed"
    assert toy("toy_stale", runs, data="v2").stale() == "the training data changed"
    toy("toy_stale", runs, data="v2").ready(print)
    assert runs == ["v1", "v2"]


def test_a_trainer_that_fails_halfway_leaves_the_previous_model():
    runs = []
    good = toy("toy_fail", runs)
    folder, _ = good.ready(print)
    with pytest.raises(RuntimeError, match="halfway"):
        toy("toy_fail", runs, version=2, fail=True).ready(print)
    assert (folder / "weights.txt").read_text() == "trained on v1" and good.stale() == ""
    assert not list(config.store_dir().glob(".tmp-toy_fail-*"))


def test_missing_training_data_is_a_slot_error_with_the_fix():
    model = TrainedModel(slot="toy_missing", title="x", version=1, data_package="no_such_package_here",
                         install="pip install no-such", train=lambda progress: None)
    with pytest.raises(SlotError) as info:
        model.default_source()
    assert "no_such_package_here" in info.value.reason and "pip install no-such" in info.value.fix


def test_the_registry_counts_training_apart_from_loading():
    runs = []
    model = toy("toy_slot", runs)

    def load(source, device, dtype, progress):
        from core.registry import ModelBundle

        folder, seconds = model.ready(progress)
        return ModelBundle((folder / "weights.txt").read_text(), meta={"trained_seconds": seconds + 5.0})

    registry = Registry([SlotSpec("toy_slot", "Toy", "toy", "toy", model.default_source, load, "ours", "ours")])
    assert registry.get("toy_slot").model == "trained on v1"
    state = registry.state("toy_slot")
    assert state.state == READY and state.train_seconds > 5.0 and state.load_seconds < 5.0


def test_a_load_stopped_by_the_visitor_leaves_the_slot_loadable():
    """Streamlit stops a script run by raising an exception that is not an Exception (StopException)."""
    class Stopped(BaseException):
        pass

    calls = []

    def load(source, device, dtype, progress):
        from core.registry import ModelBundle

        calls.append(1)
        if len(calls) == 1:
            raise Stopped()
        return ModelBundle("loaded")

    registry = Registry([SlotSpec("stoppable", "S", "s", "s", lambda: Source(Kind.FOLDER, "."), load, "ours", "ours")])
    with pytest.raises(Stopped):
        registry.get("stoppable")
    assert registry.state("stoppable").state == "not loaded"
    assert registry.get("stoppable").model == "loaded"
