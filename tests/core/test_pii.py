"""PII masking by field name: JSON members, v2 tensors, broken JSON text and echoed values."""

from __future__ import annotations

import json
from pathlib import Path

from loopstack.core.pii import MASK, SensitiveFields, mask_text, mask_values, scrub

MODELS = Path(__file__).resolve().parents[2] / "models"
FIELDS = frozenset({"income"})


def test_the_specs_say_which_fields_are_sensitive() -> None:
    fields = SensitiveFields(MODELS)
    assert fields.of("credit-default") == {"income"}
    assert fields.of("bike-demand") == frozenset()
    assert fields.of("no-such-model") == frozenset() and fields.of(None) == frozenset()


def test_members_and_v2_tensors_are_masked_at_any_depth() -> None:
    v1 = {"instances": [{"income": 91234.5, "balance": 10.0}, {"income": 77.0, "student": "No"}]}
    v2 = {"inputs": [{"name": "income", "datatype": "FP64", "shape": [1], "data": [91234.5]},
                     {"name": "balance", "datatype": "FP64", "shape": [1], "data": [10.0]}]}  # fmt: skip
    assert mask_values(v1, FIELDS) == {
        "instances": [{"income": MASK, "balance": 10.0}, {"income": MASK, "student": "No"}]
    }
    masked = mask_values(v2, FIELDS)
    assert masked["inputs"][0]["data"] == MASK and masked["inputs"][1]["data"] == [10.0]
    assert mask_values(v1, frozenset()) is v1


def test_text_that_does_not_parse_is_masked_too() -> None:
    broken = '{"instances": [{"income": 91234.5, "balance": 1}, {"income": "91 234", '
    tensor = '{"inputs": [{"data": [91234.5], "name": "income", "shape": [1]}, {"name": "x"'
    assert "91234.5" not in mask_text(broken, FIELDS) and "91 234" not in mask_text(broken, FIELDS)
    assert '"balance": 1' in mask_text(broken, FIELDS)
    assert "91234.5" not in mask_text(tensor, FIELDS)
    after = json.dumps({"inputs": [{"name": "income", "shape": [1], "data": [91234.5]}]})
    assert json.loads(mask_text(after, FIELDS))["inputs"][0]["data"] == MASK


def test_echoed_values_are_scrubbed_from_messages() -> None:
    message = "input 'income': could not convert string to float: 'PII-91234'"
    assert (
        scrub(message, ["PII-91234", None, True])
        == f"input 'income': could not convert string to float: '{MASK}'"
    )


def test_a_spec_that_fails_validation_still_masks_the_fields_it_names(tmp_path: Path) -> None:
    (tmp_path / "loans").mkdir()
    # Valid YAML, invalid spec (no gate, no training): the model stays broken but masked.
    (tmp_path / "loans" / "model.yaml").write_text(
        "name: loans\ntask: classification\nsensitive_fields: [income, ssn]\n"
    )
    (tmp_path / "garbled").mkdir()
    (tmp_path / "garbled" / "model.yaml").write_text("name: [unclosed\n")
    fields = SensitiveFields(tmp_path)
    assert fields.of("loans") == {"income", "ssn"}
    assert fields.of("garbled") == frozenset()
    assert fields.of("absent") == frozenset()
