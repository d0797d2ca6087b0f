"""The report's split of a configuration holding trials of two settings reads the
database's own hash of each spec without its seed: the same rows on SQLite and on the
real PostgreSQL (``ablate.report.settings``)."""

from __future__ import annotations

from ablate.report.frame import config_frame, trials_frame
from ablate.store import Store
from tests.report.fake_store import add_study
from tests.report.test_settings import ONE_EPOCH, TINY, TWO_EPOCHS


def test_two_settings_under_one_name_are_two_rows_on_every_database(db_url):
    store = Store(db_url)
    add_study(store, TINY.format(epochs=1), "tiny", ONE_EPOCH)
    add_study(store, TINY.format(epochs=2), "tiny", TWO_EPOCHS)
    configs = config_frame(trials_frame(store, settings=True)).set_index("config_name")
    assert configs["n"].to_dict() == {
        "image_size=32 {train.epochs=1}": 2, "image_size=48 {train.epochs=1}": 2,
        "image_size=32 {train.epochs=2}": 2, "image_size=48 {train.epochs=2}": 2}
    assert configs["miou_mean"].round(6).to_dict() == {
        "image_size=32 {train.epochs=1}": 51.0, "image_size=48 {train.epochs=1}": 61.0,
        "image_size=32 {train.epochs=2}": 72.0, "image_size=48 {train.epochs=2}": 81.0}
    one = Store(db_url)  # a study of one setting is left as the recipe names it
    assert set(trials_frame(one, ["tiny"])["config_name"]) == {"image_size=32", "image_size=48"}
